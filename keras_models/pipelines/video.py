"""video-classification over a VideoClassifier and its VideoProcessor.

A video is a (frames, height, width, channels) array or a list of frames; several videos are a
(batch, frames, H, W, C) array or a list of videos. Files are not decoded here (decode them with
PyAV, decord, OpenCV...). Frames are picked as Transformers' pipeline picks them from a decoded
file: ``num_frames`` (default: the model's) evenly spaced indices over the first
``num_frames * frame_sampling_rate`` frames (``np.linspace(0, num_frames * rate - 1, num_frames)``
truncated). Output per video: ``[{"score", "label"}]`` best first, ``top_k`` (default 5) of them,
softmax scores (sigmoid for multi-label, raw logits for regression, or ``function_to_apply``).
"""

from __future__ import annotations

import numpy as np

from keras_models.pipelines.base import Pipeline, PipelineError, sigmoid, softmax
from keras_models.pipelines.image import _labels


class VideoClassificationPipeline(Pipeline):
    task = "video-classification"
    call_params = ("top_k", "num_frames", "frame_sampling_rate", "function_to_apply")

    def __init__(self, model, tokenizer=None, video_processor=None, **kwargs):
        super().__init__(model, tokenizer=tokenizer, **kwargs)
        self.video_processor = video_processor or getattr(model, "preprocessor", None)
        if self.video_processor is None:
            raise PipelineError(f"{self.task}: the model has no video processor (preprocessor_config.json); "
                                "pass video_processor=")

    id2label = property(lambda self: _labels(self))

    def __call__(self, inputs=None, **kwargs):
        if inputs is None:
            inputs = kwargs.pop("videos", None)
        if inputs is None:
            raise PipelineError(f"{self.task}: give videos ((frames, H, W, C) arrays or lists of frames)")
        return super().__call__(inputs, **kwargs)

    def normalize_inputs(self, inputs, params):
        if isinstance(inputs, (str, bytes)) or isinstance(inputs, (list, tuple)) and inputs and \
                isinstance(inputs[0], (str, bytes)):
            raise PipelineError(f"{self.task}: video files are not decoded by keras-models; decode the frames "
                                "(PyAV, decord, OpenCV...) and pass them as a (frames, H, W, C) array")
        if isinstance(inputs, np.ndarray):
            if inputs.ndim == 4:
                return True, [inputs]
            if inputs.ndim == 5:
                return False, list(inputs)
            raise PipelineError(f"{self.task}: videos must be (frames, H, W, C) or (batch, frames, H, W, C) "
                                f"arrays, got shape {inputs.shape}")
        if isinstance(inputs, (list, tuple)) and inputs:
            first = inputs[0]
            if isinstance(first, (list, tuple)) or isinstance(first, np.ndarray) and first.ndim == 4:
                return False, list(inputs)
            return True, [list(inputs)]  # one video as a list of frames
        raise PipelineError(f"{self.task}: expected a video or a list of videos, got {type(inputs).__name__}")

    def prepare_params(self, params):
        fn = params.get("function_to_apply")
        if fn is None:
            problem = self.hf_config.get("problem_type")
            fn = {"regression": "none", "multi_label_classification": "sigmoid"}.get(problem, "softmax")
        if fn not in ("softmax", "sigmoid", "none"):
            raise PipelineError(f"function_to_apply must be 'softmax', 'sigmoid' or 'none', got {fn!r}")
        num_frames = params.get("num_frames") or self.model.backbone.num_frames
        rate = params.get("frame_sampling_rate") or 1
        return {"top_k": params.get("top_k") or 5, "function_to_apply": fn, "num_frames": int(num_frames),
                "frame_sampling_rate": int(rate)}

    def preprocess(self, video, num_frames=None, frame_sampling_rate=1, **_):
        frames = list(video)
        indices = np.linspace(0, num_frames * frame_sampling_rate - 1, num=num_frames, dtype=np.int64)
        if indices[-1] >= len(frames):
            raise PipelineError(f"{self.task}: a video of {len(frames)} frames is too short for num_frames="
                                f"{num_frames} at frame_sampling_rate={frame_sampling_rate} (needs "
                                f"{int(indices[-1]) + 1})")
        return [{"pixel_values": self.video_processor([[frames[i] for i in indices]])["pixel_values"][0]}]

    def forward(self, chunks, **params):
        out = self.run_model({"pixel_values": np.stack([c["pixel_values"] for c in chunks])})
        return [out[i] for i in range(len(chunks))]

    def postprocess(self, item, chunks, outputs, top_k=5, function_to_apply="softmax", **_):
        logits = np.asarray(outputs[0], dtype=np.float32)
        scores = {"softmax": softmax, "sigmoid": sigmoid, "none": np.asarray}[function_to_apply](logits)
        labels = self.id2label
        order = np.argsort(-np.asarray(scores), kind="stable")[: min(top_k, len(labels))]
        return [{"score": float(scores[i]), "label": labels[int(i)]} for i in order]


__all__ = ["VideoClassificationPipeline"]

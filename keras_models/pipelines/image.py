"""image-classification and image-feature-extraction over the checkpoint's image processor
(``preprocessor_config.json``). Images: file paths, PIL images or (height, width, channels) arrays."""

from __future__ import annotations

import numpy as np

from keras_models.pipelines.base import HiddenStateOutputs, Pipeline, PipelineError, sigmoid, softmax


class ImageInputs:
    """Pipeline inputs that are images: ``images=`` accepted for the first argument, and a 4-D array
    read as a batch of images."""

    def __call__(self, inputs=None, **kwargs):
        if inputs is None:
            inputs = kwargs.pop("images", None)
        if inputs is None:
            raise PipelineError(f"{self.task}: give images (paths, PIL images or arrays)")
        return super().__call__(inputs, **kwargs)

    def normalize_inputs(self, inputs, params):
        if isinstance(inputs, np.ndarray) and inputs.ndim == 4:
            return False, list(inputs)
        return super().normalize_inputs(inputs, params)


class ImagePipeline(ImageInputs, Pipeline):
    def __init__(self, model, tokenizer=None, image_processor=None, **kwargs):
        super().__init__(model, tokenizer=tokenizer, **kwargs)
        self.image_processor = image_processor or getattr(model, "preprocessor", None)
        if self.image_processor is None:
            raise PipelineError(f"{self.task}: the model has no image processor (preprocessor_config.json); "
                                "pass image_processor=")

    def preprocess(self, item, **_):
        return [{"pixel_values": self.image_processor([item])["pixel_values"][0]}]

    def forward(self, chunks, **params):
        batch = {"pixel_values": np.stack([c["pixel_values"] for c in chunks])}
        out = self.run_model(batch)
        return [out[i] for i in range(len(chunks))]


class ImageClassificationPipeline(ImagePipeline):
    """``[{"label", "score"}]`` best first, ``top_k`` (default 5) of them, scores as in
    text-classification (softmax, sigmoid for one label / multi-label, none for regression)."""

    task = "image-classification"
    call_params = ("top_k", "function_to_apply", "timeout")

    def prepare_params(self, params):
        from keras_models.pipelines.text import score_function

        fn = score_function(params.get("function_to_apply"), self.hf_config, len(self.id2label))
        return {"top_k": params.get("top_k") or 5, "function_to_apply": fn}

    id2label = property(lambda self: _labels(self))

    def postprocess(self, item, chunks, outputs, top_k=5, function_to_apply="softmax", **_):
        logits = np.asarray(outputs[0], dtype=np.float32)
        scores = {"softmax": softmax, "sigmoid": sigmoid, "none": np.asarray}[function_to_apply](logits)
        labels = self.id2label
        ranked = sorted(({"label": labels[i], "score": float(s)} for i, s in enumerate(scores)),
                        key=lambda r: r["score"], reverse=True)
        return ranked[: min(top_k, len(labels))]


class ImageFeatureExtractionPipeline(HiddenStateOutputs, ImagePipeline):
    """The backbone's last hidden state per image, ``(1, tokens, hidden)`` nested lists (numpy with
    ``return_tensors=True``)."""

    task = "image-feature-extraction"
    call_params = ("return_tensors", "timeout")


def _labels(pipe):
    labels = getattr(pipe.model, "id2label", None)
    if not labels and pipe.hf_config.get("id2label"):
        labels = {int(k): v for k, v in pipe.hf_config["id2label"].items()}
    n = getattr(pipe.model, "num_classes", None) or (len(labels) if labels else 0)
    labels = dict(labels or {})
    return {i: labels.get(i, f"LABEL_{i}") for i in range(n)}

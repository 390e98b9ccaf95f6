"""Pipelines over an image and a text: zero-shot-object-detection, image-to-text,
visual-question-answering and document-question-answering, with Transformers' arguments and
output formats.

* zero-shot-object-detection (OWL-ViT): ``pipe(image, candidate_labels=[...], threshold=0.1,
  top_k=None)`` -> ``[{"score", "label", "box": {"xmin", "ymin", "xmax", "ymax"}}]`` best first.
  As Transformers' pipeline, each label is a query of its own (a separate model call), the
  detections of every label are pooled, sorted by score and cut to ``top_k``; boxes are in pixels
  of the original image, truncated to integers. ``candidate_labels`` may be one comma-separated
  string; several images take one label list for all or one per image; inputs may also be
  ``{"image", "candidate_labels"}`` dicts. OWLv2 (Owlv2ImageProcessor: the image padded to a
  square, keras_models.preprocessing.owlv2): its boxes are relative to the padded square, so they
  are scaled by the image's longer side, as Transformers does (they may reach past the image).
* image-to-text (km.ImageToText: VisionEncoderDecoder, GIT): ``pipe(image, max_new_tokens=None,
  generate_kwargs=None)`` -> ``[{"generated_text"}]`` per image (a list of them for a list of
  images): greedy decoding, 256 new tokens at most by default (Transformers 4's pipeline default),
  the text decoded without special tokens.
"""

from __future__ import annotations

import numpy as np

from keras_models.pipelines.base import (Pipeline, PipelineError, generation_kwargs, model_image_processor,
                                         to_numpy)
from keras_models.pipelines.image import ImageInputs


def _is_image(x):
    if isinstance(x, (str, np.ndarray)):
        return True
    return type(x).__module__.startswith("PIL.")


class ZeroShotObjectDetectionPipeline(Pipeline):
    task = "zero-shot-object-detection"
    call_params = ("candidate_labels", "text_queries", "threshold", "top_k", "timeout")

    def __init__(self, model, tokenizer=None, **kwargs):
        super().__init__(model, tokenizer=tokenizer, **kwargs)
        self.image_processor = model_image_processor(self)
        kind = str(getattr(self.image_processor, "image_processor_type", ""))
        if getattr(model, "square_padding", False) != kind.startswith("Owlv2"):
            raise PipelineError(f"{self.task}: this {type(model).__name__} comes with a {kind or 'missing'} image "
                                "processor (preprocessor_config.json image_processor_type); OWLv2 detectors need "
                                "Owlv2ImageProcessor (pad to a square) and OWL-ViT ones OwlViTImageProcessor, "
                                "or the boxes would be scaled wrongly")

    def __call__(self, image=None, candidate_labels=None, **kwargs):
        if "text_queries" in kwargs:
            queries = kwargs.pop("text_queries")
            candidate_labels = queries if candidate_labels is None else candidate_labels
        if image is None:
            image = kwargs.pop("images", None)
        if image is None:
            raise PipelineError(f"{self.task}: give an image (path, PIL image or array), a list of them, or "
                                "{'image': ..., 'candidate_labels': [...]} dicts")
        if candidate_labels is not None:
            kwargs["candidate_labels"] = candidate_labels
        return super().__call__(image, **kwargs)

    def normalize_inputs(self, inputs, params):
        labels = params.get("candidate_labels")
        if isinstance(inputs, np.ndarray) and inputs.ndim == 4:
            inputs = list(inputs)
        single = not isinstance(inputs, (list, tuple))
        items = [inputs] if single else list(inputs)
        if not items:
            raise PipelineError(f"{self.task}: inputs is an empty list")
        if all(_is_image(x) for x in items):
            if labels is None or isinstance(labels, str) or all(isinstance(x, str) for x in labels):
                per_image = [labels] * len(items)
            elif not single and all(isinstance(x, (list, tuple)) for x in labels):
                if len(labels) != len(items):
                    raise PipelineError(f"{self.task}: got {len(items)} images but {len(labels)} "
                                        "candidate_labels lists")
                per_image = list(labels)
            else:
                raise PipelineError(f"{self.task}: candidate_labels must be a string, a list of strings, or "
                                    "one list of strings per image")
            items = [{"image": img, "candidate_labels": lab} for img, lab in zip(items, per_image)]
        for item in items:
            if not isinstance(item, dict) or "image" not in item:
                raise PipelineError(f"{self.task}: each input is an image or an {{'image', 'candidate_labels'}} "
                                    f"dict, got {type(item).__name__}")
            item.setdefault("candidate_labels", labels)
        return single, [_check_labels(self.task, dict(item)) for item in items]

    def prepare_params(self, params):
        threshold = params.get("threshold", 0.1)
        if threshold is None:
            threshold = 0.1
        if isinstance(threshold, bool) or not isinstance(threshold, (int, float)):
            raise PipelineError(f"{self.task}: threshold must be a number, got {threshold!r}")
        top_k = params.get("top_k")
        if top_k is not None and (isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 0):
            raise PipelineError(f"{self.task}: top_k must be a non-negative integer or None, got {top_k!r}")
        return {"threshold": float(threshold), "top_k": top_k}

    def preprocess(self, item, **_):
        from keras_models.preprocessing.image_io import load_image

        image = load_image(item["image"])
        pixels = self.image_processor([image])["pixel_values"]
        chunks = []
        for label in item["candidate_labels"]:
            text = self.tokenizer([label])
            features = {k: np.asarray(v, np.int32) for k, v in text.items() if k in ("input_ids", "attention_mask")}
            chunks.append({"features": {**features, "pixel_values": pixels}, "label": label,
                           "size": image.shape[:2]})
        return chunks

    def forward(self, chunks, **_):
        outputs = []
        for c in chunks:
            out = to_numpy(self.model(c["features"]))
            outputs.append({"logits": out["logits"], "pred_boxes": out["pred_boxes"]})
        return outputs

    def postprocess(self, item, chunks, outputs, threshold=0.1, top_k=None, **_):
        results = []
        for chunk, out in zip(chunks, outputs):
            found = self.model.post_process_object_detection(out, threshold=threshold,
                                                             target_sizes=[chunk["size"]])[0]
            for score, box in zip(found["scores"], found["boxes"]):
                if score == 0:
                    continue
                xmin, ymin, xmax, ymax = (int(v) for v in np.asarray(box, np.float32))
                results.append({"score": float(score), "label": chunk["label"],
                                "box": {"xmin": xmin, "ymin": ymin, "xmax": xmax, "ymax": ymax}})
        results.sort(key=lambda r: r["score"], reverse=True)
        return results[:top_k] if top_k else results


class ImageToTextPipeline(ImageInputs, Pipeline):
    task = "image-to-text"
    call_params = ("max_new_tokens", "generate_kwargs", "timeout")

    def __init__(self, model, tokenizer=None, **kwargs):
        super().__init__(model, tokenizer=tokenizer, **kwargs)
        self.image_processor = model_image_processor(self)

    def prepare_params(self, params):
        return {"generate_kwargs": generation_kwargs(self.task, params)}

    def preprocess(self, item, **_):
        from keras_models.preprocessing.image_io import load_image

        return [{"pixel_values": self.image_processor([load_image(item)])["pixel_values"][0]}]

    def forward(self, chunks, generate_kwargs=None, **_):
        pixels = np.stack([c["pixel_values"] for c in chunks])
        ids = np.asarray(self.model.generate(pixels, **(generate_kwargs or {})))
        return list(ids)

    def postprocess(self, item, chunks, outputs, **_):
        ids = np.asarray(outputs[0]).tolist()
        return [{"generated_text": self.tokenizer.decode(ids, skip_special_tokens=True)}]


def _check_labels(task, item):
    labels = item.get("candidate_labels")
    if isinstance(labels, str):
        labels = labels.split(",")
    if not labels or not all(isinstance(x, str) for x in labels):
        raise PipelineError(f"{task}: pass candidate_labels=[...] (at least one label, strings)")
    item["candidate_labels"] = list(labels)
    return item


__all__ = ["ImageToTextPipeline", "ZeroShotObjectDetectionPipeline"]

"""zero-shot-image-classification: ``pipe(image, candidate_labels=[...])`` ->
``[{"score", "label"}]`` best first, as Transformers' pipeline gives it: each label is put in
``hypothesis_template`` (default ``"This is a photo of {}."``), scores are the softmax of
``logits_per_image`` over the labels (SigLIP: the sigmoid of each logit)."""

from __future__ import annotations

import numpy as np

from keras_models.pipelines.base import Pipeline, PipelineError, sigmoid, softmax, to_numpy


class ZeroShotImageClassificationPipeline(Pipeline):
    task = "zero-shot-image-classification"
    call_params = ("candidate_labels", "hypothesis_template", "timeout")

    def __init__(self, model, tokenizer=None, **kwargs):
        super().__init__(model, tokenizer=tokenizer, **kwargs)
        self.processor = getattr(model, "preprocessor", None)
        if self.processor is None or self.processor.image_processor is None or self.processor.tokenizer is None:
            raise PipelineError(f"{self.task}: the model needs a tokenizer and an image processor "
                                "(tokenizer files and preprocessor_config.json in its preset)")

    def normalize_inputs(self, inputs, params):
        if isinstance(inputs, np.ndarray) and inputs.ndim == 4:
            return False, list(inputs)
        return super().normalize_inputs(inputs, params)

    def prepare_params(self, params):
        labels = params.get("candidate_labels")
        if isinstance(labels, str):
            labels = [labels]
        if not labels:
            raise PipelineError(f"{self.task}: pass candidate_labels=[...] (at least one label)")
        template = params.get("hypothesis_template") or "This is a photo of {}."
        return {"candidate_labels": list(labels), "hypothesis_template": template}

    def preprocess(self, item, candidate_labels, hypothesis_template, **_):
        texts = [hypothesis_template.format(label) for label in candidate_labels]
        inputs = {**self.processor.text(texts), **self.processor.images([item])}
        return [inputs]

    def forward(self, chunks, **_):
        return [to_numpy(self.model(c))["logits_per_image"][0] for c in chunks]

    def postprocess(self, item, chunks, outputs, candidate_labels, **_):
        logits = np.asarray(outputs[0], dtype=np.float32)
        fn = sigmoid if getattr(self.model, "score_activation", "softmax") == "sigmoid" else softmax
        scores = fn(logits)
        ranked = sorted(zip(scores.tolist(), candidate_labels), key=lambda x: -x[0])
        return [{"score": s, "label": label} for s, label in ranked]


__all__ = ["ZeroShotImageClassificationPipeline"]

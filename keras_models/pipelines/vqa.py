"""visual-question-answering: answer a question about an image, with Transformers 4's arguments and
output format (Transformers 5 removed this pipeline; we keep its behaviour).

* A classifier over a fixed answer vocabulary (km.VisualQuestionAnswerer: ViLT): the answers'
  sigmoid scores, ``top_k`` best (default 5, at most the number of answers) as
  ``[{"score", "answer"}]``.
* A generative answerer (km.ImageTextToText: BLIP's ``BlipForQuestionAnswering``): greedy decoding
  of the answer, ``[{"answer"}]`` (decoded without special tokens, stripped); 256 new tokens at
  most by default (Transformers 4's pipeline default), ``max_new_tokens=`` / ``generate_kwargs=``
  at construction or per call.

Inputs, as Transformers': ``pipe(image, question)`` -> one answer list; a list of images and one
question, or one image and a list of questions -> one answer list per pair; a list of images and a
list of questions -> every question asked of every image (questions outer); ``{"image",
"question"}`` dicts (one, or a list). Images are paths, PIL images or (height, width, channels)
arrays.
"""

from __future__ import annotations

import numpy as np

from keras_models.pipelines.base import (Pipeline, PipelineError, generation_kwargs, model_image_processor,
                                         sigmoid, to_numpy)



def is_image(x):
    if isinstance(x, str):
        return True
    if isinstance(x, np.ndarray):
        return x.ndim in (2, 3)
    return type(x).__module__.startswith("PIL.")


def pad_images(chunks):
    """Stack the chunks' ``pixel_values`` (and ``pixel_mask``), zero-padded bottom / right to the
    largest (what ViLT's image processor does to a batch)."""
    pixels = [c["pixel_values"] for c in chunks]
    height, width = max(p.shape[0] for p in pixels), max(p.shape[1] for p in pixels)
    batch = {"pixel_values": np.zeros((len(pixels), height, width, pixels[0].shape[-1]), np.float32)}
    for i, p in enumerate(pixels):
        batch["pixel_values"][i, : p.shape[0], : p.shape[1]] = p
    if "pixel_mask" in chunks[0]:
        batch["pixel_mask"] = np.zeros((len(pixels), height, width), np.int32)
        for i, c in enumerate(chunks):
            m = c["pixel_mask"]
            batch["pixel_mask"][i, : m.shape[0], : m.shape[1]] = m
    elif any(p.shape != pixels[0].shape for p in pixels):
        raise PipelineError("images of different sizes cannot share a batch here; use batch_size=1")
    return batch


class VisualQuestionAnsweringPipeline(Pipeline):
    task = "visual-question-answering"
    call_params = ("top_k", "padding", "truncation", "timeout", "max_new_tokens", "generate_kwargs")

    def __init__(self, model, tokenizer=None, **kwargs):
        super().__init__(model, tokenizer=tokenizer, **kwargs)
        self.image_processor = model_image_processor(self)
        from keras_models.tasks.visual_question_answering import VisualQuestionAnswerer

        self.generative = not isinstance(model, VisualQuestionAnswerer)
        if self.generative and not hasattr(model, "generate"):
            raise PipelineError(f"{self.task}: {type(model).__name__} neither classifies answers "
                                "(km.VisualQuestionAnswerer) nor generates them")

    def __call__(self, image=None, question=None, **kwargs):
        if image is None:
            image = kwargs.pop("images", None)
        if image is None:
            raise PipelineError(f"{self.task}: give image= and question=, or {{'image', 'question'}} dicts")
        images = list(image) if isinstance(image, np.ndarray) and image.ndim == 4 else image
        image_batch = isinstance(images, (list, tuple)) and len(images) > 0 and all(is_image(x) for x in images)
        question_batch = isinstance(question, (list, tuple)) and all(isinstance(q, str) for q in question)
        if is_image(images) and isinstance(question, str):
            inputs = {"image": images, "question": question}
        elif image_batch and isinstance(question, str):
            inputs = [{"image": im, "question": question} for im in images]
        elif is_image(images) and question_batch:
            inputs = [{"image": images, "question": q} for q in question]
        elif image_batch and question_batch:
            inputs = [{"image": im, "question": q} for q in question for im in images]
        elif question is not None:
            raise PipelineError(f"{self.task}: question must be a str or a list of str, with an image or a list "
                                f"of images; got question of type {type(question).__name__}")
        else:
            inputs = image
        return super().__call__(inputs, **kwargs)

    def normalize_inputs(self, inputs, params):
        single = isinstance(inputs, dict)
        items = [inputs] if single else inputs
        if not isinstance(items, (list, tuple)) or not items:
            raise PipelineError(f"{self.task}: give image= and question= (a question is required), or "
                                "{'image', 'question'} dicts")
        for item in items:
            if not isinstance(item, dict) or "image" not in item or "question" not in item:
                raise PipelineError(f"{self.task}: each input is a dict with 'image' and 'question', got "
                                    f"{item!r:.80}")
            if not isinstance(item["question"], str) or not item["question"]:
                raise PipelineError(f"{self.task}: 'question' must be a non-empty str, got {item['question']!r:.80}")
        return single, list(items)

    def prepare_params(self, params):
        top_k = params.get("top_k")
        if top_k is not None and (isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1):
            raise PipelineError(f"{self.task}: top_k must be a positive integer, got {top_k!r}")
        out = {"top_k": 5 if top_k is None else top_k, "truncation": bool(params.get("truncation") or False)}
        if self.generative:
            out["generate_kwargs"] = generation_kwargs(self.task, params)
        return out

    def preprocess(self, item, truncation=False, **_):
        from keras_models.preprocessing.image_io import load_image

        text = self.tokenizer([item["question"]], truncation=True) if truncation else self.tokenizer([item["question"]])
        names = ("input_ids", "attention_mask") if self.generative else ("input_ids", "attention_mask", "token_type_ids")
        features = {k: np.asarray(text[k], np.int32)[0] for k in names if k in text}
        image = self.image_processor([load_image(item["image"])])
        chunk = {"features": features, "pixel_values": np.asarray(image["pixel_values"][0], np.float32)}
        if "pixel_mask" in image:
            chunk["pixel_mask"] = np.asarray(image["pixel_mask"][0])
        return [chunk]

    def forward(self, chunks, generate_kwargs=None, **_):
        if self.generative:  # one question at a time: the answer decoder attends to the unpadded question
            outputs = []
            for c in chunks:
                inputs = {k: v[None] for k, v in c["features"].items()}
                inputs.update({k: v for k, v in pad_images([c]).items() if k == "pixel_values"})
                outputs.append(np.asarray(self.model.generate(inputs, **(generate_kwargs or {})))[0])
            return outputs
        batch, _, _ = self.model_inputs(chunks)
        batch.update(pad_images(chunks))
        logits = to_numpy(self.model.predict_on_batch(batch))
        if isinstance(logits, dict):
            logits = logits["logits"]
        return list(logits)

    def postprocess(self, item, chunks, outputs, top_k=5, **_):
        if self.generative:
            ids = np.asarray(outputs[0]).tolist()
            return [{"answer": self.tokenizer.decode(ids, skip_special_tokens=True).strip()}]
        labels = getattr(self.model, "id2label", None) or {int(k): v for k, v in
                                                           (self.hf_config.get("id2label") or {}).items()}
        scores = sigmoid(np.asarray(outputs[0], np.float32))
        order = np.argsort(-scores, kind="stable")[: min(top_k, len(scores))]
        return [{"score": float(scores[i]), "answer": labels.get(int(i), f"LABEL_{int(i)}")} for i in order]


def model_class_for(task, hf_config, default):
    """The km model class that loads a checkpoint for ``task``: generative answerers (BLIP's
    question answering; Donut / Pix2Struct document answering) load as ImageTextToText /
    ImageToText, the others as the task's default class."""
    archs = [str(a) for a in hf_config.get("architectures") or []]
    classifies = any(a.endswith("ForQuestionAnswering") and not a.startswith("Blip") for a in archs)
    if task == "visual-question-answering" and archs and not classifies:
        return "ImageTextToText"
    if task == "document-question-answering" and hf_config.get("model_type") in ("vision-encoder-decoder",
                                                                               "pix2struct"):
        return "ImageToText"
    return default


__all__ = ["VisualQuestionAnsweringPipeline", "model_class_for"]

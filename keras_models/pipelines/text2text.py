"""text2text-generation, summarization and translation (the encoder-decoder pipelines that
Transformers 5 removed; kept with their 4.x documented behaviour).

Each text (with the checkpoint's ``prefix``; a T5 ``task_specific_params`` entry for the task
supplies the prefix and default generation arguments) is encoded, ``generate`` runs with the
call's keyword arguments, and the output ids are decoded without special tokens into
``[{"generated_text" | "summary_text" | "translation_text": ...}]`` (one dict per returned
sequence; a list of texts gives one such entry per text).
"""

from __future__ import annotations

import re

import numpy as np

from keras_models.pipelines.base import Pipeline, PipelineError
from keras_models.pipelines.generation import TextGenerationPipeline

_GENERATE = tuple(k for k in TextGenerationPipeline.call_params if k not in (
    "return_full_text", "return_text", "prefix", "streamer"))


class Text2TextGenerationPipeline(Pipeline):
    task = "text2text-generation"
    return_name = "generated"
    call_params = _GENERATE + ("truncation", "src_lang", "tgt_lang")

    def __init__(self, model, task_name=None, **kwargs):
        super().__init__(model, **kwargs)
        specific = (self.hf_config.get("task_specific_params") or {}).get(task_name or self.task) or {}
        self.prefix = specific.get("prefix", self.hf_config.get("prefix")) or ""
        for key, value in specific.items():  # generation defaults of the task (T5 checkpoints)
            if key in self.call_params and key not in self.defaults:
                self.defaults[key] = value

    def __call__(self, inputs, **kwargs):
        kwargs.pop("progress", None)
        kwargs.pop("batch_size", None)
        params = {**self.defaults, **self._check_params(kwargs)}
        if isinstance(inputs, str):
            return self._one(inputs, dict(params))
        if not isinstance(inputs, (list, tuple)) or not inputs or not all(isinstance(t, str) for t in inputs):
            raise PipelineError(f"{self.task}: inputs must be a str or a non-empty list of str")
        results = [self._one(t, dict(params)) for t in inputs]
        if all(len(r) == 1 for r in results):
            return [r[0] for r in results]
        return results

    def _one(self, text, params):
        tok = self._require_tokenizer()
        for key in ("src_lang", "tgt_lang"):
            if params.pop(key, None) is not None:
                raise PipelineError(f"{self.task}: {key}= (multilingual tokenizers) is not supported yet")
        truncation = params.pop("truncation", False)
        enc = tok(self.prefix + text, truncation=truncation or None,
                  max_length=self.max_length() if truncation else None)
        tensors = params.pop("return_tensors", False)
        skip = params.pop("skip_special_tokens", True)
        cleanup = params.pop("clean_up_tokenization_spaces", None)
        out = np.asarray(self.model.generate({"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"]},
                                             **params))
        key = f"{self.return_name}_{'token_ids' if tensors else 'text'}"
        rows = out.reshape(-1, out.shape[-1])
        if tensors:
            return [{key: row.tolist()} for row in rows]
        return [{key: tok.decode(row.tolist(), skip_special_tokens=skip, clean_up_tokenization_spaces=cleanup)}
                for row in rows]


class SummarizationPipeline(Text2TextGenerationPipeline):
    task = "summarization"
    return_name = "summary"


class TranslationPipeline(Text2TextGenerationPipeline):
    task = "translation"
    return_name = "translation"


def translation_task(task):
    """``translation_en_to_fr`` -> True (a translation task name with languages)."""
    return bool(re.fullmatch(r"translation_[\w-]+_to_[\w-]+", task))

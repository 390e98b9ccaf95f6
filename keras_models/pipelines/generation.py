"""text-generation: prompts (strings or chat messages) -> ``[{"generated_text": ...}]``, with
``generate``'s keyword arguments (``max_new_tokens``, ``do_sample``, ``temperature`` ...).

Output format as Transformers 5: a string prompt gives ``prompt + new text`` (only the new text
with ``return_full_text=False``); a chat (a list of ``{"role", "content"}`` messages) gives the
messages followed by ``{"role": "assistant", "content": new text}``. One dict per returned
sequence (``num_return_sequences``); a list of prompts gives a list of such lists.
"""

from __future__ import annotations

import numpy as np

from keras_models.pipelines.base import Pipeline, PipelineError

_OWN = ("return_full_text", "return_text", "return_tensors", "prefix", "skip_special_tokens",
        "clean_up_tokenization_spaces")


def _is_chat(x):
    return isinstance(x, (list, tuple)) and bool(x) and all(isinstance(m, dict) and "role" in m for m in x)


class TextGenerationPipeline(Pipeline):
    task = "text-generation"
    call_params = _OWN + ("max_new_tokens", "max_length", "min_new_tokens", "do_sample", "temperature",
                          "top_k", "top_p", "num_beams", "repetition_penalty", "num_return_sequences",
                          "eos_token_id", "pad_token_id", "stop_strings", "seed", "no_repeat_ngram_size",
                          "length_penalty", "early_stopping", "min_p", "typical_p", "streamer")

    def normalize_inputs(self, inputs, params):
        if isinstance(inputs, str) or _is_chat(inputs):
            return True, [inputs]
        if isinstance(inputs, (list, tuple)) and inputs and all(isinstance(x, str) or _is_chat(x) for x in inputs):
            return False, list(inputs)
        raise PipelineError("text-generation: inputs are a str, a chat (list of {'role', 'content'} dicts) "
                            "or a list of those")

    def __call__(self, inputs, **kwargs):
        kwargs.pop("batch_size", None)  # prompts run one at a time (streaming needs batch 1)
        kwargs.pop("progress", None)
        params = {**self.defaults, **self._check_params(kwargs)}
        single, items = self.normalize_inputs(inputs, params)
        results = [self._generate_one(item, dict(params)) for item in items]
        return results[0] if single else results

    def _generate_one(self, item, params):
        tok = self._require_tokenizer()
        full = params.pop("return_full_text", True)
        tensors = params.pop("return_tensors", False)
        params.pop("return_text", None)
        prefix = params.pop("prefix", "") or ""
        skip = params.pop("skip_special_tokens", True)
        cleanup = params.pop("clean_up_tokenization_spaces", None)
        chat = _is_chat(item)
        if chat:
            text = tok.apply_chat_template(list(item), add_generation_prompt=True, tokenize=False)
            enc = tok(text, add_special_tokens=False)
        else:
            enc = tok(prefix + item)
        ids = enc["input_ids"]
        out = np.asarray(self.model.generate(
            {"input_ids": ids, "attention_mask": enc.get("attention_mask", np.ones_like(ids))}, **params))
        records = []
        for row in out.reshape(-1, out.shape[-1]):
            if tensors:
                records.append({"generated_token_ids": row.tolist()})
                continue
            new = tok.decode(row[ids.shape[-1]:].tolist(), skip_special_tokens=skip,
                             clean_up_tokenization_spaces=cleanup)
            if chat:
                value = list(item) + [{"role": "assistant", "content": new}] if full else new
            else:
                value = item + new if full else new
            records.append({"generated_text": value})
        return records

"""Language-model training preprocessors: masked LM (dynamic masking) and causal LM (packing)."""

from __future__ import annotations

import numpy as np

from keras_models.preprocessing.text_base import _BUCKETING, TextPreprocessor, bucket_length


def _as_texts(x):
    if isinstance(x, str):
        return [x]
    if isinstance(x, np.ndarray):
        x = x.tolist()
    return [str(t) for t in x]


class MaskedLMPreprocessor(TextPreprocessor):
    """Texts -> ``(features, labels, sample_weight)`` with fresh random masking on every call.

    Of the non-special, non-padding tokens, ``mask_probability`` are selected; of those,
    ``mask_token_rate`` become the mask token, ``random_token_rate`` a random vocabulary token and
    the rest stay unchanged (BERT's 80/10/10). ``labels`` hold the original ids and
    ``sample_weight`` is 1 exactly at the selected positions.
    """

    def __init__(
        self,
        tokenizer,
        sequence_length=None,
        mask_probability=0.15,
        mask_token_rate=0.8,
        random_token_rate=0.1,
        seed=None,
        **kwargs,
    ):
        super().__init__(tokenizer, sequence_length=sequence_length, **kwargs)
        if tokenizer.mask_token is None:
            raise ValueError("MaskedLMPreprocessor needs a tokenizer with a mask token")
        if not 0.0 <= mask_token_rate + random_token_rate <= 1.0:
            raise ValueError("mask_token_rate + random_token_rate must lie in [0, 1]")
        self.mask_probability = float(mask_probability)
        self.mask_token_rate = float(mask_token_rate)
        self.random_token_rate = float(random_token_rate)
        self.rng = np.random.default_rng(seed)

    def features(self, x):
        return self.tokenize(_as_texts(x))

    def __call__(self, x, y=None):
        enc = self.encode(_as_texts(x), need_offsets=False)
        features = self.tokenizer_outputs(enc)
        ids = features["input_ids"]
        special = np.asarray([e.special_tokens_mask for e in enc], dtype=bool)
        candidates = ~special & (features["attention_mask"] == 1)
        selected = (self.rng.random(ids.shape) < self.mask_probability) & candidates
        action = self.rng.random(ids.shape)
        to_mask = selected & (action < self.mask_token_rate)
        to_random = selected & (action >= self.mask_token_rate) & (
            action < self.mask_token_rate + self.random_token_rate
        )
        masked = ids.copy()
        masked[to_mask] = self.tokenizer.mask_token_id
        masked[to_random] = self.rng.integers(0, self.tokenizer.vocab_size, size=int(to_random.sum()))
        features["input_ids"] = masked
        return features, ids, selected.astype(np.float32)


class CausalLMPreprocessor(TextPreprocessor):
    """Texts -> ``(features, labels, sample_weight)`` for next-token training.

    Each text is tokenized (with the tokenizer's own bos handling), followed by eos when
    ``add_eos``; ``features`` hold tokens ``[0, n-1)``, ``labels`` tokens ``[1, n)`` and
    ``sample_weight`` masks padding. With ``packing=True`` all texts of a batch are concatenated
    and cut into rows of ``sequence_length`` (no padding except in the last row, unless
    ``drop_remainder``), as in Transformers' ``group_texts`` recipe.
    """

    def __init__(self, tokenizer, sequence_length=None, packing=False, add_eos=True, drop_remainder=False, **kwargs):
        super().__init__(tokenizer, sequence_length=sequence_length, **kwargs)
        self.packing = packing
        self.add_eos = add_eos
        self.drop_remainder = drop_remainder

    def _pad_id(self):
        for candidate in (self.tokenizer.pad_token_id, self.tokenizer.eos_token_id):
            if candidate is not None:
                return int(candidate)
        return 0

    def features(self, x):
        """Prompt inputs for inference (padded on the tokenizer's padding side)."""
        texts = _as_texts(x)
        enc = self.tokenizer._encode_batch(texts, padding="longest" if self.tokenizer.pad_token else False)
        return self.tokenizer_outputs(enc, names=("input_ids", "attention_mask"))

    def _token_rows(self, texts):
        enc = self.tokenizer._encode_batch(texts, need_offsets=False)
        eos = self.tokenizer.eos_token_id
        rows = []
        for e in enc:
            ids = list(e.ids)
            if self.add_eos and eos is not None and (not ids or ids[-1] != eos):
                ids.append(eos)
            rows.append(ids)
        return rows

    def _prompt_response_rows(self, prompts, responses):
        """Rows of prompt tokens (with the tokenizer's specials, no trailing eos) + response tokens
        (no specials) + eos, and where each row's response starts."""
        if len(prompts) != len(responses):
            raise ValueError(f"{len(prompts)} prompts but {len(responses)} responses")
        eos = self.tokenizer.eos_token_id
        p_enc = self.tokenizer._encode_batch(prompts, need_offsets=False)
        r_enc = self.tokenizer._encode_batch(responses, need_offsets=False, add_special_tokens=False)
        rows, starts = [], []
        for p, r in zip(p_enc, r_enc):
            ids = list(p.ids)
            if ids and eos is not None and ids[-1] == eos:
                ids = ids[:-1]
            starts.append(len(ids))
            ids += list(r.ids)
            if self.add_eos and eos is not None:
                ids.append(eos)
            rows.append(ids)
        return rows, starts

    def __call__(self, x, y=None):
        """``x`` texts -> every next token is a label; ``x`` prompts with ``y`` responses -> only
        the response's tokens (and eos) are labels (weight 0 on the prompt, as Transformers'
        -100)."""
        starts = None
        if y is not None:
            if self.packing:
                raise ValueError("packing=True trains on whole texts: pass texts only, not (prompts, responses)")
            rows, starts = self._prompt_response_rows(_as_texts(x), _as_texts(y))
        else:
            rows = self._token_rows(_as_texts(x))
        n = self.sequence_length + 1
        if self.packing:
            stream = [t for r in rows for t in r]
            rows = [stream[i : i + n] for i in range(0, max(len(stream) - 1, 1), self.sequence_length)]
            if self.drop_remainder:
                rows = [r for r in rows if len(r) == n]
            if not rows:
                raise ValueError(f"packing produced no full row of {n} tokens; use drop_remainder=False")
        else:
            rows = [r[:n] for r in rows]
        width = n if self.padding == "max_length" or self.packing else max(len(r) for r in rows)
        if self.pad_to_multiple_of:
            m = self.pad_to_multiple_of
            width = min(n, -(-(width - 1) // m) * m + 1)
        elif _BUCKETING.get() and width < n:
            width = bucket_length(width - 1, n - 1) + 1
        ids = np.full((len(rows), width), self._pad_id(), dtype=np.int32)
        mask = np.zeros((len(rows), width), dtype=np.int32)
        for i, r in enumerate(rows):
            ids[i, : len(r)] = r
            mask[i, : len(r)] = 1
            if starts is not None:
                mask[i, : min(starts[i], width)] = 2  # prompt: input, not label
        weights = (mask[:, 1:] == 1).astype(np.float32)
        features = {"input_ids": ids[:, :-1], "attention_mask": (mask[:, :-1] > 0).astype(np.int32)}
        return features, ids[:, 1:], weights

"""Shared machinery of the text preprocessors: tokenizer call settings and numpy outputs."""

from __future__ import annotations

import contextlib
import contextvars
import copy

import numpy as np

DEFAULT_MAX_SEQUENCE_LENGTH = 512
MIN_BUCKET = 16
# Set while fit / evaluate feed raw data (tasks/raw_data.py): 'longest' padding then rounds each
# batch's length up to a bucket, so a compiled train step is reused across batches.
_BUCKETING = contextvars.ContextVar("keras_models_length_buckets", default=False)


@contextlib.contextmanager
def length_buckets(enabled=True):
    token = _BUCKETING.set(enabled)
    try:
        yield
    finally:
        _BUCKETING.reset(token)


def bucket_length(n, limit):
    """The smallest of 16, 32, 64, ... that holds ``n`` tokens, capped at ``limit``: a training run
    compiles at most log2(limit / 16) + 1 programs whatever its batches' lengths."""
    b = MIN_BUCKET
    while b < n:
        b *= 2
    return max(n, min(b, limit))


def split_pairs(x):
    """``x`` as (texts, pairs or None): a list of str, a list of 2-tuples, or a tuple of two lists."""
    if isinstance(x, str):
        return [x], None
    if isinstance(x, np.ndarray):
        x = x.tolist()
    if isinstance(x, tuple) and len(x) == 2 and all(isinstance(part, (list, tuple, np.ndarray)) for part in x):
        first, second = list(x[0]), list(x[1])
        if len(first) != len(second):
            raise ValueError(f"text pairs: {len(first)} first texts but {len(second)} second texts")
        return [str(t) for t in first], [str(t) for t in second]
    x = list(x)
    if x and isinstance(x[0], (tuple, list)):
        if any(len(p) != 2 for p in x):
            raise ValueError("each text pair must be a (text, text_pair) tuple")
        return [str(p[0]) for p in x], [str(p[1]) for p in x]
    return [str(t) for t in x], None


class TextPreprocessor:
    """Tokenizer + sequence length. ``padding='longest'`` pads each batch to its longest sample
    (capped by ``sequence_length``); ``'max_length'`` pads every batch to ``sequence_length`` (fixed
    shapes: one compiled graph)."""

    variable_shapes = True  # batches may differ in length (see tasks/raw_data.py)

    def __init__(self, tokenizer, sequence_length=None, padding=None, truncation=True, pad_to_multiple_of=None):
        if tokenizer.pad_token is None and tokenizer.eos_token is not None:
            # decoder-only checkpoints often ship no pad token: pad with eos (the attention mask hides
            # it), on a copy so the caller's tokenizer is left as it was
            tokenizer = copy.deepcopy(tokenizer)
            tokenizer.pad_token = tokenizer.eos_token
        self.tokenizer = tokenizer
        if sequence_length is None:
            limit = tokenizer.model_max_length
            sequence_length = limit if limit < int(1e20) else DEFAULT_MAX_SEQUENCE_LENGTH
            padding = padding or "longest"
        self.sequence_length = int(sequence_length)
        self.padding = padding or "max_length"
        if self.padding not in ("longest", "max_length"):
            raise ValueError(f"padding must be 'longest' or 'max_length', got {self.padding!r}")
        self.truncation = truncation
        self.pad_to_multiple_of = pad_to_multiple_of

    @classmethod
    def from_preset(cls, preset, **kwargs):
        from keras_models.tokenizers import Tokenizer

        return cls(Tokenizer.from_preset(preset), **kwargs)

    def call_kwargs(self, sequence_length=None):
        return dict(
            padding=self.padding,
            truncation=self.truncation,
            max_length=sequence_length or self.sequence_length,
            pad_to_multiple_of=self.pad_to_multiple_of,
        )

    def tokenizer_outputs(self, encodings, names=None):
        names = names or self.tokenizer.model_input_names
        out = {"input_ids": np.asarray([e.ids for e in encodings], dtype=np.int32)}
        if "token_type_ids" in names:
            out["token_type_ids"] = np.asarray([e.type_ids for e in encodings], dtype=np.int32)
        out["attention_mask"] = np.asarray([e.attention_mask for e in encodings], dtype=np.int32)
        return out

    def encode(self, texts, pairs=None, sequence_length=None, **extra):
        """Rust encodings of a batch with this preprocessor's padding and truncation; while
        training on raw data (``length_buckets``), 'longest' padding is rounded up to a bucket."""
        kwargs = {**self.call_kwargs(sequence_length), **extra}
        enc = self.tokenizer._encode_batch(texts, pairs, **kwargs)
        if (_BUCKETING.get() and kwargs["padding"] == "longest" and not kwargs["pad_to_multiple_of"]
                and enc):
            n = len(enc[0].ids)
            target = bucket_length(n, kwargs["max_length"])
            if target != n:
                kwargs.update(padding="max_length", max_length=target)
                enc = self.tokenizer._encode_batch(texts, pairs, **kwargs)
        return enc

    def tokenize(self, texts, pairs=None, sequence_length=None):
        return self.tokenizer_outputs(self.encode(texts, pairs, sequence_length, need_offsets=False))

    def __repr__(self):
        return (
            f"{type(self).__name__}(tokenizer={self.tokenizer.class_name}, sequence_length={self.sequence_length}, "
            f"padding={self.padding!r})"
        )

"""Input checks at the model boundary (predict / evaluate / fit / generate), on the host.

Out-of-vocabulary ids give NaN logits silently on JAX (and an IndexError on torch); float ids are
truncated and negative ids wrap; a sequence longer than the learned position table reads past it.
So host-side inputs are checked before Keras sees them, with an :class:`InputError` that names
the input, the batch row and what the model accepts. Tensors already on a device and datasets are
passed through unchecked (reading them back would cost a copy)."""

from __future__ import annotations

import numpy as np

from keras_models.errors import InputError

ID_KEYS = ("input_ids", "decoder_input_ids")


def vocab_size(model):
    """The text vocabulary of ``model`` (a task or a backbone), or None when it has none."""
    bb = getattr(model, "backbone", model)
    for part in (bb, getattr(bb, "text_model", None)):
        if part is None:
            continue
        for owner in (part, getattr(part, "spec", None)):
            v = getattr(owner, "vocab_size", None)
            if isinstance(v, (int, np.integer)) and v > 0:
                return int(v)
    return None


def position_limit(model):
    """The longest ``input_ids`` the model's learned position table holds, or None (relative or
    rotary positions have no table to run off)."""
    bb = getattr(model, "backbone", model)
    part = getattr(bb, "text_model", bb)
    mode = getattr(part, "position_mode", None)
    if mode is not None:  # the BERT-like encoder
        if mode == "none" or getattr(part, "rotary", None):
            return None
        limit = int(part.max_position_embeddings)
        if mode == "padding_offset":
            limit -= int(part.pad_token_id or 0) + 1
        return limit
    options = getattr(part, "options", None)
    if isinstance(options, dict) and options.get("position_type") == "learned":
        return int(options["max_position_embeddings"])
    spec = getattr(part, "spec", None)
    if spec is not None and hasattr(spec, "max_position_embeddings") and hasattr(part, "position_embedding"):
        return int(spec.max_position_embeddings)
    return None


def _host_array(value):
    if isinstance(value, np.ndarray):
        return value
    if isinstance(value, (list, tuple)):
        try:
            return np.asarray(value)
        except ValueError:
            return None
    return None  # device tensors, datasets, generators: not read back


def check_token_ids(model, ids, what="input_ids", where="predict"):
    """Raise InputError unless ``ids`` (host array) are integers in [0, vocab) and not longer than
    the model's positions."""
    arr = _host_array(ids)
    if arr is None:
        return
    if arr.dtype.kind not in "iu":
        raise InputError(f"{where}: {what} must be integer token ids, got dtype {arr.dtype} (floats are "
                         "not truncated and bools not converted silently)")
    n = vocab_size(model)
    if arr.size and (arr.min() < 0 or (n is not None and arr.max() >= n)):
        high = n if n is not None else np.iinfo(np.int64).max
        bad = tuple(int(i) for i in np.argwhere((arr < 0) | (arr >= high))[0])
        accepted = f"[0, {n})" if n is not None else "ids >= 0"
        raise InputError(f"{where}: {what}{list(bad)} = {int(arr[bad])} is outside the vocabulary ({accepted})")
    limit = position_limit(model) if what == "input_ids" else None
    if limit is not None and arr.ndim >= 2 and arr.shape[-1] > limit:
        raise InputError(f"{where}: {what} has {arr.shape[-1]} positions but the model holds at most "
                         f"{limit} (max_position_embeddings); truncate the text (the preprocessor does)")


def check_inputs(model, x, where="predict"):
    """Check what a user hands to predict / evaluate / fit before Keras converts it."""
    if x is None:
        return
    if isinstance(x, (list, tuple)) and len(x) == 0 or isinstance(x, np.ndarray) and x.size == 0 and x.ndim == 1:
        raise InputError(f"{where}: the input is empty (give at least one sample)")
    if isinstance(x, (list, tuple)):
        for i, sample in enumerate(x):
            if sample is None:
                raise InputError(f"{where}: sample {i} is None")
    if isinstance(x, dict):
        for key in ID_KEYS:
            if key in x:
                check_token_ids(model, x[key], key, where)
        hook = getattr(getattr(model, "backbone", model), "check_host_inputs", None)
        if hook is not None:  # a family's own inputs (LayoutLM's bbox)
            hook(x, where)


def fit_preprocessor_to_model(model):
    """Cap a text preprocessor's ``sequence_length`` at the model's position table, so raw text
    is truncated to the smaller of the tokenizer's and the model's maximum."""
    pre = getattr(model, "preprocessor", None)
    limit = position_limit(model)
    length = getattr(pre, "sequence_length", None)
    if limit is not None and isinstance(length, int) and length > limit:
        pre.sequence_length = limit
        if hasattr(pre, "target_sequence_length") and pre.target_sequence_length > limit:
            pre.target_sequence_length = limit


__all__ = ["fit_preprocessor_to_model", "check_inputs", "check_token_ids", "vocab_size", "position_limit"]

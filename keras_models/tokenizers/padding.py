"""``Tokenizer.pad``: pad already-tokenized features (dict of lists, or list of dicts), as
Transformers' ``tokenizer.pad`` does for data collators."""

from __future__ import annotations

import numpy as np

_TRUNCATION_STRATEGIES = ("longest_first", "only_first", "only_second")


def padding_strategy(padding):
    """Transformers' ``padding`` argument -> None, "longest" or "max_length"."""
    if padding is True:
        return "longest"
    if padding is False or padding is None or padding == "do_not_pad":
        return None
    if padding in ("longest", "max_length"):
        return padding
    raise ValueError(f"padding must be True, False, 'longest', 'max_length' or 'do_not_pad', got {padding!r}")


def truncation_strategy(truncation):
    """Transformers' ``truncation`` argument -> None or one of _TRUNCATION_STRATEGIES."""
    if truncation is True:
        return "longest_first"
    if truncation is False or truncation is None or truncation == "do_not_truncate":
        return None
    if truncation in _TRUNCATION_STRATEGIES:
        return truncation
    raise ValueError(
        f"truncation must be True, False, {', '.join(map(repr, _TRUNCATION_STRATEGIES))} or "
        f"'do_not_truncate', got {truncation!r}"
    )


def _rows(encoded):
    """Normalise to (dict of per-sample lists, batched?)."""
    if isinstance(encoded, (list, tuple)):
        if not encoded:
            return {}, True
        if not isinstance(encoded[0], dict):
            raise TypeError("pad() takes a dict of features or a list of such dicts")
        return {k: [list(np.asarray(e[k]).tolist()) for e in encoded] for k in encoded[0]}, True
    if not isinstance(encoded, dict):
        raise TypeError("pad() takes a dict of features or a list of such dicts")
    first = encoded[next(iter(encoded))] if encoded else []
    first = np.asarray(first).tolist() if hasattr(first, "tolist") else first
    batched = bool(first) and isinstance(first[0], (list, tuple))
    out = {}
    for k, v in encoded.items():
        v = np.asarray(v).tolist() if hasattr(v, "tolist") else v
        out[k] = [list(r) for r in v] if batched else [list(v)]
    return out, batched


def pad(
    tok,
    encoded_inputs,
    padding=True,
    max_length=None,
    pad_to_multiple_of=None,
    padding_side=None,
    return_attention_mask=None,
    return_tensors="np",
):
    strategy = padding_strategy(padding)
    features, batched = _rows(encoded_inputs)
    key = tok.model_input_names[0]
    if key not in features:
        raise ValueError(f"pad() needs '{key}' among the features, got {sorted(features)}")
    if return_attention_mask is None:
        return_attention_mask = "attention_mask" in tok.model_input_names
    if strategy is not None and tok.pad_token_id is None:
        raise ValueError("Asking to pad but the tokenizer has no padding token")
    side = padding_side or tok.padding_side
    lengths = [len(r) for r in features[key]]
    if strategy == "longest":
        target = max(lengths, default=0)
    elif strategy == "max_length":
        target = max_length if max_length is not None else tok.model_max_length
    else:
        target = None
    if target is not None and pad_to_multiple_of and target % pad_to_multiple_of:
        target = (target // pad_to_multiple_of + 1) * pad_to_multiple_of
    fill = {key: tok.pad_token_id, "attention_mask": 0, "token_type_ids": tok.pad_token_type_id,
            "special_tokens_mask": 1}
    if return_attention_mask and "attention_mask" not in features:
        features["attention_mask"] = [[1] * n for n in lengths]
    if not return_attention_mask:
        features.pop("attention_mask", None)
    for name, rows in features.items():
        if name not in fill:
            continue
        for i, row in enumerate(rows):
            missing = 0 if target is None else target - len(row)
            if missing > 0:
                rows[i] = row + [fill[name]] * missing if side == "right" else [fill[name]] * missing + row
    if return_tensors == "np":
        return {k: np.asarray(v, dtype=np.int32) for k, v in features.items()}
    if return_tensors is not None:
        raise ValueError(f"return_tensors must be 'np' or None, got {return_tensors!r}")
    return features if batched else {k: v[0] for k, v in features.items()}

"""Decoder attention biases over a KV buffer: causal + padding + sliding window, and ALiBi.

Query ``i`` of a chunk sits in buffer slot ``cache_index + i``; key ``j`` is buffer slot ``j``.
Like Transformers, the window counts buffer slots (so left padding is part of the distance).
"""

import math

import numpy as np
from keras import ops

from keras_models.generation.backend import direct_ops
from keras_models.layers.masks import mask_value


def decoder_bias(attention_mask, query_len, cache_index=0, window=None, dtype="float32", chunk=None,
                 prefix=None):
    """attention_mask: (batch, key_len) 1/0 -> additive bias (batch, 1, query_len, key_len).
    ``chunk``: keys only from the query's own chunk of that many slots, counted from each row's
    first real token. ``prefix``: (batch, key_len) 1/0 over buffer slots; a query in the prefix
    also sees every later prefix key (a prefix-LM: PaliGemma's image + prompt block)."""
    if chunk is None and prefix is None and direct_ops(attention_mask) and (
            type(cache_index) is int or direct_ops(cache_index)):
        return _decoder_bias_torch(attention_mask, query_len, cache_index, window, dtype)
    key_len = ops.shape(attention_mask)[1]
    q = ops.arange(query_len, dtype="int32")[:, None] + ops.cast(cache_index, "int32")
    k = ops.arange(key_len, dtype="int32")[None, :]
    allowed = k <= q
    if window is not None:
        allowed = ops.logical_and(allowed, k > q - window)
    allowed = allowed[None]
    if chunk is not None:
        m = ops.cast(attention_mask, "int32")
        lead = ops.sum(ops.cast(ops.cumsum(m, axis=1) == 0, "int32"), axis=1)[:, None, None]  # left padding
        same = ops.floor_divide(q[None] - lead, chunk) == ops.floor_divide(k[None] - lead, chunk)
        allowed = ops.logical_and(allowed, same)
    if prefix is not None:
        in_prefix = ops.cast(prefix, "bool")
        q_in = ops.take(in_prefix, ops.clip(q[:, 0], 0, key_len - 1), axis=1)  # (batch, query_len)
        allowed = ops.logical_or(allowed, ops.logical_and(q_in[:, :, None], in_prefix[:, None, :]))
    allowed = ops.logical_and(allowed, ops.cast(attention_mask, "bool")[:, None, :])
    return ops.where(allowed, 0.0, mask_value(dtype))[:, None, :, :]


def _decoder_bias_torch(attention_mask, query_len, cache_index, window, dtype):
    """``decoder_bias`` without chunks or prefix, as torch ops (the eager torch decode loop):
    the same int32 comparisons and the same float32 select."""
    import torch

    device = attention_mask.device
    key_len = attention_mask.shape[1]
    start = cache_index if type(cache_index) is int else cache_index.to(torch.int32)
    q = torch.arange(query_len, dtype=torch.int32, device=device)[:, None] + start
    k = torch.arange(key_len, dtype=torch.int32, device=device)[None, :]
    allowed = k <= q
    if window is not None:
        allowed = allowed & (k > q - window)
    allowed = allowed[None] & attention_mask.bool()[:, None, :]
    zero = torch.zeros((), dtype=torch.float32, device=device)
    return torch.where(allowed, zero, torch.full((), mask_value(dtype), dtype=torch.float32, device=device))[:, None]


def positions_from_mask(attention_mask):
    """Position ids as Transformers derives them for generation: cumsum(mask) - 1, min 0."""
    m = ops.cast(attention_mask, "int32")
    return ops.maximum(ops.cumsum(m, axis=1) - 1, 0)


def decoder_inputs(inputs):
    """(input_ids, attention_mask, int32 position ids) of a decoder call's ``inputs`` (a dict, or the
    ids alone): a missing mask is all ones, missing positions come from the mask."""
    if not isinstance(inputs, dict):
        inputs = {"input_ids": inputs}
    ids = inputs["input_ids"]
    mask = inputs.get("attention_mask")
    if mask is None:
        mask = ops.ones_like(ids)
    positions = inputs.get("position_ids")
    if positions is None:
        positions = positions_from_mask(mask)
    return ids, mask, ops.cast(positions, "int32")


def alibi_slopes(num_heads, bias_max=None):
    """ALiBi head slopes. ``bias_max=None``: BLOOM's (the closest power of two's geometric series,
    extended with odd powers of the next one); else MPT's (2^-(i * bias_max / P) over the next
    power of two P, odd then even entries when heads is not a power of two)."""
    if bias_max is not None:
        p2 = 2 ** math.ceil(math.log2(num_heads))
        slopes = 1.0 / np.power(2.0, np.arange(1, p2 + 1, dtype=np.float64) * (bias_max / p2))
        if p2 != num_heads:
            slopes = np.concatenate([slopes[1::2], slopes[::2]])[:num_heads]
        return slopes.astype("float32")
    closest = 2 ** math.floor(math.log2(num_heads))
    base = 2.0 ** (-(2.0 ** -(math.log2(closest) - 3)))
    slopes = [base ** (i + 1) for i in range(closest)]
    if closest != num_heads:
        extra_base = 2.0 ** (-(2.0 ** -(math.log2(2 * closest) - 3)))
        n = min(closest, num_heads - closest)
        slopes += [extra_base ** (2 * i + 1) for i in range(n)]
    return np.asarray(slopes, dtype="float32")


def alibi_bias(attention_mask, num_heads, bias_max=None, bfloat16=False):
    """(batch, heads, 1, key_len): slope * key position (positions counted over real tokens; any
    per-row offset is irrelevant to the softmax). ``bfloat16``: slopes and products rounded to
    bfloat16, as Falcon computes them."""
    pos = ops.cast(positions_from_mask(attention_mask), "float32")
    slopes = ops.convert_to_tensor(alibi_slopes(num_heads, bias_max))
    if bfloat16:
        slopes = ops.cast(ops.cast(slopes, "bfloat16"), "float32")
    bias = slopes[None, :, None, None] * pos[:, None, None, :]
    if bfloat16:
        bias = ops.cast(ops.cast(bias, "bfloat16"), "float32")
    return bias

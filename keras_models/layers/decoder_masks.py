"""Decoder attention biases over a KV buffer: causal + padding + sliding window, and ALiBi.

Query ``i`` of a chunk sits in buffer slot ``cache_index + i``; key ``j`` is buffer slot ``j``.
Like Transformers, the window counts buffer slots (so left padding is part of the distance).
"""

import math

import numpy as np
from keras import ops

from keras_models.layers.masks import mask_value


def decoder_bias(attention_mask, query_len, cache_index=0, window=None, dtype="float32"):
    """attention_mask: (batch, key_len) 1/0 -> additive bias (batch, 1, query_len, key_len)."""
    key_len = ops.shape(attention_mask)[1]
    q = ops.arange(query_len, dtype="int32")[:, None] + ops.cast(cache_index, "int32")
    k = ops.arange(key_len, dtype="int32")[None, :]
    allowed = k <= q
    if window is not None:
        allowed = ops.logical_and(allowed, k > q - window)
    allowed = ops.logical_and(allowed[None], ops.cast(attention_mask, "bool")[:, None, :])
    return ops.where(allowed, 0.0, mask_value(dtype))[:, None, :, :]


def positions_from_mask(attention_mask):
    """Position ids as Transformers derives them for generation: cumsum(mask) - 1, min 0."""
    m = ops.cast(attention_mask, "int32")
    return ops.maximum(ops.cumsum(m, axis=1) - 1, 0)


def alibi_slopes(num_heads):
    """The ALiBi head slopes (powers of two, interleaved when heads is not a power of two)."""
    closest = 2 ** math.floor(math.log2(num_heads))
    base = 2.0 ** (-(2.0 ** -(math.log2(closest) - 3)))
    slopes = [base ** (i + 1) for i in range(closest)]
    if closest != num_heads:
        extra_base = 2.0 ** (-(2.0 ** -(math.log2(2 * closest) - 3)))
        n = min(closest, num_heads - closest)
        slopes += [extra_base ** (2 * i + 1) for i in range(n)]
    return np.asarray(slopes, dtype="float32")


def alibi_bias(attention_mask, num_heads):
    """(batch, heads, 1, key_len): slope * key position (positions counted over real tokens)."""
    pos = ops.cast(positions_from_mask(attention_mask), "float32")
    slopes = ops.convert_to_tensor(alibi_slopes(num_heads))
    return slopes[None, :, None, None] * pos[:, None, None, :]

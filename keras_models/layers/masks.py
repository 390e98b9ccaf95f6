"""Attention masks as additive float biases (0 = attend, large negative = blocked).

Additive biases (rather than booleans) keep fully padded rows finite on every backend.
"""

from keras import ops


def mask_value(dtype):
    return -1e9 if "float32" in str(dtype) or "float64" in str(dtype) else -3e4


def padding_bias(attention_mask, dtype="float32"):
    """(batch, key_len) 1/0 mask -> (batch, 1, 1, key_len) additive bias."""
    m = ops.cast(attention_mask, dtype)
    return ((1.0 - m) * mask_value(dtype))[:, None, None, :]


def causal_bias(query_len, key_len, dtype="float32", offset=0, window=None):
    """(1, 1, query_len, key_len) bias; query i sits at absolute position ``offset + i``."""
    q = ops.arange(query_len)[:, None] + offset
    k = ops.arange(key_len)[None, :]
    allowed = k <= q
    if window is not None:
        allowed = ops.logical_and(allowed, k > q - window)
    return ops.where(allowed, 0.0, mask_value(dtype))[None, None, :, :]

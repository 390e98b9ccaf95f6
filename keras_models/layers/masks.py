"""Attention masks as additive float biases (0 = attend, large negative = blocked).

Additive biases (rather than booleans) keep fully padded rows finite on every backend.
"""

from keras import ops


def mask_value(dtype):
    return -1e9 if "float32" in str(dtype) or "float64" in str(dtype) else -3e4


ALL_VISIBLE = "_km_all_visible"  # attribute on a torch bias tensor: no key is masked


def padding_bias(attention_mask, dtype="float32"):
    """(batch, key_len) 1/0 mask -> (batch, 1, 1, key_len) additive bias.

    Under torch (eager) a mask with no padding gives a zero bias marked ``ALL_VISIBLE``: the fused
    attention path then calls SDPA without a mask (``attention.fused_attention``), which lets a
    GPU pick its flash kernel. One check per forward; any op on the bias (adding a relative
    position bias, slicing) makes a new, unmarked tensor."""
    m = ops.cast(attention_mask, dtype)
    bias = ((1.0 - m) * mask_value(dtype))[:, None, None, :]
    _mark_all_visible(attention_mask, bias)
    return bias


def _mark_all_visible(attention_mask, bias):
    import keras

    if keras.backend.backend() != "torch":
        return
    import torch

    if (not isinstance(attention_mask, torch.Tensor) or not isinstance(bias, torch.Tensor)
            or attention_mask.is_meta or torch.compiler.is_compiling() or torch.compiler.is_exporting()):
        return  # no values to look at: Keras' symbolic build runs on meta tensors; tracing
    if bool(torch.all(attention_mask != 0)):
        setattr(bias, ALL_VISIBLE, True)


def causal_bias(query_len, key_len, dtype="float32", offset=0, window=None):
    """(1, 1, query_len, key_len) bias; query i sits at absolute position ``offset + i``."""
    q = ops.arange(query_len)[:, None] + offset
    k = ops.arange(key_len)[None, :]
    allowed = k <= q
    if window is not None:
        allowed = ops.logical_and(allowed, k > q - window)
    return ops.where(allowed, 0.0, mask_value(dtype))[None, None, :, :]

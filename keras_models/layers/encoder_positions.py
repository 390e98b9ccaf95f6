"""Relative-position helpers for encoders (MPNet's shared bucketed attention bias)."""

import math

from keras import ops


def relative_position_bucket(relative_position, num_buckets=32, max_distance=128):
    """Bidirectional log-spaced buckets of ``key - query`` offsets (T5/MPNet scheme).

    Half the buckets hold positive offsets; within each half, offsets below ``num_buckets // 4``
    get their own bucket and larger ones share log-spaced buckets up to ``max_distance``.
    """
    n = -relative_position
    half = num_buckets // 2
    ret = ops.cast(n < 0, "int32") * half
    n = ops.abs(n)
    max_exact = half // 2
    scaled = ops.log(ops.cast(ops.maximum(n, 1), "float32") / max_exact) / math.log(max_distance / max_exact)
    large = max_exact + ops.cast(scaled * (half - max_exact), "int32")
    large = ops.minimum(large, half - 1)
    return ret + ops.where(n < max_exact, n, large)


def relative_bias(table, query_len, key_len, num_buckets=32, max_distance=128):
    """(1, heads, query_len, key_len) additive bias from a (buckets, heads) embedding table layer."""
    q = ops.arange(query_len, dtype="int32")[:, None]
    k = ops.arange(key_len, dtype="int32")[None, :]
    buckets = relative_position_bucket(k - q, num_buckets, max_distance)
    return ops.transpose(table(buckets), (2, 0, 1))[None]

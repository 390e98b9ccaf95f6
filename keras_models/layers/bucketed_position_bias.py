"""Position helpers for encoder-decoder models: T5's bucketed relative attention bias and the
fixed sinusoidal tables of Marian / Pegasus / M2M100."""

import math

import keras
import numpy as np
from keras import ops


def relative_position_bucket(relative_position, bidirectional, num_buckets, max_distance):
    """Map (key - query) distances to bucket ids: exact buckets for small distances, log-spaced
    ones up to ``max_distance``; with ``bidirectional`` half the buckets are for keys after the
    query."""
    buckets = ops.zeros_like(relative_position)
    if bidirectional:
        num_buckets //= 2
        buckets = buckets + ops.cast(relative_position > 0, "int32") * num_buckets
        distance = ops.abs(relative_position)
    else:
        distance = -ops.minimum(relative_position, 0)
    max_exact = num_buckets // 2
    is_small = distance < max_exact
    safe = ops.cast(ops.maximum(distance, 1), "float32")
    large = max_exact + ops.cast(
        ops.log(safe / max_exact) / math.log(max_distance / max_exact) * (num_buckets - max_exact),
        "int32",
    )
    large = ops.minimum(large, num_buckets - 1)
    return buckets + ops.where(is_small, distance, large)


@keras.saving.register_keras_serializable(package="keras_models")
class BucketedPositionBias(keras.layers.Layer):
    """Learned per-head bias indexed by bucketed relative position (an (num_buckets, heads) table).

    ``compute_bias(query_len, key_len, offset=0)`` returns (1, heads, query_len, key_len); query
    ``i`` sits at absolute position ``offset + i`` and key ``j`` at ``j``. (``call`` maps bucket
    ids to per-head values.)
    """

    def __init__(self, num_heads, num_buckets=32, max_distance=128, bidirectional=True,
                 embeddings_initializer="glorot_uniform", **kwargs):
        super().__init__(**kwargs)
        self.num_heads, self.num_buckets = num_heads, num_buckets
        self.max_distance, self.bidirectional = max_distance, bidirectional
        self.embeddings_initializer = keras.initializers.get(embeddings_initializer)

    def build(self, input_shape=None):
        self.embeddings = self.add_weight(
            name="embeddings", shape=(self.num_buckets, self.num_heads),
            initializer=self.embeddings_initializer,
        )
        self.built = True

    def call(self, buckets):
        return ops.take(ops.cast(self.embeddings, self.compute_dtype), buckets, axis=0)

    def compute_bias(self, query_len, key_len, offset=0):
        q = ops.arange(query_len, dtype="int32")[:, None] + ops.cast(offset, "int32")
        k = ops.arange(key_len, dtype="int32")[None, :]
        buckets = relative_position_bucket(k - q, self.bidirectional, self.num_buckets,
                                           self.max_distance)
        values = self.call(buckets)  # (q, k, heads)
        return ops.expand_dims(ops.transpose(values, (2, 0, 1)), 0)

    def get_config(self):
        c = super().get_config()
        c.update(num_heads=self.num_heads, num_buckets=self.num_buckets,
                 max_distance=self.max_distance, bidirectional=self.bidirectional,
                 embeddings_initializer=keras.initializers.serialize(self.embeddings_initializer))
        return c


def sinusoidal_table(num_positions, dim, interleave=False):
    """Fixed sinusoidal position table (num_positions, dim) as numpy float32.

    Frequencies are ``10000 ** (-i / (half - 1))`` for the fairseq layout (sin half then cos half,
    M2M100 / NLLB), or ``10000 ** (-2i / dim)`` with ``interleave=True`` meaning the Marian /
    Pegasus layout (sin of even channels in the first half, cos of odd channels in the second).
    """
    pos = np.arange(num_positions, dtype=np.float64)[:, None]
    if interleave:
        j = np.arange(dim)[None, :]
        angles = pos / np.power(10000, 2 * (j // 2) / dim)
        out = np.zeros((num_positions, dim))
        sentinel = dim // 2 if dim % 2 == 0 else (dim // 2) + 1
        out[:, :sentinel] = np.sin(angles[:, 0::2])
        out[:, sentinel:] = np.cos(angles[:, 1::2])
        return out.astype(np.float32)
    half = dim // 2
    freqs = np.exp(np.arange(half, dtype=np.float64) * -(math.log(10000) / (half - 1)))
    angles = pos * freqs[None, :]
    out = np.concatenate([np.sin(angles), np.cos(angles)], axis=1)
    if dim % 2 == 1:
        out = np.concatenate([out, np.zeros((num_positions, 1))], axis=1)
    return out.astype(np.float32)

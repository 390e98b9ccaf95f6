"""2-D (dilated) neighborhood attention on channels_last maps, as NATTEN computes it for NAT and
DiNAT: every query attends to a ``kernel_size x kernel_size`` window of keys with a learned
relative position bias (``rpb``, (heads, 2k-1, 2k-1)).

Along each axis, with dilation ``d`` the positions split into ``d`` groups (``i % d``); a query at
group index ``t = i // d`` in a group of ``n`` positions attends to the group indices
``s .. s+k-1``, ``s = clip(t - k // 2, 0, n - k)`` (the window slides inward at the borders instead
of shrinking), and the bias of the key at group index ``u`` is ``rpb[:, u - t + k - 1, ...]``. The
map must be at least ``k * d`` along both axes; smaller maps are zero-padded at the bottom / right
before the projections (their keys take part, as in Transformers' NAT / DiNAT) and cropped after.

Shapes are static at trace time, so the neighbour and bias indices are numpy constants and the
keys / values are gathered with one ``take`` (no (tokens x tokens) score matrix is formed).
"""

import keras
import numpy as np
from keras import ops


def neighborhood_index(length, kernel_size, dilation=1):
    """((length, k) key positions, (length, k) bias offsets in 0..2k-2) along one axis."""
    k, d = kernel_size, dilation
    if length < k * d:
        raise ValueError(f"neighborhood_index: length {length} < kernel_size {k} x dilation {d}")
    pos = np.arange(length)
    group, t = pos % d, pos // d
    size = (length - group + d - 1) // d  # positions in each query's dilation group
    start = np.clip(t - k // 2, 0, size - k)
    u = start[:, None] + np.arange(k)[None, :]  # group indices of the keys
    return group[:, None] + d * u, u - t[:, None] + k - 1


def neighborhood_index_2d(height, width, kernel_size, dilation=1):
    """((h*w, k*k) flat key indices, (h*w, k*k) flat indices into a (2k-1)^2 bias table), keys in
    row-major window order."""
    k = kernel_size
    ki, bi = neighborhood_index(height, k, dilation)
    kj, bj = neighborhood_index(width, k, dilation)
    keys = ki[:, None, :, None] * width + kj[None, :, None, :]  # (h, w, k, k)
    bias = bi[:, None, :, None] * (2 * k - 1) + bj[None, :, None, :]
    return keys.reshape(height * width, k * k), bias.reshape(height * width, k * k)


@keras.saving.register_keras_serializable(package="keras_models")
class NeighborhoodAttention(keras.layers.Layer):
    """(batch, H, W, C) -> (batch, H, W, C): query / key / value projections, neighborhood
    attention with relative position bias, output projection. ``rpb`` is stored as Transformers
    stores it, (heads, 2k-1, 2k-1)."""

    def __init__(self, hidden_size, num_heads, kernel_size, dilation=1, use_bias=True, dropout=0.0, **kwargs):
        super().__init__(**kwargs)
        if hidden_size % num_heads:
            raise ValueError(f"NeighborhoodAttention: hidden size {hidden_size} is not a multiple of "
                             f"{num_heads} heads")
        self.hidden_size, self.num_heads = hidden_size, num_heads
        self.kernel_size, self.dilation, self.use_bias, self.dropout = kernel_size, dilation, use_bias, dropout
        self.head_dim = hidden_size // num_heads
        dense = dict(dtype=self.dtype_policy)
        self.query = keras.layers.Dense(hidden_size, use_bias=use_bias, name="query", **dense)
        self.key = keras.layers.Dense(hidden_size, use_bias=use_bias, name="key", **dense)
        self.value = keras.layers.Dense(hidden_size, use_bias=use_bias, name="value", **dense)
        self.output_dense = keras.layers.Dense(hidden_size, name="output", **dense)
        self.attention_dropout = keras.layers.Dropout(dropout, dtype=self.dtype_policy)

    def build(self, input_shape):
        for dense in (self.query, self.key, self.value, self.output_dense):
            dense.build((None, self.hidden_size))
        n = 2 * self.kernel_size - 1
        self.rpb = self.add_weight(name="rpb", shape=(self.num_heads, n, n), initializer="zeros")
        self.built = True

    def call(self, x, bias=None, training=False):
        if bias is not None:
            raise ValueError("NeighborhoodAttention takes no additive bias (its relative bias is built in)")
        h, w = x.shape[1], x.shape[2]
        window = self.kernel_size * self.dilation
        ph, pw = max(0, window - h), max(0, window - w)
        if ph or pw:
            x = ops.pad(x, ((0, 0), (0, ph), (0, pw), (0, 0)))
        hp, wp = h + ph, w + pw
        n, kk, heads, d = hp * wp, self.kernel_size ** 2, self.num_heads, self.head_dim
        keys, rel = neighborhood_index_2d(hp, wp, self.kernel_size, self.dilation)
        keys = ops.convert_to_tensor(keys.reshape(-1).astype("int32"))
        rel = ops.convert_to_tensor(rel.reshape(-1).astype("int32"))

        def split(t):
            return ops.reshape(t, (-1, n, heads, d))

        q = split(self.query(x)) * ops.cast(1.0 / np.sqrt(d), x.dtype)
        k = ops.reshape(ops.take(split(self.key(x)), keys, axis=1), (-1, n, kk, heads, d))
        v = ops.reshape(ops.take(split(self.value(x)), keys, axis=1), (-1, n, kk, heads, d))
        scores = ops.cast(ops.einsum("bnhd,bnmhd->bnhm", q, k), "float32")
        table = ops.reshape(ops.cast(self.rpb, "float32"), (heads, -1))
        pos = ops.transpose(ops.reshape(ops.take(table, rel, axis=1), (heads, n, kk)), (1, 0, 2))
        probs = ops.cast(ops.softmax(scores + pos[None], axis=-1), v.dtype)
        probs = self.attention_dropout(probs, training=training)
        y = ops.reshape(ops.einsum("bnhm,bnmhd->bnhd", probs, v), (-1, hp, wp, heads * d))
        if ph or pw:
            y = y[:, :h, :w]
        return self.output_dense(y)

    def get_config(self):
        c = super().get_config()
        c.update(hidden_size=self.hidden_size, num_heads=self.num_heads, kernel_size=self.kernel_size,
                 dilation=self.dilation, use_bias=self.use_bias, dropout=self.dropout)
        return c


__all__ = ["NeighborhoodAttention", "neighborhood_index", "neighborhood_index_2d"]

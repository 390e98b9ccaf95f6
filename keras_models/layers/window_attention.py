"""Shifted-window attention block (Swin) on channels_last maps, with its relative position bias
and the patch-merging downsampler. Window size, shift and padding are static (shapes are known
at trace time), so the shift mask and bias index are numpy constants."""

import keras
import numpy as np
from keras import ops

from keras_models.layers.activations import get_activation
from keras_models.layers.attention import Attention


def window_bias_index(ws):
    """(ws*ws, ws*ws) index into a (2ws-1)^2 relative position table."""
    coords = np.stack(np.meshgrid(np.arange(ws), np.arange(ws), indexing="ij")).reshape(2, -1)
    rel = (coords[:, :, None] - coords[:, None, :]).transpose(1, 2, 0) + (ws - 1)
    return rel[:, :, 0] * (2 * ws - 1) + rel[:, :, 1]


def shift_mask(h, w, ws, shift):
    """(num_windows, ws*ws, ws*ws) additive mask (-100 between different shifted regions)."""
    hr = (np.arange(h) >= h - ws).astype(int) + (np.arange(h) >= h - shift)
    wr = (np.arange(w) >= w - ws).astype(int) + (np.arange(w) >= w - shift)
    regions = (hr[:, None] * 3 + wr[None, :]).reshape(h // ws, ws, w // ws, ws).transpose(0, 2, 1, 3)
    regions = regions.reshape(-1, ws * ws)
    return np.where(regions[:, None, :] != regions[:, :, None], -100.0, 0.0).astype("float32")


@keras.saving.register_keras_serializable(package="keras_models")
class SwinBlock(keras.layers.Layer):
    def __init__(self, dim, num_heads, window_size, shift, mlp_ratio=4.0, hidden_act="gelu", layer_norm_eps=1e-5,
                 qkv_bias=True, dropout=0.0, attention_dropout=0.0, **kwargs):
        super().__init__(**kwargs)
        self.dim, self.num_heads, self.window_size, self.shift = dim, num_heads, window_size, shift
        self.mlp_ratio, self.hidden_act, self.layer_norm_eps, self.qkv_bias = mlp_ratio, hidden_act, layer_norm_eps, qkv_bias
        self.dropout_rate, self.attention_dropout = dropout, attention_dropout
        common = dict(dtype=self.dtype_policy)
        self.norm1 = keras.layers.LayerNormalization(epsilon=layer_norm_eps, name="norm1", **common)
        self.attention = Attention(dim, num_heads, use_bias=qkv_bias, output_bias=True, dropout=attention_dropout,
                                   name="attention", **common)
        self.norm2 = keras.layers.LayerNormalization(epsilon=layer_norm_eps, name="norm2", **common)
        self.inner = int(mlp_ratio * dim)
        self.fc1 = keras.layers.Dense(self.inner, name="fc1", **common)
        self.fc2 = keras.layers.Dense(dim, name="fc2", **common)
        self.act = get_activation(hidden_act)
        self.dropout = keras.layers.Dropout(dropout, **common)

    def build(self, input_shape):
        d = (None, None, self.dim)
        for layer in (self.norm1, self.attention, self.norm2, self.fc1):
            layer.build(d)
        self.fc2.build((None, None, self.inner))
        self.table = self.add_weight(name="relative_position_table", initializer="zeros",
                                     shape=((2 * self.window_size - 1) ** 2, self.num_heads))
        self.built = True

    def call(self, x, training=False):
        """x: (batch, H, W, C) -> same shape."""
        h, w = x.shape[1], x.shape[2]
        ws, shift = self.window_size, self.shift
        if min(h, w) <= ws:
            if min(h, w) < ws:
                raise ValueError(f"Swin: a {h}x{w} stage map is smaller than the {ws}x{ws} window; use a larger image")
            shift = 0
        y = self.norm1(x)
        pb, pr = (ws - h % ws) % ws, (ws - w % ws) % ws
        if pb or pr:
            y = ops.pad(y, ((0, 0), (0, pb), (0, pr), (0, 0)))
        hp, wp = h + pb, w + pr
        if shift:
            y = ops.roll(ops.roll(y, -shift, axis=1), -shift, axis=2)
        n = ws * ws
        y = ops.reshape(y, (-1, hp // ws, ws, wp // ws, ws, self.dim))
        y = ops.reshape(ops.transpose(y, (0, 1, 3, 2, 4, 5)), (-1, n, self.dim))
        index = ops.convert_to_tensor(window_bias_index(ws).reshape(-1).astype("int32"))
        bias = ops.reshape(ops.take(self.table, index, axis=0), (n, n, self.num_heads))
        bias = ops.expand_dims(ops.transpose(bias, (2, 0, 1)), 0)  # (1, heads, n, n)
        if shift:
            nw = (hp // ws) * (wp // ws)
            mask = ops.convert_to_tensor(shift_mask(hp, wp, ws, shift))[None, :, None]  # (1, nW, 1, n, n)
            batch = ops.shape(x)[0]
            bias = ops.reshape(bias[:, None] + ops.broadcast_to(mask, (batch, nw, 1, n, n)), (-1, self.num_heads, n, n))
        y = self.attention(y, ops.cast(bias, y.dtype), training=training)
        y = ops.reshape(y, (-1, hp // ws, wp // ws, ws, ws, self.dim))
        y = ops.reshape(ops.transpose(y, (0, 1, 3, 2, 4, 5)), (-1, hp, wp, self.dim))
        if shift:
            y = ops.roll(ops.roll(y, shift, axis=1), shift, axis=2)
        if pb or pr:
            y = y[:, :h, :w]
        x = x + self.dropout(y, training=training)
        f = self.fc2(self.act(self.fc1(self.norm2(x))))
        return x + self.dropout(f, training=training)

    def get_config(self):
        c = super().get_config()
        c.update(dim=self.dim, num_heads=self.num_heads, window_size=self.window_size, shift=self.shift,
                 mlp_ratio=self.mlp_ratio, hidden_act=self.hidden_act, layer_norm_eps=self.layer_norm_eps,
                 qkv_bias=self.qkv_bias, dropout=self.dropout_rate, attention_dropout=self.attention_dropout)
        return c


@keras.saving.register_keras_serializable(package="keras_models")
class PatchMerging(keras.layers.Layer):
    """(batch, H, W, C) -> (batch, ceil(H/2), ceil(W/2), 2C): 2x2 neighbours concatenated
    ([0::2,0::2], [1::2,0::2], [0::2,1::2], [1::2,1::2]) -> LayerNorm -> Linear (no bias)."""

    def __init__(self, dim, eps=1e-5, **kwargs):
        super().__init__(**kwargs)
        self.dim, self.eps = dim, eps
        self.norm = keras.layers.LayerNormalization(epsilon=eps, name="norm", dtype=self.dtype_policy)
        self.reduction = keras.layers.Dense(2 * dim, use_bias=False, name="reduction", dtype=self.dtype_policy)

    def build(self, input_shape):
        self.norm.build((None, None, 4 * self.dim))
        self.reduction.build((None, None, 4 * self.dim))
        self.built = True

    def call(self, x):
        h, w = x.shape[1], x.shape[2]
        if h % 2 or w % 2:
            x = ops.pad(x, ((0, 0), (0, h % 2), (0, w % 2), (0, 0)))
        parts = [x[:, r::2, c::2] for c in range(2) for r in range(2)]
        return self.reduction(self.norm(ops.concatenate(parts, axis=-1)))

    def get_config(self):
        c = super().get_config()
        c.update(dim=self.dim, eps=self.eps)
        return c

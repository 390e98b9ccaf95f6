"""Shifted-window attention block (Swin) on channels_last maps, with its relative position bias
and the patch-merging downsampler. Window size, shift and padding are static (shapes are known
at trace time), so the shift mask and bias index are numpy constants.

Swin V2 differences are named switches of :class:`SwinBlock` (all off by default):
``cosine_attention`` (cosine similarity of normalised q/k times a learned, clamped per-head
``logit_scale``; the key projection has no bias), ``continuous_position_bias`` (a 2-512-heads MLP
over log-spaced relative coordinates, ``16 * sigmoid``, instead of a bias table; coordinates are
normalised by ``pretrained_window_size`` when set), ``res_post_norm`` (x + norm(f(x)) instead of
x + f(norm(x))), ``fixed_window`` (window and shift are fixed at construction; maps smaller than
the window are padded) and ``shift_mask_value``; :class:`PatchMerging` has ``norm_after``."""

import keras
import numpy as np
from keras import ops

from keras_models.layers.activations import activated_projection, get_activation
from keras_models.layers.attention import Attention


def window_bias_index(ws):
    """(ws*ws, ws*ws) index into a (2ws-1)^2 relative position table."""
    coords = np.stack(np.meshgrid(np.arange(ws), np.arange(ws), indexing="ij")).reshape(2, -1)
    rel = (coords[:, :, None] - coords[:, None, :]).transpose(1, 2, 0) + (ws - 1)
    return rel[:, :, 0] * (2 * ws - 1) + rel[:, :, 1]


def continuous_coords(ws, pretrained_ws=0):
    """((2ws-1)^2, 2) log-spaced relative coordinates fed to Swin V2's position-bias MLP."""
    r = np.arange(-(ws - 1), ws, dtype=np.float32)
    table = np.stack(np.meshgrid(r, r, indexing="ij"), axis=-1)
    norm = pretrained_ws if pretrained_ws > 0 else ws
    if pretrained_ws > 0 or ws > 1:
        table = table / np.float32(norm - 1)
    table = table * 8
    table = np.sign(table) * np.log2(np.abs(table) + 1.0) / np.log2(8)
    return table.reshape(-1, 2).astype("float32")


def shift_mask(h, w, ws, shift, value=-100.0):
    """(num_windows, ws*ws, ws*ws) additive mask (``value`` between different shifted regions)."""
    hr = (np.arange(h) >= h - ws).astype(int) + (np.arange(h) >= h - shift)
    wr = (np.arange(w) >= w - ws).astype(int) + (np.arange(w) >= w - shift)
    regions = (hr[:, None] * 3 + wr[None, :]).reshape(h // ws, ws, w // ws, ws).transpose(0, 2, 1, 3)
    regions = regions.reshape(-1, ws * ws)
    return np.where(regions[:, None, :] != regions[:, :, None], value, 0.0).astype("float32")


@keras.saving.register_keras_serializable(package="keras_models")
class SwinBlock(keras.layers.Layer):
    def __init__(self, dim, num_heads, window_size, shift, mlp_ratio=4.0, hidden_act="gelu", layer_norm_eps=1e-5,
                 qkv_bias=True, dropout=0.0, attention_dropout=0.0, cosine_attention=False,
                 continuous_position_bias=False, pretrained_window_size=0, res_post_norm=False,
                 fixed_window=False, shift_mask_value=-100.0, **kwargs):
        super().__init__(**kwargs)
        self.dim, self.num_heads, self.window_size, self.shift = dim, num_heads, window_size, shift
        self.cosine_attention, self.continuous_position_bias = cosine_attention, continuous_position_bias
        self.pretrained_window_size, self.res_post_norm = pretrained_window_size, res_post_norm
        self.fixed_window, self.shift_mask_value = fixed_window, shift_mask_value
        self.mlp_ratio, self.hidden_act, self.layer_norm_eps, self.qkv_bias = mlp_ratio, hidden_act, layer_norm_eps, qkv_bias
        self.dropout_rate, self.attention_dropout = dropout, attention_dropout
        common = dict(dtype=self.dtype_policy)
        self.norm1 = keras.layers.LayerNormalization(epsilon=layer_norm_eps, name="norm1", **common)
        self.attention = Attention(dim, num_heads, use_bias=qkv_bias, output_bias=True, dropout=attention_dropout,
                                   scale=1.0 if cosine_attention else None, name="attention", **common)
        self.norm2 = keras.layers.LayerNormalization(epsilon=layer_norm_eps, name="norm2", **common)
        self.inner = int(mlp_ratio * dim)
        self.fc1 = keras.layers.Dense(self.inner, name="fc1", **common)
        self.fc2 = keras.layers.Dense(dim, name="fc2", **common)
        self.act = get_activation(hidden_act)
        self.dropout = keras.layers.Dropout(dropout, **common)
        if continuous_position_bias:
            self.cpb_fc1 = keras.layers.Dense(512, activation="relu", name="cpb_fc1", **common)
            self.cpb_fc2 = keras.layers.Dense(num_heads, use_bias=False, name="cpb_fc2", **common)

    def build(self, input_shape):
        d = (None, None, self.dim)
        for layer in (self.norm1, self.attention, self.norm2, self.fc1):
            layer.build(d)
        self.fc2.build((None, None, self.inner))
        if self.continuous_position_bias:
            self.cpb_fc1.build((None, 2))
            self.cpb_fc2.build((None, 512))
            self.table = None
        else:
            self.table = self.add_weight(name="relative_position_table", initializer="zeros",
                                         shape=((2 * self.window_size - 1) ** 2, self.num_heads))
        self.logit_scale = (self.add_weight(name="logit_scale", shape=(self.num_heads,),
                                            initializer=keras.initializers.Constant(np.log(10.0)))
                            if self.cosine_attention else None)
        self.built = True

    def bias_table(self):
        """((2ws-1)^2, heads) relative position bias table."""
        if not self.continuous_position_bias:
            return self.table
        coords = ops.convert_to_tensor(continuous_coords(self.window_size, self.pretrained_window_size))
        return 16.0 * ops.sigmoid(self.cpb_fc2(self.cpb_fc1(coords)))

    def attend(self, y, bias, training=False):
        """Window attention on (windows, n, C) tokens."""
        a = self.attention
        if not self.cosine_attention:
            return a(y, bias, training=training)
        q = a._split(a.query(y), self.num_heads)
        k = a._split(ops.matmul(y, a.key.kernel), self.num_heads)  # no key bias in cosine attention
        v = a._split(a.value(y), self.num_heads)

        def unit(t):
            return t / ops.maximum(ops.sqrt(ops.sum(ops.square(t), axis=-1, keepdims=True)), 1e-12)

        scale = ops.exp(ops.minimum(ops.cast(self.logit_scale, q.dtype), float(np.log(100.0))))
        q = unit(q) * ops.reshape(scale, (1, 1, self.num_heads, 1))
        return a.output_dense(a.attend(q, unit(k), v, bias, training=training))

    def call(self, x, training=False):
        """x: (batch, H, W, C) -> same shape."""
        h, w = x.shape[1], x.shape[2]
        ws, shift = self.window_size, self.shift
        if min(h, w) <= ws and not self.fixed_window:
            if min(h, w) < ws:
                raise ValueError(f"Swin: a {h}x{w} stage map is smaller than the {ws}x{ws} window; use a larger image")
            shift = 0
        y = x if self.res_post_norm else self.norm1(x)
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
        bias = ops.reshape(ops.take(self.bias_table(), index, axis=0), (n, n, self.num_heads))
        bias = ops.expand_dims(ops.transpose(bias, (2, 0, 1)), 0)  # (1, heads, n, n)
        if shift:
            nw = (hp // ws) * (wp // ws)
            mask = ops.convert_to_tensor(shift_mask(hp, wp, ws, shift, self.shift_mask_value))[None, :, None]
            batch = ops.shape(x)[0]
            bias = ops.reshape(bias[:, None] + ops.broadcast_to(mask, (batch, nw, 1, n, n)), (-1, self.num_heads, n, n))
        y = self.attend(y, ops.cast(bias, y.dtype), training=training)
        y = ops.reshape(y, (-1, hp // ws, wp // ws, ws, ws, self.dim))
        y = ops.reshape(ops.transpose(y, (0, 1, 3, 2, 4, 5)), (-1, hp, wp, self.dim))
        if shift:
            y = ops.roll(ops.roll(y, shift, axis=1), shift, axis=2)
        if pb or pr:
            y = y[:, :h, :w]
        if self.res_post_norm:
            x = x + self.dropout(self.norm1(y), training=training)
            f = self.norm2(self.fc2(activated_projection(self.fc1, x, self.hidden_act, self.act)))
        else:
            x = x + self.dropout(y, training=training)
            f = self.fc2(activated_projection(self.fc1, self.norm2(x), self.hidden_act, self.act))
        return x + self.dropout(f, training=training)

    def get_config(self):
        c = super().get_config()
        c.update(dim=self.dim, num_heads=self.num_heads, window_size=self.window_size, shift=self.shift,
                 mlp_ratio=self.mlp_ratio, hidden_act=self.hidden_act, layer_norm_eps=self.layer_norm_eps,
                 qkv_bias=self.qkv_bias, dropout=self.dropout_rate, attention_dropout=self.attention_dropout,
                 cosine_attention=self.cosine_attention, continuous_position_bias=self.continuous_position_bias,
                 pretrained_window_size=self.pretrained_window_size, res_post_norm=self.res_post_norm,
                 fixed_window=self.fixed_window, shift_mask_value=self.shift_mask_value)
        return c


@keras.saving.register_keras_serializable(package="keras_models")
class PatchMerging(keras.layers.Layer):
    """(batch, H, W, C) -> (batch, ceil(H/2), ceil(W/2), 2C): 2x2 neighbours concatenated
    ([0::2,0::2], [1::2,0::2], [0::2,1::2], [1::2,1::2]) -> LayerNorm -> Linear (no bias);
    ``norm_after`` (Swin V2): Linear -> LayerNorm over the 2C outputs."""

    def __init__(self, dim, eps=1e-5, norm_after=False, **kwargs):
        super().__init__(**kwargs)
        self.dim, self.eps, self.norm_after = dim, eps, norm_after
        self.norm = keras.layers.LayerNormalization(epsilon=eps, name="norm", dtype=self.dtype_policy)
        self.reduction = keras.layers.Dense(2 * dim, use_bias=False, name="reduction", dtype=self.dtype_policy)

    def build(self, input_shape):
        self.norm.build((None, None, (2 if self.norm_after else 4) * self.dim))
        self.reduction.build((None, None, 4 * self.dim))
        self.built = True

    def call(self, x):
        h, w = x.shape[1], x.shape[2]
        if h % 2 or w % 2:
            x = ops.pad(x, ((0, 0), (0, h % 2), (0, w % 2), (0, 0)))
        parts = [x[:, r::2, c::2] for c in range(2) for r in range(2)]
        x = ops.concatenate(parts, axis=-1)
        if self.norm_after:
            return self.norm(self.reduction(x))
        return self.reduction(self.norm(x))

    def get_config(self):
        c = super().get_config()
        c.update(dim=self.dim, eps=self.eps, norm_after=self.norm_after)
        return c

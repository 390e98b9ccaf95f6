"""ViTDet backbone (channels_last): a plain ViT without [CLS] for detection.

Patch embedding + absolute positions (a [CLS]-prefixed table for ``pretrain_image_size``; the
[CLS] row is dropped and the grid bicubic-resized to the input's), then blocks of
[LayerNorm -> fused-qkv attention, in ``window_size`` windows (zero-padded, unmasked) for the
``window_block_indices`` blocks and global otherwise, with decomposed relative positions
(``use_relative_position_embeddings``: per-axis tables, linearly resized to the map when their
length differs)] and [LayerNorm -> MLP]; ``residual_block_indices`` blocks end with a
1x1-3x3-1x1 conv bottleneck (channel LayerNorm, eps 1e-6). No final norm.
Output: (batch, H/p, W/p, hidden), Transformers' last_hidden_state in channels_last.
"""

from dataclasses import dataclass

import keras
import numpy as np
from keras import ops

from keras_models.layers.activations import get_activation
from keras_models.layers.attention import Attention
from keras_models.layers.vision_embeddings import (
    PatchEmbedding,
    bilinear_matrix,
    conv_rules,
    dense_rules,
    norm_rules,
    resize_grid,
)
from keras_models.models.backbone import Backbone
from keras_models.models.registry import register_backbone
from keras_models.models.vit.backbone import _pair, one_or_pair, pixel_values_of
from keras_models.presets.weight_map import Rule
from keras_models.spec import Spec, dim, hf

_ser = keras.saving.register_keras_serializable(package="keras_models")


def relative_table(table, size):
    """(L, d) per-axis table -> (size, size, d) embeddings of (query - key) offsets, after a
    linear resize of the table to 2*size-1 rows when needed (PyTorch ``linear``, align_corners=False)."""
    n = 2 * size - 1
    if table.shape[0] != n:
        table = ops.matmul(ops.convert_to_tensor(bilinear_matrix(table.shape[0], n).astype("float32")),
                           ops.cast(table, "float32"))
    idx = (np.arange(size)[:, None] - np.arange(size)[None, :] + size - 1).reshape(-1).astype("int32")
    return ops.reshape(ops.take(table, ops.convert_to_tensor(idx), axis=0), (size, size, -1))


def _dense(x):
    """torch: ``x`` in row-major memory. Its einsum returns a permuted view here, and a broadcast sum
    of permuted views is laid out like them, so the (n, heads, h*w, h*w) reshape of the relative
    bias would copy the whole bias (the size of the attention scores); a copy of the small factor
    instead leaves the bias row-major. Other backends: ``x``."""
    return x.contiguous() if keras.backend.backend() == "torch" else x


@_ser
class VitDetBlock(keras.layers.Layer):
    def __init__(self, dim, num_heads, mlp_ratio=4.0, hidden_act="gelu", layer_norm_eps=1e-6, qkv_bias=True,
                 window_size=0, relative_positions=False, rel_size=(14, 14), residual_block=False, dropout=0.0,
                 **kwargs):
        super().__init__(**kwargs)
        self.dim, self.num_heads, self.mlp_ratio, self.hidden_act = dim, num_heads, mlp_ratio, hidden_act
        self.layer_norm_eps, self.qkv_bias, self.window_size = layer_norm_eps, qkv_bias, window_size
        self.relative_positions, self.rel_size = relative_positions, tuple(rel_size)
        self.residual_block, self.dropout_rate = residual_block, dropout
        common = dict(dtype=self.dtype_policy)
        self.norm1 = keras.layers.LayerNormalization(epsilon=layer_norm_eps, name="norm1", **common)
        self.norm2 = keras.layers.LayerNormalization(epsilon=layer_norm_eps, name="norm2", **common)
        self.attention = Attention(dim, num_heads, use_bias=qkv_bias, output_bias=True, fused_qkv=True,
                                   name="attention", **common)
        self.inner = int(dim * mlp_ratio)
        self.fc1 = keras.layers.Dense(self.inner, name="fc1", **common)
        self.fc2 = keras.layers.Dense(dim, name="fc2", **common)
        self.act = get_activation(hidden_act)
        self.dropout = keras.layers.Dropout(dropout, **common)
        if residual_block:
            half = dim // 2
            self.res_convs = [keras.layers.Conv2D(c, k, use_bias=False, name=f"res_conv{i + 1}", **common)
                              for i, (c, k) in enumerate(((half, 1), (half, 3), (dim, 1)))]
            self.res_norms = [keras.layers.LayerNormalization(epsilon=1e-6, name=f"res_norm{i + 1}", **common)
                              for i in range(3)]

    def build(self, input_shape):
        d = (None, None, self.dim)
        for layer in (self.norm1, self.norm2, self.attention, self.fc1):
            layer.build(d)
        self.fc2.build((None, None, self.inner))
        hd = self.dim // self.num_heads
        if self.relative_positions:
            self.rel_h = self.add_weight(name="rel_pos_h", shape=(2 * self.rel_size[0] - 1, hd), initializer="zeros")
            self.rel_w = self.add_weight(name="rel_pos_w", shape=(2 * self.rel_size[1] - 1, hd), initializer="zeros")
        if self.residual_block:
            ins = (self.dim, self.dim // 2, self.dim // 2)
            for conv, norm, c in zip(self.res_convs, self.res_norms, ins):
                conv.build((None, None, None, c))
                norm.build((None, None, None, conv.filters))
        self.built = True

    def attend(self, y):
        """y: (n, h, w, C) -> same: full attention over each map's h*w tokens."""
        n, h, w = ops.shape(y)[0], y.shape[1], y.shape[2]
        a = self.attention
        q, k, v = a.project_qkv(ops.reshape(y, (n, h * w, self.dim)))
        bias = None
        if self.relative_positions:
            q5 = ops.reshape(q, (n, h, w, self.num_heads, -1))
            rh = _dense(ops.einsum("bxyhd,xkd->bhxyk", q5, ops.cast(relative_table(self.rel_h, h), q.dtype)))
            rw = _dense(ops.einsum("bxyhd,ykd->bhxyk", q5, ops.cast(relative_table(self.rel_w, w), q.dtype)))
            bias = ops.reshape(rh[..., :, None] + rw[..., None, :], (n, self.num_heads, h * w, h * w))
        return ops.reshape(a.output_dense(a.attend(q, k, v, bias)), (n, h, w, self.dim))

    def call(self, x, training=False):
        h, w, ws = x.shape[1], x.shape[2], self.window_size
        y = self.norm1(x)
        if ws:
            pb, pr = (-h) % ws, (-w) % ws
            y = ops.pad(y, ((0, 0), (0, pb), (0, pr), (0, 0)))
            hp, wp = h + pb, w + pr
            y = ops.reshape(y, (-1, hp // ws, ws, wp // ws, ws, self.dim))
            y = ops.reshape(ops.transpose(y, (0, 1, 3, 2, 4, 5)), (-1, ws, ws, self.dim))
            y = self.attend(y)
            y = ops.reshape(y, (-1, hp // ws, wp // ws, ws, ws, self.dim))
            y = ops.reshape(ops.transpose(y, (0, 1, 3, 2, 4, 5)), (-1, hp, wp, self.dim))[:, :h, :w]
        else:
            y = self.attend(y)
        x = x + self.dropout(y, training=training)
        x = x + self.dropout(self.fc2(self.dropout(self.act(self.fc1(self.norm2(x))), training=training)),
                             training=training)
        if self.residual_block:
            r = x
            for i, (conv, norm) in enumerate(zip(self.res_convs, self.res_norms)):
                r = norm(conv(ops.pad(r, ((0, 0), (1, 1), (1, 1), (0, 0))) if i == 1 else r))
                r = self.act(r) if i < 2 else r
            x = x + r
        return x

    def rules(self, p):
        a = self.attention
        r = dense_rules(p + "attention.qkv", a.qkv) + dense_rules(p + "attention.proj", a.output_dense)
        r += norm_rules(p + "norm1", self.norm1) + norm_rules(p + "norm2", self.norm2)
        r += dense_rules(p + "mlp.fc1", self.fc1) + dense_rules(p + "mlp.fc2", self.fc2)
        if self.relative_positions:
            r += [Rule(p + "attention.rel_pos_h", self.rel_h), Rule(p + "attention.rel_pos_w", self.rel_w)]
        if self.residual_block:
            for i, (conv, norm) in enumerate(zip(self.res_convs, self.res_norms)):
                r += conv_rules(f"{p}residual.conv{i + 1}", conv) + norm_rules(f"{p}residual.norm{i + 1}", norm)
        return r

    def get_config(self):
        c = super().get_config()
        c.update(dim=self.dim, num_heads=self.num_heads, mlp_ratio=self.mlp_ratio, hidden_act=self.hidden_act,
                 layer_norm_eps=self.layer_norm_eps, qkv_bias=self.qkv_bias, window_size=self.window_size,
                 relative_positions=self.relative_positions, rel_size=list(self.rel_size),
                 residual_block=self.residual_block, dropout=self.dropout_rate)
        return c


@dataclass(frozen=True, kw_only=True)
class VitDetSpec(Spec):
    hidden_size: int = dim("hidden_size", 768)
    num_layers: int = dim("num_hidden_layers", 12)
    num_heads: int = dim("num_attention_heads", 12)
    mlp_ratio: float = hf("mlp_ratio", 4)
    hidden_act: str = hf("hidden_act", "gelu")
    layer_norm_eps: float = hf("layer_norm_eps", 1e-6)
    image_size: tuple = hf("image_size", (224, 224), read=_pair, write=one_or_pair)
    pretrain_image_size: tuple = hf("pretrain_image_size", (224, 224), read=_pair, write=one_or_pair)
    patch_size: tuple = hf("patch_size", (16, 16), read=_pair, write=one_or_pair)
    num_channels: int = dim("num_channels", 3)
    qkv_bias: bool = hf("qkv_bias", True)
    window_block_indices: tuple = hf("window_block_indices", ())
    residual_block_indices: tuple = hf("residual_block_indices", ())
    absolute_positions: bool = hf("use_absolute_position_embeddings", True)
    relative_positions: bool = hf("use_relative_position_embeddings", False)
    window_size: int = hf("window_size", 0)
    dropout: float = hf("dropout_prob", 0.0)
    initializer_range: float = hf("initializer_range", 0.02)


@_ser
@register_backbone("vitdet")
class VitDetBackbone(Backbone):
    spec_cls = VitDetSpec
    base_model_prefix = "vitdet"
    hf_architecture = "VitDetModel"
    verified_backends = ("jax", "torch", "tensorflow")

    def __init__(self, hidden_size, num_layers, num_heads, mlp_ratio=4.0, hidden_act="gelu", layer_norm_eps=1e-6,
                 image_size=224, pretrain_image_size=224, patch_size=16, num_channels=3, qkv_bias=True,
                 window_block_indices=(), residual_block_indices=(), absolute_positions=True,
                 relative_positions=False, window_size=0, dropout=0.0, initializer_range=0.02, **kwargs):
        super().__init__(**kwargs)
        self.hidden_size, self.num_layers, self.num_heads = hidden_size, num_layers, num_heads
        self.mlp_ratio, self.hidden_act, self.layer_norm_eps = mlp_ratio, hidden_act, layer_norm_eps
        self.image_size, self.pretrain_image_size = _pair(image_size), _pair(pretrain_image_size)
        self.patch_size, self.num_channels, self.qkv_bias = _pair(patch_size), num_channels, qkv_bias
        self.window_block_indices = list(window_block_indices)
        self.residual_block_indices = list(residual_block_indices)
        self.absolute_positions, self.relative_positions = absolute_positions, relative_positions
        self.window_size, self.dropout_rate, self.initializer_range = window_size, dropout, initializer_range
        common = dict(dtype=self.dtype_policy)
        self.patch_embedding = PatchEmbedding(hidden_size, self.patch_size, num_channels, name="patch_embedding",
                                              **common)
        grid = (self.image_size[0] // self.patch_size[0], self.image_size[1] // self.patch_size[1])
        self.blocks = []
        for i in range(num_layers):
            ws = window_size if i in self.window_block_indices else 0
            self.blocks.append(VitDetBlock(
                hidden_size, num_heads, mlp_ratio, hidden_act, layer_norm_eps, qkv_bias, window_size=ws,
                relative_positions=relative_positions, rel_size=(ws, ws) if ws else grid,
                residual_block=i in self.residual_block_indices, dropout=dropout, name=f"block_{i}", **common))

    def build(self, input_shape=None):
        ph, pw = self.patch_size
        self.pos_grid = (self.pretrain_image_size[0] // ph, self.pretrain_image_size[1] // pw)
        n = self.pos_grid[0] * self.pos_grid[1] + 1
        self.position_embedding = (self.add_weight(name="position_embedding", shape=(1, n, self.hidden_size),
                                                   initializer="zeros") if self.absolute_positions else None)
        self.patch_embedding.build((None, None, None, self.num_channels))
        for b in self.blocks:
            b.build((None, None, None, self.hidden_size))
        self.built = True

    def dummy_inputs(self):
        return {"pixel_values": np.zeros((1,) + self.image_size + (self.num_channels,), "float32")}

    def call(self, inputs, training=False):
        x = self.patch_embedding(pixel_values_of(inputs))
        if self.position_embedding is not None:
            size = int(round((self.position_embedding.shape[1] - 1) ** 0.5))
            if size * size != self.position_embedding.shape[1] - 1:
                raise ValueError("VitDet: absolute position embeddings must form a square grid")
            pos = ops.reshape(self.position_embedding[:, 1:], (1, size, size, self.hidden_size))
            x = x + ops.cast(resize_grid(pos, x.shape[1], x.shape[2]), x.dtype)
        for b in self.blocks:
            x = b(x, training=training)
        return x

    def feature_maps(self, inputs):
        return [self(inputs)]

    def pooled(self, hidden):
        return ops.mean(hidden, axis=(1, 2))

    def weight_rules(self):
        r = conv_rules("embeddings.projection", self.patch_embedding.projection)
        if self.position_embedding is not None:
            r.append(Rule("embeddings.position_embeddings", self.position_embedding))
        for i, b in enumerate(self.blocks):
            r += b.rules(f"encoder.layer.{i}.")
        return r

    def get_config(self):
        c = super().get_config()
        c.update(hidden_size=self.hidden_size, num_layers=self.num_layers, num_heads=self.num_heads,
                 mlp_ratio=self.mlp_ratio, hidden_act=self.hidden_act, layer_norm_eps=self.layer_norm_eps,
                 image_size=list(self.image_size), pretrain_image_size=list(self.pretrain_image_size),
                 patch_size=list(self.patch_size), num_channels=self.num_channels, qkv_bias=self.qkv_bias,
                 window_block_indices=self.window_block_indices, residual_block_indices=self.residual_block_indices,
                 absolute_positions=self.absolute_positions, relative_positions=self.relative_positions,
                 window_size=self.window_size, dropout=self.dropout_rate, initializer_range=self.initializer_range)
        return c


__all__ = ["VitDetBackbone", "VitDetBlock", "relative_table"]

"""SegFormer's Mix Transformer encoder (MiT), channels_last.

Each stage: an overlapping patch embedding (conv with ``patch_size // 2`` padding, then LayerNorm),
blocks of [LayerNorm -> attention whose keys/values come from a ``sr_ratio``-strided conv +
LayerNorm of the map (sequence reduction)] and [LayerNorm -> Mix-FFN: fc1 -> 3x3 depthwise conv ->
act -> fc2], then a LayerNorm. No position embeddings, so any resolution works.
Output: the last stage's map (batch, H/32, W/32, C) (``reshape_last_stage=False``: its tokens
(batch, h*w, C)); ``feature_maps`` = every stage's map (strides 4, 8, 16, 32 by default);
``pooled`` = mean over space (the classifier's pooling).
Every LayerNorm uses eps 1e-5, as Transformers does (config.json's ``layer_norm_eps`` is unused).
"""

from dataclasses import dataclass

import keras
import numpy as np
from keras import ops

from keras_models.layers.activations import get_activation
from keras_models.layers.attention import Attention
from keras_models.layers.vision_embeddings import conv_rules, dense_rules, norm_rules
from keras_models.models.backbone import Backbone
from keras_models.models.registry import register_backbone
from keras_models.models.vit.backbone import pixel_values_of
from keras_models.errors import ConfigError
from keras_models.spec import Spec, dim, hf

_ser = keras.saving.register_keras_serializable(package="keras_models")
NORM_EPS = 1e-5


@_ser
class MixTransformerBlock(keras.layers.Layer):
    """(batch, h, w, C) -> same: spatial-reduction attention + Mix-FFN, pre-norm residuals."""

    def __init__(self, dim, num_heads, sr_ratio=1, mlp_ratio=4.0, hidden_act="gelu", dropout=0.0,
                 attention_dropout=0.0, **kwargs):
        super().__init__(**kwargs)
        self.dim, self.num_heads, self.sr_ratio, self.mlp_ratio = dim, num_heads, sr_ratio, mlp_ratio
        self.hidden_act, self.dropout_rate, self.attention_dropout = hidden_act, dropout, attention_dropout
        common = dict(dtype=self.dtype_policy)
        ln = lambda name: keras.layers.LayerNormalization(epsilon=NORM_EPS, name=name, **common)  # noqa: E731
        self.norm1, self.norm2 = ln("norm1"), ln("norm2")
        self.attention = Attention(dim, num_heads, dropout=attention_dropout, name="attention", **common)
        if sr_ratio > 1:
            self.sr = keras.layers.Conv2D(dim, sr_ratio, strides=sr_ratio, name="sr", **common)
            self.sr_norm = ln("sr_norm")
        else:
            self.sr = self.sr_norm = None
        self.inner = int(dim * mlp_ratio)
        self.fc1 = keras.layers.Dense(self.inner, name="fc1", **common)
        self.dwconv = keras.layers.DepthwiseConv2D(3, padding="same", name="dwconv", **common)
        self.fc2 = keras.layers.Dense(dim, name="fc2", **common)
        self.act = get_activation(hidden_act)
        self.dropout = keras.layers.Dropout(dropout, **common)

    def build(self, input_shape):
        d = (None, None, None, self.dim)
        for layer in (self.norm1, self.norm2, self.sr, self.sr_norm, self.fc1):
            if layer is not None:
                layer.build(d)
        self.attention.build((None, None, self.dim))
        self.dwconv.build((None, None, None, self.inner))
        self.fc2.build((None, None, None, self.inner))
        self.built = True

    def call(self, x, training=False):
        b, h, w = ops.shape(x)[0], x.shape[1], x.shape[2]
        y = self.norm1(x)
        kv = y if self.sr is None else self.sr_norm(self.sr(y))
        tokens = ops.reshape(y, (b, h * w, self.dim))
        kv = ops.reshape(kv, (b, kv.shape[1] * kv.shape[2], self.dim))
        y = self.attention(tokens, context=kv, training=training)
        x = x + ops.reshape(self.dropout(y, training=training), (b, h, w, self.dim))
        y = self.fc2(self.dropout(self.act(self.dwconv(self.fc1(self.norm2(x)))), training=training))
        return x + self.dropout(y, training=training)

    def get_config(self):
        c = super().get_config()
        c.update(dim=self.dim, num_heads=self.num_heads, sr_ratio=self.sr_ratio, mlp_ratio=self.mlp_ratio,
                 hidden_act=self.hidden_act, dropout=self.dropout_rate, attention_dropout=self.attention_dropout)
        return c


@dataclass(frozen=True, kw_only=True)
class SegformerSpec(Spec):
    """``num_encoder_blocks`` is the length of the per-stage lists (checked, and written back)."""

    hidden_sizes: tuple = hf("hidden_sizes", (32, 64, 160, 256))
    depths: tuple = hf("depths", (2, 2, 2, 2))
    num_heads: tuple = hf("num_attention_heads", (1, 2, 5, 8))
    sr_ratios: tuple = hf("sr_ratios", (8, 4, 2, 1))
    patch_sizes: tuple = hf("patch_sizes", (7, 3, 3, 3))
    strides: tuple = hf("strides", (4, 2, 2, 2))
    mlp_ratios: tuple = hf("mlp_ratios", (4, 4, 4, 4))
    num_channels: int = dim("num_channels", 3)
    hidden_act: str = hf("hidden_act", "gelu")
    reshape_last_stage: bool = hf("reshape_last_stage", True)
    image_size: int = hf("image_size", 224)
    dropout: float = hf("hidden_dropout_prob", 0.0)
    attention_dropout: float = hf("attention_probs_dropout_prob", 0.0)
    initializer_range: float = hf("initializer_range", 0.02)

    @classmethod
    def adjust_from_hf(cls, config, values, source):
        n = config.get("num_encoder_blocks", 4)
        hidden_sizes = values.get("hidden_sizes", cls.__dataclass_fields__["hidden_sizes"].default)
        if len(hidden_sizes) != n:
            raise ConfigError(f"{source}: num_encoder_blocks={n} but {len(hidden_sizes)} hidden_sizes")
        return values

    def adjust_to_hf(self, out):
        out["num_encoder_blocks"] = len(self.hidden_sizes)
        return out


@_ser
@register_backbone("segformer")
class SegformerBackbone(Backbone):
    spec_cls = SegformerSpec
    base_model_prefix = "segformer"
    hf_architecture = "SegformerModel"
    hf_ignore = ("*num_batches_tracked",)
    verified_backends = ("jax", "torch", "tensorflow")

    def __init__(self, hidden_sizes, depths, num_heads, sr_ratios, patch_sizes, strides, mlp_ratios,
                 num_channels=3, hidden_act="gelu", reshape_last_stage=True, image_size=224, dropout=0.0,
                 attention_dropout=0.0, initializer_range=0.02, **kwargs):
        super().__init__(**kwargs)
        self.hidden_sizes, self.depths, self.num_heads = list(hidden_sizes), list(depths), list(num_heads)
        self.sr_ratios, self.patch_sizes, self.strides = list(sr_ratios), list(patch_sizes), list(strides)
        self.mlp_ratios, self.num_channels, self.hidden_act = list(mlp_ratios), num_channels, hidden_act
        self.reshape_last_stage, self.image_size = reshape_last_stage, image_size
        self.dropout_rate, self.attention_dropout = dropout, attention_dropout
        self.initializer_range = initializer_range
        common = dict(dtype=self.dtype_policy)
        self.embeds, self.embed_norms, self.stages, self.stage_norms = [], [], [], []
        for i, dim in enumerate(hidden_sizes):
            self.embeds.append(keras.layers.Conv2D(dim, patch_sizes[i], strides=strides[i], name=f"embed_{i}",
                                                   **common))
            self.embed_norms.append(keras.layers.LayerNormalization(epsilon=NORM_EPS, name=f"embed_norm_{i}",
                                                                    **common))
            self.stages.append([
                MixTransformerBlock(dim, num_heads[i], sr_ratios[i], mlp_ratios[i], hidden_act, dropout=dropout,
                                    attention_dropout=attention_dropout, name=f"stage_{i}_block_{j}", **common)
                for j in range(depths[i])])
            self.stage_norms.append(keras.layers.LayerNormalization(epsilon=NORM_EPS, name=f"stage_norm_{i}",
                                                                    **common))

    def build(self, input_shape=None):
        self.built = True  # sub-layers build on their first (symbolic) call

    def dummy_inputs(self):
        return {"pixel_values": np.zeros((1, 64, 64, self.num_channels), "float32")}

    def stage_outputs(self, inputs, training=False):
        x = pixel_values_of(inputs)
        outs = []
        for i in range(len(self.hidden_sizes)):
            p = self.patch_sizes[i] // 2
            x = self.embed_norms[i](self.embeds[i](ops.pad(x, ((0, 0), (p, p), (p, p), (0, 0)))))
            for block in self.stages[i]:
                x = block(x, training=training)
            x = self.stage_norms[i](x)
            outs.append(x)
        return outs

    def call(self, inputs, training=False):
        x = self.stage_outputs(inputs, training=training)[-1]
        if self.reshape_last_stage:
            return x
        return ops.reshape(x, (-1, x.shape[1] * x.shape[2], self.hidden_sizes[-1]))

    def feature_maps(self, inputs, training=False):
        return self.stage_outputs(inputs, training=training)

    def pooled(self, hidden):
        return ops.mean(hidden, axis=(1, 2) if len(hidden.shape) == 4 else 1)

    def weight_rules(self):
        r = []
        for i in range(len(self.hidden_sizes)):
            e = f"encoder.patch_embeddings.{i}."
            r += conv_rules(e + "proj", self.embeds[i]) + norm_rules(e + "layer_norm", self.embed_norms[i])
            for j, b in enumerate(self.stages[i]):
                p = f"encoder.block.{i}.{j}."
                a = b.attention
                for name, dense in (("attention.self.query", a.query), ("attention.self.key", a.key),
                                    ("attention.self.value", a.value), ("attention.output.dense", a.output_dense),
                                    ("mlp.dense1", b.fc1), ("mlp.dense2", b.fc2)):
                    r += dense_rules(p + name, dense)
                r += conv_rules(p + "mlp.dwconv.dwconv", b.dwconv)
                r += norm_rules(p + "layer_norm_1", b.norm1) + norm_rules(p + "layer_norm_2", b.norm2)
                if b.sr is not None:
                    r += conv_rules(p + "attention.self.sr", b.sr) + norm_rules(p + "attention.self.layer_norm",
                                                                                b.sr_norm)
            r += norm_rules(f"encoder.layer_norm.{i}", self.stage_norms[i])
        return r

    def get_config(self):
        c = super().get_config()
        c.update(hidden_sizes=self.hidden_sizes, depths=self.depths, num_heads=self.num_heads,
                 sr_ratios=self.sr_ratios, patch_sizes=self.patch_sizes, strides=self.strides,
                 mlp_ratios=self.mlp_ratios, num_channels=self.num_channels, hidden_act=self.hidden_act,
                 reshape_last_stage=self.reshape_last_stage, image_size=self.image_size, dropout=self.dropout_rate,
                 attention_dropout=self.attention_dropout, initializer_range=self.initializer_range)
        return c


__all__ = ["SegformerBackbone", "MixTransformerBlock"]

"""PVT (Pyramid Vision Transformer v1), channels_last.

Each stage: a strided patch-embedding convolution + LayerNorm + learned position embeddings
(the last stage also prepends a [CLS] token), then pre-norm transformer layers whose keys and
values come from the token map reduced by a ``sequence_reduction_ratio`` strided convolution
+ LayerNorm (spatial-reduction attention). A final LayerNorm follows the last stage.
Position embeddings are learned for the configured ``image_size``: the input must be that size
(as in Transformers, where the embeddings are only added, never resized in practice).
Output: (batch, 1 + tokens, hidden_sizes[-1]) tokens ([CLS] first); ``feature_maps`` = every
stage's (batch, h, w, C) map (the last one without the [CLS] token, before the final norm).
:class:`PvtImageClassifier`: linear head on the [CLS] token.
"""

from dataclasses import dataclass

import keras
import numpy as np
from keras import ops

from keras_models.errors import ConfigError, InputError
from keras_models.layers.activations import get_activation
from keras_models.layers.vision_embeddings import dense_rules, norm_rules
from keras_models.models.backbone import SpecBackbone
from keras_models.models.registry import register_backbone, register_task
from keras_models.models.vision_hier import TorchConv, attend, layer_norm, merge_heads, split_heads
from keras_models.models.vit.backbone import pixel_values_of
from keras_models.presets.weight_map import Rule
from keras_models.spec import Spec, dim, hf
from keras_models.tasks.image_classifier import ImageClassifier

_ser = keras.saving.register_keras_serializable(package="keras_models")


@_ser
class SpatialReductionLayer(keras.layers.Layer):
    """Pre-norm block: x + attn(LN(x)) with keys / values from a ``sr``-strided conv + LN of the
    map (``sr`` 1: none); x + MLP(LN(x)). ``num_prefix`` leading tokens (a [CLS]) are not part of
    the map (they are dropped from the reduced keys, as PVT v1 requires ``sr`` 1 there)."""

    def __init__(self, dim, num_heads, sr, mlp_ratio, hidden_act="gelu", layer_norm_eps=1e-6, qkv_bias=True,
                 **kwargs):
        super().__init__(**kwargs)
        self.dim, self.num_heads, self.sr, self.mlp_ratio = dim, num_heads, sr, mlp_ratio
        self.hidden_act, self.layer_norm_eps, self.qkv_bias = hidden_act, layer_norm_eps, qkv_bias
        common = dict(dtype=self.dtype_policy)
        self.norm1 = layer_norm("norm1", epsilon=layer_norm_eps, **common)
        self.norm2 = layer_norm("norm2", epsilon=layer_norm_eps, **common)
        self.query = keras.layers.Dense(dim, use_bias=qkv_bias, name="query", **common)
        self.key = keras.layers.Dense(dim, use_bias=qkv_bias, name="key", **common)
        self.value = keras.layers.Dense(dim, use_bias=qkv_bias, name="value", **common)
        self.out = keras.layers.Dense(dim, name="out", **common)
        if sr > 1:
            self.reduce = TorchConv(dim, sr, strides=sr, name="reduce", **common)
            self.reduce_norm = layer_norm("reduce_norm", epsilon=layer_norm_eps, **common)
        self.fc1 = keras.layers.Dense(int(dim * mlp_ratio), name="fc1", **common)
        self.fc2 = keras.layers.Dense(dim, name="fc2", **common)
        self.act = get_activation(hidden_act)

    def call(self, x, height, width):
        h = self.norm1(x)
        kv = h
        if self.sr > 1:
            grid = self.reduce(ops.reshape(h, (-1, height, width, self.dim)))
            kv = self.reduce_norm(ops.reshape(grid, (-1, grid.shape[1] * grid.shape[2], self.dim)))
        q, k, v = (split_heads(f(t), self.num_heads) for f, t in ((self.query, h), (self.key, kv), (self.value, kv)))
        x = x + self.out(merge_heads(attend(q, k, v, (self.dim // self.num_heads) ** -0.5)))
        return x + self.fc2(self.act(self.fc1(self.norm2(x))))

    def rules(self, p):
        r = norm_rules(p + "layer_norm_1", self.norm1) + norm_rules(p + "layer_norm_2", self.norm2)
        for n in ("query", "key", "value"):
            r += dense_rules(f"{p}attention.self.{n}", getattr(self, n))
        r += dense_rules(p + "attention.output.dense", self.out)
        if self.sr > 1:
            r += self.reduce.rules(p + "attention.self.sequence_reduction")
            r += norm_rules(p + "attention.self.layer_norm", self.reduce_norm)
        return r + dense_rules(p + "mlp.dense1", self.fc1) + dense_rules(p + "mlp.dense2", self.fc2)

    def get_config(self):
        c = super().get_config()
        c.update(dim=self.dim, num_heads=self.num_heads, sr=self.sr, mlp_ratio=self.mlp_ratio,
                 hidden_act=self.hidden_act, layer_norm_eps=self.layer_norm_eps, qkv_bias=self.qkv_bias)
        return c


@dataclass(frozen=True, kw_only=True)
class PvtSpec(Spec):
    image_size: int = dim("image_size", 224)
    num_channels: int = dim("num_channels", 3)
    num_encoder_blocks: int = dim("num_encoder_blocks", 4)
    depths: tuple = hf("depths", (2, 2, 2, 2))
    sequence_reduction_ratios: tuple = hf("sequence_reduction_ratios", (8, 4, 2, 1))
    hidden_sizes: tuple = hf("hidden_sizes", (64, 128, 320, 512))
    patch_sizes: tuple = hf("patch_sizes", (4, 2, 2, 2))
    strides: tuple = hf("strides", (4, 2, 2, 2))
    num_attention_heads: tuple = hf("num_attention_heads", (1, 2, 5, 8))
    mlp_ratios: tuple = hf("mlp_ratios", (8, 8, 4, 4))
    hidden_act: str = hf("hidden_act", "gelu")
    layer_norm_eps: float = hf("layer_norm_eps", 1e-6)
    qkv_bias: bool = hf("qkv_bias", True)
    initializer_range: float = hf("initializer_range", 0.02)

    def validate(self, source="config.json"):
        n = self.num_encoder_blocks
        for key in ("depths", "sequence_reduction_ratios", "hidden_sizes", "patch_sizes", "strides",
                    "num_attention_heads", "mlp_ratios"):
            if len(getattr(self, key)) < n:
                raise ConfigError(f"{source}: {key} has {len(getattr(self, key))} entries, "
                                  f"num_encoder_blocks is {n}")
        if self.sequence_reduction_ratios[n - 1] != 1:
            raise ConfigError(f"{source}: sequence_reduction_ratios[-1] must be 1 (the last stage has a [CLS] "
                              f"token), got {self.sequence_reduction_ratios[n - 1]}")

    def stage_patches(self, i):
        """Position embeddings of stage ``i``: the token count Transformers sizes them for."""
        size = self.image_size if i == 0 else self.image_size // (2 ** (i + 1))
        return (size // self.patch_sizes[i]) ** 2

    def dummy_inputs(self):
        return {"pixel_values": np.zeros((1, self.image_size, self.image_size, self.num_channels), "float32")}


@_ser
@register_backbone("pvt")
class PvtBackbone(SpecBackbone):
    spec_cls = PvtSpec
    base_model_prefix = "pvt"
    hf_architecture = "PvtModel"
    verified_backends = ("jax", "torch", "tensorflow")  # tests/vision/test_vision_hier.py

    def __init__(self, spec=None, **kwargs):
        super().__init__(spec, **kwargs)
        s, common = self.spec, dict(dtype=self.dtype_policy)
        self.initializer_range = s.initializer_range
        n = s.num_encoder_blocks
        self.embeds = [TorchConv(s.hidden_sizes[i], s.strides[i], strides=s.patch_sizes[i], name=f"embed_{i}", **common)
                       for i in range(n)]
        self.embed_norms = [layer_norm(f"embed_norm_{i}", epsilon=s.layer_norm_eps, **common) for i in range(n)]
        self.stages = [[SpatialReductionLayer(s.hidden_sizes[i], s.num_attention_heads[i],
                                              s.sequence_reduction_ratios[i], s.mlp_ratios[i], s.hidden_act,
                                              s.layer_norm_eps, s.qkv_bias, name=f"stage_{i}_layer_{j}", **common)
                        for j in range(s.depths[i])] for i in range(n)]
        self.final_norm = layer_norm("final_norm", epsilon=s.layer_norm_eps, **common)

    def build(self, input_shape=None):
        s, init = self.spec, keras.initializers.TruncatedNormal(stddev=self.spec.initializer_range)
        n = s.num_encoder_blocks
        self.positions = [self.add_weight(name=f"position_{i}", initializer=init,
                                          shape=(1, s.stage_patches(i) + (i == n - 1), s.hidden_sizes[i]))
                          for i in range(n)]
        self.cls_token = self.add_weight(name="cls_token", shape=(1, 1, s.hidden_sizes[n - 1]), initializer=init)
        self.built = True

    def encode(self, inputs):
        x = pixel_values_of(inputs)
        s, n, maps = self.spec, self.spec.num_encoder_blocks, []
        for i, (embed, norm, layers) in enumerate(zip(self.embeds, self.embed_norms, self.stages)):
            x = embed(x)
            h, w, c = x.shape[1], x.shape[2], x.shape[3]
            t = norm(ops.reshape(x, (-1, h * w, c)))
            last = i == n - 1
            if last:
                tok = ops.cast(self.cls_token, t.dtype)
                t = ops.concatenate([ops.broadcast_to(tok, (ops.shape(t)[0], 1, c)), t], axis=1)
            if t.shape[1] != self.positions[i].shape[1]:
                raise InputError(f"pixel_values: PVT's position embeddings are learned for image_size "
                                 f"{s.image_size} (stage {i}: {self.positions[i].shape[1]} tokens), "
                                 f"got an image giving {t.shape[1]}")
            t = t + ops.cast(self.positions[i], t.dtype)
            for layer in layers:
                t = layer(t, height=h, width=w)
            x = ops.reshape(t[:, 1:] if last else t, (-1, h, w, c))
            maps.append(x)
        return maps, self.final_norm(t)

    def call(self, inputs, training=False):
        return self.encode(inputs)[1]

    def feature_maps(self, inputs, training=False):
        return self.encode(inputs)[0]

    def weight_rules(self):
        r = []
        n = self.spec.num_encoder_blocks
        for i, (embed, norm, layers) in enumerate(zip(self.embeds, self.embed_norms, self.stages)):
            p = f"encoder.patch_embeddings.{i}."
            r += embed.rules(p + "projection") + norm_rules(p + "layer_norm", norm)
            r.append(Rule(p + "position_embeddings", self.positions[i]))
            if i == n - 1:
                r.append(Rule(p + "cls_token", self.cls_token))
            for j, layer in enumerate(layers):
                r += layer.rules(f"encoder.block.{i}.{j}.")
        return r + norm_rules("encoder.layer_norm", self.final_norm)


@_ser
@register_task(PvtBackbone, "ImageClassifier", ("PvtForImageClassification",))
class PvtImageClassifier(ImageClassifier):
    pooling = "cls"


__all__ = ["PvtBackbone", "PvtImageClassifier", "SpatialReductionLayer"]

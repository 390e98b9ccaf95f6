"""EfficientFormer (v1; removed from Transformers 5), channels_last.

A two-conv stride-4 stem (conv + BatchNorm + ReLU twice), then MetaFormer stages of "4D"
blocks on the (batch, h, w, C) map: x + s1 * (avgpool3x3(x) - x) (padding not counted) and
x + s2 * BN(1x1(act(BN(1x1(x))))), with strided conv + BatchNorm embeddings between stages. The
last stage ends with ``num_meta3d_blocks`` "3D" blocks on the flattened tokens: pre-LayerNorm
attention with a learned per-head bias by (|dy|, |dx|) offset (LeViT's, for a fixed
``resolution`` x ``resolution`` grid) and a pre-LayerNorm MLP, both with optional layer scales.
A final LayerNorm follows. Output: (batch, tokens, hidden_sizes[-1]); ``pooled`` = mean over
tokens; ``feature_maps`` = each stage's map (the last before flattening).
:class:`EfficientFormerImageClassifier`: linear head on the mean token; the distilled variant
(``EfficientFormerForImageClassificationWithTeacher``) averages a distillation head.
"""

from dataclasses import dataclass

import keras
import numpy as np
from keras import ops

from keras_models.errors import ConfigError, InputError
from keras_models.layers.activations import get_activation
from keras_models.layers.vision_embeddings import dense_rules, norm_rules
from keras_models.models.backbone import SpecBackbone
from keras_models.models.levit import _bias_index
from keras_models.models.poolformer import avg_pool_exclude_pad
from keras_models.models.registry import register_backbone, register_task
from keras_models.models.vision_hier import (TorchConv, attend, batch_norm, conv1x1_rules, layer_norm, merge_heads,
                                             run_stem_and_stages, two_conv_stem)
from keras_models.models.vit.backbone import pixel_values_of
from keras_models.presets.weight_map import Rule
from keras_models.spec import Spec, dim, hf
from keras_models.tasks.image_classifier import ImageClassifier

_ser = keras.saving.register_keras_serializable(package="keras_models")


def _scales(layer, dim, value):
    if value is None:
        return None, None
    init = keras.initializers.Constant(value)
    return (layer.add_weight(name="scale1", shape=(dim,), initializer=init),
            layer.add_weight(name="scale2", shape=(dim,), initializer=init))


def _scaled(y, scale):
    return y if scale is None else y * ops.cast(scale, y.dtype)


@_ser
class Meta4D(keras.layers.Layer):
    def __init__(self, dim, hidden, pool_size=3, hidden_act="gelu", layer_scale=1e-5, eps=1e-5, **kwargs):
        super().__init__(**kwargs)
        self.dim, self.hidden, self.pool_size, self.hidden_act = dim, hidden, pool_size, hidden_act
        self.layer_scale, self.eps = layer_scale, eps
        common = dict(dtype=self.dtype_policy)
        self.fc1 = keras.layers.Dense(hidden, name="fc1", **common)
        self.norm1 = batch_norm("norm1", epsilon=eps, **common)
        self.fc2 = keras.layers.Dense(dim, name="fc2", **common)
        self.norm2 = batch_norm("norm2", epsilon=eps, **common)
        self.act = get_activation(hidden_act)

    def build(self, input_shape):
        self.scale1, self.scale2 = _scales(self, self.dim, self.layer_scale)
        self.built = True

    def call(self, x, training=False):
        x = x + _scaled(avg_pool_exclude_pad(x, self.pool_size) - x, self.scale1)
        y = self.norm2(self.fc2(self.act(self.norm1(self.fc1(x), training=training))), training=training)
        return x + _scaled(y, self.scale2)

    def rules(self, p):
        r = conv1x1_rules(p + "mlp.convolution1", self.fc1) + norm_rules(p + "mlp.batchnorm_before", self.norm1)
        r += conv1x1_rules(p + "mlp.convolution2", self.fc2) + norm_rules(p + "mlp.batchnorm_after", self.norm2)
        if self.scale1 is not None:
            r += [Rule(p + "layer_scale_1", self.scale1), Rule(p + "layer_scale_2", self.scale2)]
        return r

    def get_config(self):
        c = super().get_config()
        c.update(dim=self.dim, hidden=self.hidden, pool_size=self.pool_size, hidden_act=self.hidden_act,
                 layer_scale=self.layer_scale, eps=self.eps)
        return c


@_ser
class Meta3D(keras.layers.Layer):
    def __init__(self, dim, key_dim, num_heads, attention_ratio, resolution, hidden, hidden_act="gelu",
                 layer_scale=1e-5, layer_norm_eps=1e-12, **kwargs):
        super().__init__(**kwargs)
        self.dim, self.key_dim, self.num_heads, self.attention_ratio = dim, key_dim, num_heads, attention_ratio
        self.resolution, self.hidden, self.hidden_act = resolution, hidden, hidden_act
        self.layer_scale, self.layer_norm_eps = layer_scale, layer_norm_eps
        common = dict(dtype=self.dtype_policy)
        self.v_dim = int(attention_ratio * key_dim)
        self.qkv = keras.layers.Dense(num_heads * (2 * key_dim + self.v_dim), name="qkv", **common)
        self.proj = keras.layers.Dense(dim, name="proj", **common)
        self.norm1 = layer_norm("norm1", epsilon=layer_norm_eps, **common)
        self.norm2 = layer_norm("norm2", epsilon=layer_norm_eps, **common)
        self.fc1 = keras.layers.Dense(hidden, name="fc1", **common)
        self.fc2 = keras.layers.Dense(dim, name="fc2", **common)
        self.act = get_activation(hidden_act)
        self.index, self.num_offsets = _bias_index(resolution, resolution, 1)

    def build(self, input_shape):
        self.biases = self.add_weight(name="biases", shape=(self.num_heads, self.num_offsets), initializer="zeros")
        self.scale1, self.scale2 = _scales(self, self.dim, self.layer_scale)
        self.built = True

    def call(self, x):
        h, k, n = self.num_heads, self.key_dim, x.shape[1]
        t = ops.reshape(self.qkv(self.norm1(x)), (-1, n, h, 2 * k + self.v_dim))
        q, key, val = (ops.transpose(a, (0, 2, 1, 3)) for a in (t[..., :k], t[..., k:2 * k], t[..., 2 * k:]))
        bias = ops.take(ops.cast(self.biases, q.dtype), ops.convert_to_tensor(self.index), axis=1)
        x = x + _scaled(self.proj(merge_heads(attend(q, key, val, k ** -0.5, bias[None]))), self.scale1)
        return x + _scaled(self.fc2(self.act(self.fc1(self.norm2(x)))), self.scale2)

    def rules(self, p):
        r = [Rule(p + "token_mixer.attention_biases", self.biases)]
        r += dense_rules(p + "token_mixer.qkv", self.qkv) + dense_rules(p + "token_mixer.projection", self.proj)
        r += norm_rules(p + "layernorm1", self.norm1) + norm_rules(p + "layernorm2", self.norm2)
        r += dense_rules(p + "mlp.linear_in", self.fc1) + dense_rules(p + "mlp.linear_out", self.fc2)
        if self.scale1 is not None:
            r += [Rule(p + "layer_scale_1", self.scale1), Rule(p + "layer_scale_2", self.scale2)]
        return r

    def get_config(self):
        c = super().get_config()
        c.update(dim=self.dim, key_dim=self.key_dim, num_heads=self.num_heads, attention_ratio=self.attention_ratio,
                 resolution=self.resolution, hidden=self.hidden, hidden_act=self.hidden_act,
                 layer_scale=self.layer_scale, layer_norm_eps=self.layer_norm_eps)
        return c


@dataclass(frozen=True, kw_only=True)
class EfficientFormerSpec(Spec):
    ignored = ("num_hidden_layers", "patch_size", "image_size", "distillation", "drop_path_rate",
               "hidden_dropout_prob")

    depths: tuple = hf("depths", (3, 2, 6, 4))
    hidden_sizes: tuple = hf("hidden_sizes", (48, 96, 224, 448))
    downsamples: tuple = hf("downsamples", (True, True, True, True))
    attn_dim: int = dim("dim", 448)
    key_dim: int = dim("key_dim", 32)
    attention_ratio: float = hf("attention_ratio", 4)
    resolution: int = dim("resolution", 7)
    num_attention_heads: int = dim("num_attention_heads", 8)
    mlp_expansion_ratio: float = hf("mlp_expansion_ratio", 4)
    num_channels: int = dim("num_channels", 3)
    pool_size: int = dim("pool_size", 3)
    downsample_patch_size: int = dim("downsample_patch_size", 3)
    downsample_stride: int = dim("downsample_stride", 2)
    downsample_pad: int = hf("downsample_pad", 1)
    num_meta3d_blocks: int = hf("num_meta3d_blocks", 1)
    use_layer_scale: bool = hf("use_layer_scale", True)
    layer_scale_init_value: float = hf("layer_scale_init_value", 1e-5)
    hidden_act: str = hf("hidden_act", "gelu")
    layer_norm_eps: float = hf("layer_norm_eps", 1e-12)
    batch_norm_eps: float = hf("batch_norm_eps", 1e-5)
    initializer_range: float = hf("initializer_range", 0.02)

    def validate(self, source="config.json"):
        if self.attn_dim != self.hidden_sizes[-1]:
            raise ConfigError(f"{source}: dim ({self.attn_dim}) must equal hidden_sizes[-1] ({self.hidden_sizes[-1]})")
        if not 0 <= self.num_meta3d_blocks <= self.depths[-1]:
            raise ConfigError(f"{source}: num_meta3d_blocks={self.num_meta3d_blocks} exceeds depths[-1]")

    def dummy_inputs(self):
        size = self.resolution * 4 * self.downsample_stride ** sum(
            1 for i in range(len(self.depths) - 1) if self.downsamples[i] or self.hidden_sizes[i] != self.hidden_sizes[i + 1])
        return {"pixel_values": np.zeros((1, size, size, self.num_channels), "float32")}


@_ser
@register_backbone("efficientformer")
class EfficientFormerBackbone(SpecBackbone):
    spec_cls = EfficientFormerSpec
    base_model_prefix = "efficientformer"
    hf_architecture = "EfficientFormerModel"
    hf_ignore = ("*num_batches_tracked", "*attention_bias_idxs")
    verified_backends = ("jax", "torch", "tensorflow")  # tests/vision/test_vision_removed.py

    def __init__(self, spec=None, **kwargs):
        super().__init__(spec, **kwargs)
        s, common = self.spec, dict(dtype=self.dtype_policy)
        self.initializer_range = s.initializer_range
        eps, d, n = s.batch_norm_eps, s.hidden_sizes, len(s.depths)
        self.stem = two_conv_stem(d[0], eps, **common)
        scale = s.layer_scale_init_value if s.use_layer_scale else None

        def meta4d(i, j):
            return Meta4D(d[i], int(d[i] * s.mlp_expansion_ratio), s.pool_size, s.hidden_act, scale, eps,
                          name=f"stage_{i}_block_{j}", **common)

        self.stages, self.downs, self.stage_index = [], {}, []
        k = 0
        for i in range(n - 1):
            self.stages.append([meta4d(i, j) for j in range(s.depths[i])])
            self.stage_index.append(k)
            k += 1
            if s.downsamples[i] or d[i] != d[i + 1]:
                self.downs[i] = (k, TorchConv(d[i + 1], s.downsample_patch_size, strides=s.downsample_stride,
                                              padding=s.downsample_pad, name=f"down_{i}", **common),
                                 batch_norm(f"down_norm_{i}", epsilon=eps, **common))
                k += 1
        self.stages.append([meta4d(n - 1, j) for j in range(s.depths[-1] - s.num_meta3d_blocks)])
        self.meta3d = [Meta3D(s.attn_dim, s.key_dim, s.num_attention_heads, s.attention_ratio, s.resolution,
                              int(d[-1] * s.mlp_expansion_ratio), s.hidden_act, scale, s.layer_norm_eps,
                              name=f"meta3d_{j}", **common) for j in range(s.num_meta3d_blocks)]
        self.final_norm = layer_norm("final_norm", epsilon=s.layer_norm_eps, **common)

    def build(self, input_shape=None):
        self.built = True  # sub-layers build on their first (symbolic) call

    def encode(self, inputs, training=False):
        x, maps = run_stem_and_stages(self.stem, self.stages, self.downs, pixel_values_of(inputs), training)
        h, w, c = x.shape[1], x.shape[2], x.shape[3]
        r = self.spec.resolution
        if self.meta3d and (h, w) != (r, r):
            raise InputError(f"pixel_values: EfficientFormer's attention biases are learned for a {r}x{r} grid "
                             f"(resolution), this image gives {h}x{w}")
        t = ops.reshape(x, (-1, h * w, c))
        for b in self.meta3d:
            t = b(t)
        return maps, self.final_norm(t)

    def call(self, inputs, training=False):
        return self.encode(inputs, training=training)[1]

    def feature_maps(self, inputs, training=False):
        return self.encode(inputs, training=training)[0]

    def pooled(self, hidden):
        return ops.mean(hidden, axis=1)

    def weight_rules(self):
        c1, n1, c2, n2 = self.stem
        r = c1.rules("patch_embed.convolution1") + norm_rules("patch_embed.batchnorm_before", n1)
        r += c2.rules("patch_embed.convolution2") + norm_rules("patch_embed.batchnorm_after", n2)
        last = len(self.stages) - 1
        for i, blocks in enumerate(self.stages):
            p = ("encoder.last_stage." if i == last else f"encoder.intermediate_stages.{self.stage_index[i]}.")
            for j, b in enumerate(blocks):
                r += b.rules(f"{p}meta4D_layers.blocks.{j}.")
            if i in self.downs:
                k, conv, norm = self.downs[i]
                r += conv.rules(f"encoder.intermediate_stages.{k}.projection")
                r += norm_rules(f"encoder.intermediate_stages.{k}.norm", norm)
        for j, b in enumerate(self.meta3d):
            r += b.rules(f"encoder.last_stage.meta3D_layers.blocks.{j}.")
        return r + norm_rules("layernorm", self.final_norm)


@_ser
@register_task(EfficientFormerBackbone, "ImageClassifier", ("EfficientFormerForImageClassification",
                                                             "EfficientFormerForImageClassificationWithTeacher"))
class EfficientFormerImageClassifier(ImageClassifier):
    pooling = "backbone"
    distilled_architectures = ("EfficientFormerForImageClassificationWithTeacher",)
    hf_head_patterns = ("classifier.*", "distillation_classifier.*")

    def call(self, inputs, training=False):
        if training and self.augmentation is not None:
            pixels = inputs["pixel_values"] if isinstance(inputs, dict) else inputs
            inputs = {"pixel_values": self.augmentation(pixels, training=True)}
        pooled = self.drop(ops.mean(self.backbone(inputs, training=training), axis=1), training=training)
        logits = self.out(pooled)
        return (logits + self.dist_out(pooled)) / 2 if self.distilled else logits

    def head_rules(self):
        r = dense_rules("classifier", self.out, base=False)
        return r + (dense_rules("distillation_classifier", self.dist_out, base=False) if self.distilled else [])


__all__ = ["EfficientFormerBackbone", "EfficientFormerImageClassifier", "Meta4D", "Meta3D"]

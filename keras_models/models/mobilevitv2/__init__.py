"""MobileViTV2 (separable self-attention), channels_last.

MobileViT's convolutional pieces (:mod:`keras_models.models.mobilevit.backbone`: stem,
inverted residuals) with V2 stages: downsampling inverted residual -> depthwise kxk conv ->
1x1 conv to the attention width -> unfold into ``patch_size`` x ``patch_size`` patches ->
linear-attention layers -> GroupNorm(1) -> fold -> 1x1 conv + BatchNorm back (no fusion conv).
Linear attention: a 1x1 conv gives one score per patch and a key and a value; the scores are
softmaxed over the patches of each pixel slot, the score-weighted sum of keys scales
``relu(value)``. Every norm inside is a one-group GroupNorm over (slots, patches, channels).
Widths follow ``width_multiplier``. Output: the last stage's map (batch, h, w, C);
``pooled`` = mean over space; ``feature_maps`` = the five stages' maps.
"""

from dataclasses import dataclass

import keras
import numpy as np
from keras import ops

from keras_models.errors import ConfigError
from keras_models.layers.activations import get_activation
from keras_models.layers.vision_embeddings import norm_rules
from keras_models.models.backbone import SpecBackbone
from keras_models.models.mobilevit.backbone import InvertedResidual, MobileConv, mobilevit_stage_outputs
from keras_models.models.registry import register_backbone, register_task
from keras_models.models.vision_hier import conv1x1_rules
from keras_models.spec import Spec, dim, hf
from keras_models.tasks.image_classifier import ImageClassifier

_ser = keras.saving.register_keras_serializable(package="keras_models")


def _divisible(value, divisor=8, min_value=None):
    min_value = divisor if min_value is None else min_value
    new = max(min_value, int(value + divisor / 2) // divisor * divisor)
    return int(new + divisor if new < 0.9 * value else new)


@_ser
class LinearAttentionLayer(keras.layers.Layer):
    """x + attn(GN(x)); x + FFN(GN(x)) over (batch, slots, patches, C)."""

    def __init__(self, dim, ffn_dim, hidden_act="swish", layer_norm_eps=1e-5, **kwargs):
        super().__init__(**kwargs)
        self.dim, self.ffn_dim, self.hidden_act, self.layer_norm_eps = dim, ffn_dim, hidden_act, layer_norm_eps
        common = dict(dtype=self.dtype_policy)
        self.norm1 = keras.layers.GroupNormalization(1, epsilon=layer_norm_eps, name="norm1", **common)
        self.norm2 = keras.layers.GroupNormalization(1, epsilon=layer_norm_eps, name="norm2", **common)
        self.qkv = keras.layers.Dense(1 + 2 * dim, name="qkv", **common)
        self.out = keras.layers.Dense(dim, name="out", **common)
        self.fc1 = keras.layers.Dense(ffn_dim, name="fc1", **common)
        self.fc2 = keras.layers.Dense(dim, name="fc2", **common)
        self.act = get_activation(hidden_act)

    def call(self, x):
        d = self.dim
        y = self.qkv(self.norm1(x))
        scores = ops.softmax(y[..., :1], axis=2)  # over the patches
        context = ops.sum(y[..., 1:1 + d] * scores, axis=2, keepdims=True)
        x = x + self.out(ops.relu(y[..., 1 + d:]) * context)
        return x + self.fc2(self.act(self.fc1(self.norm2(x))))

    def rules(self, p):
        r = norm_rules(p + "layernorm_before", self.norm1) + norm_rules(p + "layernorm_after", self.norm2)
        r += conv1x1_rules(p + "attention.qkv_proj.convolution", self.qkv)
        r += conv1x1_rules(p + "attention.out_proj.convolution", self.out)
        return r + conv1x1_rules(p + "ffn.conv1.convolution", self.fc1) + conv1x1_rules(p + "ffn.conv2.convolution",
                                                                                        self.fc2)

    def get_config(self):
        c = super().get_config()
        c.update(dim=self.dim, ffn_dim=self.ffn_dim, hidden_act=self.hidden_act, layer_norm_eps=self.layer_norm_eps)
        return c


@_ser
class MobileViTV2Stage(keras.layers.Layer):
    def __init__(self, in_channels, out_channels, attn_dim, num_blocks, ffn_multiplier=2, patch_size=2,
                 conv_kernel_size=3, dilation=1, expand_ratio=2.0, hidden_act="swish", layer_norm_eps=1e-5, **kwargs):
        super().__init__(**kwargs)
        self.in_channels, self.out_channels, self.attn_dim, self.num_blocks = in_channels, out_channels, attn_dim, num_blocks
        self.ffn_multiplier, self.patch_size, self.conv_kernel_size = ffn_multiplier, patch_size, conv_kernel_size
        self.dilation, self.expand_ratio, self.hidden_act, self.layer_norm_eps = dilation, expand_ratio, hidden_act, layer_norm_eps
        common = dict(dtype=self.dtype_policy)
        self.down = InvertedResidual(in_channels, out_channels, strides=2 if dilation == 1 else 1,
                                     dilation=dilation // 2 if dilation > 1 else 1, expand_ratio=expand_ratio,
                                     activation=hidden_act, name="down", **common)
        c = out_channels
        self.conv_kxk = MobileConv(c, conv_kernel_size, depthwise=True, activation=hidden_act, name="conv_kxk", **common)
        self.conv_1x1 = MobileConv(attn_dim, 1, norm=False, name="conv_1x1", **common)
        ffn = int(ffn_multiplier * attn_dim // 16 * 16)
        self.blocks = [LinearAttentionLayer(attn_dim, ffn, hidden_act, layer_norm_eps, name=f"block_{i}", **common)
                       for i in range(num_blocks)]
        self.norm = keras.layers.GroupNormalization(1, epsilon=layer_norm_eps, name="norm", **common)
        self.projection = MobileConv(c, 1, name="projection", **common)

    def call(self, x, training=False):
        x = self.down(x, training=training)
        y = self.conv_1x1(self.conv_kxk(x, training=training))
        h, w, p, d = y.shape[1], y.shape[2], self.patch_size, self.attn_dim
        nh, nw = h // p, w // p  # torch's unfold drops a remainder; fold leaves zeros there
        t = y[:, :nh * p, :nw * p]
        t = ops.transpose(ops.reshape(t, (-1, nh, p, nw, p, d)), (0, 2, 4, 1, 3, 5))
        t = ops.reshape(t, (-1, p * p, nh * nw, d))
        for block in self.blocks:
            t = block(t)
        t = ops.reshape(self.norm(t), (-1, p, p, nh, nw, d))
        y = ops.reshape(ops.transpose(t, (0, 3, 1, 4, 2, 5)), (-1, nh * p, nw * p, d))
        if (nh * p, nw * p) != (h, w):
            y = ops.pad(y, ((0, 0), (0, h - nh * p), (0, w - nw * p), (0, 0)))
        return self.projection(y, training=training)

    def rules(self, p):
        r = self.down.rules(p + "downsampling_layer.")
        r += self.conv_kxk.rules(p + "conv_kxk") + self.conv_1x1.rules(p + "conv_1x1")
        for i, b in enumerate(self.blocks):
            r += b.rules(f"{p}transformer.layer.{i}.")
        return r + norm_rules(p + "layernorm", self.norm) + self.projection.rules(p + "conv_projection")

    def get_config(self):
        c = super().get_config()
        c.update(in_channels=self.in_channels, out_channels=self.out_channels, attn_dim=self.attn_dim,
                 num_blocks=self.num_blocks, ffn_multiplier=self.ffn_multiplier, patch_size=self.patch_size,
                 conv_kernel_size=self.conv_kernel_size, dilation=self.dilation, expand_ratio=self.expand_ratio,
                 hidden_act=self.hidden_act, layer_norm_eps=self.layer_norm_eps)
        return c


@dataclass(frozen=True, kw_only=True)
class MobileViTV2Spec(Spec):
    unsupported = {"output_stride": (8, 16, 32)}
    ignored = ("image_size", "aspp_out_channels", "atrous_rates", "aspp_dropout_prob", "semantic_loss_ignore_index")

    num_channels: int = dim("num_channels", 3)
    patch_size: int = dim("patch_size", 2)
    expand_ratio: float = hf("expand_ratio", 2.0)
    hidden_act: str = hf("hidden_act", "swish")
    conv_kernel_size: int = dim("conv_kernel_size", 3)
    output_stride: int = hf("output_stride", 32)
    layer_norm_eps: float = hf("layer_norm_eps", 1e-5)
    n_attn_blocks: tuple = hf("n_attn_blocks", (2, 4, 3))
    base_attn_unit_dims: tuple = hf("base_attn_unit_dims", (128, 192, 256))
    width_multiplier: float = hf("width_multiplier", 1.0)
    ffn_multiplier: int = hf("ffn_multiplier", 2)
    initializer_range: float = hf("initializer_range", 0.02)

    def validate(self, source="config.json"):
        for key in ("n_attn_blocks", "base_attn_unit_dims"):
            if len(getattr(self, key)) != 3:
                raise ConfigError(f"{source}: {key} must have 3 entries (one per attention stage)")

    def widths(self):
        m = self.width_multiplier
        return [_divisible(max(16, min(64, 32 * m)), 8, 16), _divisible(64 * m, 16)] + [
            _divisible(k * m, 8) for k in (128, 256, 384, 512)]

    def dummy_inputs(self):
        return {"pixel_values": np.zeros((1, 64, 64, self.num_channels), "float32")}


@_ser
@register_backbone("mobilevitv2")
class MobileViTV2Backbone(SpecBackbone):
    spec_cls = MobileViTV2Spec
    base_model_prefix = "mobilevitv2"
    hf_architecture = "MobileViTV2Model"
    hf_ignore = ("*num_batches_tracked",)
    verified_backends = ("jax", "torch", "tensorflow")  # tests/vision/test_vision_hier.py

    def __init__(self, spec=None, **kwargs):
        super().__init__(spec, **kwargs)
        s, common = self.spec, dict(dtype=self.dtype_policy)
        self.initializer_range = s.initializer_range
        n = s.widths()
        ir = dict(expand_ratio=s.expand_ratio, activation=s.hidden_act, **common)
        self.stem = MobileConv(n[0], 3, strides=2, activation=s.hidden_act, name="stem", **common)
        self.layer1 = [InvertedResidual(n[0], n[1], name="layer1_0", **ir)]
        self.layer2 = [InvertedResidual(n[1] if i == 0 else n[2], n[2], strides=2 if i == 0 else 1,
                                        name=f"layer2_{i}", **ir) for i in range(2)]
        dilations = {32: (1, 1, 1), 16: (1, 1, 2), 8: (1, 2, 4)}[s.output_stride]
        self.vit_stages = [
            MobileViTV2Stage(n[2 + i], n[3 + i], _divisible(s.base_attn_unit_dims[i] * s.width_multiplier, 8),
                             s.n_attn_blocks[i], s.ffn_multiplier, s.patch_size, s.conv_kernel_size, dilations[i],
                             s.expand_ratio, s.hidden_act, s.layer_norm_eps, name=f"stage_{i + 3}", **common)
            for i in range(3)]

    def build(self, input_shape=None):
        self.built = True  # sub-layers build on their first (symbolic) call

    def stage_outputs(self, inputs, training=False):
        return mobilevit_stage_outputs(self, inputs, training)

    def call(self, inputs, training=False):
        return self.stage_outputs(inputs, training=training)[-1]

    def feature_maps(self, inputs, training=False):
        return self.stage_outputs(inputs, training=training)

    def pooled(self, hidden):
        return ops.mean(hidden, axis=(1, 2))

    def weight_rules(self):
        r = self.stem.rules("conv_stem")
        for i, stage in enumerate((self.layer1, self.layer2)):
            for j, layer in enumerate(stage):
                r += layer.rules(f"encoder.layer.{i}.layer.{j}.")
        for i, stage in enumerate(self.vit_stages):
            r += stage.rules(f"encoder.layer.{i + 2}.")
        return r


@_ser
@register_task(MobileViTV2Backbone, "ImageClassifier", ("MobileViTV2ForImageClassification",))
class MobileViTV2ImageClassifier(ImageClassifier):
    pooling = "backbone"


__all__ = ["MobileViTV2Backbone", "MobileViTV2ImageClassifier", "MobileViTV2Stage", "LinearAttentionLayer"]

"""MobileViT (channels_last): a MobileNetV2 stem and inverted-residual stages, then MobileViT
stages that unfold the map into ``patch_size`` x ``patch_size`` patches, run a small pre-norm
transformer (:class:`~keras_models.layers.vision_block.VisionBlock`) across patches for each
pixel position of a patch, fold back and fuse with the input by convolutions.

Maps whose size is not a multiple of ``patch_size`` are bilinearly resized up to one before the
transformer and back after it, as Transformers does. ``output_stride`` 8 / 16 dilates the last
stages instead of striding them. Output: (batch, H/32, W/32, neck_hidden_sizes[-1]) after the
1x1 expansion conv; ``pooled`` = mean over space; ``feature_maps`` = the five stages' maps.
"""

import math
from dataclasses import dataclass

import keras
import numpy as np
from keras import ops

from keras_models.layers.activations import get_activation
from keras_models.layers.vision_block import VisionBlock
from keras_models.layers.vision_embeddings import conv_rules, dense_rules, norm_rules, resize_grid
from keras_models.models.backbone import Backbone
from keras_models.models.registry import register_backbone
from keras_models.models.vit.backbone import pixel_values_of
from keras_models.spec import Spec, dim, hf

_ser = keras.saving.register_keras_serializable(package="keras_models")


def make_divisible(value, divisor=8):
    new = max(divisor, int(value + divisor / 2) // divisor * divisor)
    return int(new + divisor if new < 0.9 * value else new)


@_ser
class MobileConv(keras.layers.Layer):
    """torch-style conv (symmetric ``(k-1)//2 * dilation`` padding; depthwise when ``depthwise``),
    optional BatchNorm (eps 1e-5), optional activation."""

    def __init__(self, filters, kernel_size, strides=1, dilation=1, depthwise=False, norm=True, activation=None,
                 **kwargs):
        super().__init__(**kwargs)
        self.filters, self.kernel_size, self.strides, self.dilation = filters, kernel_size, strides, dilation
        self.depthwise, self.norm_enabled, self.activation = depthwise, norm, activation
        common = dict(dtype=self.dtype_policy)
        conv = dict(strides=strides, dilation_rate=dilation, use_bias=False, name="conv", **common)
        self.conv = (keras.layers.DepthwiseConv2D(kernel_size, **conv) if depthwise
                     else keras.layers.Conv2D(filters, kernel_size, **conv))
        self.norm = keras.layers.BatchNormalization(epsilon=1e-5, momentum=0.9, name="norm", **common) if norm else None
        self.act = get_activation(activation) if activation else None

    def call(self, x, training=False):
        p = (self.kernel_size - 1) // 2 * self.dilation
        if p:
            x = ops.pad(x, ((0, 0), (p, p), (p, p), (0, 0)))
        x = self.conv(x)
        if self.norm is not None:
            x = self.norm(x, training=training)
        return self.act(x) if self.act is not None else x

    def rules(self, prefix):
        r = conv_rules(prefix + ".convolution", self.conv)
        return r + (norm_rules(prefix + ".normalization", self.norm) if self.norm is not None else [])

    def get_config(self):
        c = super().get_config()
        c.update(filters=self.filters, kernel_size=self.kernel_size, strides=self.strides, dilation=self.dilation,
                 depthwise=self.depthwise, norm=self.norm_enabled, activation=self.activation)
        return c


@_ser
class InvertedResidual(keras.layers.Layer):
    """1x1 expand -> 3x3 depthwise (stride, dilation) -> 1x1 reduce (+ input when shapes allow)."""

    def __init__(self, in_channels, out_channels, strides=1, dilation=1, expand_ratio=4.0, activation="silu",
                 **kwargs):
        super().__init__(**kwargs)
        self.in_channels, self.out_channels, self.strides = in_channels, out_channels, strides
        self.dilation, self.expand_ratio, self.activation = dilation, expand_ratio, activation
        common = dict(dtype=self.dtype_policy)
        mid = make_divisible(int(round(in_channels * expand_ratio)), 8)
        self.expand = MobileConv(mid, 1, activation=activation, name="expand", **common)
        self.dw = MobileConv(mid, 3, strides=strides, dilation=dilation, depthwise=True, activation=activation,
                             name="dw", **common)
        self.reduce = MobileConv(out_channels, 1, name="reduce", **common)
        self.residual = strides == 1 and in_channels == out_channels

    def call(self, x, training=False):
        y = self.reduce(self.dw(self.expand(x, training=training), training=training), training=training)
        return x + y if self.residual else y

    def rules(self, prefix):
        return self.expand.rules(prefix + "expand_1x1") + self.dw.rules(prefix + "conv_3x3") + \
            self.reduce.rules(prefix + "reduce_1x1")

    def get_config(self):
        c = super().get_config()
        c.update(in_channels=self.in_channels, out_channels=self.out_channels, strides=self.strides,
                 dilation=self.dilation, expand_ratio=self.expand_ratio, activation=self.activation)
        return c


@_ser
class MobileViTStage(keras.layers.Layer):
    """[inverted-residual downsampling] -> kxk conv -> 1x1 conv to ``hidden`` -> unfold ->
    transformer blocks -> LayerNorm -> fold -> 1x1 conv back -> kxk fusion conv of [input, result]."""

    def __init__(self, in_channels, out_channels, hidden, num_blocks, num_heads, patch_size=2, mlp_ratio=2.0,
                 conv_kernel_size=3, dilation=1, expand_ratio=4.0, hidden_act="silu", layer_norm_eps=1e-5,
                 qkv_bias=True, dropout=0.0, attention_dropout=0.0, **kwargs):
        super().__init__(**kwargs)
        self.in_channels, self.out_channels = in_channels, out_channels
        self.hidden, self.num_blocks = hidden, num_blocks
        self.num_heads, self.patch_size, self.mlp_ratio = num_heads, patch_size, mlp_ratio
        self.conv_kernel_size, self.dilation, self.expand_ratio = conv_kernel_size, dilation, expand_ratio
        self.hidden_act, self.layer_norm_eps, self.qkv_bias = hidden_act, layer_norm_eps, qkv_bias
        self.dropout_rate, self.attention_dropout = dropout, attention_dropout
        common = dict(dtype=self.dtype_policy)
        self.down = InvertedResidual(in_channels, out_channels, strides=2 if dilation == 1 else 1,
                                     dilation=dilation // 2 if dilation > 1 else 1, expand_ratio=expand_ratio,
                                     activation=hidden_act, name="down", **common)
        c = out_channels
        self.conv_kxk = MobileConv(c, conv_kernel_size, activation=hidden_act, name="conv_kxk", **common)
        self.conv_1x1 = MobileConv(hidden, 1, norm=False, name="conv_1x1", **common)
        self.blocks = [VisionBlock(hidden, num_heads, int(hidden * mlp_ratio), hidden_act=hidden_act,
                                   layer_norm_eps=layer_norm_eps, qkv_bias=qkv_bias, dropout=dropout,
                                   attention_dropout=attention_dropout, name=f"block_{i}", **common)
                       for i in range(num_blocks)]
        self.norm = keras.layers.LayerNormalization(epsilon=layer_norm_eps, name="norm", **common)
        self.projection = MobileConv(c, 1, activation=hidden_act, name="projection", **common)
        self.fusion = MobileConv(c, conv_kernel_size, activation=hidden_act, name="fusion", **common)

    def call(self, x, training=False):
        x = self.down(x, training=training)
        y = self.conv_1x1(self.conv_kxk(x, training=training))
        h, w, p, d = y.shape[1], y.shape[2], self.patch_size, self.hidden
        nh, nw = math.ceil(h / p), math.ceil(w / p)
        if (nh * p, nw * p) != (h, w):
            y = resize_grid(y, nh * p, nw * p, mode="bilinear")
        # unfold: attention runs across the nh*nw patches, separately for each of the p*p pixel slots
        y = ops.transpose(ops.reshape(y, (-1, nh, p, nw, p, d)), (0, 2, 4, 1, 3, 5))
        y = ops.reshape(y, (-1, nh * nw, d))
        for block in self.blocks:
            y = block(y, training=training)
        y = ops.reshape(self.norm(y), (-1, p, p, nh, nw, d))
        y = ops.reshape(ops.transpose(y, (0, 3, 1, 4, 2, 5)), (-1, nh * p, nw * p, d))
        if (nh * p, nw * p) != (h, w):
            y = resize_grid(y, h, w, mode="bilinear")
        y = self.projection(y, training=training)
        return self.fusion(ops.concatenate([x, y], axis=-1), training=training)

    def rules(self, prefix):
        r = self.down.rules(prefix + "downsampling_layer.")
        r += self.conv_kxk.rules(prefix + "conv_kxk") + self.conv_1x1.rules(prefix + "conv_1x1")
        for i, b in enumerate(self.blocks):
            q = f"{prefix}transformer.layer.{i}."
            a = b.attention
            for name, dense in (("attention.attention.query", a.query), ("attention.attention.key", a.key),
                                ("attention.attention.value", a.value), ("attention.output.dense", a.output_dense),
                                ("intermediate.dense", b.fc1), ("output.dense", b.fc2)):
                r += dense_rules(q + name, dense)
            r += norm_rules(q + "layernorm_before", b.norm1) + norm_rules(q + "layernorm_after", b.norm2)
        r += norm_rules(prefix + "layernorm", self.norm)
        return r + self.projection.rules(prefix + "conv_projection") + self.fusion.rules(prefix + "fusion")

    def get_config(self):
        c = super().get_config()
        c.update(in_channels=self.in_channels, out_channels=self.out_channels, hidden=self.hidden,
                 num_blocks=self.num_blocks, num_heads=self.num_heads, patch_size=self.patch_size,
                 mlp_ratio=self.mlp_ratio, conv_kernel_size=self.conv_kernel_size, dilation=self.dilation,
                 expand_ratio=self.expand_ratio, hidden_act=self.hidden_act, layer_norm_eps=self.layer_norm_eps,
                 qkv_bias=self.qkv_bias, dropout=self.dropout_rate, attention_dropout=self.attention_dropout)
        return c


@dataclass(frozen=True, kw_only=True)
class MobileViTSpec(Spec):
    unsupported = {"output_stride": (8, 16, 32)}

    hidden_sizes: tuple = hf("hidden_sizes", (144, 192, 240))
    neck_hidden_sizes: tuple = hf("neck_hidden_sizes", (16, 32, 64, 96, 128, 160, 640))
    num_heads: int = dim("num_attention_heads", 4)
    num_channels: int = dim("num_channels", 3)
    image_size: int = hf("image_size", 256)
    patch_size: int = dim("patch_size", 2)
    mlp_ratio: float = hf("mlp_ratio", 2.0)
    expand_ratio: float = hf("expand_ratio", 4.0)
    hidden_act: str = hf("hidden_act", "silu")
    conv_kernel_size: int = dim("conv_kernel_size", 3)
    output_stride: int = hf("output_stride", 32)
    layer_norm_eps: float = hf("layer_norm_eps", 1e-5)
    qkv_bias: bool = hf("qkv_bias", True)
    dropout: float = hf("hidden_dropout_prob", 0.1)
    attention_dropout: float = hf("attention_probs_dropout_prob", 0.0)
    initializer_range: float = hf("initializer_range", 0.02)


@_ser
@register_backbone("mobilevit")
class MobileViTBackbone(Backbone):
    spec_cls = MobileViTSpec
    base_model_prefix = "mobilevit"
    hf_architecture = "MobileViTModel"
    hf_ignore = ("*num_batches_tracked",)
    verified_backends = ("jax", "torch", "tensorflow")
    # transformer blocks per MobileViT stage (fixed by the architecture)
    stage_blocks = (2, 4, 3)

    def __init__(self, hidden_sizes, neck_hidden_sizes, num_heads, num_channels=3, image_size=256, patch_size=2,
                 mlp_ratio=2.0, expand_ratio=4.0, hidden_act="silu", conv_kernel_size=3, output_stride=32,
                 layer_norm_eps=1e-5, qkv_bias=True, dropout=0.0, attention_dropout=0.0, initializer_range=0.02,
                 **kwargs):
        super().__init__(**kwargs)
        self.hidden_sizes, self.neck_hidden_sizes = list(hidden_sizes), list(neck_hidden_sizes)
        self.num_heads, self.num_channels = num_heads, num_channels
        self.image_size, self.patch_size = image_size, patch_size
        self.mlp_ratio, self.expand_ratio, self.hidden_act = mlp_ratio, expand_ratio, hidden_act
        self.conv_kernel_size, self.output_stride, self.layer_norm_eps = conv_kernel_size, output_stride, layer_norm_eps
        self.qkv_bias, self.dropout_rate, self.attention_dropout = qkv_bias, dropout, attention_dropout
        self.initializer_range = initializer_range
        n, common = self.neck_hidden_sizes, dict(dtype=self.dtype_policy)
        ir = dict(expand_ratio=expand_ratio, activation=hidden_act, **common)
        self.stem = MobileConv(n[0], 3, strides=2, activation=hidden_act, name="stem", **common)
        self.layer1 = [InvertedResidual(n[0], n[1], name="layer1_0", **ir)]
        self.layer2 = [InvertedResidual(n[1] if i == 0 else n[2], n[2], strides=2 if i == 0 else 1,
                                        name=f"layer2_{i}", **ir) for i in range(3)]
        dilations = {32: (1, 1, 1), 16: (1, 1, 2), 8: (1, 2, 4)}.get(output_stride)
        if dilations is None:
            from keras_models.errors import ConfigError

            raise ConfigError(f"config.json: output_stride must be 8, 16 or 32, got {output_stride}")
        self.vit_stages = [
            MobileViTStage(n[2 + i], n[3 + i], hidden_sizes[i], self.stage_blocks[i], num_heads,
                           patch_size=patch_size, mlp_ratio=mlp_ratio, conv_kernel_size=conv_kernel_size,
                           dilation=dilations[i], expand_ratio=expand_ratio, hidden_act=hidden_act,
                           layer_norm_eps=layer_norm_eps, qkv_bias=qkv_bias, dropout=dropout,
                           attention_dropout=attention_dropout, name=f"stage_{i + 3}", **common)
            for i in range(3)]
        self.expand = MobileConv(n[6], 1, activation=hidden_act, name="expand", **common)

    def build(self, input_shape=None):
        self.built = True  # sub-layers build on their first (symbolic) call

    def dummy_inputs(self):
        return {"pixel_values": np.zeros((1, 64, 64, self.num_channels), "float32")}

    def stage_outputs(self, inputs, training=False):
        return mobilevit_stage_outputs(self, inputs, training)

    def call(self, inputs, training=False):
        return self.expand(self.stage_outputs(inputs, training=training)[-1], training=training)

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
        return r + self.expand.rules("conv_1x1_exp")

    def get_config(self):
        c = super().get_config()
        c.update(hidden_sizes=self.hidden_sizes, neck_hidden_sizes=self.neck_hidden_sizes, num_heads=self.num_heads,
                 num_channels=self.num_channels, image_size=self.image_size, patch_size=self.patch_size,
                 mlp_ratio=self.mlp_ratio, expand_ratio=self.expand_ratio, hidden_act=self.hidden_act,
                 conv_kernel_size=self.conv_kernel_size, output_stride=self.output_stride,
                 layer_norm_eps=self.layer_norm_eps, qkv_bias=self.qkv_bias, dropout=self.dropout_rate,
                 attention_dropout=self.attention_dropout, initializer_range=self.initializer_range)
        return c


__all__ = ["MobileViTBackbone", "MobileViTStage", "InvertedResidual", "MobileConv", "make_divisible"]


def mobilevit_stage_outputs(model, inputs, training=False):
    """MobileViT / MobileViTV2: the stem, the two convolutional stages (lists of blocks), then the
    MobileViT stages; the map after each stage."""
    x = model.stem(pixel_values_of(inputs), training=training)
    outs = []
    for stage in (model.layer1, model.layer2):
        for layer in stage:
            x = layer(x, training=training)
        outs.append(x)
    for stage in model.vit_stages:
        x = stage(x, training=training)
        outs.append(x)
    return outs

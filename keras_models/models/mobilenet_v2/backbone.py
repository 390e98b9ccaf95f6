"""MobileNetV2 (channels_last): 3x3/2 conv stem + [1x1 expand] + depthwise 3x3 + 1x1 reduce, then 16
inverted residual blocks and a final 1x1 conv, BatchNorm everywhere. Named switches from config.json:
``depth_multiplier`` / ``depth_divisible_by`` / ``min_depth`` (widths), ``expand_ratio``,
``output_stride`` (dilate instead of striding past it), ``first_layer_is_expansion``,
``finegrained_output`` (keep 1280 output channels when narrowing), ``tf_padding``.
Output: the final 1x1 conv's map (batch, h, w, C); ``pooled`` = global average pool;
``feature_maps`` = the output before each downsampling block (stem, ...) and the final map."""

from dataclasses import dataclass

import keras
import numpy as np
from keras import ops

from keras_models.layers.conv_blocks import ConvNormAct, InvertedResidual, conv_norm_rules, make_divisible
from keras_models.models.backbone import Backbone
from keras_models.models.registry import register_backbone
from keras_models.models.vit.backbone import pixel_values_of
from keras_models.spec import Spec, dim, hf

CHANNELS = (16, 24, 24, 32, 32, 32, 64, 64, 64, 64, 96, 96, 96, 160, 160, 160, 320)
STRIDES = (2, 1, 2, 1, 1, 2, 1, 1, 1, 1, 1, 1, 2, 1, 1, 1)


@dataclass(frozen=True, kw_only=True)
class MobileNetV2Spec(Spec):
    num_channels: int = dim("num_channels", 3)
    depth_multiplier: float = hf("depth_multiplier", 1.0)
    depth_divisible_by: int = dim("depth_divisible_by", 8)
    min_depth: int = dim("min_depth", 8)
    expand_ratio: float = hf("expand_ratio", 6.0)
    output_stride: int = dim("output_stride", 32)
    first_layer_is_expansion: bool = hf("first_layer_is_expansion", True)
    finegrained_output: bool = hf("finegrained_output", True)
    hidden_act: str = hf("hidden_act", "relu6")
    tf_padding: bool = hf("tf_padding", True)
    layer_norm_eps: float = hf("layer_norm_eps", 1e-3, doc="the BatchNorms' epsilon")
    image_size: int = hf("image_size", 224)


@keras.saving.register_keras_serializable(package="keras_models")
@register_backbone("mobilenet_v2")
class MobileNetV2Backbone(Backbone):
    spec_cls = MobileNetV2Spec
    base_model_prefix = "mobilenet_v2"
    hf_architecture = "MobileNetV2Model"
    hf_ignore = ("*num_batches_tracked",)
    verified_backends = ("jax", "torch", "tensorflow")

    def __init__(self, num_channels=3, depth_multiplier=1.0, depth_divisible_by=8, min_depth=8, expand_ratio=6.0,
                 output_stride=32, first_layer_is_expansion=True, finegrained_output=True, hidden_act="relu6",
                 tf_padding=True, layer_norm_eps=1e-3, image_size=224, **kwargs):
        super().__init__(**kwargs)
        self.num_channels, self.depth_multiplier = num_channels, depth_multiplier
        self.depth_divisible_by = depth_divisible_by
        self.min_depth, self.expand_ratio, self.output_stride = min_depth, expand_ratio, output_stride
        self.first_layer_is_expansion, self.finegrained_output = first_layer_is_expansion, finegrained_output
        self.hidden_act, self.tf_padding, self.layer_norm_eps = hidden_act, tf_padding, layer_norm_eps
        self.image_size = image_size
        common = dict(dtype=self.dtype_policy, activation=hidden_act, eps=layer_norm_eps)
        pad = "same" if tf_padding else None

        def width(c):
            return make_divisible(int(round(c * depth_multiplier)), depth_divisible_by, min_depth)

        channels = [width(c) for c in CHANNELS]
        stem_width = width(32)
        self.stem = ConvNormAct(stem_width, 3, 2, padding=pad, name="stem", **common)
        self.stem_block = InvertedResidual(stem_width, channels[0], stem_width, expand=not first_layer_is_expansion,
                                           depthwise_padding=pad, name="stem_block", **common)
        self.blocks, self.block_strides = [], []
        current_stride, dilation = 2, 1
        for i, s in enumerate(STRIDES):
            if current_stride == output_stride:
                stride, block_dilation, dilation = 1, dilation, dilation * s
            else:
                stride, block_dilation, current_stride = s, 1, current_stride * s
            cin, cout = channels[i], channels[i + 1]
            expanded = make_divisible(int(round(cin * expand_ratio)), depth_divisible_by, min_depth)
            self.blocks.append(InvertedResidual(cin, cout, expanded, stride=stride, dilation=block_dilation,
                                                depthwise_padding=pad, residual=stride == 1 and cin == cout,
                                                name=f"block_{i}", **common))
            self.block_strides.append(stride)
        self.hidden_size = 1280 if finegrained_output and depth_multiplier < 1.0 else width(1280)
        self.head = ConvNormAct(self.hidden_size, 1, padding=0, name="head", **common)

    def dummy_inputs(self):
        return {"pixel_values": np.zeros((1, 32, 32, self.num_channels), "float32")}

    def feature_maps(self, inputs, training=False):
        x = self.stem_block(self.stem(pixel_values_of(inputs), training=training), training=training)
        outs = []
        for block, stride in zip(self.blocks, self.block_strides):
            if stride == 2:
                outs.append(x)
            x = block(x, training=training)
        return outs + [self.head(x, training=training)]

    def call(self, inputs, training=False):
        return self.feature_maps(inputs, training=training)[-1]

    def pooled(self, hidden):
        return ops.mean(hidden, axis=(1, 2))

    def weight_rules(self):
        def block_rules(p, b):
            r = conv_norm_rules(p + ".expand_1x1", b.expand_conv) if b.expand_conv is not None else []
            return r + conv_norm_rules(p + ".conv_3x3", b.depthwise) + conv_norm_rules(p + ".reduce_1x1", b.project)

        r = conv_norm_rules("conv_stem.first_conv", self.stem) + block_rules("conv_stem", self.stem_block)
        for i, b in enumerate(self.blocks):
            r += block_rules(f"layer.{i}", b)
        return r + conv_norm_rules("conv_1x1", self.head)

    def get_config(self):
        c = super().get_config()
        c.update({k: getattr(self, k) for k in self.spec_cls.field_names()})
        return c

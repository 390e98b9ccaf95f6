"""EfficientNet (channels_last): 3x3/2 stem (one pixel of zero padding after), MBConv blocks
(:class:`~keras_models.layers.conv_blocks.InvertedResidual` with squeeze-and-excitation), a 1x1 top
conv. Widths scale by ``width_coefficient`` (rounded to ``depth_divisor``), repeats by
``depth_coefficient``; a strided depthwise conv pads one pixel less before than after unless its
block index is listed in ``depthwise_padding``; only the repeated blocks of a stage are residual.
Output: the top conv's map (batch, h, w, hidden_dim); ``pooled`` = global mean or max
(``pooling_type``); ``feature_maps`` = the output before each downsampling block and the final map."""

import dataclasses
import math
from dataclasses import dataclass

import keras
import numpy as np
from keras import ops

from keras_models.errors import ConfigError
from keras_models.layers.conv_blocks import (ConvNormAct, InvertedResidual, conv_norm_rules, make_divisible,
                                             squeeze_excite_rules)
from keras_models.models.backbone import Backbone
from keras_models.models.registry import register_backbone
from keras_models.models.vit.backbone import pixel_values_of
from keras_models.spec import Spec, dim, hf


@dataclass(frozen=True, kw_only=True)
class EfficientNetSpec(Spec):
    """Every key has Transformers' default (EfficientNet-B7)."""

    unsupported = {"pooling_type": ("mean", "max")}

    num_channels: int = dim("num_channels", 3)
    width_coefficient: float = hf("width_coefficient", 2.0)
    depth_coefficient: float = hf("depth_coefficient", 3.1)
    depth_divisor: int = dim("depth_divisor", 8)
    kernel_sizes: tuple = hf("kernel_sizes", (3, 3, 5, 3, 5, 5, 3))
    in_channels: tuple = hf("in_channels", (32, 16, 24, 40, 80, 112, 192))
    out_channels: tuple = hf("out_channels", (16, 24, 40, 80, 112, 192, 320))
    depthwise_padding: tuple = hf("depthwise_padding", (), doc="blocks whose strided depthwise conv pads evenly")
    strides: tuple = hf("strides", (1, 2, 2, 2, 1, 2, 1))
    num_block_repeats: tuple = hf("num_block_repeats", (1, 2, 2, 3, 3, 4, 1))
    expand_ratios: tuple = hf("expand_ratios", (1, 6, 6, 6, 6, 6, 6))
    squeeze_expansion_ratio: float = hf("squeeze_expansion_ratio", 0.25)
    hidden_act: str = hf("hidden_act", "swish")
    hidden_dim: int = dim("hidden_dim", 2560)
    pooling_type: str = hf("pooling_type", "mean")
    batch_norm_eps: float = hf("batch_norm_eps", 1e-3)
    batch_norm_momentum: float = hf("batch_norm_momentum", 0.99, doc="training only")
    dropout_rate: float = hf("dropout_rate", 0.5, doc="the classifier's; training only")
    drop_connect_rate: float = hf("drop_connect_rate", 0.2, doc="training only")
    image_size: int = hf("image_size", 600)


B7 = {f.name: f.default for f in dataclasses.fields(EfficientNetSpec)}  # Transformers' defaults


@keras.saving.register_keras_serializable(package="keras_models")
@register_backbone("efficientnet")
class EfficientNetBackbone(Backbone):
    spec_cls = EfficientNetSpec
    base_model_prefix = "efficientnet"
    hf_architecture = "EfficientNetModel"
    hf_ignore = ("*num_batches_tracked",)
    verified_backends = ("jax", "torch", "tensorflow")
    # False: the tower ends at the last block (ALIGN's image tower), hidden_size = its channels
    top_conv = True
    config_source = "config.json"

    def __init__(self, num_channels=3, width_coefficient=2.0, depth_coefficient=3.1, depth_divisor=8,
                 kernel_sizes=B7["kernel_sizes"], in_channels=B7["in_channels"], out_channels=B7["out_channels"],
                 depthwise_padding=(), strides=B7["strides"], num_block_repeats=B7["num_block_repeats"],
                 expand_ratios=B7["expand_ratios"], squeeze_expansion_ratio=0.25, hidden_act="swish",
                 hidden_dim=2560, pooling_type="mean", batch_norm_eps=1e-3, batch_norm_momentum=0.99,
                 dropout_rate=0.5, drop_connect_rate=0.2, image_size=600, **kwargs):
        super().__init__(**kwargs)
        self.num_channels, self.width_coefficient = num_channels, width_coefficient
        self.depth_coefficient = depth_coefficient
        self.depth_divisor, self.kernel_sizes = depth_divisor, list(kernel_sizes)
        self.in_channels, self.out_channels = list(in_channels), list(out_channels)
        self.depthwise_padding, self.strides = list(depthwise_padding), list(strides)
        self.num_block_repeats, self.expand_ratios = list(num_block_repeats), list(expand_ratios)
        self.squeeze_expansion_ratio = squeeze_expansion_ratio
        self.hidden_act, self.hidden_dim = hidden_act, hidden_dim
        self.pooling_type, self.batch_norm_eps = pooling_type, batch_norm_eps
        # training-time settings kept for config.json round trips
        self.batch_norm_momentum = batch_norm_momentum
        self.dropout_rate, self.drop_connect_rate = dropout_rate, drop_connect_rate
        self.image_size = image_size
        if pooling_type not in ("mean", "max"):
            raise ConfigError(f"{self.config_source}: pooling_type must be 'mean' or 'max', got {pooling_type!r}")
        if self.top_conv and self.round_filters(1280) != hidden_dim:
            raise ConfigError(f"{self.config_source}: hidden_dim {hidden_dim} != the top conv's width "
                              f"{self.round_filters(1280)}")
        common = dict(dtype=self.dtype_policy, activation=hidden_act, eps=batch_norm_eps)
        self.stem = ConvNormAct(self.round_filters(32), 3, 2, padding=((0, 1), (0, 1)), name="stem", **common)
        self.blocks = []
        for i, (k, s, e) in enumerate(zip(self.kernel_sizes, self.strides, self.expand_ratios)):
            cin, cout = self.round_filters(self.in_channels[i]), self.round_filters(self.out_channels[i])
            for j in range(int(math.ceil(depth_coefficient * self.num_block_repeats[i]))):
                n, stride, cin = len(self.blocks), s if j == 0 else 1, cin if j == 0 else cout
                pad = None
                if stride == 2:
                    pad = (k // 2, k // 2) if n in self.depthwise_padding else (k // 2 - 1, k // 2)
                    pad = (pad, pad)
                self.blocks.append(InvertedResidual(
                    cin, cout, int(cin * e), expand=e != 1, kernel_size=k, stride=stride, depthwise_padding=pad,
                    residual=j > 0, se_channels=max(1, int(cin * squeeze_expansion_ratio)), name=f"block_{n}",
                    **common))
        if not self.blocks:
            raise ConfigError(f"{self.config_source}: the image tower has no blocks (num_block_repeats)")
        self.top = ConvNormAct(hidden_dim, 1, padding=0, name="top", **common) if self.top_conv else None
        self.hidden_size = hidden_dim if self.top_conv else self.blocks[-1].out_channels

    def round_filters(self, channels):
        return make_divisible(channels * self.width_coefficient, self.depth_divisor)

    def dummy_inputs(self):
        return {"pixel_values": np.zeros((1, 32, 32, self.num_channels), "float32")}

    def feature_maps(self, inputs, training=False):
        x = self.stem(pixel_values_of(inputs), training=training)
        outs = []
        for block in self.blocks:
            if block.stride == 2:
                outs.append(x)
            x = block(x, training=training)
        return outs + [x if self.top is None else self.top(x, training=training)]

    def call(self, inputs, training=False):
        return self.feature_maps(inputs, training=training)[-1]

    def pooled(self, hidden):
        return ops.mean(hidden, axis=(1, 2)) if self.pooling_type == "mean" else ops.max(hidden, axis=(1, 2))

    def weight_rules(self):
        r = conv_norm_rules("embeddings", self.stem, "convolution", "batchnorm")
        for n, b in enumerate(self.blocks):
            p = f"encoder.blocks.{n}"
            if b.expand_conv is not None:
                r += conv_norm_rules(p + ".expansion", b.expand_conv, "expand_conv", "expand_bn")
            r += conv_norm_rules(p + ".depthwise_conv", b.depthwise, "depthwise_conv", "depthwise_norm")
            r += squeeze_excite_rules(p + ".squeeze_excite", b.se)
            r += conv_norm_rules(p + ".projection", b.project, "project_conv", "project_bn")
        return r if self.top is None else r + conv_norm_rules("encoder", self.top, "top_conv", "top_bn")

    def get_config(self):
        c = super().get_config()
        c.update({k: getattr(self, k) for k in self.spec_cls.field_names()})
        return c

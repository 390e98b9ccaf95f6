"""MobileNetV1 (channels_last): 3x3/2 conv stem, then 13 depthwise-separable pairs (depthwise 3x3
+ pointwise 1x1, each BatchNorm + act). ``depth_multiplier`` / ``min_depth`` set the widths;
``tf_padding=True`` pads like TensorFlow "SAME" (the odd pixel after), else PyTorch's symmetric 1.
Output: the last layer's map (batch, h, w, C); ``pooled`` = global average pool;
``feature_maps`` = the last layer's output at each resolution (strides 2, 4, 8, 16, 32)."""

from dataclasses import dataclass

import keras
import numpy as np
from keras import ops

from keras_models.layers.conv_blocks import ConvNormAct, conv_norm_rules
from keras_models.models.backbone import Backbone
from keras_models.models.registry import register_backbone
from keras_models.models.vit.backbone import pixel_values_of
from keras_models.spec import Spec, dim, hf

STRIDES = (1, 2, 1, 2, 1, 2, 1, 1, 1, 1, 1, 2, 1)


@dataclass(frozen=True, kw_only=True)
class MobileNetV1Spec(Spec):
    num_channels: int = dim("num_channels", 3)
    depth_multiplier: float = hf("depth_multiplier", 1.0)
    min_depth: int = dim("min_depth", 8)
    hidden_act: str = hf("hidden_act", "relu6")
    tf_padding: bool = hf("tf_padding", True)
    layer_norm_eps: float = hf("layer_norm_eps", 1e-3, doc="the BatchNorms' epsilon")
    image_size: int = hf("image_size", 224)


@keras.saving.register_keras_serializable(package="keras_models")
@register_backbone("mobilenet_v1")
class MobileNetV1Backbone(Backbone):
    spec_cls = MobileNetV1Spec
    base_model_prefix = "mobilenet_v1"
    hf_architecture = "MobileNetV1Model"
    hf_ignore = ("*num_batches_tracked",)
    verified_backends = ("jax", "torch", "tensorflow")

    def __init__(self, num_channels=3, depth_multiplier=1.0, min_depth=8, hidden_act="relu6", tf_padding=True,
                 layer_norm_eps=1e-3, image_size=224, **kwargs):
        super().__init__(**kwargs)
        self.num_channels, self.depth_multiplier, self.min_depth = num_channels, depth_multiplier, min_depth
        self.hidden_act, self.tf_padding, self.layer_norm_eps = hidden_act, tf_padding, layer_norm_eps
        self.image_size = image_size
        common = dict(dtype=self.dtype_policy, activation=hidden_act, eps=layer_norm_eps)

        def pad(k):
            return "same" if tf_padding else (k - 1) // 2

        depth = 32
        cout = max(int(depth * depth_multiplier), min_depth)
        self.stem = ConvNormAct(cout, 3, 2, padding=pad(3), name="stem", **common)
        self.pairs = []
        for i, stride in enumerate(STRIDES):
            cin = cout
            if stride == 2 or i == 0:
                depth *= 2
                cout = max(int(depth * depth_multiplier), min_depth)
            self.pairs.append((
                ConvNormAct(cin, 3, stride, padding=pad(3), depthwise=True, name=f"layer_{i}_depthwise", **common),
                ConvNormAct(cout, 1, 1, padding=0, name=f"layer_{i}_pointwise", **common),
            ))
        self.hidden_size = cout

    def dummy_inputs(self):
        return {"pixel_values": np.zeros((1, 32, 32, self.num_channels), "float32")}

    def feature_maps(self, inputs, training=False):
        x = self.stem(pixel_values_of(inputs), training=training)
        outs = []
        for i, (dw, pw) in enumerate(self.pairs):
            x = pw(dw(x, training=training), training=training)
            if i + 1 == len(self.pairs) or STRIDES[i + 1] == 2:
                outs.append(x)
        return outs

    def call(self, inputs, training=False):
        return self.feature_maps(inputs, training=training)[-1]

    def pooled(self, hidden):
        return ops.mean(hidden, axis=(1, 2))

    def weight_rules(self):
        r = conv_norm_rules("conv_stem", self.stem)
        for i, (dw, pw) in enumerate(self.pairs):
            r += conv_norm_rules(f"layer.{2 * i}", dw) + conv_norm_rules(f"layer.{2 * i + 1}", pw)
        return r

    def get_config(self):
        c = super().get_config()
        c.update({k: getattr(self, k) for k in self.spec_cls.field_names()})
        return c

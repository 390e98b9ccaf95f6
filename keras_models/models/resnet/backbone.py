"""ResNet (channels_last): 7x7/2 conv stem + 3x3/2 max pool, stages of basic or bottleneck
residual layers with BatchNorm. ``layer_type``, ``downsample_in_first_stage`` and
``downsample_in_bottleneck`` are the config's named variants.
Output: the last stage's feature map (batch, h, w, C); ``pooled`` = global average pool."""

from dataclasses import dataclass

import keras
from keras import ops

from keras_models.layers.activations import get_activation
from keras_models.layers.conv_blocks import ConvNormAct
from keras_models.layers.vision_embeddings import conv_rules, norm_rules
from keras_models.models.convnet import StagedConvBackbone
from keras_models.models.registry import register_backbone
from keras_models.spec import Spec, dim, hf


def max_pool_torch(x, pool=3, stride=2, pad=1):
    """MaxPool2d(kernel, stride, padding) with PyTorch's symmetric -inf padding (channels_last)."""
    from keras_models import torch_kernels as tk

    if tk.torch_fused_conv_ready(x):  # torch inference: torch's channels-last kernel, no padded copy
        return tk.torch_max_pool2d(x, pool, stride, pad)
    x = ops.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)), constant_values=float("-inf"))
    return ops.max_pool(x, pool, strides=stride, padding="valid")


@keras.saving.register_keras_serializable(package="keras_models")
class ResNetLayer(keras.layers.Layer):
    """One residual layer: [shortcut conv1x1+BN] + (basic: 3x3, 3x3 | bottleneck: 1x1, 3x3, 1x1)."""

    def __init__(self, in_channels, out_channels, stride=1, layer_type="bottleneck", activation="relu",
                 reduction=4, downsample_in_bottleneck=False, **kwargs):
        super().__init__(**kwargs)
        self.in_channels, self.out_channels, self.stride = in_channels, out_channels, stride
        self.layer_type, self.activation, self.reduction = layer_type, activation, reduction
        self.downsample_in_bottleneck = downsample_in_bottleneck
        common = dict(dtype=self.dtype_policy)
        self.shortcut = (ConvNormAct(out_channels, 1, stride, activation=None, name="shortcut", **common)
                         if in_channels != out_channels or stride != 1 else None)
        if layer_type == "bottleneck":
            mid = out_channels // reduction
            s1, s2 = (stride, 1) if downsample_in_bottleneck else (1, stride)
            self.convs = [ConvNormAct(mid, 1, s1, name="conv_0", **common),
                          ConvNormAct(mid, 3, s2, name="conv_1", **common),
                          ConvNormAct(out_channels, 1, 1, activation=None, name="conv_2", **common)]
        elif layer_type == "basic":
            self.convs = [ConvNormAct(out_channels, 3, stride, name="conv_0", **common),
                          ConvNormAct(out_channels, 3, 1, activation=None, name="conv_1", **common)]
        else:
            raise ValueError(f"ResNet layer_type must be 'basic' or 'bottleneck', got {layer_type!r}")
        self.act = get_activation(activation)

    def call(self, x, training=False):
        residual = x if self.shortcut is None else self.shortcut(x, training=training)
        for conv in self.convs[:-1]:
            x = conv(x, training=training)
        # the add and activation inside the last unit: one fused oneDNN call under torch inference
        return self.convs[-1](x, training=training, residual=residual, post_activation=self.activation)

    def get_config(self):
        c = super().get_config()
        c.update(in_channels=self.in_channels, out_channels=self.out_channels, stride=self.stride,
                 layer_type=self.layer_type, activation=self.activation, reduction=self.reduction,
                 downsample_in_bottleneck=self.downsample_in_bottleneck)
        return c


@dataclass(frozen=True, kw_only=True)
class ResNetSpec(Spec):
    embedding_size: int = dim("embedding_size", 64)
    hidden_sizes: tuple = hf("hidden_sizes", (256, 512, 1024, 2048))
    depths: tuple = hf("depths", (3, 4, 6, 3))
    num_channels: int = dim("num_channels", 3)
    layer_type: str = hf("layer_type", "bottleneck", doc="'basic' or 'bottleneck'")
    hidden_act: str = hf("hidden_act", "relu")
    downsample_in_first_stage: bool = hf("downsample_in_first_stage", False)
    downsample_in_bottleneck: bool = hf("downsample_in_bottleneck", False)


@keras.saving.register_keras_serializable(package="keras_models")
@register_backbone("resnet")
class ResNetBackbone(StagedConvBackbone):
    spec_cls = ResNetSpec
    verified_backends = ("jax", "torch", "tensorflow")  # parity tests pass on all three
    base_model_prefix = "resnet"
    hf_architecture = "ResNetModel"
    hf_ignore = ("*num_batches_tracked",)

    def __init__(self, embedding_size, hidden_sizes, depths, num_channels=3, layer_type="bottleneck",
                 hidden_act="relu", downsample_in_first_stage=False, downsample_in_bottleneck=False, **kwargs):
        super().__init__(**kwargs)
        self.embedding_size, self.hidden_sizes, self.depths = embedding_size, list(hidden_sizes), list(depths)
        self.num_channels, self.layer_type, self.hidden_act = num_channels, layer_type, hidden_act
        self.downsample_in_first_stage = downsample_in_first_stage
        self.downsample_in_bottleneck = downsample_in_bottleneck
        common = dict(dtype=self.dtype_policy)
        self.stem = ConvNormAct(embedding_size, 7, 2, activation=hidden_act, name="stem", **common)
        self.stages, cin = [], embedding_size
        for i, (cout, depth) in enumerate(zip(hidden_sizes, depths)):
            stride = 2 if (i > 0 or downsample_in_first_stage) else 1
            kw = dict(layer_type=layer_type, activation=hidden_act, downsample_in_bottleneck=downsample_in_bottleneck,
                      **common)
            self.stages.append([ResNetLayer(cin if j == 0 else cout, cout, stride if j == 0 else 1,
                                            name=f"stage_{i}_layer_{j}", **kw) for j in range(depth)])
            cin = cout

    def stem_output(self, pixel_values, training=False):
        return max_pool_torch(self.stem(pixel_values, training=training))

    def weight_rules(self):
        def unit(prefix, u):
            return conv_rules(prefix + ".convolution", u.conv) + norm_rules(prefix + ".normalization", u.norm)

        r = unit("embedder.embedder", self.stem)
        for i, layers in enumerate(self.stages):
            for j, layer in enumerate(layers):
                p = f"encoder.stages.{i}.layers.{j}"
                if layer.shortcut is not None:
                    r += unit(p + ".shortcut", layer.shortcut)
                for k, conv in enumerate(layer.convs):
                    r += unit(f"{p}.layer.{k}", conv)
        return r

    def get_config(self):
        c = super().get_config()
        c.update({k: getattr(self, k) for k in self.spec_cls.field_names()})
        return c

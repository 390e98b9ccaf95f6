"""RegNet (channels_last): 3x3/2 conv stem, stages of X layers (1x1, grouped 3x3, 1x1 with a
projection shortcut) or Y layers (X + squeeze-and-excitation), BatchNorm. ``layer_type``,
``groups_width`` and ``downsample_in_first_stage`` are the config's named variants.
Output: the last stage's feature map (batch, h, w, C); ``pooled`` = global average pool;
``feature_maps`` = every stage's output."""

from dataclasses import dataclass

import keras

from keras_models.layers.activations import get_activation
from keras_models.layers.conv_blocks import ConvNormAct, SqueezeExcite, conv_norm_rules, squeeze_excite_rules
from keras_models.models.convnet import StagedConvBackbone
from keras_models.models.registry import register_backbone
from keras_models.spec import Spec, dim, hf


@keras.saving.register_keras_serializable(package="keras_models")
class RegNetLayer(keras.layers.Layer):
    """[shortcut 1x1+BN] + 1x1 -> grouped 3x3 (stride) [-> SE] -> 1x1, then act(sum)."""

    def __init__(self, in_channels, out_channels, stride=1, groups_width=64, squeeze_excite=True,
                 activation="relu", **kwargs):
        super().__init__(**kwargs)
        self.in_channels, self.out_channels, self.stride = in_channels, out_channels, stride
        self.groups_width, self.squeeze_excite, self.activation = groups_width, squeeze_excite, activation
        common = dict(dtype=self.dtype_policy)
        groups = max(1, out_channels // groups_width)
        self.shortcut = (ConvNormAct(out_channels, 1, stride, activation=None, name="shortcut", **common)
                         if in_channels != out_channels or stride != 1 else None)
        self.conv_in = ConvNormAct(out_channels, 1, 1, activation=activation, name="conv_in", **common)
        self.conv_mid = ConvNormAct(out_channels, 3, stride, activation=activation, groups=groups,
                                    name="conv_mid", **common)
        self.se = (SqueezeExcite(out_channels, int(round(in_channels / 4)), "relu", name="se", **common)
                   if squeeze_excite else None)
        self.conv_out = ConvNormAct(out_channels, 1, 1, activation=None, name="conv_out", **common)
        self.act = get_activation(activation)

    def call(self, x, training=False):
        residual = x if self.shortcut is None else self.shortcut(x, training=training)
        x = self.conv_mid(self.conv_in(x, training=training), training=training)
        if self.se is not None:
            x = self.se(x)
        return self.act(self.conv_out(x, training=training) + residual)

    def get_config(self):
        c = super().get_config()
        c.update(in_channels=self.in_channels, out_channels=self.out_channels, stride=self.stride,
                 groups_width=self.groups_width, squeeze_excite=self.squeeze_excite, activation=self.activation)
        return c


@dataclass(frozen=True, kw_only=True)
class RegNetSpec(Spec):
    embedding_size: int = dim("embedding_size", 32)
    hidden_sizes: tuple = hf("hidden_sizes", (128, 192, 512, 1088))
    depths: tuple = hf("depths", (2, 6, 12, 2))
    num_channels: int = dim("num_channels", 3)
    groups_width: int = dim("groups_width", 64)
    layer_type: str = hf("layer_type", "y", doc="'x' or 'y' (with squeeze-and-excitation)")
    hidden_act: str = hf("hidden_act", "relu")
    downsample_in_first_stage: bool = hf("downsample_in_first_stage", True)


@keras.saving.register_keras_serializable(package="keras_models")
@register_backbone("regnet")
class RegNetBackbone(StagedConvBackbone):
    spec_cls = RegNetSpec
    base_model_prefix = "regnet"
    hf_architecture = "RegNetModel"
    hf_ignore = ("*num_batches_tracked",)
    verified_backends = ("jax", "torch", "tensorflow")

    def __init__(self, embedding_size, hidden_sizes, depths, num_channels=3, groups_width=64, layer_type="y",
                 hidden_act="relu", downsample_in_first_stage=True, **kwargs):
        super().__init__(**kwargs)
        if layer_type not in ("x", "y"):
            raise ValueError(f"RegNet layer_type must be 'x' or 'y', got {layer_type!r}")
        self.embedding_size, self.hidden_sizes, self.depths = embedding_size, list(hidden_sizes), list(depths)
        self.num_channels, self.groups_width, self.layer_type = num_channels, groups_width, layer_type
        self.hidden_act, self.downsample_in_first_stage = hidden_act, downsample_in_first_stage
        common = dict(dtype=self.dtype_policy)
        self.stem = ConvNormAct(embedding_size, 3, 2, activation=hidden_act, name="stem", **common)
        self.stages, cin = [], embedding_size
        for i, (cout, depth) in enumerate(zip(self.hidden_sizes, self.depths)):
            stride = 2 if (i > 0 or downsample_in_first_stage) else 1
            self.stages.append([
                RegNetLayer(cin if j == 0 else cout, cout, stride if j == 0 else 1, groups_width=groups_width,
                            squeeze_excite=layer_type == "y", activation=hidden_act,
                            name=f"stage_{i}_layer_{j}", **common)
                for j in range(depth)])
            cin = cout

    def weight_rules(self):
        r = conv_norm_rules("embedder.embedder", self.stem)
        for i, layers in enumerate(self.stages):
            for j, layer in enumerate(layers):
                p = f"encoder.stages.{i}.layers.{j}"
                if layer.shortcut is not None:
                    r += conv_norm_rules(p + ".shortcut", layer.shortcut)
                r += conv_norm_rules(p + ".layer.0", layer.conv_in) + conv_norm_rules(p + ".layer.1", layer.conv_mid)
                if layer.se is not None:
                    r += squeeze_excite_rules(p + ".layer.2.attention", layer.se, "0", "2")
                r += conv_norm_rules(f"{p}.layer.{3 if layer.se is not None else 2}", layer.conv_out)
        return r

    def get_config(self):
        c = super().get_config()
        c.update({k: getattr(self, k) for k in self.spec_cls.field_names()})
        return c

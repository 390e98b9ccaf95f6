"""BiT (Big Transfer, ResNet v2) and its ViT-hybrid variant (channels_last).

Every conv is weight-standardised (eps 1e-8) and every norm is a GroupNorm (``num_groups``).
``layer_type="preactivation"``: GN+act before each conv, a GN+act after the last stage;
``"bottleneck"``: conv -> GN [-> act] with a GN on the projection shortcut and act after the sum.
``global_padding``: None = PyTorch symmetric padding, ``"SAME"`` = TensorFlow SAME (dynamic where the
conv strides or dilates), ``"valid"``; ``embedding_dynamic_padding``: SAME zero padding before the
stem's 3x3/2 max pool; ``output_stride`` < 32 dilates the last stages instead of striding.
Output: the last stage's map (after the final GN+act for pre-activation models);
``pooled`` = global average pool; ``feature_maps`` = every stage's raw output."""

from dataclasses import dataclass

import keras
from keras import ops

from keras_models.layers.activations import get_activation
from keras_models.layers.conv_blocks import ConvNormAct, conv_norm_rules, make_divisible, pad_spatial, resolve_padding
from keras_models.layers.vision_embeddings import conv_rules, norm_rules
from keras_models.models.convnet import StagedConvBackbone
from keras_models.models.registry import register_backbone
from keras_models.spec import Spec, dim, hf

WS_EPS = 1e-8
GN_EPS = 1e-5


def conv_padding(global_padding, kernel_size, stride=1, dilation=1):
    """Padding of a BiT conv: an int (static, symmetric) or ``"same"`` (dynamic TensorFlow SAME)."""
    default = ((stride - 1) + dilation * (kernel_size - 1)) // 2
    mode = global_padding.lower() if isinstance(global_padding, str) else None
    if mode == "same":
        return default if stride == 1 and (dilation * (kernel_size - 1)) % 2 == 0 else "same"
    return 0 if mode == "valid" else default


@keras.saving.register_keras_serializable(package="keras_models")
class BitLayer(keras.layers.Layer):
    """One bottleneck layer (pre-activation or not), ``mid_channels`` in the 3x3 conv."""

    def __init__(self, in_channels, out_channels, mid_channels, stride=1, dilation=1, downsample=False,
                 preactivation=True, num_groups=32, activation="relu", global_padding=None, **kwargs):
        super().__init__(**kwargs)
        self.in_channels, self.out_channels, self.mid_channels = in_channels, out_channels, mid_channels
        self.stride, self.dilation, self.downsample = stride, dilation, downsample
        self.preactivation, self.num_groups, self.activation = preactivation, num_groups, activation
        self.global_padding = global_padding
        common = dict(dtype=self.dtype_policy)
        pre = preactivation
        unit = dict(weight_standardization=WS_EPS, norm=None if pre else "group", norm_groups=num_groups,
                    eps=GN_EPS, **common)
        self.down = (ConvNormAct(out_channels, 1, stride, activation=None, name="downsample",
                                 padding=conv_padding(global_padding, 1, stride), **unit) if downsample else None)
        dil = 1 if pre else dilation  # the pre-activation layer ignores dilation (as Transformers does)
        self.convs = [
            ConvNormAct(mid_channels, 1, 1, activation=None if pre else activation, name="conv1",
                        padding=conv_padding(global_padding, 1), **unit),
            ConvNormAct(mid_channels, 3, stride, activation=None if pre else activation, name="conv2", dilation=dil,
                        padding=conv_padding(global_padding, 3, stride, dil), **unit),
            ConvNormAct(out_channels, 1, 1, activation=None, name="conv3", padding=conv_padding(global_padding, 1),
                        **unit),
        ]
        self.pre_norms = ([keras.layers.GroupNormalization(num_groups, epsilon=GN_EPS, name=f"norm{i + 1}", **common)
                           for i in range(3)] if pre else [])
        self.act = get_activation(activation)

    def build(self, input_shape):
        dims = (self.in_channels, self.mid_channels, self.mid_channels)
        for norm, d in zip(self.pre_norms, dims):
            norm.build((None, None, None, d))
        if self.down is not None:
            self.down.build((None, None, None, self.in_channels))
        for conv, d in zip(self.convs, dims):
            conv.build((None, None, None, d))
        self.built = True

    def call(self, x):
        if self.preactivation:
            pre = self.act(self.pre_norms[0](x))
            shortcut = x if self.down is None else self.down(pre)
            h = self.convs[0](pre)
            h = self.convs[1](self.act(self.pre_norms[1](h)))
            return self.convs[2](self.act(self.pre_norms[2](h))) + shortcut
        shortcut = x if self.down is None else self.down(x)
        h = x
        for conv in self.convs:
            h = conv(h)
        return self.act(h + shortcut)

    def get_config(self):
        c = super().get_config()
        c.update(in_channels=self.in_channels, out_channels=self.out_channels, mid_channels=self.mid_channels,
                 stride=self.stride, dilation=self.dilation, downsample=self.downsample,
                 preactivation=self.preactivation, num_groups=self.num_groups, activation=self.activation,
                 global_padding=self.global_padding)
        return c


@dataclass(frozen=True, kw_only=True)
class BitSpec(Spec):
    hidden_sizes: tuple = hf("hidden_sizes", (256, 512, 1024, 2048))
    depths: tuple = hf("depths", (3, 4, 6, 3))
    embedding_size: int = dim("embedding_size", 64)
    num_channels: int = dim("num_channels", 3)
    layer_type: str = hf("layer_type", "preactivation", doc="'preactivation' or 'bottleneck'")
    hidden_act: str = hf("hidden_act", "relu")
    global_padding: str | None = hf("global_padding", None, doc="None (PyTorch), 'SAME' or 'valid'")
    num_groups: int = dim("num_groups", 32)
    embedding_dynamic_padding: bool = hf("embedding_dynamic_padding", False)
    output_stride: int = dim("output_stride", 32)
    width_factor: float = hf("width_factor", 1)
    drop_path_rate: float = hf("drop_path_rate", 0.0, doc="training only")


@keras.saving.register_keras_serializable(package="keras_models")
@register_backbone("bit")
class BitBackbone(StagedConvBackbone):
    spec_cls = BitSpec
    base_model_prefix = "bit"
    hf_architecture = "BitModel"
    verified_backends = ("jax", "torch", "tensorflow")

    def __init__(self, hidden_sizes, depths, embedding_size=64, num_channels=3, layer_type="preactivation",
                 hidden_act="relu", global_padding=None, num_groups=32, embedding_dynamic_padding=False,
                 output_stride=32, width_factor=1, drop_path_rate=0.0, **kwargs):
        super().__init__(**kwargs)
        if layer_type not in ("preactivation", "bottleneck"):
            raise ValueError(f"BiT layer_type must be 'preactivation' or 'bottleneck', got {layer_type!r}")
        self.hidden_sizes, self.depths, self.embedding_size = list(hidden_sizes), list(depths), embedding_size
        self.num_channels, self.layer_type, self.hidden_act = num_channels, layer_type, hidden_act
        self.global_padding, self.num_groups = global_padding, num_groups
        self.embedding_dynamic_padding, self.output_stride = embedding_dynamic_padding, output_stride
        self.width_factor, self.drop_path_rate = width_factor, drop_path_rate  # drop path: training only, unused
        pre = layer_type == "preactivation"
        common = dict(dtype=self.dtype_policy)
        self.stem = ConvNormAct(embedding_size, 7, 2, activation=None, name="stem", norm=None,
                                padding=conv_padding(global_padding, 7, 2), weight_standardization=WS_EPS, **common)
        # non-pre-activation stems normalise after the stem's extra zero padding
        self.stem_norm = (None if pre else
                          keras.layers.GroupNormalization(num_groups, epsilon=GN_EPS, name="stem_norm", **common))
        self.stem_pad = not (isinstance(global_padding, str) and global_padding.upper() == "SAME")
        self.stages, cin, current_stride, dilation = [], embedding_size, 4, 1
        for i, (size, depth) in enumerate(zip(self.hidden_sizes, self.depths)):
            cout, stride = make_divisible(size * width_factor), 1 if i == 0 else 2
            if current_stride >= output_stride:
                dilation, stride = dilation * stride, 1
            first_dilation = 1 if dilation in (1, 2) else 2
            layers = []
            for j in range(depth):
                layers.append(BitLayer(cin if j == 0 else cout, cout, make_divisible(cout * 0.25),
                                       stride if j == 0 else 1, first_dilation if j == 0 else dilation,
                                       downsample=j == 0, preactivation=pre, num_groups=num_groups,
                                       activation=hidden_act, global_padding=global_padding,
                                       name=f"stage_{i}_layer_{j}", **common))
            self.stages.append(layers)
            cin, current_stride = cout, current_stride * stride
        self.final_norm = (keras.layers.GroupNormalization(num_groups, epsilon=GN_EPS, name="final_norm", **common)
                           if pre else None)
        self.act = get_activation(hidden_act)

    def stem_output(self, pixel_values, training=False):
        x = self.stem(pixel_values)
        if self.stem_pad:
            x = pad_spatial(x, ((1, 1), (1, 1)))
        if self.stem_norm is not None:
            x = self.act(self.stem_norm(x))
        if self.embedding_dynamic_padding:
            x = pad_spatial(x, resolve_padding("same", x, 3, 2))
        return ops.max_pool(x, 3, strides=2, padding="valid")

    def call(self, inputs, training=False):
        x = self.stage_outputs(inputs, training=training)[-1]
        return self.act(self.final_norm(x)) if self.final_norm is not None else x

    def weight_rules(self):
        r = conv_rules("embedder.convolution", self.stem.conv)
        r += norm_rules("embedder.norm", self.stem_norm) if self.stem_norm is not None else []
        for i, layers in enumerate(self.stages):
            for j, layer in enumerate(layers):
                p = f"encoder.stages.{i}.layers.{j}"
                if layer.down is not None:
                    r += conv_norm_rules(p + ".downsample", layer.down, conv="conv", norm="norm")
                for k, conv in enumerate(layer.convs):
                    r += conv_norm_rules(p, conv, conv=f"conv{k + 1}", norm=f"norm{k + 1}")
                for k, norm in enumerate(layer.pre_norms):
                    r += norm_rules(f"{p}.norm{k + 1}", norm)
        return r + (norm_rules("norm", self.final_norm) if self.final_norm is not None else [])

    def get_config(self):
        c = super().get_config()
        c.update({k: getattr(self, k) for k in self.spec_cls.field_names()})
        return c

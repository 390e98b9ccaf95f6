"""What the video transformers share: the (batch, frames, height, width, channels) input, its
checks, a tubelet (3-D patch) embedding and the spec fields every family reads.

Inputs are channels_last; Transformers' (batch, frames, channels, height, width) layout only
appears at the weight boundary (Conv3d / Conv2d kernels are transposed by the weight map).
"""

from dataclasses import dataclass

import keras
import numpy as np
from keras import ops

from keras_models.errors import InputError
from keras_models.models.backbone import SpecBackbone
from keras_models.spec import Spec, dim, hf

_ser = keras.saving.register_keras_serializable(package="keras_models")

# torch Conv3d weight (out, in, kt, kh, kw) <-> keras Conv3D kernel (kt, kh, kw, in, out).
CONV3D_KERNEL_AXES = (2, 3, 4, 1, 0)


def pair(v):
    return tuple(v) if isinstance(v, (list, tuple)) else (v, v)


def one_or_pair(v):
    h, w = pair(v)
    return h if h == w else [h, w]


def pixel_values_of(inputs):
    return inputs["pixel_values"] if isinstance(inputs, dict) else inputs


@dataclass(frozen=True, kw_only=True)
class VideoSpec(Spec):
    """Fields every video family reads from config.json (defaults: the families override)."""

    image_size: tuple = hf("image_size", (224, 224), read=pair, write=one_or_pair)
    num_frames: int = dim("num_frames", 16)
    num_channels: int = dim("num_channels", 3)
    hidden_size: int = dim("hidden_size", 768)
    num_layers: int = dim("num_hidden_layers", 12)
    num_heads: int = dim("num_attention_heads", 12)
    intermediate_size: int = dim("intermediate_size", 3072)
    hidden_act: str = hf("hidden_act", "gelu")
    layer_norm_eps: float = hf("layer_norm_eps", 1e-12)
    dropout: float = hf("hidden_dropout_prob", 0.0)
    attention_dropout: float = hf("attention_probs_dropout_prob", 0.0)
    initializer_range: float = hf("initializer_range", 0.02)

    def dummy_inputs(self):
        return {"pixel_values": np.zeros((1, self.num_frames) + tuple(self.image_size) + (self.num_channels,),
                                         "float32")}


def check_video_shape(shape, model, what="pixel_values"):
    """Raise InputError unless ``shape`` is (batch, num_frames, height, width, channels) as the
    model was built for (unknown axes pass)."""
    spec = model.spec
    want = (spec.num_frames,) + tuple(spec.image_size) + (spec.num_channels,)
    shape = tuple(shape)
    if len(shape) != 5:
        raise InputError(f"{what}: expected a video batch of rank 5 (batch, frames, height, width, channels; "
                         f"channels_last), got shape {shape}")
    names = ("num_frames", "height", "width", "channels")
    for name, got, expected in zip(names, shape[1:], want):
        if got is not None and int(got) != expected:
            raise InputError(f"{what}: shape {shape} has {name} {got} but the model takes {name}={expected} "
                             f"(expected (batch, {', '.join(map(str, want))})); sample the frames and resize "
                             "them with the model's VideoProcessor")


class VideoBackbone(SpecBackbone):
    """Base of the video backbones: ``pixel_values`` (batch, frames, height, width, channels) ->
    (batch, tokens, hidden). Spec fields are attributes."""

    def __init__(self, spec=None, **kwargs):
        super().__init__(spec, **kwargs)
        for name, value in self.spec.kwargs().items():
            setattr(self, "dropout_rate" if name == "dropout" else name, value)
        self.image_size = tuple(self.spec.image_size)

    @property
    def classifier_pooling(self):
        """How VideoClassifier pools this backbone's output: "cls" (first token) or "mean"."""
        return "cls"

    def video_input(self, inputs):
        x = pixel_values_of(inputs)
        check_video_shape(x.shape, self)
        return x

    def kernel_init(self):
        return keras.initializers.TruncatedNormal(stddev=self.initializer_range)


@_ser
class TubeletEmbedding(keras.layers.Layer):
    """(batch, frames, H, W, C) -> (batch, frames/t * H/p * W/q, hidden): a Conv3D whose kernel and
    stride are the tubelet (t, p, q), tokens in (frame, row, column) order."""

    def __init__(self, hidden_size, tubelet, num_channels=3, kernel_initializer="glorot_uniform", **kwargs):
        super().__init__(**kwargs)
        self.hidden_size, self.tubelet, self.num_channels = hidden_size, tuple(tubelet), num_channels
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.projection = keras.layers.Conv3D(hidden_size, self.tubelet, strides=self.tubelet, padding="valid",
                                              data_format="channels_last", kernel_initializer=self.kernel_initializer,
                                              name="projection", dtype=self.dtype_policy)

    def build(self, input_shape):
        self.projection.build((None, None, None, None, self.num_channels))
        self.built = True

    def call(self, x):
        y = self.projection(x)
        return ops.reshape(y, (-1, y.shape[1] * y.shape[2] * y.shape[3], self.hidden_size))

    def get_config(self):
        c = super().get_config()
        c.update(hidden_size=self.hidden_size, tubelet=list(self.tubelet), num_channels=self.num_channels,
                 kernel_initializer=keras.initializers.serialize(self.kernel_initializer))
        return c


def conv3d_rules(prefix, conv):
    from keras_models.presets.weight_map import Rule, Transpose

    r = [Rule(f"{prefix}.weight", conv.kernel, Transpose(CONV3D_KERNEL_AXES))]
    if conv.use_bias:
        r.append(Rule(f"{prefix}.bias", conv.bias))
    return r


def sinusoid_table(n_positions, dim):
    """The fixed sin/cos table of "Attention is all you need" (1, n_positions, dim), float32:
    angle(pos, j) = pos / 10000^(2*(j//2)/dim), sin on even channels, cos on odd ones (computed in
    float64, as the checkpoints' reference code does)."""
    pos = np.arange(n_positions, dtype=np.float64)[:, None]
    j = np.arange(dim)
    angles = pos / np.power(10000.0, 2 * (j // 2) / dim)[None, :]
    table = np.where(j % 2 == 0, np.sin(angles), np.cos(angles))
    return table[None].astype(np.float32)


__all__ = ["VideoSpec", "VideoBackbone", "TubeletEmbedding", "conv3d_rules", "sinusoid_table",
           "check_video_shape", "pixel_values_of", "pair", "one_or_pair", "CONV3D_KERNEL_AXES"]

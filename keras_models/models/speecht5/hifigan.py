"""SpeechT5HifiGan: the HiFi-GAN vocoder SpeechT5's text-to-speech checkpoints use
(Transformers' ``SpeechT5HifiGan``, model_type ``speecht5_hifigan``).

A log-mel spectrogram (batch, frames, model_in_dim), optionally normalised first with the
checkpoint's ``mean`` / ``scale`` (``normalize_before``), goes through ``conv_pre`` (kernel 7), then
per entry of ``upsample_rates`` a leaky ReLU, a transposed conv upsampling by the rate (torch
padding (kernel - rate) // 2) and the mean of ``len(resblock_kernel_sizes)`` residual blocks
(each: per dilation, leaky ReLU, dilated conv, leaky ReLU, conv, plus the input), then a leaky
ReLU of slope 0.01, ``conv_post`` (kernel 7, one channel) and tanh. Returns the waveform (batch,
samples); an unbatched (frames, model_in_dim) spectrogram gives (samples,), as Transformers.
"""

from dataclasses import dataclass

import keras
from keras import ops

from keras_models.errors import ConfigError, InputError
from keras_models.models.backbone import SpecBackbone
from keras_models.models.registry import register_backbone
from keras_models.presets.weight_map import Rule, Transpose
from keras_models.spec import Spec, dim, hf

CONV_AXES = (2, 1, 0)  # torch Conv1d (out, in, k) / ConvTranspose1d (in, out, k) <-> keras (k, in, out) / (k, out, in)


def _ints(v):
    return tuple(int(x) for x in v)


def _nested_ints(v):
    return tuple(tuple(int(x) for x in row) for row in v)


@dataclass(frozen=True, kw_only=True)
class SpeechT5HifiGanSpec(Spec):
    model_in_dim: int = dim("model_in_dim", 80)
    sampling_rate: int = dim("sampling_rate", 16000)
    upsample_initial_channel: int = dim("upsample_initial_channel", 512)
    upsample_rates: tuple = hf("upsample_rates", (4, 4, 4, 4), read=_ints)
    upsample_kernel_sizes: tuple = hf("upsample_kernel_sizes", (8, 8, 8, 8), read=_ints)
    resblock_kernel_sizes: tuple = hf("resblock_kernel_sizes", (3, 7, 11), read=_ints)
    resblock_dilation_sizes: tuple = hf("resblock_dilation_sizes", ((1, 3, 5),) * 3, read=_nested_ints)
    leaky_relu_slope: float = hf("leaky_relu_slope", 0.1)
    normalize_before: bool = hf("normalize_before", True)
    initializer_range: float = hf("initializer_range", 0.01)

    def validate(self, source="config.json"):
        if not self.upsample_rates or len(self.upsample_rates) != len(self.upsample_kernel_sizes):
            raise ConfigError(f"{source}: upsample_rates {list(self.upsample_rates)} and upsample_kernel_sizes "
                              f"{list(self.upsample_kernel_sizes)} must be non-empty and of the same length")
        if any(r < 1 for r in self.upsample_rates) or any(
                k < r or (k - r) % 2 for k, r in zip(self.upsample_kernel_sizes, self.upsample_rates)):
            raise ConfigError(f"{source}: upsample_kernel_sizes {list(self.upsample_kernel_sizes)} must each be >= "
                              f"their upsample_rates {list(self.upsample_rates)} and differ from it by an even "
                              "number (an exact upsampling)")
        if not self.resblock_kernel_sizes or len(self.resblock_kernel_sizes) != len(self.resblock_dilation_sizes):
            raise ConfigError(f"{source}: resblock_kernel_sizes and resblock_dilation_sizes must be non-empty and of "
                              "the same length")
        if any(k % 2 == 0 for k in self.resblock_kernel_sizes) or any(
                d < 1 for row in self.resblock_dilation_sizes for d in row) or not all(self.resblock_dilation_sizes):
            raise ConfigError(f"{source}: resblock_kernel_sizes must be odd and resblock_dilation_sizes positive, "
                              f"got {list(self.resblock_kernel_sizes)}, {list(self.resblock_dilation_sizes)}")
        if self.upsample_initial_channel % (2 ** len(self.upsample_rates)):
            raise ConfigError(f"{source}: upsample_initial_channel={self.upsample_initial_channel} must be divisible "
                              f"by 2**{len(self.upsample_rates)} (the channels halve at each upsampling)")
        if not -10 <= self.leaky_relu_slope <= 10:
            raise ConfigError(f"{source}: leaky_relu_slope={self.leaky_relu_slope} is outside [-10, 10]")

    def dummy_inputs(self):
        import numpy as np

        return {"spectrogram": np.zeros((1, 2, self.model_in_dim), "float32")}


class HifiGanConv(keras.layers.Layer):
    """A torch Conv1d with symmetric zero padding and dilation, or (``transposed``) a
    ConvTranspose1d with torch's padding, channels last."""

    def __init__(self, in_channels, filters, kernel_size, dilation=1, stride=1, transposed=False, **kwargs):
        super().__init__(**kwargs)
        self.cin, self.filters, self.k = in_channels, filters, kernel_size
        self.dilation, self.stride, self.transposed = dilation, stride, transposed

    def build(self, input_shape=None):
        shape = (self.k, self.filters, self.cin) if self.transposed else (self.k, self.cin, self.filters)
        self.kernel = self.add_weight(name="kernel", shape=shape, initializer="he_normal")
        self.bias = self.add_weight(name="bias", shape=(self.filters,), initializer="zeros")
        self.built = True

    def call(self, x):
        if self.transposed:
            s, pad = self.stride, (self.k - self.stride) // 2
            y = ops.conv_transpose(x, self.kernel, strides=s, padding="valid")
            return y[:, pad:pad + ops.shape(x)[1] * s] + self.bias
        pad = self.dilation * (self.k - 1) // 2
        x = ops.pad(x, ((0, 0), (pad, pad), (0, 0)))
        return ops.conv(x, self.kernel, strides=1, padding="valid", dilation_rate=self.dilation) + self.bias

    def rules(self, name):
        return [Rule(f"{name}.weight", self.kernel, Transpose(CONV_AXES)), Rule(f"{name}.bias", self.bias)]


@keras.saving.register_keras_serializable(package="keras_models")
def hifi_gan(layer, x, kernels, slope):
    """HiFi-GAN's generator on (batch, frames, channels) features: ``layer.conv_pre``; per upsampling
    ``layer.upsampler[i]`` after a leaky ReLU, then the mean of its ``kernels`` multi-receptive-field
    residual blocks (``layer.resblocks``: (convs1, convs2) pairs, ``kernels`` per upsampling); a
    leaky ReLU (slope 0.01), ``layer.conv_post`` and tanh. Returns (batch, samples)."""
    x = layer.conv_pre(x)
    for i, up in enumerate(layer.upsampler):
        x = up(ops.leaky_relu(x, slope))
        total = None
        for convs1, convs2 in layer.resblocks[i * kernels:(i + 1) * kernels]:
            h = x
            for a, b in zip(convs1, convs2):
                h = h + b(ops.leaky_relu(a(ops.leaky_relu(h, slope)), slope))
            total = h if total is None else total + h
        x = total / kernels
    return ops.tanh(layer.conv_post(ops.leaky_relu(x, 0.01)))[..., 0]


@register_backbone("speecht5_hifigan")
class SpeechT5HifiGanBackbone(SpecBackbone):
    """HiFi-GAN vocoder: ``{"spectrogram": (batch, frames, model_in_dim)}`` (or the array) ->
    the waveform (batch, frames * prod(upsample_rates))."""

    spec_cls = SpeechT5HifiGanSpec
    hf_architecture = "SpeechT5HifiGan"
    verified_backends = ("jax", "torch", "tensorflow")

    def __init__(self, spec=None, **kwargs):
        super().__init__(spec=spec, **kwargs)
        s = self.spec
        common = dict(dtype=self.dtype_policy)
        c = s.upsample_initial_channel
        self.conv_pre = HifiGanConv(s.model_in_dim, c, 7, name="conv_pre", **common)
        self.upsampler, self.resblocks = [], []
        for i, (rate, k) in enumerate(zip(s.upsample_rates, s.upsample_kernel_sizes)):
            self.upsampler.append(HifiGanConv(c // 2**i, c // 2 ** (i + 1), k, stride=rate, transposed=True,
                                              name=f"upsampler_{i}", **common))
            ch = c // 2 ** (i + 1)
            for j, (rk, dil) in enumerate(zip(s.resblock_kernel_sizes, s.resblock_dilation_sizes)):
                convs1 = [HifiGanConv(ch, ch, rk, dilation=d, name=f"res_{i}_{j}_a{n}", **common)
                          for n, d in enumerate(dil)]
                convs2 = [HifiGanConv(ch, ch, rk, name=f"res_{i}_{j}_b{n}", **common) for n in range(len(dil))]
                self.resblocks.append((convs1, convs2))
        self.conv_post = HifiGanConv(c // 2 ** len(s.upsample_rates), 1, 7, name="conv_post", **common)

    def build(self, input_shape=None):
        s = self.spec
        for layer in [self.conv_pre, self.conv_post] + self.upsampler + [
                conv for pair in self.resblocks for group in pair for conv in group]:
            layer.build(None)
        self.mean = self.add_weight(name="mean", shape=(s.model_in_dim,), initializer="zeros", trainable=False)
        self.scale = self.add_weight(name="scale", shape=(s.model_in_dim,), initializer="ones", trainable=False)
        self.built = True

    def call(self, inputs, training=False):
        s = self.spec
        mel = inputs.get("spectrogram") if isinstance(inputs, dict) else inputs
        if mel is None:
            raise InputError("SpeechT5HifiGan needs 'spectrogram' (batch, frames, model_in_dim)")
        mel = ops.cast(ops.convert_to_tensor(mel), self.compute_dtype)
        batched = len(mel.shape) == 3
        if not batched:
            mel = mel[None]
        if len(mel.shape) != 3 or mel.shape[-1] != s.model_in_dim:
            raise InputError(f"spectrogram: expected (batch, frames, {s.model_in_dim}), got shape {tuple(mel.shape)}")
        if s.normalize_before:
            mel = (mel - ops.cast(self.mean, mel.dtype)) / ops.cast(self.scale, mel.dtype)
        x = hifi_gan(self, mel, len(s.resblock_kernel_sizes), s.leaky_relu_slope)
        return x if batched else x[0]

    def weight_rules(self):
        r = self.conv_pre.rules("conv_pre") + self.conv_post.rules("conv_post")
        r += [Rule("mean", self.mean), Rule("scale", self.scale)]
        for i, up in enumerate(self.upsampler):
            r += up.rules(f"upsampler.{i}")
        for m, (convs1, convs2) in enumerate(self.resblocks):
            for n, (a, b) in enumerate(zip(convs1, convs2)):
                r += a.rules(f"resblocks.{m}.convs1.{n}") + b.rules(f"resblocks.{m}.convs2.{n}")
        return r


__all__ = ["SpeechT5HifiGanSpec", "SpeechT5HifiGanBackbone"]

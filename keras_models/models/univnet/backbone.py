"""UnivNet: a GAN vocoder (Transformers' ``UnivNetModel``). A noise sequence goes through a
reflect-padded ``conv_pre``, then one location-variable-convolution (LVC) block per entry of
``resblock_stride_sizes`` (a leaky ReLU, a transposed conv upsampling by the stride, then residual
layers each a dilated conv followed by a convolution whose kernels and biases change every
``hop`` samples, predicted from the log-mel spectrogram by a small conv net, and a gated tanh /
sigmoid unit), a reflect-padded ``conv_post`` and tanh.

Inputs keep Transformers' layout: ``input_features`` (batch, frames, num_mel_bins) and
``noise_sequence`` (batch, frames, model_in_channels); without a noise sequence one is drawn from
N(0, 1) (``seed``). The waveform has ``frames * prod(resblock_stride_sizes)`` samples; with a
``padding_mask`` (batch, frames) the output also has ``waveform_lengths`` (its row sums), as
Transformers' forward.
"""

from dataclasses import dataclass

import keras
import numpy as np
from keras import ops

from keras_models.errors import ConfigError, InputError
from keras_models.models.backbone import SpecBackbone
from keras_models.models.registry import register_backbone
from keras_models.presets.weight_map import Rule, Transpose
from keras_models.spec import Spec, dim, hf

CONV_AXES = (2, 1, 0)  # torch (out, in, k) / transposed (in, out, k) <-> keras (k, in, out) / (k, out, in)


def _ints(v):
    return tuple(int(x) for x in v)


def _nested_ints(v):
    return tuple(tuple(int(x) for x in row) for row in v)


@dataclass(frozen=True, kw_only=True)
class UnivNetSpec(Spec):
    model_in_channels: int = dim("model_in_channels", 64)
    model_hidden_channels: int = dim("model_hidden_channels", 32)
    num_mel_bins: int = dim("num_mel_bins", 100)
    resblock_kernel_sizes: tuple = hf("resblock_kernel_sizes", (3, 3, 3), read=_ints)
    resblock_stride_sizes: tuple = hf("resblock_stride_sizes", (8, 8, 4), read=_ints)
    resblock_dilation_sizes: tuple = hf("resblock_dilation_sizes", ((1, 3, 9, 27),) * 3, read=_nested_ints)
    kernel_predictor_num_blocks: int = hf("kernel_predictor_num_blocks", 3)
    kernel_predictor_hidden_channels: int = dim("kernel_predictor_hidden_channels", 64)
    kernel_predictor_conv_size: int = dim("kernel_predictor_conv_size", 3)
    kernel_predictor_dropout: float = hf("kernel_predictor_dropout", 0.0)
    leaky_relu_slope: float = hf("leaky_relu_slope", 0.2)
    initializer_range: float = hf("initializer_range", 0.01)

    def validate(self, source="config.json"):
        n = len(self.resblock_kernel_sizes)
        if not n or not n == len(self.resblock_stride_sizes) == len(self.resblock_dilation_sizes):
            raise ConfigError(f"{source}: resblock_kernel_sizes, resblock_stride_sizes and resblock_dilation_sizes "
                              f"must be non-empty and of the same length, got {self.resblock_kernel_sizes}, "
                              f"{self.resblock_stride_sizes}, {self.resblock_dilation_sizes}")
        if n > 64:
            raise ConfigError(f"{source}: resblock_stride_sizes: at most 64 blocks, got {n}")
        for key in ("resblock_kernel_sizes", "kernel_predictor_conv_size"):
            values = getattr(self, key)
            for k in (values if isinstance(values, tuple) else (values,)):
                if not 0 < k <= 4096 or k % 2 == 0:  # an even size changes the length (Transformers fails)
                    raise ConfigError(f"{source}: {key} must be odd positive sizes (at most 4096), got {values}")
        if any(not 0 < s <= 4096 for s in self.resblock_stride_sizes):
            raise ConfigError(f"{source}: resblock_stride_sizes must be in [1, 4096], got {self.resblock_stride_sizes}")
        if any(not row or len(row) > 64 or any(not 0 < d <= 4096 for d in row) for row in self.resblock_dilation_sizes):
            raise ConfigError(f"{source}: resblock_dilation_sizes must be non-empty lists of positive dilations, got "
                              f"{self.resblock_dilation_sizes}")
        k = self.kernel_predictor_num_blocks
        if not isinstance(k, int) or isinstance(k, bool) or not 0 <= k < 1024:
            raise ConfigError(f"{source}: kernel_predictor_num_blocks must be a non-negative integer, got {k!r}")
        if k and self.kernel_predictor_hidden_channels != self.model_in_channels:
            # Transformers' kernel-predictor residual convs are model_in_channels wide
            raise ConfigError(f"{source}: kernel_predictor_hidden_channels ({self.kernel_predictor_hidden_channels}) "
                              f"must equal model_in_channels ({self.model_in_channels})")
        for key in ("kernel_predictor_dropout", "leaky_relu_slope"):
            v = getattr(self, key)
            if not isinstance(v, (int, float)) or isinstance(v, bool) or not np.isfinite(v):
                raise ConfigError(f"{source}: {key} must be a number, got {v!r}")
        if abs(self.leaky_relu_slope) > 10:  # an overflowing slope: inf / NaN waveforms
            raise ConfigError(f"{source}: leaky_relu_slope must be in [-10, 10], got {self.leaky_relu_slope}")
        if not 0 <= self.kernel_predictor_dropout < 1:
            raise ConfigError(f"{source}: kernel_predictor_dropout must be in [0, 1), got "
                              f"{self.kernel_predictor_dropout}")

    @property
    def hop_length(self):
        return int(np.prod(self.resblock_stride_sizes))

    def dummy_inputs(self):
        return {"input_features": np.zeros((1, 4, self.num_mel_bins), "float32"),
                "noise_sequence": np.zeros((1, 4, self.model_in_channels), "float32")}


class UnivNetConv(keras.layers.Layer):
    """A Conv1d (channels last) with torch's symmetric zero or reflect padding and dilation, or a
    ConvTranspose1d upsampling exactly ``stride`` times (kernel ``2 * stride``, the crop of Transformers'
    padding / output_padding)."""

    def __init__(self, in_channels, filters, kernel_size, dilation=1, pad_mode="zeros", stride=None, **kwargs):
        super().__init__(**kwargs)
        self.cin, self.filters, self.k, self.dilation = in_channels, filters, kernel_size, dilation
        self.pad_mode, self.stride = pad_mode, stride

    def build(self, input_shape=None):
        shape = (self.k, self.filters, self.cin) if self.stride else (self.k, self.cin, self.filters)
        self.kernel = self.add_weight(name="kernel", shape=shape, initializer="he_normal")
        self.bias = self.add_weight(name="bias", shape=(self.filters,), initializer="zeros")
        self.built = True

    def call(self, x):
        if self.stride:
            s = self.stride
            y = ops.conv_transpose(x, self.kernel, strides=s, padding="valid")
            crop = s // 2 + s % 2
            return y[:, crop:crop + x.shape[1] * s] + self.bias
        pad = self.dilation * (self.k - 1) // 2
        if pad:
            if self.pad_mode == "reflect" and x.shape[1] is not None and x.shape[1] <= pad:
                raise InputError(f"a sequence of {x.shape[1]} frames is too short for reflect padding of {pad}")
            x = ops.pad(x, ((0, 0), (pad, pad), (0, 0)), mode="reflect" if self.pad_mode == "reflect" else "constant")
        return ops.conv(x, self.kernel, strides=1, padding="valid", dilation_rate=self.dilation) + self.bias

    def rules(self, name):
        return [Rule(f"{name}.weight", self.kernel, Transpose(CONV_AXES)), Rule(f"{name}.bias", self.bias)]


class UnivNetKernelPredictor(keras.layers.Layer):
    """Spectrogram (batch, frames, mels) -> per-frame LVC kernels (batch, frames, layers, in, out, k) and
    biases (batch, frames, layers, out)."""

    def __init__(self, spec, kernel_size, layers, **kwargs):
        super().__init__(**kwargs)
        s = spec
        self.slope, self.layers_, self.kernel_size = s.leaky_relu_slope, layers, kernel_size
        self.cin, self.cout = s.model_hidden_channels, 2 * s.model_hidden_channels
        hid, k = s.kernel_predictor_hidden_channels, s.kernel_predictor_conv_size
        common = dict(dtype=self.dtype_policy)
        self.input_conv = UnivNetConv(s.num_mel_bins, hid, 5, name="input_conv", **common)
        self.blocks = [(UnivNetConv(s.model_in_channels, s.model_in_channels, k, name=f"res_{i}_conv1", **common),
                        UnivNetConv(s.model_in_channels, s.model_in_channels, k, name=f"res_{i}_conv2", **common))
                       for i in range(s.kernel_predictor_num_blocks)]
        self.dropout = keras.layers.Dropout(s.kernel_predictor_dropout, **common)
        self.kernel_conv = UnivNetConv(hid, self.cin * self.cout * kernel_size * layers, k, name="kernel_conv",
                                       **common)
        self.bias_conv = UnivNetConv(hid, self.cout * layers, k, name="bias_conv", **common)

    def build(self, input_shape=None):
        for conv in self._convs():
            conv.build(None)
        self.built = True

    def _convs(self):
        return [self.input_conv, *(c for pair in self.blocks for c in pair), self.kernel_conv, self.bias_conv]

    def call(self, spectrogram, training=False):
        h = ops.leaky_relu(self.input_conv(spectrogram), self.slope)
        for conv1, conv2 in self.blocks:
            y = self.dropout(h, training=training)
            y = ops.leaky_relu(conv1(y), self.slope)
            h = ops.leaky_relu(conv2(y), self.slope) + h
        b, t = ops.shape(h)[0], ops.shape(h)[1]
        kernels = ops.reshape(self.kernel_conv(h), (b, t, self.layers_, self.cin, self.cout, self.kernel_size))
        biases = ops.reshape(self.bias_conv(h), (b, t, self.layers_, self.cout))
        return kernels, biases

    def rules(self, p):
        r = self.input_conv.rules(f"{p}input_conv") + self.kernel_conv.rules(f"{p}kernel_conv")
        r += self.bias_conv.rules(f"{p}bias_conv")
        for i, (c1, c2) in enumerate(self.blocks):
            r += c1.rules(f"{p}resblocks.{i}.conv1") + c2.rules(f"{p}resblocks.{i}.conv2")
        return r


def location_variable_conv(x, kernel, bias, hop):
    """x (batch, frames * hop, in), kernel (batch, frames, in, out, k), bias (batch, frames, out) ->
    (batch, frames * hop, out): each hop-sample segment convolved (zero padding (k - 1) // 2, across
    segment borders) with its frame's kernel."""
    k = kernel.shape[-1]
    pad = (k - 1) // 2
    length = x.shape[1]
    xp = ops.pad(x, ((0, 0), (pad, pad), (0, 0)))
    windows = ops.stack([xp[:, j:j + length] for j in range(k)], axis=2)  # (b, t, k, in)
    b, frames = ops.shape(kernel)[0], ops.shape(kernel)[1]
    windows = ops.reshape(windows, (b, frames, hop, k, x.shape[-1]))
    out = ops.einsum("blhki,biokl->blho", windows, ops.transpose(kernel, (0, 2, 3, 4, 1)))
    out = out + bias[:, :, None, :]
    return ops.reshape(out, (b, length, kernel.shape[3]))


class UnivNetLvcBlock(keras.layers.Layer):
    def __init__(self, spec, index, hop, **kwargs):
        super().__init__(**kwargs)
        s = spec
        c = s.model_hidden_channels
        self.slope, self.hop, self.channels = s.leaky_relu_slope, hop, c
        k, stride = s.resblock_kernel_sizes[index], s.resblock_stride_sizes[index]
        dilations = s.resblock_dilation_sizes[index]
        common = dict(dtype=self.dtype_policy)
        self.convt_pre = UnivNetConv(c, c, 2 * stride, stride=stride, name="convt_pre", **common)
        self.kernel_predictor = UnivNetKernelPredictor(s, k, len(dilations), name="kernel_predictor", **common)
        self.convs = [UnivNetConv(c, c, k, dilation=d, name=f"res_{i}", **common) for i, d in enumerate(dilations)]

    def build(self, input_shape=None):
        self.convt_pre.build(None)
        self.kernel_predictor.build(None)
        for conv in self.convs:
            conv.build(None)
        self.built = True

    def call(self, x, spectrogram, training=False):
        x = self.convt_pre(ops.leaky_relu(x, self.slope))
        kernels, biases = self.kernel_predictor(spectrogram, training=training)
        c = self.channels
        for i, conv in enumerate(self.convs):
            h = ops.leaky_relu(conv(ops.leaky_relu(x, self.slope)), self.slope)
            h = location_variable_conv(h, kernels[:, :, i], biases[:, :, i], self.hop)
            x = x + ops.sigmoid(h[..., :c]) * ops.tanh(h[..., c:])
        return x

    def rules(self, p):
        r = self.convt_pre.rules(f"{p}convt_pre") + self.kernel_predictor.rules(f"{p}kernel_predictor.")
        for i, conv in enumerate(self.convs):
            r += conv.rules(f"{p}resblocks.{i}.conv")
        return r


@keras.saving.register_keras_serializable(package="keras_models")
@register_backbone("univnet")
class UnivNetBackbone(SpecBackbone):
    """UnivNet vocoder: ``{"input_features", "noise_sequence"?, "padding_mask"?}`` ->
    ``{"waveforms": (batch, frames * hop_length)[, "waveform_lengths"]}``."""

    spec_cls = UnivNetSpec
    hf_architecture = "UnivNetModel"
    verified_backends = ("jax", "torch", "tensorflow")

    def __init__(self, spec=None, **kwargs):
        super().__init__(spec=spec, **kwargs)
        s = self.spec
        common = dict(dtype=self.dtype_policy)
        self.conv_pre = UnivNetConv(s.model_in_channels, s.model_hidden_channels, 7, pad_mode="reflect",
                                    name="conv_pre", **common)
        hop = 1
        self.blocks = []
        for i, stride in enumerate(s.resblock_stride_sizes):
            hop *= stride
            self.blocks.append(UnivNetLvcBlock(s, i, hop, name=f"lvc_{i}", **common))
        self.conv_post = UnivNetConv(s.model_hidden_channels, 1, 7, pad_mode="reflect", name="conv_post", **common)
        self.noise_seed = keras.random.SeedGenerator(name="noise_seed")  # drawn noise without a seed

    def build(self, input_shape=None):
        self.conv_pre.build(None)
        for block in self.blocks:
            block.build(None)
        self.conv_post.build(None)
        self.built = True

    def _inputs(self, inputs, seed):
        if not isinstance(inputs, dict):
            inputs = {"input_features": inputs}
        if "input_features" not in inputs:
            raise InputError("inputs: expected a dict with 'input_features' (batch, frames, num_mel_bins)")
        s = self.spec
        mel = ops.cast(ops.convert_to_tensor(inputs["input_features"]), self.compute_dtype)
        if len(mel.shape) == 2:
            mel = mel[None]
        if len(mel.shape) != 3 or mel.shape[-1] != s.num_mel_bins:
            raise InputError(f"input_features: expected (batch, frames, {s.num_mel_bins}), got shape "
                             f"{tuple(mel.shape)}")
        if mel.shape[1] is not None and mel.shape[1] < 4:  # conv_pre's reflect padding of 3
            raise InputError(f"input_features: at least 4 frames are needed, got {mel.shape[1]}")
        noise = inputs.get("noise_sequence")
        if noise is None:
            noise = keras.random.normal((ops.shape(mel)[0], mel.shape[1], s.model_in_channels),
                                        seed=self.noise_seed if seed is None else seed, dtype=self.compute_dtype)
        noise = ops.cast(ops.convert_to_tensor(noise), self.compute_dtype)
        if len(noise.shape) == 2:
            noise = noise[None]
        if len(noise.shape) != 3 or noise.shape[-1] != s.model_in_channels or noise.shape[1] != mel.shape[1]:
            raise InputError(f"noise_sequence: expected (batch, {mel.shape[1]}, {s.model_in_channels}), got shape "
                             f"{tuple(noise.shape)}")
        if noise.shape[0] == 1 and mel.shape[0] not in (None, 1):
            noise = ops.repeat(noise, mel.shape[0], axis=0)
        elif mel.shape[0] == 1 and noise.shape[0] not in (None, 1):
            mel = ops.repeat(mel, noise.shape[0], axis=0)
        if None not in (mel.shape[0], noise.shape[0]) and mel.shape[0] != noise.shape[0]:
            raise InputError(f"noise_sequence: batch size {noise.shape[0]} != input_features' {mel.shape[0]}")
        return mel, noise, inputs.get("padding_mask")

    def call(self, inputs, seed=None, training=False):
        mel, noise, mask = self._inputs(inputs, seed)
        x = self.conv_pre(noise)
        for block in self.blocks:
            x = block(x, mel, training=training)
        x = self.conv_post(ops.leaky_relu(x, self.spec.leaky_relu_slope))
        out = {"waveforms": ops.tanh(x[..., 0])}
        if mask is not None:
            mask = ops.convert_to_tensor(mask)
            if len(mask.shape) == 1:
                mask = mask[None]
            out["waveform_lengths"] = ops.sum(ops.cast(mask, "int32"), axis=1)
        return out

    def weight_rules(self):
        r = self.conv_pre.rules("conv_pre") + self.conv_post.rules("conv_post")
        for i, block in enumerate(self.blocks):
            r += block.rules(f"resblocks.{i}.")
        return r


__all__ = ["UnivNetSpec", "UnivNetBackbone", "location_variable_conv"]

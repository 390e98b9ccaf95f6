"""EnCodec: a neural audio codec. A SEANet encoder (weight-normalised or time-group-normalised
convolutions with causal or centred padding, residual blocks, strided downsampling, an LSTM), a
residual vector quantizer (``num_quantizers`` Euclidean codebooks), and the mirrored decoder
(transposed convolutions).

Audio keeps Transformers' layout: ``input_values`` (batch, channels, samples) and
``padding_mask`` (batch, samples); codes are ``(chunks, batch, quantizers, frames)``.

* :meth:`EncodecBackbone.encode` -> ``{"audio_codes", "audio_scales", "last_frame_pad_length"}``;
  with ``chunk_length_s`` / ``overlap`` (the 48 kHz model) the audio is cut into overlapping chunks,
  each encoded on its own, and with ``normalize`` each chunk is divided by its RMS (the scale is
  returned per chunk, None otherwise);
* :meth:`EncodecBackbone.decode` -> audio values (batch, channels, samples): chunks decoded and
  joined by a triangular-weighted overlap-add, scaled back;
* calling the model on ``{"input_values", "padding_mask"}`` does both, as Transformers' forward:
  ``{"audio_codes", "audio_values"}``.

The number of codebooks used follows ``bandwidth`` (kbps, one of ``target_bandwidths``; default the
first). encode/decode run with the waveform's length known (they loop over chunks in Python).
"""

import itertools
import math
from dataclasses import dataclass

import keras
import numpy as np
from keras import ops

from keras_models import compat
from keras_models.errors import ConfigError, InputError
from keras_models.models.backbone import SpecBackbone
from keras_models.models.registry import register_backbone
from keras_models.layers.vision_embeddings import norm_rules
from keras_models.presets.weight_map import Reshape, Rule, Transpose
from keras_models.spec import Spec, const, dim, hf

CONV_AXES = (2, 1, 0)  # torch (out, in, k) / transposed (in, out, k) <-> keras (k, in, out) / (k, out, in)


def _ints(v):
    return tuple(int(x) for x in v)


def _floats(v):
    return tuple(float(x) for x in v)


@dataclass(frozen=True, kw_only=True)
class EncodecSpec(Spec):
    target_bandwidths: tuple = hf("target_bandwidths", (1.5, 3.0, 6.0, 12.0, 24.0), read=_floats)
    sampling_rate: int = dim("sampling_rate", 24000)
    audio_channels: int = dim("audio_channels", 1)
    normalize: bool = hf("normalize", False)
    chunk_length_s: float | None = hf("chunk_length_s", None)
    overlap: float | None = hf("overlap", None)
    hidden_size: int = dim("hidden_size", 128)
    num_filters: int = dim("num_filters", 32)
    num_residual_layers: int = hf("num_residual_layers", 1)
    upsampling_ratios: tuple = hf("upsampling_ratios", (8, 5, 4, 2), read=_ints)
    norm_type: str = hf("norm_type", "weight_norm", doc="'weight_norm' or 'time_group_norm'")
    kernel_size: int = dim("kernel_size", 7)
    last_kernel_size: int = dim("last_kernel_size", 7)
    residual_kernel_size: int = dim("residual_kernel_size", 3)
    dilation_growth_rate: int = dim("dilation_growth_rate", 2)
    use_causal_conv: bool = hf("use_causal_conv", True)
    pad_mode: str = hf("pad_mode", "reflect", doc="'reflect' or 'constant'")
    compress: int = dim("compress", 2)
    num_lstm_layers: int = hf("num_lstm_layers", 2)
    trim_right_ratio: float = hf("trim_right_ratio", 1.0)
    codebook_size: int = dim("codebook_size", 1024)
    codebook_dim: int | None = hf("codebook_dim", None, doc="null: hidden_size")
    use_conv_shortcut: bool = hf("use_conv_shortcut", True)
    model_type: str = const("encodec")

    def validate(self, source="config.json"):
        if self.norm_type not in ("weight_norm", "time_group_norm"):
            raise ConfigError(f"{source}: norm_type must be 'weight_norm' or 'time_group_norm', got {self.norm_type!r}")
        if self.pad_mode not in ("reflect", "constant"):
            raise ConfigError(f"{source}: pad_mode must be 'reflect' or 'constant', got {self.pad_mode!r}")
        if self.audio_channels > 2:
            raise ConfigError(f"{source}: audio_channels must be 1 or 2, got {self.audio_channels}")
        if not self.upsampling_ratios or any(r <= 0 for r in self.upsampling_ratios):
            raise ConfigError(f"{source}: upsampling_ratios must be positive integers, got {self.upsampling_ratios}")
        if self.codebook_size & (self.codebook_size - 1):
            raise ConfigError(f"{source}: codebook_size must be a power of 2, got {self.codebook_size}")
        if self.codebook_dim not in (None, self.hidden_size):
            raise ConfigError(f"{source}: codebook_dim {self.codebook_dim} must equal hidden_size {self.hidden_size}")
        if not self.target_bandwidths:
            raise ConfigError(f"{source}: target_bandwidths must not be empty")
        if not (self.use_causal_conv or self.trim_right_ratio == 1.0):
            raise ConfigError(f"{source}: trim_right_ratio != 1.0 needs use_causal_conv")
        for key in ("num_residual_layers", "num_lstm_layers"):
            v = getattr(self, key)
            if not isinstance(v, int) or isinstance(v, bool) or not 0 <= v < 1024:
                raise ConfigError(f"{source}: {key} must be a non-negative integer, got {v!r}")
        if self.chunk_length_s is not None and (not isinstance(self.chunk_length_s, (int, float))
                                                or not self.chunk_length_s > 0 or self.chunk_length < 1):
            raise ConfigError(f"{source}: chunk_length_s must be a positive number of seconds, got "
                              f"{self.chunk_length_s!r}")
        if self.chunk_length is not None and self.chunk_length >= 2**31:
            raise ConfigError(f"{source}: chunk_length_s * sampling_rate must be < 2**31 samples, got {self.chunk_length}")
        for key in ("kernel_size", "last_kernel_size", "residual_kernel_size"):
            if getattr(self, key) > 4096:
                raise ConfigError(f"{source}: {key} must be at most 4096, got {getattr(self, key)}")
        if max(self.upsampling_ratios) > 4096:
            raise ConfigError(f"{source}: upsampling_ratios must be at most 4096 each, got {self.upsampling_ratios}")
        if self.overlap is not None and (not isinstance(self.overlap, (int, float)) or not 0 <= self.overlap < 1):
            raise ConfigError(f"{source}: overlap must be in [0, 1), got {self.overlap!r}")
        if self.num_quantizers < 1:
            raise ConfigError(f"{source}: target_bandwidths {self.target_bandwidths} give no quantizer")

    # Transformers' derived values
    @property
    def chunk_length(self):
        return None if self.chunk_length_s is None else int(self.chunk_length_s * self.sampling_rate)

    @property
    def chunk_stride(self):
        if self.chunk_length_s is None or self.overlap is None:
            return None
        return max(1, int((1.0 - self.overlap) * self.chunk_length))

    @property
    def hop_length(self):
        return int(np.prod(self.upsampling_ratios))

    @property
    def frame_rate(self):
        return math.ceil(self.sampling_rate / self.hop_length)

    @property
    def num_quantizers(self):
        return int(1000 * self.target_bandwidths[-1] // (self.frame_rate * math.ceil(math.log2(self.codebook_size))))

    def quantizers_for(self, bandwidth):
        if bandwidth is None or bandwidth <= 0.0:
            return self.num_quantizers
        return int(max(1, math.floor(bandwidth * 1000 / (math.log2(self.codebook_size) * self.frame_rate))))

    def dummy_inputs(self):
        return {"input_values": np.zeros((1, self.audio_channels, self.hop_length * 2), "float32")}


def _pad(x, left, right, mode):
    """Pad the time axis of (batch, time, channels); reflect padding of a too-short input first pads
    zeros on the right (removed again afterwards), as Transformers does."""
    if mode != "reflect":
        return ops.pad(x, ((0, 0), (left, right), (0, 0)))
    length = x.shape[1]
    extra = max(left, right) - length + 1 if length <= max(left, right) else 0
    if extra:
        x = ops.pad(x, ((0, 0), (0, extra), (0, 0)))
    y = ops.pad(x, ((0, 0), (left, right), (0, 0)), mode="reflect")
    return y[:, :y.shape[1] - extra] if extra else y


class EncodecConv(keras.layers.Layer):
    """A (transposed) Conv1d with weight norm (``g`` per torch dim 0) or a one-group GroupNorm, and
    EnCodec's padding: causal / centred, plus the extra right padding that makes the last frame whole;
    a transposed conv trims ``kernel - stride`` samples instead."""

    def __init__(self, filters, kernel_size, stride=1, dilation=1, transpose=False, causal=True, pad_mode="reflect",
                 norm_type="weight_norm", trim_right_ratio=1.0, **kwargs):
        super().__init__(**kwargs)
        self.filters, self.k, self.stride, self.dilation = filters, kernel_size, stride, dilation
        self.transpose, self.causal, self.pad_mode = transpose, causal, pad_mode
        self.norm_type, self.trim_right_ratio = norm_type, trim_right_ratio
        self.norm = (keras.layers.GroupNormalization(groups=1, epsilon=1e-5, name="norm", dtype=self.dtype_policy)
                     if norm_type == "time_group_norm" else None)

    def build(self, input_shape):
        cin = int(input_shape[-1])
        shape = (self.k, self.filters, cin) if self.transpose else (self.k, cin, self.filters)
        if self.norm_type == "weight_norm":
            self.weight_g = self.add_weight(name="weight_g", shape=(shape[-1],), initializer="ones")
            self.weight_v = self.add_weight(name="weight_v", shape=shape, initializer="he_normal")
        else:
            self.kernel = self.add_weight(name="kernel", shape=shape, initializer="he_normal")
            self.norm.build((None, None, self.filters))
        self.bias = self.add_weight(name="bias", shape=(self.filters,), initializer="zeros")
        self.built = True

    def _kernel(self):
        if self.norm_type != "weight_norm":
            return self.kernel
        v = ops.cast(self.weight_v, "float32")
        norm = ops.sqrt(ops.sum(ops.square(v), axis=(0, 1), keepdims=True))
        return ops.cast(v * (ops.cast(self.weight_g, "float32") / norm), self.compute_dtype)

    def _torch_weight(self):
        """Torch: the (normed) kernel in the layout compat's 1-D conv helpers take, derived once per
        weight change under inference (compat.inference_cache), not per call."""
        sources = [self.weight_v, self.weight_g] if self.norm_type == "weight_norm" else [self.kernel]

        def compute():
            kernel = ops.convert_to_tensor(self._kernel())
            if self.transpose:
                return compat.torch_conv_transpose1d_weight(kernel)
            return compat.torch_conv1d_weight(kernel)

        return compat.inference_cache(self, "torch_weight", sources, compute)

    def call(self, x):
        torch_fast = keras.backend.backend() == "torch"  # one torch call, bias included; no per-call kernel reorder
        kernel = self._torch_weight() if torch_fast else self._kernel()
        if self.transpose:
            if torch_fast:
                x = ops.convert_to_tensor(x)
                y = compat.torch_conv_transpose1d(x, kernel, ops.cast(self.bias, x.dtype), self.stride)
            else:
                y = ops.conv_transpose(x, kernel, strides=self.stride, padding="valid") + self.bias
            if self.norm is not None:
                y = self.norm(y)
            total = self.k - self.stride
            right = math.ceil(total * self.trim_right_ratio) if self.causal else total // 2
            left = total - right
            return y[:, left:y.shape[1] - right]
        size = (self.k - 1) * self.dilation + 1
        total = size - self.stride
        length = x.shape[1]
        frames = math.ceil((length - size + total) / self.stride + 1) - 1
        extra = frames * self.stride + size - total - length
        if self.causal:
            left, right = total, extra
        else:
            right = total // 2
            left, right = total - right, right + extra
        if torch_fast:
            pads = (0, 0)
            if self.pad_mode == "constant":  # zeros: padded inside the conv call
                pads = (left, right)
            else:
                x = _pad(x, left, right, self.pad_mode)
            y = compat.torch_conv1d(ops.convert_to_tensor(x), kernel, self.bias.value, pads, self.dilation,
                                    self.stride)
            return self.norm(y) if self.norm is not None else y
        x = _pad(x, left, right, self.pad_mode)
        y = ops.conv(x, kernel, strides=self.stride, padding="valid", dilation_rate=self.dilation) + self.bias
        return self.norm(y) if self.norm is not None else y

    def rules(self, p):
        hf_v = Transpose(CONV_AXES)
        if self.norm_type == "weight_norm":
            n = int(self.weight_g.shape[0])
            return [Rule(p + "conv.parametrizations.weight.original0", self.weight_g, Reshape((n, 1, 1), (n,)),
                         aliases=(p + "conv.weight_g",)),
                    Rule(p + "conv.parametrizations.weight.original1", self.weight_v, hf_v,
                         aliases=(p + "conv.weight_v",)),
                    Rule(p + "conv.bias", self.bias)]
        return [Rule(p + "conv.weight", self.kernel, hf_v), Rule(p + "conv.bias", self.bias)] + norm_rules(
            p + "norm", self.norm)


class EncodecLSTM(keras.layers.Layer):
    """A stacked torch-style LSTM (gates i, f, g, o; both biases) over time, plus its input."""

    def __init__(self, units, num_layers, **kwargs):
        super().__init__(**kwargs)
        self.units, self.num_layers = units, num_layers

    def build(self, input_shape):
        h = self.units
        self.cells = []
        for i in range(self.num_layers):
            self.cells.append(tuple(self.add_weight(name=f"{n}_l{i}", shape=s) for n, s in (
                ("kernel_ih", (h, 4 * h)), ("kernel_hh", (h, 4 * h)), ("bias_ih", (4 * h,)), ("bias_hh", (4 * h,)))))
        self.built = True

    def call(self, x):
        h_dim = self.units
        seq = ops.transpose(x, (1, 0, 2))  # (time, batch, units)
        batch = ops.shape(x)[0]
        for w_ih, w_hh, b_ih, b_hh in self.cells:
            inputs = ops.matmul(seq, w_ih) + (b_ih + b_hh)

            def step(carry, xt, w_hh=w_hh):
                h, c = carry[:, :h_dim], carry[:, h_dim:]  # one carry tensor: the same structure on every backend
                gates = xt + ops.matmul(h, w_hh)
                i = ops.sigmoid(gates[:, :h_dim])
                f = ops.sigmoid(gates[:, h_dim:2 * h_dim])
                g = ops.tanh(gates[:, 2 * h_dim:3 * h_dim])
                o = ops.sigmoid(gates[:, 3 * h_dim:])
                c = f * c + i * g
                h = o * ops.tanh(c)
                hc = ops.concatenate([h, c], axis=-1)
                return hc, hc  # outputs shaped as the carry (Keras' tensorflow scan needs it)

            _, seq = ops.scan(step, ops.zeros((batch, 2 * h_dim), dtype=seq.dtype), inputs)
            seq = seq[..., :h_dim]
        return ops.transpose(seq, (1, 0, 2)) + x

    def rules(self, p):
        r = []
        for i, (w_ih, w_hh, b_ih, b_hh) in enumerate(self.cells):
            r += [Rule(f"{p}lstm.weight_ih_l{i}", w_ih, Transpose()), Rule(f"{p}lstm.weight_hh_l{i}", w_hh, Transpose()),
                  Rule(f"{p}lstm.bias_ih_l{i}", b_ih), Rule(f"{p}lstm.bias_hh_l{i}", b_hh)]
        return r


class EncodecResBlock(keras.layers.Layer):
    """ELU, conv (residual_kernel_size, dilated), ELU, conv (1), plus a 1x1-conv (or identity) shortcut."""

    def __init__(self, dim, dilation, conv_kwargs, residual_kernel_size=3, compress=2, shortcut=True, **kwargs):
        super().__init__(**kwargs)
        self.dim = dim
        self.conv1 = EncodecConv(dim // compress, residual_kernel_size, dilation=dilation, name="conv1", **conv_kwargs)
        self.conv2 = EncodecConv(dim, 1, name="conv2", **conv_kwargs)
        self.shortcut = EncodecConv(dim, 1, name="shortcut", **conv_kwargs) if shortcut else None

    def build(self, input_shape):
        self.conv1.build((None, None, self.dim))
        self.conv2.build((None, None, self.conv1.filters))
        if self.shortcut is not None:
            self.shortcut.build((None, None, self.dim))
        self.built = True

    def call(self, x):
        h = self.conv2(ops.elu(self.conv1(ops.elu(x))))
        return (self.shortcut(x) if self.shortcut is not None else x) + h

    def rules(self, p):
        r = self.conv1.rules(p + "block.1.") + self.conv2.rules(p + "block.3.")
        return r + (self.shortcut.rules(p + "shortcut.") if self.shortcut is not None else [])


class _Stack(keras.layers.Layer):
    """A SEANet encoder or decoder: layers and ELUs ("elu") in Transformers' ModuleList order."""

    def __init__(self, items, in_channels, **kwargs):
        super().__init__(**kwargs)
        self.in_channels = in_channels
        self.elu_at = tuple(i for i, x in enumerate(items) if isinstance(x, str))
        self.parts = [x for x in items if not isinstance(x, str)]

    def _order(self):
        parts = iter(self.parts)
        return [(i, None if i in self.elu_at else next(parts)) for i in range(len(self.parts) + len(self.elu_at))]

    def build(self, input_shape):
        shape = (None, None, self.in_channels)
        for layer in self.parts:
            layer.build(shape)
            if isinstance(layer, EncodecConv):
                shape = (None, None, layer.filters)
        self.built = True

    def call(self, x):
        for _, layer in self._order():
            x = ops.elu(x) if layer is None else layer(x)
        return x

    def rules(self, p):
        return [r for i, layer in self._order() if layer is not None for r in layer.rules(f"{p}layers.{i}.")]


@keras.saving.register_keras_serializable(package="keras_models")
@register_backbone("encodec")
class EncodecBackbone(SpecBackbone):
    spec_cls = EncodecSpec
    verified_backends = ("jax", "torch", "tensorflow")
    base_model_prefix = "encodec"
    hf_architecture = "EncodecModel"
    # the codebooks' k-means statistics (unused at inference); not written back
    hf_known_unused = ("quantizer.layers.*.codebook.inited", "quantizer.layers.*.codebook.cluster_size",
                       "quantizer.layers.*.codebook.embed_avg")

    def __init__(self, spec=None, **kwargs):
        super().__init__(spec=spec, **kwargs)
        s = self.spec
        common = dict(dtype=self.dtype_policy)
        conv = dict(causal=s.use_causal_conv, pad_mode=s.pad_mode, norm_type=s.norm_type, **common)
        n = itertools.count()

        def res(dim, j):
            return EncodecResBlock(dim, s.dilation_growth_rate ** j, conv, s.residual_kernel_size, s.compress,
                                   s.use_conv_shortcut, name=f"res_{next(n)}", **common)

        enc = [EncodecConv(s.num_filters, s.kernel_size, name="conv_in", **conv)]
        scale = 1
        for ratio in reversed(s.upsampling_ratios):
            width = scale * s.num_filters
            enc += [res(width, j) for j in range(s.num_residual_layers)]
            enc += ["elu", EncodecConv(width * 2, ratio * 2, stride=ratio, name=f"down_{next(n)}", **conv)]
            scale *= 2
        enc += [EncodecLSTM(scale * s.num_filters, s.num_lstm_layers, name="lstm", **common), "elu",
                EncodecConv(s.hidden_size, s.last_kernel_size, name="conv_out", **conv)]
        self.encoder = _Stack(enc, s.audio_channels, name="encoder", **common)

        scale = 2 ** len(s.upsampling_ratios)
        dec = [EncodecConv(scale * s.num_filters, s.kernel_size, name="conv_in", **conv),
               EncodecLSTM(scale * s.num_filters, s.num_lstm_layers, name="lstm", **common)]
        for ratio in s.upsampling_ratios:
            width = scale * s.num_filters
            dec += ["elu", EncodecConv(width // 2, ratio * 2, stride=ratio, transpose=True,
                                       trim_right_ratio=s.trim_right_ratio, name=f"up_{next(n)}", **conv)]
            dec += [res(width // 2, j) for j in range(s.num_residual_layers)]
            scale //= 2
        dec += ["elu", EncodecConv(s.audio_channels, s.last_kernel_size, name="conv_out", **conv)]
        self.decoder = _Stack(dec, s.hidden_size, name="decoder", **common)

    def build(self, input_shape=None):
        s = self.spec
        self.encoder.build(None)
        self.decoder.build(None)
        self.codebooks = [self.add_weight(name=f"codebook_{i}", shape=(s.codebook_size, s.hidden_size),
                                          initializer="random_normal") for i in range(s.num_quantizers)]
        self.built = True

    def dummy_inputs(self):
        return self.spec.dummy_inputs()

    # --- quantizer ------------------------------------------------------------------------------
    def quantize_embeddings(self, embeddings, num_quantizers):
        """(batch, frames, hidden) -> codes (batch, quantizers, frames) int32: each codebook picks the
        nearest entry to what the previous ones left."""
        residual = ops.cast(embeddings, "float32")
        codes = []
        for book in self.codebooks[:num_quantizers]:
            book = ops.cast(book, "float32")
            dist = -(ops.sum(ops.square(residual), axis=-1, keepdims=True) - 2 * ops.matmul(residual, ops.transpose(book))
                     + ops.sum(ops.square(book), axis=-1)[None, None, :])
            idx = ops.cast(ops.argmax(dist, axis=-1), "int32")
            residual = residual - ops.take(book, idx, axis=0)
            codes.append(idx)
        return ops.stack(codes, axis=1)

    def embed_codes(self, codes):
        """codes (batch, quantizers, frames) -> (batch, frames, hidden)."""
        out = 0.0
        for i in range(codes.shape[1]):
            out = out + ops.take(ops.cast(self.codebooks[i], self.compute_dtype), codes[:, i], axis=0)
        return out

    # --- encode / decode ------------------------------------------------------------------------
    def _compiled(self, key, fn):
        """``fn`` jitted under jax (eager jax would dispatch, and compile the LSTM's scan, op by op),
        cached per model and key; under torch run with autograd off (so the convs' derived kernels
        are cached, compat.inference_cache) and the layers called directly
        (generation.backend.direct_layer_calls); as is on tensorflow."""
        backend = keras.backend.backend()
        if backend == "torch":
            from keras_models.generation.backend import direct_layer_calls

            def run(*args):
                import torch

                with torch.no_grad(), direct_layer_calls(self):
                    return fn(*args)

            return run
        if backend != "jax":
            return fn
        cache = self.__dict__.get("_jax_compiled")
        if cache is None:
            cache = {}
            object.__setattr__(self, "_jax_compiled", cache)  # not a tracked Keras attribute
        if key not in cache:
            from keras_models.generation.backend import compile_fn

            cache[key] = compile_fn(self, fn)
        return cache[key]

    def _check_audio(self, input_values):
        x = ops.convert_to_tensor(input_values)
        if len(x.shape) != 3 or x.shape[1] != self.spec.audio_channels:
            raise InputError(f"input_values: expected (batch, {self.spec.audio_channels}, samples), got shape "
                             f"{tuple(x.shape)}")
        return ops.cast(x, self.compute_dtype)

    def _bandwidth(self, bandwidth):
        s = self.spec
        if bandwidth is None:
            bandwidth = s.target_bandwidths[0]
        if bandwidth not in s.target_bandwidths:
            raise InputError(f"bandwidth={bandwidth!r}: this model supports {list(s.target_bandwidths)}")
        return s.quantizers_for(bandwidth)

    def encode(self, input_values, padding_mask=None, bandwidth=None):
        """Audio (batch, channels, samples) -> ``{"audio_codes": (chunks, batch, quantizers, frames)
        int32, "audio_scales": [per chunk (batch, 1) or None], "last_frame_pad_length": int}``."""
        s = self.spec
        x = self._check_audio(input_values)
        nq = self._bandwidth(bandwidth)
        length = x.shape[-1]
        chunk, stride = (length, length) if s.chunk_length is None else (s.chunk_length, s.chunk_stride)
        mask = None if padding_mask is None else ops.cast(
            ops.reshape(ops.convert_to_tensor(padding_mask), (x.shape[0], -1, length)) != 0, x.dtype)
        codes, scales = [], []
        for offset in range(0, length, stride):
            frame = x[..., offset:offset + chunk]
            if mask is not None:
                frame = frame * mask[..., offset:offset + chunk]
            if frame.shape[-1] / s.sampling_rate > 1e-5 + (s.chunk_length_s or math.inf):
                raise InputError(f"input_values: a chunk of {frame.shape[-1]} samples is longer than chunk_length_s")
            scale = None
            if s.normalize:
                mono = ops.mean(frame, axis=1, keepdims=True)
                scale = ops.sqrt(ops.mean(ops.square(mono), axis=-1, keepdims=True)) + 1e-8
                frame = frame / scale
                scale = ops.reshape(scale, (-1, 1))
            codes.append(self._compiled(("encode", nq), lambda f: self.quantize_embeddings(
                self.encoder(ops.transpose(f, (0, 2, 1))), nq))(frame))
            scales.append(scale)
        pad = codes[0].shape[-1] - codes[-1].shape[-1]
        if pad > 0:
            codes[-1] = ops.pad(codes[-1], ((0, 0), (0, 0), (0, pad)))
        return {"audio_codes": ops.stack(codes), "audio_scales": scales, "last_frame_pad_length": int(pad)}

    def decode_frame(self, codes, scale=None):
        """codes (batch, quantizers, frames) -> audio (batch, channels, samples)."""
        out = self._compiled("decode", lambda c: ops.transpose(self.decoder(self.embed_codes(c)), (0, 2, 1)))(codes)
        return out if scale is None else out * ops.reshape(ops.cast(scale, out.dtype), (-1, 1, 1))

    def decode(self, audio_codes, audio_scales=None, padding_mask=None, last_frame_pad_length=0):
        """Codes (chunks, batch, quantizers, frames) -> audio (batch, channels, samples)."""
        s = self.spec
        codes = ops.cast(ops.convert_to_tensor(audio_codes), "int32")
        if len(codes.shape) != 4:
            raise InputError(f"audio_codes: expected (chunks, batch, quantizers, frames), got shape {tuple(codes.shape)}")
        if codes.shape[2] > len(self.codebooks):
            raise InputError(f"audio_codes: {codes.shape[2]} quantizers, this model has {len(self.codebooks)}")
        scales = list(audio_scales) if audio_scales is not None else [None] * codes.shape[0]
        frames = []
        for i in range(codes.shape[0]):
            c = codes[i]
            if i == codes.shape[0] - 1 and last_frame_pad_length:
                c = c[..., :c.shape[-1] - last_frame_pad_length]
            frames.append(self.decode_frame(c, scales[i]))
        if s.chunk_length is None:
            if len(frames) != 1:
                raise InputError(f"audio_codes: expected one chunk, got {len(frames)}")
            audio = frames[0]
        else:
            audio = overlap_add(frames, s.chunk_stride or 1)
        if padding_mask is not None and np.shape(padding_mask)[-1] < audio.shape[-1]:
            audio = audio[..., :np.shape(padding_mask)[-1]]
        return audio

    def call(self, inputs, bandwidth=None):
        if isinstance(inputs, dict):
            values, mask = inputs["input_values"], inputs.get("padding_mask")
        else:
            values, mask = inputs, None
        enc = self.encode(values, mask, bandwidth)
        audio = self.decode(enc["audio_codes"], enc["audio_scales"], mask if mask is not None else values,
                            enc["last_frame_pad_length"])
        return {"audio_codes": enc["audio_codes"], "audio_values": audio}

    def compute_output_spec(self, inputs, bandwidth=None):
        """Output shapes without running the codec (a symbolic build: the variables come from build)."""
        s = self.spec
        values = inputs["input_values"] if isinstance(inputs, dict) else inputs
        batch, channels, length = values.shape
        chunk, stride = (length, length) if s.chunk_length is None else (s.chunk_length, s.chunk_stride)
        chunks = 1 if length is None else len(range(0, length, stride))
        frames = chunk
        for ratio in s.upsampling_ratios:
            frames = None if frames is None else -(-frames // ratio)
        nq = s.quantizers_for(s.target_bandwidths[0] if bandwidth is None else bandwidth)
        return {"audio_codes": keras.KerasTensor((chunks, batch, nq, frames), dtype="int32"),
                "audio_values": keras.KerasTensor((batch, channels, length), dtype=self.compute_dtype)}

    # --- HF conversion ------------------------------------------------------------------------
    def weight_rules(self):
        r = self.encoder.rules("encoder.") + self.decoder.rules("decoder.")
        return r + [Rule(f"quantizer.layers.{i}.codebook.embed", b) for i, b in enumerate(self.codebooks)]


def overlap_add(frames, stride):
    """Chunks (batch, channels, samples) joined with triangular weights, normalised by their sum."""
    total = stride * (len(frames) - 1) + frames[-1].shape[-1]
    n = frames[0].shape[-1]
    weight = (0.5 - np.abs(np.linspace(0, 1, n + 2, dtype=np.float32)[1:-1] - np.float32(0.5))).astype(np.float32)
    out = 0.0
    sum_weight = np.zeros(total, np.float32)
    for i, frame in enumerate(frames):
        m = frame.shape[-1]
        off = i * stride
        w = np.zeros(total, np.float32)
        w[off:off + m] = weight[:m]
        sum_weight[off:off + m] += weight[:m]
        out = out + ops.pad(frame, ((0, 0), (0, 0), (off, total - off - m))) * ops.convert_to_tensor(w)
    return out / ops.convert_to_tensor(sum_weight)


__all__ = ["EncodecSpec", "EncodecBackbone", "overlap_add"]

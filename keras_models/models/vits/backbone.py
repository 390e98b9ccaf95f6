"""VITS text-to-speech (Transformers' ``VitsModel``, the facebook/mms-tts-* checkpoints).

``input_ids`` (batch, tokens) go through a post-norm Transformer text encoder (windowed relative
position attention, convolutional feed-forward), a projection to the prior's means and log
variances, a duration predictor (deterministic convolutions, or the stochastic one: a flow of
rational-quadratic splines run in reverse from noise), a monotonic expansion of the prior to
``ceil(exp(log_duration) / speaking_rate)`` frames per token, a reversed residual-coupling flow
(WaveNet couplings) and a HiFi-GAN decoder.

Outputs (a dict, Transformers' names): ``waveform`` (batch, samples), ``sequence_lengths``
(batch,) samples per row, ``spectrogram`` (batch, frames, flow_size) -- channels last, where
Transformers' is (batch, flow_size, frames) -- and ``last_hidden_state`` (batch, tokens, hidden),
the text encoder's output (``hidden_states`` too with ``output_hidden_states=True``).

The number of frames depends on the predicted durations, so a call computes it eagerly; under a
compiled call (``jax.jit``, ``predict_on_batch`` on jax) pass ``output_frames`` (a Python int):
the outputs are then that many frames long (rows padded with zeros, or cut). ``noise_scale`` and
``noise_scale_duration`` (config.json, or call arguments) scale the drawn noise; with both 0 the
outputs are a pure function of the weights and the inputs.
"""

from dataclasses import dataclass

import keras
import numpy as np
from keras import ops

from keras_models.errors import ConfigError, InputError
from keras_models.layers.activations import get_activation
from keras_models.models.backbone import SpecBackbone
from keras_models.models.registry import register_backbone
from keras_models.presets.weight_map import TRANSPOSE, Reshape, Rule, Transpose
from keras_models.spec import Spec, dim, hf

CONV_AXES = (2, 1, 0)  # torch Conv1d (out, in, k) <-> keras (k, in, out); ConvTranspose1d (in, out, k) <-> (k, out, in)
DEPTHWISE_AXES = (2, 0, 1)  # torch (channels, 1, k) <-> keras depthwise (k, channels, 1)


def _ints(v):
    return tuple(int(x) for x in v)


def _nested_ints(v):
    return tuple(tuple(int(x) for x in row) for row in v)


@dataclass(frozen=True, kw_only=True)
class VitsSpec(Spec):
    vocab_size: int = dim("vocab_size", 38)
    hidden_size: int = dim("hidden_size", 192)
    num_layers: int = hf("num_hidden_layers", 6)
    num_heads: int = dim("num_attention_heads", 2)
    window_size: int = dim("window_size", 4)  # Transformers needs a positive window
    use_bias: bool = hf("use_bias", True)
    ffn_dim: int = dim("ffn_dim", 768)
    ffn_kernel_size: int = dim("ffn_kernel_size", 3)
    flow_size: int = dim("flow_size", 192)
    spectrogram_bins: int = dim("spectrogram_bins", 513)
    hidden_act: str = hf("hidden_act", "relu")
    layer_norm_eps: float = hf("layer_norm_eps", 1e-5)
    use_stochastic_duration_prediction: bool = hf("use_stochastic_duration_prediction", True)
    num_speakers: int = dim("num_speakers", 1)
    speaker_embedding_size: int = hf("speaker_embedding_size", 0)
    upsample_initial_channel: int = dim("upsample_initial_channel", 512)
    upsample_rates: tuple = hf("upsample_rates", (8, 8, 2, 2), read=_ints)
    upsample_kernel_sizes: tuple = hf("upsample_kernel_sizes", (16, 16, 4, 4), read=_ints)
    resblock_kernel_sizes: tuple = hf("resblock_kernel_sizes", (3, 7, 11), read=_ints)
    resblock_dilation_sizes: tuple = hf("resblock_dilation_sizes", ((1, 3, 5),) * 3, read=_nested_ints)
    leaky_relu_slope: float = hf("leaky_relu_slope", 0.1)
    depth_separable_channels: int = dim("depth_separable_channels", 2)
    depth_separable_num_layers: int = hf("depth_separable_num_layers", 3)
    duration_predictor_flow_bins: int = dim("duration_predictor_flow_bins", 10)
    duration_predictor_tail_bound: float = hf("duration_predictor_tail_bound", 5.0)
    duration_predictor_kernel_size: int = dim("duration_predictor_kernel_size", 3)
    duration_predictor_num_flows: int = hf("duration_predictor_num_flows", 4)
    duration_predictor_filter_channels: int = dim("duration_predictor_filter_channels", 256)
    prior_encoder_num_flows: int = hf("prior_encoder_num_flows", 4)
    prior_encoder_num_wavenet_layers: int = dim("prior_encoder_num_wavenet_layers", 4)
    posterior_encoder_num_wavenet_layers: int = dim("posterior_encoder_num_wavenet_layers", 16)
    wavenet_kernel_size: int = dim("wavenet_kernel_size", 5)
    wavenet_dilation_rate: int = dim("wavenet_dilation_rate", 1)
    speaking_rate: float = hf("speaking_rate", 1.0)
    noise_scale: float = hf("noise_scale", 0.667)
    noise_scale_duration: float = hf("noise_scale_duration", 0.8)
    sampling_rate: int = dim("sampling_rate", 16000)
    pad_token_id: int | None = hf("pad_token_id", None)
    # training-only rates (inference ignores them, as Transformers' eval mode)
    layerdrop: float = hf("layerdrop", 0.1)
    hidden_dropout: float = hf("hidden_dropout", 0.1)
    attention_dropout: float = hf("attention_dropout", 0.1)
    activation_dropout: float = hf("activation_dropout", 0.1)
    duration_predictor_dropout: float = hf("duration_predictor_dropout", 0.5)
    wavenet_dropout: float = hf("wavenet_dropout", 0.0)
    initializer_range: float = hf("initializer_range", 0.02)

    def validate(self, source="config.json"):
        def fail(key, msg):
            raise ConfigError(f"{source}: {key} {msg}")

        if self.hidden_size % self.num_heads:
            fail("num_attention_heads", f"({self.num_heads}) must divide hidden_size ({self.hidden_size})")
        for key in ("num_layers", "depth_separable_num_layers", "duration_predictor_num_flows",
                    "prior_encoder_num_flows", "speaker_embedding_size"):
            v = getattr(self, key)
            name = "num_hidden_layers" if key == "num_layers" else key
            if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v <= 1024:
                fail(name, f"must be an integer in [0, 1024], got {v!r}")
        if self.window_size > 4096:
            fail("window_size", f"must be at most 4096, got {self.window_size}")
        if self.depth_separable_channels != 2:
            fail("depth_separable_channels", f"must be 2 (the duration flows' two channels), got "
                 f"{self.depth_separable_channels}")
        if get_activation_or_none(self.hidden_act) is None:
            fail("hidden_act", f"{self.hidden_act!r} is not a supported activation")
        n = len(self.upsample_rates)
        if not n or n != len(self.upsample_kernel_sizes):
            fail("upsample_kernel_sizes", f"must be as long as upsample_rates, got {self.upsample_kernel_sizes} "
                 f"and {self.upsample_rates}")
        for u, k in zip(self.upsample_rates, self.upsample_kernel_sizes):
            if not 0 < u <= k <= 4096:
                fail("upsample_kernel_sizes", f"must be at least the upsample rates (positive), got "
                     f"{self.upsample_kernel_sizes} for rates {self.upsample_rates}")
        if self.upsample_initial_channel % (2 ** n):
            fail("upsample_initial_channel", f"({self.upsample_initial_channel}) must be divisible by 2**{n}")
        if not self.resblock_kernel_sizes or len(self.resblock_kernel_sizes) != len(self.resblock_dilation_sizes):
            fail("resblock_dilation_sizes", "must be as long as resblock_kernel_sizes (non-empty)")
        odd = [("resblock_kernel_sizes", self.resblock_kernel_sizes), ("wavenet_kernel_size",
               (self.wavenet_kernel_size,)), ("duration_predictor_kernel_size", (self.duration_predictor_kernel_size,))]
        for key, values in odd:
            if any(not 0 < k <= 4096 or k % 2 == 0 for k in values):
                fail(key, f"must be odd positive sizes (an even size changes the length), got {values}")
        if any(not row or any(not 0 < d <= 4096 for d in row) for row in self.resblock_dilation_sizes):
            fail("resblock_dilation_sizes", f"must be non-empty lists of positive dilations, got "
                 f"{self.resblock_dilation_sizes}")
        if self.flow_size % 2:
            fail("flow_size", f"must be even (the coupling halves), got {self.flow_size}")
        if self.num_speakers > 1 and not self.speaker_embedding_size:
            fail("speaker_embedding_size", "must be positive when num_speakers > 1")
        for key in ("layer_norm_eps", "leaky_relu_slope", "duration_predictor_tail_bound", "speaking_rate",
                    "noise_scale", "noise_scale_duration"):
            v = getattr(self, key)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not np.isfinite(v):
                fail(key, f"must be a finite number, got {v!r}")
        if self.speaking_rate <= 0:
            fail("speaking_rate", f"must be positive, got {self.speaking_rate}")
        if self.duration_predictor_tail_bound <= 0:
            fail("duration_predictor_tail_bound", f"must be positive, got {self.duration_predictor_tail_bound}")
        if self.duration_predictor_flow_bins * 1e-3 > 1:
            fail("duration_predictor_flow_bins", f"must be at most 1000, got {self.duration_predictor_flow_bins}")
        for key in ("layerdrop", "hidden_dropout", "attention_dropout", "activation_dropout",
                    "duration_predictor_dropout", "wavenet_dropout"):
            v = getattr(self, key)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 <= v <= 1:
                fail(key, f"must be a rate in [0, 1], got {v!r}")

    def dummy_inputs(self):
        return {"input_ids": np.ones((1, 4), "int32"), "attention_mask": np.ones((1, 4), "int32")}


def _is_tensor(x):
    return not isinstance(x, (int, float, type(None)))


def get_activation_or_none(name):
    try:
        return get_activation(name)
    except Exception:  # an unknown name
        return None


class VitsConv(keras.layers.Layer):
    """A torch-style Conv1d on channels-last inputs: zero padding (left, right) (default: "same"
    for odd kernels), dilation, optional bias, weight norm (``g`` per output channel) or depthwise
    (``groups == channels``)."""

    def __init__(self, cin, cout, kernel_size=1, dilation=1, padding=None, use_bias=True, weight_norm=False,
                 depthwise=False, **kwargs):
        super().__init__(**kwargs)
        self.cin, self.cout, self.k, self.dilation = cin, cout, kernel_size, dilation
        total = dilation * (kernel_size - 1)
        self.padding = (total // 2, total - total // 2) if padding is None else padding
        self.use_bias, self.weight_norm, self.depthwise = use_bias, weight_norm, depthwise

    def build(self, input_shape=None):
        shape = (self.k, self.cin, 1) if self.depthwise else (self.k, self.cin, self.cout)
        self.kernel = self.add_weight(name="kernel", shape=shape, initializer="he_normal")
        if self.weight_norm:
            self.weight_g = self.add_weight(name="weight_g", shape=(self.cout,), initializer="ones")
        self.bias = self.add_weight(name="bias", shape=(self.cout,), initializer="zeros") if self.use_bias else None
        self.built = True

    def call(self, x):
        kernel = self.kernel
        if self.weight_norm:
            norm = ops.sqrt(ops.sum(ops.square(kernel), axis=(0, 1), keepdims=True))
            kernel = kernel * (self.weight_g / norm)
        if any(self.padding):
            x = ops.pad(x, ((0, 0), self.padding, (0, 0)))
        if self.depthwise:
            y = ops.depthwise_conv(x, kernel, strides=1, padding="valid", dilation_rate=self.dilation)
        else:
            y = ops.conv(x, kernel, strides=1, padding="valid", dilation_rate=self.dilation)
        return y + self.bias if self.bias is not None else y

    def rules(self, p):
        if self.weight_norm:
            r = [Rule(f"{p}.parametrizations.weight.original0", self.weight_g, Reshape((self.cout, 1, 1),
                                                                                        (self.cout,)),
                      aliases=(f"{p}.weight_g",)),
                 Rule(f"{p}.parametrizations.weight.original1", self.kernel, Transpose(CONV_AXES),
                      aliases=(f"{p}.weight_v",))]
        else:
            r = [Rule(f"{p}.weight", self.kernel, Transpose(DEPTHWISE_AXES if self.depthwise else CONV_AXES))]
        if self.bias is not None:
            r.append(Rule(f"{p}.bias", self.bias))
        return r


def _layer_norm(name, eps=1e-5, dtype=None):
    return keras.layers.LayerNormalization(epsilon=eps, name=name, dtype=dtype)


def _norm_rules(p, norm):
    return [Rule(f"{p}.weight", norm.gamma), Rule(f"{p}.bias", norm.beta)]


class VitsAttention(keras.layers.Layer):
    def __init__(self, spec, **kwargs):
        super().__init__(**kwargs)
        s = spec
        self.heads, self.head_dim, self.window = s.num_heads, s.hidden_size // s.num_heads, s.window_size
        common = dict(use_bias=s.use_bias, dtype=self.dtype_policy)
        self.q_proj, self.k_proj, self.v_proj, self.out_proj = (
            keras.layers.Dense(s.hidden_size, name=n, **common) for n in ("q_proj", "k_proj", "v_proj", "out_proj"))
        self.hidden = s.hidden_size

    def build(self, input_shape=None):
        for d in (self.q_proj, self.k_proj, self.v_proj, self.out_proj):
            d.build((None, None, self.hidden))
        if self.window:
            shape = (2 * self.window + 1, self.head_dim)
            self.emb_rel_k = self.add_weight(name="emb_rel_k", shape=shape, initializer="random_normal")
            self.emb_rel_v = self.add_weight(name="emb_rel_v", shape=shape, initializer="random_normal")
        self.built = True

    def _relative(self, table, length):
        """(length, length, head_dim): row i, column j holds table[j - i + window] within the window, else 0."""
        rel = np.arange(length)[None, :] - np.arange(length)[:, None]
        inside = (np.abs(rel) <= self.window).astype("float32")
        idx = np.clip(rel + self.window, 0, 2 * self.window)
        return ops.take(table, idx, axis=0) * ops.cast(inside[..., None], table.dtype)

    def call(self, x, mask):
        b, t = ops.shape(x)[0], x.shape[1]

        def heads(y):
            return ops.transpose(ops.reshape(y, (b, t, self.heads, self.head_dim)), (0, 2, 1, 3))

        q = heads(self.q_proj(x) * (self.head_dim ** -0.5))
        k, v = heads(self.k_proj(x)), heads(self.v_proj(x))
        scores = ops.einsum("bhid,bhjd->bhij", q, k)
        if self.window:
            scores = scores + ops.einsum("bhid,ijd->bhij", q, self._relative(self.emb_rel_k, t))
        key_mask = ops.cast(mask, "bool")[:, None, None, :]
        scores = ops.where(key_mask, scores, ops.cast(-1e30, scores.dtype))
        probs = ops.softmax(scores, axis=-1)
        out = ops.einsum("bhij,bhjd->bhid", probs, v)
        if self.window:
            out = out + ops.einsum("bhij,ijd->bhid", probs, self._relative(self.emb_rel_v, t))
        out = ops.reshape(ops.transpose(out, (0, 2, 1, 3)), (b, t, self.hidden))
        return self.out_proj(out)

    def rules(self, p):
        r = []
        for name in ("q_proj", "k_proj", "v_proj", "out_proj"):
            d = getattr(self, name)
            r.append(Rule(f"{p}{name}.weight", d.kernel, TRANSPOSE))
            if d.use_bias:
                r.append(Rule(f"{p}{name}.bias", d.bias))
        if self.window:
            n = 2 * self.window + 1
            r += [Rule(f"{p}emb_rel_k", self.emb_rel_k, Reshape((1, n, self.head_dim), (n, self.head_dim))),
                  Rule(f"{p}emb_rel_v", self.emb_rel_v, Reshape((1, n, self.head_dim), (n, self.head_dim)))]
        return r


class VitsEncoderLayer(keras.layers.Layer):
    def __init__(self, spec, **kwargs):
        super().__init__(**kwargs)
        s = spec
        common = dict(dtype=self.dtype_policy)
        self.attention = VitsAttention(s, name="attention", **common)
        self.layer_norm = _layer_norm("layer_norm", s.layer_norm_eps, self.dtype_policy)
        self.final_layer_norm = _layer_norm("final_layer_norm", s.layer_norm_eps, self.dtype_policy)
        k = s.ffn_kernel_size
        pad = ((k - 1) // 2, k // 2)
        self.conv_1 = VitsConv(s.hidden_size, s.ffn_dim, k, padding=pad, name="conv_1", **common)
        self.conv_2 = VitsConv(s.ffn_dim, s.hidden_size, k, padding=pad, name="conv_2", **common)
        self.act = get_activation(s.hidden_act)
        self.hidden = s.hidden_size

    def build(self, input_shape=None):
        self.attention.build(None)
        self.layer_norm.build((None, None, self.hidden))
        self.final_layer_norm.build((None, None, self.hidden))
        self.conv_1.build(None)
        self.conv_2.build(None)
        self.built = True

    def call(self, x, mask, pmask):
        x = self.layer_norm(x + self.attention(x, mask))
        h = self.act(self.conv_1(x * pmask)) * pmask
        h = self.conv_2(h) * pmask
        return self.final_layer_norm(x + h)

    def rules(self, p):
        return (self.attention.rules(f"{p}attention.") + _norm_rules(f"{p}layer_norm", self.layer_norm)
                + _norm_rules(f"{p}final_layer_norm", self.final_layer_norm)
                + self.conv_1.rules(f"{p}feed_forward.conv_1") + self.conv_2.rules(f"{p}feed_forward.conv_2"))


class VitsWaveNet(keras.layers.Layer):
    """Weight-normed gated dilated convolutions with residual and skip outputs."""

    def __init__(self, spec, num_layers, **kwargs):
        super().__init__(**kwargs)
        s = spec
        h = s.hidden_size
        self.hidden, self.n = h, num_layers
        common = dict(weight_norm=True, dtype=self.dtype_policy)
        self.cond_layer = (VitsConv(s.speaker_embedding_size, 2 * h * num_layers, 1, name="cond_layer", **common)
                           if s.speaker_embedding_size else None)
        self.in_layers = [VitsConv(h, 2 * h, s.wavenet_kernel_size, dilation=s.wavenet_dilation_rate ** i,
                                   name=f"in_{i}", **common) for i in range(num_layers)]
        self.res_skip_layers = [VitsConv(h, 2 * h if i < num_layers - 1 else h, 1, name=f"res_skip_{i}", **common)
                                for i in range(num_layers)]

    def build(self, input_shape=None):
        for c in self._convs():
            c.build(None)
        self.built = True

    def _convs(self):
        return ([self.cond_layer] if self.cond_layer is not None else []) + self.in_layers + self.res_skip_layers

    def call(self, x, pmask, cond=None):
        h = self.hidden
        out = ops.zeros_like(x)
        if cond is not None:
            cond = self.cond_layer(cond)
        for i in range(self.n):
            a = self.in_layers[i](x)
            if cond is not None:
                a = a + cond[..., 2 * h * i:2 * h * (i + 1)]
            acts = ops.tanh(a[..., :h]) * ops.sigmoid(a[..., h:])
            rs = self.res_skip_layers[i](acts)
            if i < self.n - 1:
                x = (x + rs[..., :h]) * pmask
                out = out + rs[..., h:]
            else:
                out = out + rs
        return out * pmask

    def rules(self, p):
        r = self.cond_layer.rules(f"{p}cond_layer") if self.cond_layer is not None else []
        for i in range(self.n):
            r += self.in_layers[i].rules(f"{p}in_layers.{i}") + self.res_skip_layers[i].rules(f"{p}res_skip_layers.{i}")
        return r


class VitsCoupling(keras.layers.Layer):
    """A mean-only residual coupling layer (run in reverse: the second half minus a WaveNet's mean)."""

    def __init__(self, spec, **kwargs):
        super().__init__(**kwargs)
        s = spec
        self.half = s.flow_size // 2
        common = dict(dtype=self.dtype_policy)
        self.conv_pre = VitsConv(self.half, s.hidden_size, 1, name="conv_pre", **common)
        self.wavenet = VitsWaveNet(s, s.prior_encoder_num_wavenet_layers, name="wavenet", **common)
        self.conv_post = VitsConv(s.hidden_size, self.half, 1, name="conv_post", **common)

    def build(self, input_shape=None):
        for layer in (self.conv_pre, self.wavenet, self.conv_post):
            layer.build(None)
        self.built = True

    def call(self, x, pmask, cond=None):
        first, second = x[..., :self.half], x[..., self.half:]
        h = self.wavenet(self.conv_pre(first) * pmask, pmask, cond)
        mean = self.conv_post(h) * pmask
        return ops.concatenate([first, (second - mean) * pmask], axis=-1)

    def rules(self, p):
        return (self.conv_pre.rules(f"{p}conv_pre") + self.wavenet.rules(f"{p}wavenet.")
                + self.conv_post.rules(f"{p}conv_post"))


class VitsDDSConv(keras.layers.Layer):
    """Dilated depth-separable convolutions (depthwise dilated conv, LayerNorm, GELU, pointwise conv,
    LayerNorm, GELU, residual)."""

    def __init__(self, spec, **kwargs):
        super().__init__(**kwargs)
        s = spec
        c, k = s.hidden_size, s.duration_predictor_kernel_size
        self.channels, self.n = c, s.depth_separable_num_layers
        common = dict(dtype=self.dtype_policy)
        self.dilated = [VitsConv(c, c, k, dilation=k ** i, depthwise=True, name=f"dilated_{i}", **common)
                        for i in range(self.n)]
        self.pointwise = [VitsConv(c, c, 1, name=f"pointwise_{i}", **common) for i in range(self.n)]
        self.norms_1 = [_layer_norm(f"norm1_{i}", dtype=self.dtype_policy) for i in range(self.n)]
        self.norms_2 = [_layer_norm(f"norm2_{i}", dtype=self.dtype_policy) for i in range(self.n)]

    def build(self, input_shape=None):
        for i in range(self.n):
            self.dilated[i].build(None)
            self.pointwise[i].build(None)
            self.norms_1[i].build((None, None, self.channels))
            self.norms_2[i].build((None, None, self.channels))
        self.built = True

    def call(self, x, pmask, cond=None):
        if cond is not None:
            x = x + cond
        for i in range(self.n):
            h = ops.gelu(self.norms_1[i](self.dilated[i](x * pmask)), approximate=False)
            h = ops.gelu(self.norms_2[i](self.pointwise[i](h)), approximate=False)
            x = x + h
        return x * pmask

    def rules(self, p):
        r = []
        for i in range(self.n):
            r += self.dilated[i].rules(f"{p}convs_dilated.{i}") + self.pointwise[i].rules(f"{p}convs_pointwise.{i}")
            r += _norm_rules(f"{p}norms_1.{i}", self.norms_1[i]) + _norm_rules(f"{p}norms_2.{i}", self.norms_2[i])
        return r


def rational_quadratic_spline_inverse(x, widths, heights, derivatives, tail_bound, min_bin=1e-3, min_derivative=1e-3):
    """The inverse of an unconstrained rational-quadratic spline: ``x`` (...), unnormalised widths and
    heights (..., bins) and inner derivatives (..., bins - 1); identity outside [-tail, tail]."""
    bins = widths.shape[-1]
    inside = ops.logical_and(x >= -tail_bound, x <= tail_bound)
    xc = ops.clip(x, -tail_bound, tail_bound)
    edge = float(np.log(np.exp(1 - min_derivative) - 1))
    pad = ops.full_like(derivatives[..., :1], edge)
    derivatives = min_derivative + ops.softplus(ops.concatenate([pad, derivatives, pad], axis=-1))

    def knots(unnormalised):
        w = min_bin + (1 - min_bin * bins) * ops.softmax(unnormalised, axis=-1)
        cum = ops.concatenate([ops.zeros_like(w[..., :1]), ops.cumsum(w, axis=-1)], axis=-1)
        cum = 2 * tail_bound * cum - tail_bound
        cum = ops.concatenate([ops.full_like(cum[..., :1], -tail_bound), cum[..., 1:-1],
                               ops.full_like(cum[..., :1], tail_bound)], axis=-1)
        return cum, cum[..., 1:] - cum[..., :-1]

    cumwidths, widths = knots(widths)
    cumheights, heights = knots(heights)
    locations = ops.concatenate([cumheights[..., :-1], cumheights[..., -1:] + 1e-6], axis=-1)
    idx = ops.sum(ops.cast(xc[..., None] >= locations, "int32"), axis=-1, keepdims=True) - 1
    idx = ops.clip(idx, 0, bins - 1)

    def pick(t):
        return ops.take_along_axis(t, idx, axis=-1)[..., 0]

    delta = heights / widths
    in_cw, in_w, in_ch, in_h = pick(cumwidths), pick(widths), pick(cumheights), pick(heights)
    in_delta, d0, d1 = pick(delta), pick(derivatives[..., :-1]), pick(derivatives[..., 1:])
    i1 = d0 + d1 - 2 * in_delta
    i2 = xc - in_ch
    i3 = i2 * i1
    a = in_h * (in_delta - d0) + i3
    b = in_h * d0 - i3
    c = -in_delta * i2
    root = (2 * c) / (-b - ops.sqrt(ops.maximum(b * b - 4 * a * c, 0.0)))
    return ops.where(inside, root * in_w + in_cw, x)


class VitsConvFlow(keras.layers.Layer):
    def __init__(self, spec, **kwargs):
        super().__init__(**kwargs)
        s = spec
        self.filters, self.bins, self.tail = s.hidden_size, s.duration_predictor_flow_bins, s.duration_predictor_tail_bound
        common = dict(dtype=self.dtype_policy)
        self.conv_pre = VitsConv(1, s.hidden_size, 1, name="conv_pre", **common)
        self.conv_dds = VitsDDSConv(s, name="conv_dds", **common)
        self.conv_proj = VitsConv(s.hidden_size, 3 * self.bins - 1, 1, name="conv_proj", **common)

    def build(self, input_shape=None):
        for layer in (self.conv_pre, self.conv_dds, self.conv_proj):
            layer.build(None)
        self.built = True

    def call(self, x, pmask, cond):
        first, second = x[..., :1], x[..., 1:]
        h = self.conv_proj(self.conv_dds(self.conv_pre(first), pmask, cond)) * pmask  # (b, t, 3 * bins - 1)
        scale = float(np.sqrt(self.filters))
        nb = self.bins
        second = rational_quadratic_spline_inverse(second[..., 0], h[..., :nb] / scale, h[..., nb:2 * nb] / scale,
                                                   h[..., 2 * nb:], self.tail)
        return ops.concatenate([first, second[..., None]], axis=-1) * pmask

    def rules(self, p):
        return (self.conv_pre.rules(f"{p}conv_pre") + self.conv_dds.rules(f"{p}conv_dds.")
                + self.conv_proj.rules(f"{p}conv_proj"))


class VitsAffine(keras.layers.Layer):
    def build(self, input_shape=None):
        self.translate = self.add_weight(name="translate", shape=(2,), initializer="zeros")
        self.log_scale = self.add_weight(name="log_scale", shape=(2,), initializer="zeros")
        self.built = True

    def call(self, x, pmask, cond=None):
        return (x - self.translate) * ops.exp(-self.log_scale) * pmask

    def rules(self, p):
        return [Rule(f"{p}translate", self.translate, Reshape((2, 1), (2,))),
                Rule(f"{p}log_scale", self.log_scale, Reshape((2, 1), (2,)))]


class VitsStochasticDurationPredictor(keras.layers.Layer):
    """Run in reverse only (inference): noise through the reversed spline flows, the first channel
    is the log duration. The posterior flows exist for training checkpoints only."""

    def __init__(self, spec, **kwargs):
        super().__init__(**kwargs)
        s = spec
        c = s.hidden_size
        common = dict(dtype=self.dtype_policy)
        self.conv_pre = VitsConv(c, c, 1, name="conv_pre", **common)
        self.conv_proj = VitsConv(c, c, 1, name="conv_proj", **common)
        self.conv_dds = VitsDDSConv(s, name="conv_dds", **common)
        self.cond = VitsConv(s.speaker_embedding_size, c, 1, name="cond", **common) if s.speaker_embedding_size else None
        n = s.duration_predictor_num_flows
        self.flows = [VitsAffine(name="flow_0", **common)] + [VitsConvFlow(s, name=f"flow_{i + 1}", **common)
                                                              for i in range(n)]
        self.post_conv_pre = VitsConv(1, c, 1, name="post_conv_pre", **common)
        self.post_conv_proj = VitsConv(c, c, 1, name="post_conv_proj", **common)
        self.post_conv_dds = VitsDDSConv(s, name="post_conv_dds", **common)
        self.post_flows = [VitsAffine(name="post_flow_0", **common)] + [
            VitsConvFlow(s, name=f"post_flow_{i + 1}", **common) for i in range(n)]

    def _parts(self):
        return ([self.conv_pre, self.conv_proj, self.conv_dds] + ([self.cond] if self.cond is not None else [])
                + self.flows + [self.post_conv_pre, self.post_conv_proj, self.post_conv_dds] + self.post_flows)

    def build(self, input_shape=None):
        for layer in self._parts():
            layer.build(None)
        self.built = True

    def call(self, x, pmask, speaker=None, noise=None):
        x = self.conv_pre(x)
        if speaker is not None:
            x = x + self.cond(speaker)
        x = self.conv_proj(self.conv_dds(x, pmask)) * pmask
        flows = list(reversed(self.flows))
        flows = flows[:-2] + [flows[-1]]  # the first conv flow is skipped in reverse, as in VITS
        z = noise
        for flow in flows:
            z = flow(ops.flip(z, axis=-1), pmask, x)
        return z[..., :1]

    def rules(self, p):
        r = (self.conv_pre.rules(f"{p}conv_pre") + self.conv_proj.rules(f"{p}conv_proj")
             + self.conv_dds.rules(f"{p}conv_dds.") + self.post_conv_pre.rules(f"{p}post_conv_pre")
             + self.post_conv_proj.rules(f"{p}post_conv_proj") + self.post_conv_dds.rules(f"{p}post_conv_dds."))
        if self.cond is not None:
            r += self.cond.rules(f"{p}cond")
        for i, f in enumerate(self.flows):
            r += f.rules(f"{p}flows.{i}.")
        for i, f in enumerate(self.post_flows):
            r += f.rules(f"{p}post_flows.{i}.")
        return r


class VitsDurationPredictor(keras.layers.Layer):
    def __init__(self, spec, **kwargs):
        super().__init__(**kwargs)
        s = spec
        k, f = s.duration_predictor_kernel_size, s.duration_predictor_filter_channels
        common = dict(dtype=self.dtype_policy)
        self.f = f
        self.conv_1 = VitsConv(s.hidden_size, f, k, padding=(k // 2, k // 2), name="conv_1", **common)
        self.conv_2 = VitsConv(f, f, k, padding=(k // 2, k // 2), name="conv_2", **common)
        self.norm_1 = _layer_norm("norm_1", s.layer_norm_eps, self.dtype_policy)
        self.norm_2 = _layer_norm("norm_2", s.layer_norm_eps, self.dtype_policy)
        self.proj = VitsConv(f, 1, 1, name="proj", **common)
        self.cond = (VitsConv(s.speaker_embedding_size, s.hidden_size, 1, name="cond", **common)
                     if s.speaker_embedding_size else None)

    def build(self, input_shape=None):
        for layer in (self.conv_1, self.conv_2, self.proj) + ((self.cond,) if self.cond is not None else ()):
            layer.build(None)
        self.norm_1.build((None, None, self.f))
        self.norm_2.build((None, None, self.f))
        self.built = True

    def call(self, x, pmask, speaker=None, noise=None):
        if speaker is not None:
            x = x + self.cond(speaker)
        x = self.norm_1(ops.relu(self.conv_1(x * pmask)))
        x = self.norm_2(ops.relu(self.conv_2(x * pmask)))
        return self.proj(x * pmask) * pmask

    def rules(self, p):
        r = (self.conv_1.rules(f"{p}conv_1") + self.conv_2.rules(f"{p}conv_2") + self.proj.rules(f"{p}proj")
             + _norm_rules(f"{p}norm_1", self.norm_1) + _norm_rules(f"{p}norm_2", self.norm_2))
        return r + (self.cond.rules(f"{p}cond") if self.cond is not None else [])


class VitsConvTranspose(keras.layers.Layer):
    """torch ConvTranspose1d(kernel k, stride u, padding (k - u) // 2) on channels-last inputs."""

    def __init__(self, cin, cout, kernel_size, stride, **kwargs):
        super().__init__(**kwargs)
        self.cin, self.cout, self.k, self.u = cin, cout, kernel_size, stride

    def build(self, input_shape=None):
        self.kernel = self.add_weight(name="kernel", shape=(self.k, self.cout, self.cin), initializer="he_normal")
        self.bias = self.add_weight(name="bias", shape=(self.cout,), initializer="zeros")
        self.built = True

    def call(self, x):
        y = ops.conv_transpose(x, self.kernel, strides=self.u, padding="valid")  # (t - 1) * u + k samples
        p = (self.k - self.u) // 2
        length = (x.shape[1] - 1) * self.u + self.k - 2 * p
        return y[:, p:p + length] + self.bias

    def rules(self, p):
        return [Rule(f"{p}.weight", self.kernel, Transpose(CONV_AXES)), Rule(f"{p}.bias", self.bias)]


class VitsHifiGan(keras.layers.Layer):
    def __init__(self, spec, **kwargs):
        super().__init__(**kwargs)
        s = spec
        common = dict(dtype=self.dtype_policy)
        c0 = s.upsample_initial_channel
        self.slope, self.kernels = s.leaky_relu_slope, len(s.resblock_kernel_sizes)
        self.conv_pre = VitsConv(s.flow_size, c0, 7, name="conv_pre", **common)
        self.upsampler = [VitsConvTranspose(c0 // 2 ** i, c0 // 2 ** (i + 1), k, u, name=f"up_{i}", **common)
                          for i, (u, k) in enumerate(zip(s.upsample_rates, s.upsample_kernel_sizes))]
        self.resblocks = []
        for i in range(len(self.upsampler)):
            ch = c0 // 2 ** (i + 1)
            for j, (k, dil) in enumerate(zip(s.resblock_kernel_sizes, s.resblock_dilation_sizes)):
                self.resblocks.append((
                    [VitsConv(ch, ch, k, dilation=d, name=f"res_{i}_{j}_a{n}", **common) for n, d in enumerate(dil)],
                    [VitsConv(ch, ch, k, name=f"res_{i}_{j}_b{n}", **common) for n in range(len(dil))]))
        self.conv_post = VitsConv(c0 // 2 ** len(self.upsampler), 1, 7, use_bias=False, name="conv_post", **common)
        self.cond = VitsConv(s.speaker_embedding_size, c0, 1, name="cond", **common) if s.speaker_embedding_size else None

    def build(self, input_shape=None):
        layers = [self.conv_pre, self.conv_post, *self.upsampler] + ([self.cond] if self.cond is not None else [])
        for convs1, convs2 in self.resblocks:
            layers += convs1 + convs2
        for layer in layers:
            layer.build(None)
        self.built = True

    def call(self, x, speaker=None):
        x = self.conv_pre(x)
        if speaker is not None:
            x = x + self.cond(speaker)
        for i, up in enumerate(self.upsampler):
            x = up(ops.leaky_relu(x, self.slope))
            total = None
            for convs1, convs2 in self.resblocks[i * self.kernels:(i + 1) * self.kernels]:
                h = x
                for c1, c2 in zip(convs1, convs2):
                    h = c2(ops.leaky_relu(c1(ops.leaky_relu(h, self.slope)), self.slope)) + h
                total = h if total is None else total + h
            x = total / self.kernels
        x = self.conv_post(ops.leaky_relu(x, 0.01))  # torch's default slope here, as Transformers
        return ops.tanh(x[..., 0])

    def rules(self, p):
        r = self.conv_pre.rules(f"{p}conv_pre") + self.conv_post.rules(f"{p}conv_post")
        if self.cond is not None:
            r += self.cond.rules(f"{p}cond")
        for i, up in enumerate(self.upsampler):
            r += up.rules(f"{p}upsampler.{i}")
        for i, (convs1, convs2) in enumerate(self.resblocks):
            for n, (c1, c2) in enumerate(zip(convs1, convs2)):
                r += c1.rules(f"{p}resblocks.{i}.convs1.{n}") + c2.rules(f"{p}resblocks.{i}.convs2.{n}")
        return r


@keras.saving.register_keras_serializable(package="keras_models")
@register_backbone("vits")
class VitsBackbone(SpecBackbone):
    """VITS: ``{"input_ids", "attention_mask"?, "speaker_id"?}`` -> ``{"waveform", "sequence_lengths",
    "spectrogram", "last_hidden_state"}`` (see the module docstring)."""

    spec_cls = VitsSpec
    hf_architecture = "VitsModel"
    verified_backends = ("jax", "torch", "tensorflow")

    def __init__(self, spec=None, **kwargs):
        super().__init__(spec=spec, **kwargs)
        s = self.spec
        common = dict(dtype=self.dtype_policy)
        self.embed_tokens = keras.layers.Embedding(s.vocab_size, s.hidden_size, name="embed_tokens", **common)
        self.encoder_layers = [VitsEncoderLayer(s, name=f"layer_{i}", **common) for i in range(s.num_layers)]
        self.project = VitsConv(s.hidden_size, 2 * s.flow_size, 1, name="project", **common)
        self.flows = [VitsCoupling(s, name=f"flow_{i}", **common) for i in range(s.prior_encoder_num_flows)]
        self.decoder = VitsHifiGan(s, name="decoder", **common)
        dp = VitsStochasticDurationPredictor if s.use_stochastic_duration_prediction else VitsDurationPredictor
        self.duration_predictor = dp(s, name="duration_predictor", **common)
        self.embed_speaker = (keras.layers.Embedding(s.num_speakers, s.speaker_embedding_size, name="embed_speaker",
                                                     **common) if s.num_speakers > 1 else None)
        # the posterior encoder (training only): kept so that checkpoints round-trip whole
        self.posterior_conv_pre = VitsConv(s.spectrogram_bins, s.hidden_size, 1, name="posterior_conv_pre", **common)
        self.posterior_wavenet = VitsWaveNet(s, s.posterior_encoder_num_wavenet_layers, name="posterior_wavenet",
                                             **common)
        self.posterior_conv_proj = VitsConv(s.hidden_size, 2 * s.flow_size, 1, name="posterior_conv_proj", **common)
        self.noise_seed = keras.random.SeedGenerator(name="noise_seed")

    def build(self, input_shape=None):
        self.embed_tokens.build(None)
        if self.embed_speaker is not None:
            self.embed_speaker.build(None)
        for layer in [*self.encoder_layers, self.project, *self.flows, self.decoder, self.duration_predictor,
                      self.posterior_conv_pre, self.posterior_wavenet, self.posterior_conv_proj]:
            layer.build(None)
        self.built = True

    def compute_output_spec(self, inputs, **kwargs):
        ids = inputs["input_ids"] if isinstance(inputs, dict) else inputs
        b, t = ids.shape[0], ids.shape[1]
        return {"waveform": keras.KerasTensor((b, None)), "sequence_lengths": keras.KerasTensor((b,), "int32"),
                "spectrogram": keras.KerasTensor((b, None, self.spec.flow_size)),
                "last_hidden_state": keras.KerasTensor((b, t, self.spec.hidden_size))}

    def _speaker(self, speaker_id, batch):
        s = self.spec
        if speaker_id is None or s.num_speakers <= 1:
            return None
        sid = ops.reshape(ops.cast(ops.convert_to_tensor(speaker_id), "int32"), (-1,))
        try:
            values = np.asarray(ops.convert_to_numpy(sid))
        except Exception:  # traced: checked when called eagerly
            values = None
        if values is not None and ((values < 0).any() or (values >= s.num_speakers).any()):
            raise InputError(f"speaker_id: expected ids in 0..{s.num_speakers - 1}, got {values}")
        if sid.shape[0] not in (1, batch):
            raise InputError(f"speaker_id: expected one id or one per row ({batch}), got {sid.shape[0]}")
        if sid.shape[0] == 1 and batch != 1:
            sid = ops.repeat(sid, batch, axis=0)
        return self.embed_speaker(sid)[:, None, :]  # (batch, 1, speaker_embedding_size)

    def encode(self, inputs, output_hidden_states=False):
        """Text encoder: ``(hidden (b, t, h), means, log_variances (b, t, flow_size), mask (b, t, 1), hidden_states)``."""
        if not isinstance(inputs, dict):
            inputs = {"input_ids": inputs}
        if "input_ids" not in inputs:
            raise InputError("inputs: expected a dict with 'input_ids' (batch, tokens)")
        ids = ops.convert_to_tensor(inputs["input_ids"])
        if len(ids.shape) == 1:
            ids = ids[None]
        if len(ids.shape) != 2:
            raise InputError(f"input_ids: expected (batch, tokens), got shape {tuple(ids.shape)}")
        mask = inputs.get("attention_mask")
        mask = ops.ones_like(ids) if mask is None else ops.reshape(ops.convert_to_tensor(mask), ops.shape(ids))
        pmask = ops.cast(mask, self.compute_dtype)[..., None]
        x = self.embed_tokens(ids) * float(np.sqrt(self.spec.hidden_size)) * pmask
        states = []
        for layer in self.encoder_layers:
            states.append(x)
            x = layer(x, mask, pmask)
        x = x * pmask
        states.append(x)
        stats = self.project(x) * pmask
        f = self.spec.flow_size
        return x, stats[..., :f], stats[..., f:], pmask, states

    def call(self, inputs, speaking_rate=None, noise_scale=None, noise_scale_duration=None, output_frames=None,
             seed=None, output_hidden_states=False, training=False):
        s = self.spec
        x, means, log_vars, pmask, states = self.encode(inputs, output_hidden_states)
        b, t = ops.shape(x)[0], x.shape[1]
        speaker = self._speaker(inputs.get("speaker_id") if isinstance(inputs, dict) else None, x.shape[0])
        seed = self.noise_seed if seed is None else seed
        nsd = s.noise_scale_duration if noise_scale_duration is None else noise_scale_duration
        ns = s.noise_scale if noise_scale is None else noise_scale
        given = inputs if isinstance(inputs, dict) else {}
        duration, lengths = self._durations(x, pmask, speaker, given.get("duration_noise"), speaking_rate, nsd,
                                            seed)
        if output_frames is None:
            try:
                output_frames = int(np.max(ops.convert_to_numpy(lengths)))
            except Exception as e:  # a traced call: the length is not known
                raise InputError("VITS: the number of frames depends on the predicted durations; under a compiled "
                                 "call pass output_frames= (a Python int)") from e
        frames = int(output_frames)
        positions = ops.arange(frames, dtype=self.compute_dtype)
        out_mask = ops.cast(positions[None, :] < lengths[:, None], self.compute_dtype)  # (b, frames)
        cum = ops.cumsum(duration, axis=1)  # (b, t)
        valid = ops.cast(positions[None, None, :] < cum[..., None], self.compute_dtype)  # (b, t, frames)
        path = valid - ops.pad(valid, ((0, 0), (1, 0), (0, 0)))[:, :-1]
        path = path * pmask * out_mask[:, None, :]
        means = ops.einsum("btf,btc->bfc", path, means)
        log_vars = ops.einsum("btf,btc->bfc", path, log_vars)
        z = means
        if given.get("prior_noise") is not None or _is_tensor(ns) or ns:
            noise = given.get("prior_noise")
            if noise is None:
                noise = keras.random.normal(ops.shape(means), seed=seed, dtype=self.compute_dtype)
            else:
                noise = ops.cast(ops.convert_to_tensor(noise), self.compute_dtype)
                if tuple(noise.shape[1:]) != (frames, s.flow_size):
                    raise InputError(f"prior_noise: expected (batch, {frames}, {s.flow_size}), got "
                                     f"{tuple(noise.shape)}")
            z = z + noise * ops.exp(log_vars) * ns
        omask = out_mask[..., None]
        for flow in reversed(self.flows):
            z = flow(ops.flip(z, axis=-1), omask, speaker)
        spectrogram = z * omask
        waveform = self.decoder(spectrogram, speaker)
        out = {"waveform": waveform,
               "sequence_lengths": ops.cast(lengths, "int32") * int(np.prod(s.upsample_rates)),
               "spectrogram": spectrogram, "last_hidden_state": x}
        if output_hidden_states:
            out["hidden_states"] = tuple(states)
        return out

    def _durations(self, x, pmask, speaker, noise, speaking_rate, nsd, seed):
        """Frames per token (b, t) and per row (b,), as floats."""
        s = self.spec
        b, t = ops.shape(x)[0], x.shape[1]
        if s.use_stochastic_duration_prediction:
            if noise is None and not _is_tensor(nsd) and not nsd:
                noise = ops.zeros((b, t, 2), self.compute_dtype)
            else:
                if noise is None:
                    noise = keras.random.normal((b, t, 2), seed=seed, dtype=self.compute_dtype)
                noise = ops.cast(ops.convert_to_tensor(noise), self.compute_dtype)
                if tuple(noise.shape[1:]) != (t, 2):
                    raise InputError(f"duration_noise: expected (batch, {t}, 2), got {tuple(noise.shape)}")
                noise = noise * nsd
        log_duration = self.duration_predictor(x, pmask, speaker, noise)  # (b, t, 1)
        rate = s.speaking_rate if speaking_rate is None else speaking_rate
        if not _is_tensor(rate) and (not isinstance(rate, (int, float)) or isinstance(rate, bool) or not rate > 0):
            raise InputError(f"speaking_rate: expected a positive number, got {rate!r}")
        duration = ops.ceil(ops.exp(log_duration) * pmask * (1.0 / rate))[..., 0]  # (b, t)
        return duration, ops.maximum(ops.sum(duration, axis=1), 1.0)

    def synthesize(self, inputs, speaking_rate=None, noise_scale=None, noise_scale_duration=None, seed=None,
                   output_hidden_states=False):
        """The outputs of ``call`` through two functions compiled under jax (where an eager call runs
        op by op; torch runs them eagerly; tensorflow too: XLA-compiling this conv stack costs more than
        it saves for one call): the durations, then the whole model with that many frames. Settings and
        noise are inputs of the compiled functions (no recompilation per setting); noise, where a scale
        is not 0, is drawn first from ``seed`` (an int) or the model's seed generator."""
        from keras_models.generation.backend import BACKEND, compile_fn, no_grad

        def compile_(fn):
            return fn if BACKEND == "tensorflow" else compile_fn(self, fn)  # torch: eager, direct layer calls

        if not isinstance(inputs, dict):
            inputs = {"input_ids": inputs}
        if "input_ids" not in inputs:
            raise InputError("inputs: expected a dict with 'input_ids' (batch, tokens)")
        s = self.spec
        ids = np.asarray(ops.convert_to_numpy(inputs["input_ids"])).astype("int32")
        ids = ids[None] if ids.ndim == 1 else ids
        mask = inputs.get("attention_mask")
        mask = np.ones_like(ids) if mask is None else np.asarray(ops.convert_to_numpy(mask)).astype("int32")
        feed = {"input_ids": ids, "attention_mask": mask.reshape(ids.shape)}
        if inputs.get("speaker_id") is not None and s.num_speakers > 1:
            sid = np.asarray(ops.convert_to_numpy(inputs["speaker_id"])).astype("int32").reshape(-1)
            feed["speaker_id"] = np.repeat(sid, ids.shape[0]) if sid.size == 1 else sid
        nsd = float(s.noise_scale_duration if noise_scale_duration is None else noise_scale_duration)
        ns = float(s.noise_scale if noise_scale is None else noise_scale)
        rate = float(s.speaking_rate if speaking_rate is None else speaking_rate)
        if not rate > 0:
            raise InputError(f"speaking_rate: expected a positive number, got {speaking_rate!r}")
        rng = self.noise_seed if seed is None else seed
        feed["scales"] = np.array([rate, ns, nsd], "float32")  # traced: one compilation for all settings
        b, t = ids.shape
        if s.use_stochastic_duration_prediction:
            feed["duration_noise"] = np.zeros((b, t, 2), "float32") if not nsd else np.asarray(
                ops.convert_to_numpy(keras.random.normal((b, t, 2), seed=rng)), "float32")
        cache = self.__dict__.setdefault("_km_compiled", {})
        if "lengths" not in cache:
            def lengths_fn(feed):
                x, _, _, pmask, _ = self.encode(feed)
                speaker = self._speaker(feed.get("speaker_id"), b)
                sc = feed["scales"]
                return self._durations(x, pmask, speaker, feed.get("duration_noise"), sc[0], sc[2], None)[1]
            cache["lengths"] = compile_(lengths_fn)
        with no_grad():
            frames = int(np.max(ops.convert_to_numpy(cache["lengths"](feed))))
            feed["prior_noise"] = np.zeros((b, frames, s.flow_size), "float32") if not ns else np.asarray(
                ops.convert_to_numpy(keras.random.normal((b, frames, s.flow_size), seed=rng)), "float32")
            key = ("call", frames, output_hidden_states)
            if key not in cache:
                def call_fn(feed):
                    sc = feed["scales"]
                    return self(feed, speaking_rate=sc[0], noise_scale=sc[1], noise_scale_duration=sc[2],
                                output_frames=frames, output_hidden_states=output_hidden_states)
                cache[key] = compile_(call_fn)
            return cache[key](feed)

    def weight_rules(self):
        r = [Rule("text_encoder.embed_tokens.weight", self.embed_tokens.embeddings)]
        for i, layer in enumerate(self.encoder_layers):
            r += layer.rules(f"text_encoder.encoder.layers.{i}.")
        r += self.project.rules("text_encoder.project")
        for i, flow in enumerate(self.flows):
            r += flow.rules(f"flow.flows.{i}.")
        r += self.decoder.rules("decoder.") + self.duration_predictor.rules("duration_predictor.")
        if self.embed_speaker is not None:
            r.append(Rule("embed_speaker.weight", self.embed_speaker.embeddings))
        r += (self.posterior_conv_pre.rules("posterior_encoder.conv_pre")
              + self.posterior_wavenet.rules("posterior_encoder.wavenet.")
              + self.posterior_conv_proj.rules("posterior_encoder.conv_proj"))
        return r


__all__ = ["VitsSpec", "VitsBackbone", "rational_quadratic_spline_inverse"]

"""MEGA (``model_type`` "mega", removed from Transformers 5): moving-average equipped gated attention.

Each block is a gated single-head attention fed by a multi-dimensional damped EMA, then
(``use_normalized_ffn``) a normalised feed-forward network:

* **EMA** (per channel, ``ema_projection_size`` dimensions): with p = sigmoid(delta) and
  q = 1 - p * sigmoid(alpha), the kernel at lag i is ``sum_n gamma_n / sqrt(N) * p_n beta_n q_n^i``
  (lags below ``truncation`` when set). The padded input (padding zeroed) is convolved with it
  through an FFT: one-sided, or ``bidirectional`` with a second kernel over the following tokens;
  the output is ``silu(ema + omega * x)``.
* **Gated attention**: ``mx_proj`` of the EMA output gives a residual gate (sigmoid), a shared
  query/key (silu) scaled and shifted per role (``qk_weight`` / ``qk_bias``), an attention gate
  and an intermediate state; values are ``act(v_proj(x))``. Attention is ``softmax`` (scaled by
  1/sqrt(shared size), padding keys masked unless a whole chunk is padding) or element-wise
  ``laplace`` / ``relu2`` on scores divided by the number of real keys, plus a relative bias:
  ``simple`` (one learned scalar per offset) or ``rotary`` (two learned vectors rotated by
  position). ``use_chunking`` attends within chunks of ``chunk_size`` (the length must be a
  multiple of it, or shorter). ``is_decoder`` makes the attention causal.
* **Norms** (``normalization_type``, eps 1e-5, before or after each sub-layer): ``scalenorm``
  (one scalar times x / rms(x)), ``layernorm``, ``batchnorm`` / ``syncbatchnorm`` (running
  statistics, also while training: they are not updated) and ``rmsnorm``, which in Transformers
  multiplies by its weight and never divides (its rsqrt's result is discarded): reproduced.
* Embeddings are the word table plus optional token types (``add_token_type_embeddings``); no
  positions. The backbone returns the last block's output (no final norm).

A decoder config (``is_decoder``, ``use_cache`` true as by default) runs Transformers' incremental
EMA path even on a whole sequence, which ignores ``truncation``; so does this backbone.
"""

import math
from dataclasses import dataclass

import keras
import numpy as np
from keras import ops

from keras_models.errors import ConfigError, InputError
from keras_models.layers.activations import get_activation
from keras_models.layers.vision_embeddings import dense_rules
from keras_models.models.backbone import SpecBackbone
from keras_models.models.registry import register_backbone
from keras_models.presets.weight_map import Rule
from keras_models.spec import Spec, dim, hf

_ser = keras.saving.register_keras_serializable(package="keras_models")
NORMS = ("scalenorm", "layernorm", "rmsnorm", "batchnorm", "syncbatchnorm")
ACTIVATIONS = ("silu", "relu", "linear", "gelu", "gelu_accurate")
ATTENTIONS = ("softmax", "laplace", "relu2")
NORM_EPS = 1e-5  # Transformers' MegaSequenceNorm default; the config has no key for it


@dataclass(frozen=True, kw_only=True)
class MegaSpec(Spec):
    """MegaConfig (Transformers 4.x)."""

    vocab_size: int = dim("vocab_size", 30522)
    hidden_size: int = dim("hidden_size", 128)
    num_layers: int = dim("num_hidden_layers", 4)
    intermediate_size: int = dim("intermediate_size", 256, doc="attention value width")
    ema_projection_size: int = dim("ema_projection_size", 16)
    bidirectional: bool = hf("bidirectional", True)
    shared_representation_size: int = dim("shared_representation_size", 64, doc="query/key width")
    use_chunking: bool = hf("use_chunking", False)
    chunk_size: int = hf("chunk_size", -1)
    truncation: int | None = hf("truncation", None, doc="EMA kernel length (None: the sequence's)")
    normalize_before_mega: bool = hf("normalize_before_mega", True)
    normalization_type: str = hf("normalization_type", "scalenorm")
    norm_affine: bool = hf("norm_affine", True)
    activation: str = hf("activation", "silu")
    attention_activation: str = hf("attention_activation", "softmax")
    dropout_prob: float = hf("dropout_prob", 0.1)
    hidden_dropout_prob: float = hf("hidden_dropout_prob", 0.1)
    attention_probs_dropout_prob: float = hf("attention_probs_dropout_prob", 0.1)
    use_feature_dropout: bool = hf("use_feature_dropout", False)
    use_normalized_ffn: bool = hf("use_normalized_ffn", True)
    nffn_hidden_size: int = dim("nffn_hidden_size", 256)
    normalize_before_ffn: bool = hf("normalize_before_ffn", True)
    nffn_activation_dropout_prob: float = hf("nffn_activation_dropout_prob", 0.1)
    max_positions: int = dim("max_positions", 2048)
    add_token_type_embeddings: bool = hf("add_token_type_embeddings", False)
    type_vocab_size: int = dim("type_vocab_size", 2)
    initializer_range: float = hf("initializer_range", 0.02)
    relative_positional_bias: str = hf("relative_positional_bias", "rotary")
    is_decoder: bool = hf("is_decoder", False)
    use_cache: bool = hf("use_cache", True)
    add_lm_hidden_dense_layer: bool = hf("add_lm_hidden_dense_layer", True)
    tie_word_embeddings: bool = hf("tie_word_embeddings", True)
    classifier_dropout: float | None = hf("classifier_dropout", None)
    pad_token_id: int | None = hf("pad_token_id", 1)
    bos_token_id: int | None = hf("bos_token_id", 0)
    eos_token_id: int | tuple | None = hf("eos_token_id", 2)

    unsupported = {"add_cross_attention": (False, None)}  # MegaGatedCrossAttention: not implemented
    ignored = ("num_attention_heads", "ema_delta_alpha_range", "ema_beta_range", "ema_gamma_omega_range")

    def validate(self, source="config.json"):
        for key, value, allowed in (("normalization_type", self.normalization_type, NORMS),
                                    ("activation", self.activation, ACTIVATIONS),
                                    ("attention_activation", self.attention_activation, ATTENTIONS),
                                    ("relative_positional_bias", self.relative_positional_bias, ("simple", "rotary"))):
            if value not in allowed:
                raise ConfigError(f"{source}: {key}={value!r} is not one of {list(allowed)}")
        if self.use_chunking and self.chunk_size <= 0:
            raise ConfigError(f"{source}: use_chunking needs a positive chunk_size, got {self.chunk_size}")
        if self.chunk_size == 0 or self.chunk_size > self.max_positions:
            raise ConfigError(f"{source}: chunk_size={self.chunk_size} must be -1 or in 1..max_positions "
                              f"({self.max_positions})")
        if self.truncation is not None and self.truncation <= 0:
            raise ConfigError(f"{source}: truncation={self.truncation} must be a positive integer or null")
        if self.relative_positional_bias == "rotary" and self.shared_representation_size % 2:
            raise ConfigError(f"{source}: the rotary bias needs an even shared_representation_size, got "
                              f"{self.shared_representation_size}")
        if self.is_decoder and self.use_cache and self.bidirectional:
            raise ConfigError(f"{source}: is_decoder with use_cache needs bidirectional=false (Transformers "
                              "rejects a bidirectional EMA on its incremental path)")


# --- layers ----------------------------------------------------------------------------------------
@_ser
class MegaNorm(keras.layers.Layer):
    """Mega's normalisation ``kind`` over the last axis (see the module docstring), eps 1e-5."""

    def __init__(self, kind="scalenorm", affine=True, epsilon=NORM_EPS, **kwargs):
        super().__init__(**kwargs)
        self.kind, self.affine, self.epsilon = kind, affine, epsilon

    def build(self, input_shape):
        h = input_shape[-1]
        self.scale = self.shift = None
        if self.kind == "scalenorm":
            if self.affine:
                self.scale = self.add_weight(name="scalar", shape=(1,), initializer="ones")
        elif self.affine:
            self.scale = self.add_weight(name="gamma", shape=(h,), initializer="ones")
            if self.kind != "rmsnorm":
                self.shift = self.add_weight(name="beta", shape=(h,), initializer="zeros")
        if self.kind in ("batchnorm", "syncbatchnorm"):
            self.moving_mean = self.add_weight(name="moving_mean", shape=(h,), initializer="zeros", trainable=False)
            self.moving_variance = self.add_weight(name="moving_variance", shape=(h,), initializer="ones",
                                                   trainable=False)
        self.built = True

    def call(self, x):
        if self.kind == "rmsnorm":  # Transformers' MegaRMSNorm: the weight only (see the module docstring)
            return x * self.scale if self.scale is not None else x
        if self.kind == "scalenorm":
            x = x * ops.rsqrt(ops.mean(ops.square(x), axis=-1, keepdims=True) + self.epsilon)
            return x * self.scale if self.scale is not None else x
        if self.kind == "layernorm":
            mean = ops.mean(x, axis=-1, keepdims=True)
            var = ops.mean(ops.square(x - mean), axis=-1, keepdims=True)
            x = (x - mean) * ops.rsqrt(var + self.epsilon)
        else:
            x = (x - self.moving_mean) * ops.rsqrt(self.moving_variance + self.epsilon)
        if self.scale is not None:
            x = x * self.scale + self.shift
        return x

    def rules(self, prefix):
        if self.kind == "scalenorm":
            return [Rule(prefix + "scalar", self.scale)] if self.scale is not None else []
        r = [Rule(prefix + "weight", self.scale)] if self.scale is not None else []
        if self.shift is not None:
            r.append(Rule(prefix + "bias", self.shift))
        if self.kind in ("batchnorm", "syncbatchnorm"):
            r += [Rule(prefix + "running_mean", self.moving_mean), Rule(prefix + "running_var", self.moving_variance)]
        return r

    def get_config(self):
        config = super().get_config()
        config.update(kind=self.kind, affine=self.affine, epsilon=self.epsilon)
        return config


def _causal_conv(x, kernel, length):
    """y[..., t] = sum_i kernel[..., i] * x[..., t - i] over (batch, channels, length) inputs and a
    (channels, k) kernel, through a real FFT of twice the length (no wrap-around), in float32."""
    n = 2 * length
    xr, xi = ops.rfft(x, fft_length=n)
    kr, ki = ops.rfft(kernel, fft_length=n)
    y = ops.irfft((xr * kr - xi * ki, xr * ki + xi * kr), fft_length=n)
    return y[..., :length]


def _causal_conv_direct(x, kernel):
    """The same as :func:`_causal_conv` as a (channels, t, s) Toeplitz product (for lengths only
    known when the graph runs)."""
    t = ops.shape(x)[-1]
    k = ops.shape(kernel)[-1]
    pos = ops.arange(t)
    lag = pos[:, None] - pos[None, :]
    valid = ops.logical_and(lag >= 0, lag < k)
    taps = ops.take(kernel, ops.clip(lag, 0, k - 1), axis=1)  # (channels, t, s)
    taps = ops.where(valid[None], taps, ops.zeros_like(taps))
    return ops.einsum("dts,bds->bdt", taps, x)


@_ser
class MegaEma(keras.layers.Layer):
    """The multi-dimensional damped EMA of (batch, seq, hidden) inputs (see the module docstring);
    weights keep Transformers' shapes ((kernel channels, N, 1) / (kernel channels, N) / (hidden,))."""

    def __init__(self, hidden_size, ndim, bidirectional=True, truncation=None, **kwargs):
        super().__init__(**kwargs)
        self.hidden_size, self.ndim, self.bidirectional, self.truncation = hidden_size, ndim, bidirectional, truncation

    def build(self, input_shape=None):
        d = 2 * self.hidden_size if self.bidirectional else self.hidden_size
        init = keras.initializers.RandomNormal(stddev=0.2)
        self.damping_factor = self.add_weight(name="damping_factor", shape=(d, self.ndim, 1), initializer=init)
        self.decay_factor = self.add_weight(name="decay_factor", shape=(d, self.ndim, 1), initializer=init)
        sign = np.where(np.arange(self.ndim) % 2 == 1, -1.0, 1.0).reshape(1, self.ndim, 1)
        self.ema_expansion_matrix = self.add_weight(
            name="ema_expansion_matrix", shape=(d, self.ndim, 1),
            initializer=lambda shape, dtype=None: ops.cast(np.broadcast_to(sign, shape), dtype or "float32"))
        unit = keras.initializers.RandomNormal(stddev=1.0)
        self.kernel_projection_matrix = self.add_weight(name="kernel_projection_matrix", shape=(d, self.ndim),
                                                        initializer=unit)
        self.residual_weight = self.add_weight(name="residual_weight", shape=(self.hidden_size,), initializer=unit)
        self.built = True

    def kernel(self, length):
        """(kernel channels, length) float32 taps."""
        f32 = "float32"
        p = ops.sigmoid(ops.cast(self.damping_factor, f32))
        q = 1.0 - p * ops.sigmoid(ops.cast(self.decay_factor, f32))
        vander = ops.cast(ops.arange(length), f32)[None, None, :] * ops.log(q)
        taps = p * ops.cast(self.ema_expansion_matrix, f32) * ops.exp(vander)  # (d, N, length)
        proj = ops.cast(self.kernel_projection_matrix, f32) * math.sqrt(1.0 / self.ndim)
        return ops.einsum("dnl,dn->dl", taps, proj)

    def call(self, x, token_mask=None):
        residual = x * self.residual_weight
        if token_mask is not None:
            x = x * ops.cast(token_mask, x.dtype)[:, :, None]
        length = x.shape[1]
        static = length is not None
        if not static:
            length = ops.shape(x)[1]
        k = length if self.truncation is None or not static else min(self.truncation, length)
        if self.truncation is not None and not static:
            k = ops.minimum(self.truncation, length)
        kernel = self.kernel(k)
        xt = ops.transpose(ops.cast(x, "float32"), (0, 2, 1))  # (batch, hidden, length)

        def conv(inputs, taps):
            return _causal_conv(inputs, taps, length) if static else _causal_conv_direct(inputs, taps)

        if self.bidirectional:
            h = self.hidden_size
            forward = conv(xt, kernel[:h])
            backward = ops.flip(conv(ops.flip(xt, axis=-1), kernel[h:]), axis=-1)
            y = forward + backward
        else:
            y = conv(xt, kernel)
        y = ops.cast(ops.transpose(y, (0, 2, 1)), residual.dtype)
        return ops.silu(y + residual)

    def get_config(self):
        config = super().get_config()
        config.update(hidden_size=self.hidden_size, ndim=self.ndim, bidirectional=self.bidirectional,
                      truncation=self.truncation)
        return config


def _rotate(v, length):
    """Mega's rotary rotation of a (1, dim) vector at positions 0..length-1 -> (length, dim)."""
    half = v.shape[-1] // 2
    freq = ops.exp(ops.cast(ops.arange(half), "float32") * -(math.log(10000) / half))
    angle = ops.cast(ops.arange(length), "float32")[:, None] * freq[None, :]
    sin, cos = ops.cast(ops.sin(angle), v.dtype), ops.cast(ops.cos(angle), v.dtype)
    a, b = v[:, :half], v[:, half:]
    return ops.concatenate([a * cos - b * sin, b * cos + a * sin], axis=-1)


@_ser
class MegaGatedAttention(keras.layers.Layer):
    """Transformers' MegaMovingAverageGatedAttention (norm, EMA, gates, single-head attention with
    a relative bias), on (batch, seq, hidden) with a (batch, seq) 1/0 mask."""

    def __init__(self, spec, **kwargs):
        super().__init__(**kwargs)
        self.spec = spec if isinstance(spec, MegaSpec) else MegaSpec.from_config(spec)
        s, d = self.spec, self.dtype_policy
        init = keras.initializers.RandomNormal(stddev=s.initializer_range)
        self.norm = MegaNorm(s.normalization_type, s.norm_affine, name="norm", dtype=d)
        truncation = None if (s.is_decoder and s.use_cache) else s.truncation
        self.ema_gate = MegaEma(s.hidden_size, s.ema_projection_size, s.bidirectional, truncation,
                                name="ema_gate", dtype=d)
        self.v_proj = keras.layers.Dense(s.intermediate_size, kernel_initializer=init, name="v_proj", dtype=d)
        self.mx_proj = keras.layers.Dense(s.shared_representation_size + s.intermediate_size + 2 * s.hidden_size,
                                          kernel_initializer=init, name="mx_proj", dtype=d)
        self.h_proj = keras.layers.Dense(s.hidden_size, kernel_initializer=init, name="h_proj", dtype=d)
        shape = (None, 1, s.hidden_size) if s.use_feature_dropout else None
        self.drop = keras.layers.Dropout(s.dropout_prob, noise_shape=shape, dtype=d)
        self.hidden_drop = keras.layers.Dropout(
            s.hidden_dropout_prob, noise_shape=(None, 1, s.intermediate_size) if s.use_feature_dropout else None,
            dtype=d)
        self.attention_drop = keras.layers.Dropout(s.attention_probs_dropout_prob, dtype=d)
        self.act = get_activation(s.activation)
        self.rel_limit = s.chunk_size if s.chunk_size >= 0 else s.max_positions

    def build(self, input_shape=None):
        s = self.spec
        h, z = s.hidden_size, s.shared_representation_size
        for layer, width in ((self.norm, h), (self.v_proj, h), (self.mx_proj, h), (self.h_proj, s.intermediate_size)):
            layer.build((None, None, width))
        self.ema_gate.build()
        init = keras.initializers.RandomNormal(stddev=s.initializer_range)
        self.qk_weight = self.add_weight(name="qk_weight", shape=(2, z), initializer=init)
        self.qk_bias = self.add_weight(name="qk_bias", shape=(2, z), initializer="zeros")
        if s.relative_positional_bias == "simple":
            self.rel_pos_bias = self.add_weight(name="rel_pos_bias", shape=(2 * s.max_positions - 1,),
                                                initializer=init)
        else:
            self.alpha = self.add_weight(name="alpha", shape=(1, z), initializer=init)
            self.b_param = self.add_weight(name="b_param", shape=(1, z), initializer=init)
        self.built = True

    def position_bias(self, length):
        """(length, length) bias added to the scores of query i and key j."""
        if self.spec.relative_positional_bias == "rotary":
            return ops.matmul(_rotate(self.alpha, length), ops.transpose(_rotate(self.b_param, length)))
        if length > self.rel_limit:
            raise InputError(f"MEGA: sequence (or chunk) length {length} exceeds the simple relative bias' "
                             f"{self.rel_limit} positions (max_positions / chunk_size)")
        pos = np.arange(length)
        return ops.take(self.rel_pos_bias, self.rel_limit - 1 + pos[None, :] - pos[:, None])

    def attend(self, q, k, v, mask, chunk):
        """Scores within chunks of ``chunk`` tokens: q, k (batch, seq, Z), v (batch, seq, I),
        mask (batch, seq) -> (batch, seq, I)."""
        s = self.spec
        b = ops.shape(q)[0]
        q = ops.reshape(q, (b, -1, chunk, s.shared_representation_size))
        k = ops.reshape(k, (b, -1, chunk, s.shared_representation_size))
        v = ops.reshape(v, (b, -1, chunk, s.intermediate_size))
        mask = ops.cast(ops.reshape(mask, (b, -1, chunk)), q.dtype)  # (b, chunks, c)
        bias = ops.cast(self.position_bias(chunk), q.dtype)
        causal = ops.cast(np.tril(np.ones((chunk, chunk), "float32")), q.dtype) if s.is_decoder else None
        if s.attention_activation == "softmax":
            scores = ops.matmul(q * (s.shared_representation_size ** -0.5), ops.swapaxes(k, -1, -2)) + bias
            neg = ops.cast(-1e30 if q.dtype == "float32" else -3e4, scores.dtype)
            if causal is not None:
                scores = ops.where(causal > 0, scores, neg)
            # padding keys are masked, except in a chunk that is all padding
            pad = ops.logical_and(mask < 0.5, ops.any(mask > 0.5, axis=-1, keepdims=True))
            scores = ops.where(pad[:, :, None, :], neg, scores)
            weights = ops.softmax(scores, axis=-1)
        else:
            if causal is not None:
                lengths = ops.cast(np.arange(1, chunk + 1, dtype="float32")[:, None], q.dtype)
            else:
                lengths = ops.maximum(ops.sum(mask, axis=-1), 1.0)[:, :, None, None]
            scores = ops.matmul(q, ops.swapaxes(k, -1, -2)) / lengths + bias
            weights = get_activation(s.attention_activation)(scores) * mask[:, :, None, :]
            if causal is not None:
                weights = weights * causal
        return weights, v

    def call(self, x, token_mask, training=False):
        s = self.spec
        residual = x
        if s.normalize_before_mega:
            x = self.norm(x)
        value = self.act(self.v_proj(x))
        ema = self.drop(self.ema_gate(x, token_mask), training=training)
        h, z, i = s.hidden_size, s.shared_representation_size, s.intermediate_size
        base = self.mx_proj(ema)
        gate = ops.sigmoid(base[..., :h])
        qk_gates = ops.silu(base[..., h:h + z + i])
        inter = base[..., h + z + i:]
        qk, attention_gate = qk_gates[..., :z], qk_gates[..., z:]
        q = qk * self.qk_weight[0] + self.qk_bias[0]
        k = qk * self.qk_weight[1] + self.qk_bias[1]
        length = x.shape[1]
        if length is None:
            raise InputError("MEGA needs a sequence length known when the model is traced")
        chunk = length
        if s.use_chunking and length > s.chunk_size:
            if length % s.chunk_size:
                raise InputError(f"MEGA with use_chunking: the sequence length {length} must be a multiple of "
                                 f"chunk_size={s.chunk_size} (or shorter); pad the inputs")
            chunk = s.chunk_size
        weights, v = self.attend(q, k, self.hidden_drop(value, training=training), token_mask, chunk)
        weights = self.attention_drop(weights, training=training)
        out = ops.reshape(ops.matmul(weights, v), ops.shape(value))
        out = self.drop(self.act(inter + self.h_proj(out * attention_gate)), training=training)
        out = residual + gate * (out - residual)
        if not s.normalize_before_mega:
            out = self.norm(out)
        return out

    def rules(self, prefix):
        r = self.norm.rules(prefix + "norm.norm.")
        e = self.ema_gate
        r += [Rule(prefix + "ema_gate." + w, getattr(e, w)) for w in
              ("damping_factor", "decay_factor", "ema_expansion_matrix", "kernel_projection_matrix",
               "residual_weight")]
        for name in ("v_proj", "mx_proj", "h_proj"):
            r += dense_rules(prefix + name, getattr(self, name))
        r += [Rule(prefix + "qk_weight", self.qk_weight), Rule(prefix + "qk_bias", self.qk_bias)]
        if self.spec.relative_positional_bias == "simple":
            r.append(Rule(prefix + "rel_pos_bias.rel_pos_bias", self.rel_pos_bias))
        else:
            r += [Rule(prefix + "rel_pos_bias.alpha", self.alpha), Rule(prefix + "rel_pos_bias.b_param", self.b_param)]
        return r

    def get_config(self):
        config = super().get_config()
        config["spec"] = self.spec.to_config()
        return config


@_ser
class MegaFeedForward(keras.layers.Layer):
    """Transformers' MegaNormalizedFeedForwardNetwork: x + fc2(act(fc1(norm(x)))) (norm before or after)."""

    def __init__(self, spec, **kwargs):
        super().__init__(**kwargs)
        self.spec = spec if isinstance(spec, MegaSpec) else MegaSpec.from_config(spec)
        s, d = self.spec, self.dtype_policy
        init = keras.initializers.RandomNormal(stddev=s.initializer_range)
        self.norm = MegaNorm(s.normalization_type, s.norm_affine, name="norm", dtype=d)
        self.fc1 = keras.layers.Dense(s.nffn_hidden_size, kernel_initializer=init, name="fc1", dtype=d)
        self.fc2 = keras.layers.Dense(s.hidden_size, kernel_initializer=init, name="fc2", dtype=d)
        feature = s.use_feature_dropout
        self.hidden_drop = keras.layers.Dropout(s.nffn_activation_dropout_prob, dtype=d,
                                                noise_shape=(None, 1, s.nffn_hidden_size) if feature else None)
        self.drop = keras.layers.Dropout(s.dropout_prob, noise_shape=(None, 1, s.hidden_size) if feature else None,
                                         dtype=d)
        self.act = get_activation(s.activation)

    def build(self, input_shape=None):
        h = self.spec.hidden_size
        self.norm.build((None, None, h))
        self.fc1.build((None, None, h))
        self.fc2.build((None, None, self.spec.nffn_hidden_size))
        self.built = True

    def call(self, x, training=False):
        residual = x
        if self.spec.normalize_before_ffn:
            x = self.norm(x)
        x = self.fc2(self.hidden_drop(self.act(self.fc1(x)), training=training))
        x = self.drop(x, training=training) + residual
        if not self.spec.normalize_before_ffn:
            x = self.norm(x)
        return x

    def rules(self, prefix):
        return self.norm.rules(prefix + "norm.norm.") + dense_rules(prefix + "fc1", self.fc1) + \
            dense_rules(prefix + "fc2", self.fc2)

    def get_config(self):
        config = super().get_config()
        config["spec"] = self.spec.to_config()
        return config


# --- backbone --------------------------------------------------------------------------------------
@_ser
@register_backbone("mega")
class MegaBackbone(SpecBackbone):
    """The last block's hidden state (batch, seq, hidden) of ``{"input_ids", "attention_mask",
    "token_type_ids"}`` (mask and token types optional)."""

    spec_cls = MegaSpec
    base_model_prefix = "mega"
    hf_architecture = "MegaModel"
    # a persistent buffer of the rotary bias (a dtype carrier); the pooler feeds only MegaForMultipleChoice
    hf_ignore = ("*rel_pos_bias._float_tensor", "*num_batches_tracked")
    hf_known_unused = ("pooler.*",)
    verified_backends = ("jax", "torch", "tensorflow")
    lora_targets = ("v_proj", "mx_proj")

    def __init__(self, spec=None, **kwargs):
        super().__init__(spec, **kwargs)
        s, d = self.spec, self.dtype_policy
        self.vocab_size, self.hidden_size, self.num_layers = s.vocab_size, s.hidden_size, s.num_layers
        self.hidden_act = s.activation
        self.dropout_rate = s.hidden_dropout_prob
        self.initializer_range = s.initializer_range
        init = keras.initializers.RandomNormal(stddev=s.initializer_range)
        self.token_embedding = keras.layers.Embedding(s.vocab_size, s.hidden_size, embeddings_initializer=init,
                                                      name="word_embeddings", dtype=d)
        self.token_type_embedding = None
        if s.add_token_type_embeddings:
            self.token_type_embedding = keras.layers.Embedding(s.type_vocab_size, s.hidden_size,
                                                               embeddings_initializer=init,
                                                               name="token_type_embeddings", dtype=d)
        self.attentions = [MegaGatedAttention(s, name=f"mega_layer_{i}", dtype=d) for i in range(s.num_layers)]
        self.ffns = [MegaFeedForward(s, name=f"nffn_{i}", dtype=d) if s.use_normalized_ffn else None
                     for i in range(s.num_layers)]

    def build(self, input_shape=None):
        self.token_embedding.build((None, None))
        if self.token_type_embedding is not None:
            self.token_type_embedding.build((None, None))
        for layer in self.attentions + [f for f in self.ffns if f is not None]:
            layer.build((None, None, self.hidden_size))
        self.built = True

    def call(self, inputs, training=False):
        if not isinstance(inputs, dict):
            inputs = {"input_ids": inputs}
        ids = inputs["input_ids"]
        x = self.token_embedding(ids)
        if self.token_type_embedding is not None:
            types = inputs.get("token_type_ids")
            types = ops.zeros_like(ids) if types is None else types
            x = x + self.token_type_embedding(types)
        mask = inputs.get("attention_mask")
        mask = ops.ones(ops.shape(ids), x.dtype) if mask is None else ops.cast(mask, x.dtype)
        for attention, ffn in zip(self.attentions, self.ffns):
            x = attention(x, mask, training=training)
            if ffn is not None:
                x = ffn(x, training=training)
        return x

    def weight_rules(self):
        r = [Rule("embedding_layer.word_embeddings.weight", self.token_embedding.embeddings)]
        if self.token_type_embedding is not None:
            r.append(Rule("embedding_layer.token_type_embeddings.weight", self.token_type_embedding.embeddings))
        for i, (attention, ffn) in enumerate(zip(self.attentions, self.ffns)):
            r += attention.rules(f"layers.{i}.mega_layer.")
            if ffn is not None:
                r += ffn.rules(f"layers.{i}.nffn.")
        return r


__all__ = ["MegaSpec", "MegaBackbone", "MegaNorm", "MegaEma", "MegaGatedAttention", "MegaFeedForward"]

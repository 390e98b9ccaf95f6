"""Autoformer: series decomposition and auto-correlation in a Time Series Transformer.

Inputs are the Time Series Transformer's (``keras_models/models/time_series_transformer``): the
same lagged, scaled values with static and time features, built by the same code. The encoder
reads the ``context_length`` steps. The decoder reads ``label_length + prediction_length`` steps:
the seasonal part of the last ``label_length`` lagged context values (a moving average of width
``moving_average``, edges repeated, is the trend) followed by zeros, with the features; a trend
stream starts from the trend part followed by the context mean and gathers each decoder layer's
projected trend. Every layer replaces attention by auto-correlation and follows each residual
with a decomposition (keeping the seasonal part); the last norm of a layer subtracts its mean over
time.

Auto-correlation: R(tau) = sum_s q[(s + tau) mod n] . k[s] averaged over heads and channels (the
FFT product of Transformers, computed directly), the ``int(autocorrelation_factor * ln n)`` largest
delays per series weighted by a softmax of R, and the values rolled by each delay and summed. Two
behaviours of Transformers' implementation are kept, so that the outputs match: the delays and
weights used for row ``b * heads + h`` of the (batch * heads) stack are those of series
``(b * heads + h) mod batch`` (a repeat over the wrong axis; exact for batch 1 or one head), and in
cross-attention with more decoder steps than encoder steps the queries are cut to their first
``steps - encoder_steps`` rows and zero padded.

Outputs: ``{"encoder_last_hidden_state", "last_hidden_state", "trend"}`` as AutoformerModel
(last_hidden_state is the decoder's seasonal projection, (batch, label + prediction, feature_size)).
"""

from dataclasses import dataclass
import math

import keras
from keras import ops

from keras_models.errors import ConfigError
from keras_models.layers.activations import get_activation
from keras_models.layers.vision_embeddings import dense_rules, norm_rules
from keras_models.models.patchtst.backbone import SelfAttention
from keras_models.models.registry import register_backbone
from keras_models.models.time_series_transformer.backbone import (TimeSeriesTransformerBackbone,
                                                                   TimeSeriesTransformerSpec)
from keras_models.presets.weight_map import Rule, Transpose
from keras_models.spec import dim


@dataclass(frozen=True, kw_only=True)
class AutoformerSpec(TimeSeriesTransformerSpec):
    label_length: int = dim("label_length", 10)
    moving_average: int = dim("moving_average", 25)
    autocorrelation_factor: int = dim("autocorrelation_factor", 3)

    def validate(self, source="config.json"):
        super().validate(source)
        if self.label_length > self.context_length:
            raise ConfigError(f"{source}: label_length={self.label_length} exceeds context_length="
                              f"{self.context_length}")
        if self.moving_average % 2 == 0:
            raise ConfigError(f"{source}: moving_average={self.moving_average} must be odd (the moving average "
                              "keeps the series' length only for an odd width)")
        for n in (self.context_length, self.label_length + self.prediction_length):
            if int(self.autocorrelation_factor * math.log(n)) > n:
                raise ConfigError(f"{source}: autocorrelation_factor={self.autocorrelation_factor} keeps "
                                  f"{int(self.autocorrelation_factor * math.log(n))} delays of a {n}-step series")


def decompose(x, kernel):
    """(seasonal, trend) of (batch, steps, channels): trend = moving average, edges repeated."""
    pad = (kernel - 1) // 2
    padded = ops.concatenate([ops.repeat(x[:, :1], pad, axis=1), x, ops.repeat(x[:, -1:], pad, axis=1)], axis=1)
    trend = ops.average_pool(padded, kernel, strides=1, padding="valid")
    return x - trend, trend


class AutoCorrelation(SelfAttention):
    """Auto-correlation with the q/k/v/out projections of multi-head attention."""

    def __init__(self, dim_, heads, factor=3, **kwargs):
        super().__init__(dim_, heads, **kwargs)
        self.factor = factor

    def call(self, x, kv=None, causal=False):
        kv = x if kv is None else kv
        b, n, s = ops.shape(x)[0], x.shape[1], kv.shape[1]
        q, k, v = self.q_proj(x), self.k_proj(kv), self.v_proj(kv)
        if n > s:  # Transformers cuts the queries to n - s steps and zero pads keys, values (and queries)
            pad = ops.zeros_like(q[:, : n - s])
            q = ops.concatenate([q[:, : n - s], ops.zeros_like(q[:, :s])], axis=1)
            k, v = ops.concatenate([k, pad], axis=1), ops.concatenate([v, pad], axis=1)
        else:
            k, v = k[:, :n], v[:, :n]
        top = int(self.factor * math.log(n))
        if top == 0:
            return self.out_proj(ops.zeros_like(v))
        # mean over heads and channels of the circular cross-correlation: sum_s q[(s + tau) % n] . k[s] / dim
        scores = ops.matmul(q, ops.transpose(k, (0, 2, 1))) / self.dim_  # (b, t, s)
        idx = [((s_ + tau) % n) * n + s_ for tau in range(n) for s_ in range(n)]
        corr = ops.sum(ops.reshape(ops.take(ops.reshape(scores, (b, n * n)), idx, axis=1), (b, n, n)), axis=-1)
        weights, delays = ops.top_k(corr, top)  # (b, top)
        weights = ops.softmax(weights, axis=-1)
        heads, hd = self.heads, self.dim_ // self.heads
        src = ops.mod(ops.arange(b * heads), b)  # series whose delays row b * heads + h uses
        weights = ops.reshape(ops.take(weights, src, axis=0), (b, heads, top))
        delays = ops.reshape(ops.take(delays, src, axis=0), (b, heads, top))
        pos = ops.mod(ops.arange(n)[None, None, None, :] + delays[..., None], n)  # (b, heads, top, n)
        mix = ops.sum(ops.one_hot(pos, n, dtype=v.dtype) * weights[..., None, None], axis=2)  # (b, heads, t, s)
        v = ops.transpose(ops.reshape(v, (b, n, heads, hd)), (0, 2, 1, 3))
        out = ops.reshape(ops.transpose(ops.matmul(mix, v), (0, 2, 1, 3)), (b, n, self.dim_))
        return self.out_proj(out)


class AutoformerLayer(keras.layers.Layer):
    """An encoder (``cross=False``) or decoder layer: auto-correlation, decompositions, FFN and a
    LayerNorm less its mean over time; the decoder also returns its projected trend."""

    def __init__(self, d_model, heads, ffn, act, cross, kernel, factor, feature_size, **kwargs):
        super().__init__(**kwargs)
        dt = self.dtype_policy
        self.d_model, self.ffn, self.cross, self.kernel = d_model, ffn, cross, kernel
        self.self_attn = AutoCorrelation(d_model, heads, factor, name="self_attn", dtype=dt)
        self.self_attn_layer_norm = keras.layers.LayerNormalization(epsilon=1e-5, name="self_attn_layer_norm", dtype=dt)
        self.encoder_attn = AutoCorrelation(d_model, heads, factor, name="encoder_attn", dtype=dt) if cross else None
        self.encoder_attn_layer_norm = (keras.layers.LayerNormalization(epsilon=1e-5, name="encoder_attn_layer_norm",
                                                                        dtype=dt) if cross else None)
        self.fc1 = keras.layers.Dense(ffn, name="fc1", dtype=dt)
        self.fc2 = keras.layers.Dense(d_model, name="fc2", dtype=dt)
        self.final_layer_norm = keras.layers.LayerNormalization(epsilon=1e-5, name="final_layer_norm", dtype=dt)
        self.trend_projection = (keras.layers.Conv1D(feature_size, 3, use_bias=False, name="trend_projection",
                                                     dtype=dt) if cross else None)
        self.act = get_activation(act)

    def build(self, shape):
        d = (None, None, self.d_model)
        for layer in (self.self_attn, self.self_attn_layer_norm, self.encoder_attn, self.encoder_attn_layer_norm,
                      self.fc1, self.final_layer_norm, self.trend_projection):
            if layer is not None:
                layer.build(d)
        self.fc2.build((None, None, self.ffn))
        self.built = True

    def call(self, h, memory=None):
        h = h + self.self_attn(h)
        if not self.cross:  # the encoder normalises before decomposing, the decoder after
            h, _ = decompose(self.self_attn_layer_norm(h), self.kernel)
            h, _ = decompose(h + self.fc2(self.act(self.fc1(h))), self.kernel)
            h = self.final_layer_norm(h)
            return h - ops.mean(h, axis=1, keepdims=True)
        h, t1 = decompose(h, self.kernel)
        h = self.self_attn_layer_norm(h)
        h, t2 = decompose(h + self.encoder_attn(h, kv=memory), self.kernel)
        h = self.encoder_attn_layer_norm(h)
        h, t3 = decompose(h + self.fc2(self.act(self.fc1(h))), self.kernel)
        h = self.final_layer_norm(h)
        t = t1 + t2 + t3
        trend = self.trend_projection(ops.concatenate([t[:, -1:], t, t[:, :1]], axis=1))  # circular padding
        return h - ops.mean(h, axis=1, keepdims=True), trend

    def rules(self, prefix):
        r = self.self_attn.rules(f"{prefix}.self_attn") + norm_rules(f"{prefix}.self_attn_layer_norm",
                                                                     self.self_attn_layer_norm)
        if self.cross:
            r += self.encoder_attn.rules(f"{prefix}.encoder_attn")
            r += norm_rules(f"{prefix}.encoder_attn_layer_norm", self.encoder_attn_layer_norm)
            r.append(Rule(f"{prefix}.trend_projection.weight", self.trend_projection.kernel, Transpose((2, 1, 0))))
        return r + dense_rules(f"{prefix}.fc1", self.fc1) + dense_rules(f"{prefix}.fc2", self.fc2) + norm_rules(
            f"{prefix}.final_layer_norm.layernorm", self.final_layer_norm)


@keras.saving.register_keras_serializable(package="keras_models")
@register_backbone("autoformer")
class AutoformerBackbone(TimeSeriesTransformerBackbone):
    spec_cls = AutoformerSpec
    hf_architecture = "AutoformerModel"
    verified_backends = ("jax", "torch", "tensorflow")

    def __init__(self, spec=None, **kwargs):
        super().__init__(spec, **kwargs)
        self.seasonality_projection = keras.layers.Dense(self.spec.feature_size, name="seasonality_projection",
                                                         dtype=self.dtype_policy)

    @property
    def head_input_size(self):
        return self.spec.feature_size

    def make_layer(self, index, cross):
        s = self.spec
        heads, ffn = (s.decoder_attention_heads, s.decoder_ffn_dim) if cross else (s.encoder_attention_heads,
                                                                                   s.encoder_ffn_dim)
        return AutoformerLayer(s.d_model, heads, ffn, s.activation_function, cross, s.moving_average,
                               s.autocorrelation_factor, s.feature_size,
                               name=f"{'decoder' if cross else 'encoder'}_layer_{index}", dtype=self.dtype_policy)

    def build(self, shape=None):
        self.seasonality_projection.build((None, None, self.spec.d_model))
        super().build(shape)

    def run(self, inputs):
        """(encoder states, decoder seasonal projection, trend, loc, scale)."""
        s = self.spec
        x, loc, scale = self.network_inputs(inputs)
        c, lab, pred = s.context_length, s.label_length, s.prediction_length
        n_lag = s.input_size * len(s.lags_sequence)
        h = self.enc_norm(self.enc_value(x[:, :c]) + ops.cast(self.enc_positions[:c], x.dtype))
        for layer in self.enc_layers:
            h = layer(h)
        lagged, features = x[:, :c, :n_lag], x[:, c - lab:, n_lag:]
        seasonal, trend = decompose(lagged, s.moving_average)
        mean = ops.mean(lagged, axis=1, keepdims=True)
        zeros = ops.zeros_like(ops.repeat(lagged[:, :1], pred, axis=1))
        dec_in = ops.concatenate([ops.concatenate([seasonal[:, -lab:], zeros], axis=1), features], axis=-1)
        trend = ops.concatenate([ops.concatenate([trend[:, -lab:], ops.repeat(mean, pred, axis=1)], axis=1),
                                 features], axis=-1)
        d = self.dec_norm(self.dec_value(dec_in) + ops.cast(self.dec_positions[c - lab:c + pred], x.dtype))
        for layer in self.dec_layers:
            d, t = layer(d, memory=h)
            trend = trend + t
        d = self.seasonality_projection(d)
        if s.input_size == 1:
            loc, scale = loc[..., 0], scale[..., 0]
        return h, d, trend, loc, scale

    def encode(self, inputs, training=False):
        """(encoder states, the head's input (seasonal + trend over the predicted steps), loc, scale)."""
        h, d, trend, loc, scale = self.run(inputs)
        return h, (d + trend)[:, -self.spec.prediction_length:], loc, scale

    def call(self, inputs, training=False):
        h, d, trend, _, _ = self.run(inputs)
        return {"encoder_last_hidden_state": h, "last_hidden_state": d, "trend": trend}

    def weight_rules(self):
        return super().weight_rules() + dense_rules("decoder.seasonality_projection", self.seasonality_projection)


__all__ = ["AutoformerBackbone", "AutoformerSpec"]

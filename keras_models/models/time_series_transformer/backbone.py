"""Time Series Transformer (a vanilla encoder-decoder over lagged, scaled values and features).

Inputs (Transformers' names): ``past_values`` (batch, past_length) for ``input_size=1`` or
(batch, past_length, input_size), past_length = context_length + max(lags_sequence);
``past_time_features`` (batch, past_length, num_time_features + num_dynamic_real_features);
``past_observed_mask`` (like past_values, optional); ``static_categorical_features`` (batch,
num_static_categorical_features) ints and ``static_real_features`` (batch,
num_static_real_features) where configured; and, for the teacher-forced forward,
``future_values`` (batch, prediction_length[, input_size]) and ``future_time_features``.

The last ``context_length`` past steps give the scaler's loc and scale ("mean" or true, "std",
none); every value is scaled, and each step's input is its lagged values (``lags_sequence``),
the static features (category embeddings, static reals, log1p|loc|, log scale) and its time
features. The encoder reads the context steps, the decoder the future steps (causally, with
cross-attention); both add sinusoidal positions (the decoder's continue after the context) and a
LayerNorm, and use post-norm BART-like layers.

Output: ``{"encoder_last_hidden_state", "last_hidden_state"}``. Only the teacher-forced forward is
built (no sampling ``generate``).
"""

from dataclasses import dataclass

import keras
from keras import ops

from keras_models.errors import ConfigError, InputError
from keras_models.layers.activations import get_activation
from keras_models.layers.vision_embeddings import dense_rules, norm_rules
from keras_models.models.backbone import Backbone
from keras_models.models.patchtst.backbone import SelfAttention, scale_series
from keras_models.models.registry import register_backbone
from keras_models.presets.weight_map import Rule
from keras_models.spec import Spec, dim, hf

import numpy as np


def _scaling(v):
    if v is True:
        return "mean"
    if v is False:
        return "none"
    return str(v)


def _ints(v):
    return tuple(int(i) for i in v)


@dataclass(frozen=True, kw_only=True)
class TimeSeriesTransformerSpec(Spec):
    prediction_length: int = dim("prediction_length")
    context_length: int = dim("context_length", None)
    input_size: int = dim("input_size", 1)
    lags_sequence: tuple = hf("lags_sequence", (1, 2, 3, 4, 5, 6, 7), read=_ints, write=list)
    scaling: str | None = hf("scaling", "mean", read=_scaling)
    num_dynamic_real_features: int = hf("num_dynamic_real_features", 0)
    num_static_categorical_features: int = hf("num_static_categorical_features", 0)
    num_static_real_features: int = hf("num_static_real_features", 0)
    num_time_features: int = hf("num_time_features", 0)
    cardinality: tuple | None = hf("cardinality", None, read=_ints, write=lambda v: None if v is None else list(v))
    embedding_dimension: tuple | None = hf("embedding_dimension", None, read=_ints,
                                           write=lambda v: None if v is None else list(v))
    encoder_ffn_dim: int = dim("encoder_ffn_dim", 32)
    decoder_ffn_dim: int = dim("decoder_ffn_dim", 32)
    encoder_attention_heads: int = dim("encoder_attention_heads", 2)
    decoder_attention_heads: int = dim("decoder_attention_heads", 2)
    encoder_layers: int = dim("encoder_layers", 2)
    decoder_layers: int = dim("decoder_layers", 2)
    activation_function: str = hf("activation_function", "gelu")
    d_model: int = dim("d_model", 64)
    distribution_output: str = hf("distribution_output", "student_t", doc="student_t, normal or negative_binomial")

    unsupported = {"loss": ("nll",)}
    ignored = ("dropout", "encoder_layerdrop", "decoder_layerdrop", "attention_dropout", "activation_dropout",
               "num_parallel_samples", "init_std", "use_cache", "is_encoder_decoder", "feature_size")

    @classmethod
    def adjust_from_hf(cls, config, values, source):
        if values.get("context_length") is None:  # Transformers: context_length defaults to prediction_length
            values["context_length"] = values["prediction_length"]
        n = values.get("num_static_categorical_features", 0)
        if n > 0:
            if not values.get("cardinality") or len(values["cardinality"]) != n:
                raise ConfigError(f"{source}: cardinality must list {n} values (num_static_categorical_features)")
            if not values.get("embedding_dimension"):
                values["embedding_dimension"] = tuple(min(50, (c + 1) // 2) for c in values["cardinality"])
        else:
            values["cardinality"] = values["embedding_dimension"] = None
        return values

    def validate(self, source="config.json"):
        for key in ("num_dynamic_real_features", "num_static_categorical_features", "num_static_real_features",
                    "num_time_features"):
            if getattr(self, key) < 0:
                raise ConfigError(f"{source}: {key}={getattr(self, key)} must be >= 0")
        for key in ("encoder_attention_heads", "decoder_attention_heads"):
            if self.d_model % getattr(self, key):
                raise ConfigError(f"{source}: d_model={self.d_model} is not divisible by {key}={getattr(self, key)}")
        if self.distribution_output not in ("student_t", "normal", "negative_binomial"):
            raise ConfigError(f"{source}: distribution_output={self.distribution_output!r} is not supported "
                              "(student_t, normal, negative_binomial)")
        if self.num_static_categorical_features and len(self.embedding_dimension) != len(self.cardinality):
            raise ConfigError(f"{source}: embedding_dimension must have one value per cardinality")

    @property
    def past_length(self):
        return self.context_length + max(self.lags_sequence)

    @property
    def feature_size(self):
        return self.input_size * len(self.lags_sequence) + sum(self.embedding_dimension or ()) + \
            self.num_dynamic_real_features + self.num_time_features + self.num_static_real_features + \
            self.input_size * 2

    def dummy_inputs(self):
        b, f = 1, self.num_time_features + self.num_dynamic_real_features
        shape = () if self.input_size == 1 else (self.input_size,)
        out = {"past_values": np.zeros((b, self.past_length) + shape, "float32"),
               "past_time_features": np.zeros((b, self.past_length, f), "float32"),
               "future_values": np.zeros((b, self.prediction_length) + shape, "float32"),
               "future_time_features": np.zeros((b, self.prediction_length, f), "float32")}
        if self.num_static_categorical_features:
            out["static_categorical_features"] = np.zeros((b, self.num_static_categorical_features), "int32")
        if self.num_static_real_features:
            out["static_real_features"] = np.zeros((b, self.num_static_real_features), "float32")
        return out


def sinusoidal_table(n_pos, dim_):
    """Sines in the first half of the features, cosines in the second (not interleaved)."""
    pos = np.arange(n_pos)[:, None] / np.power(10000, 2 * (np.arange(dim_) // 2) / dim_)[None, :]
    half = dim_ // 2 + dim_ % 2
    out = np.zeros((n_pos, dim_), "float32")
    out[:, :half] = np.sin(pos[:, 0::2])
    out[:, half:] = np.cos(pos[:, 1::2])
    return out


class TSLayer(keras.layers.Layer):
    """A post-norm encoder (``cross=False``) or decoder layer."""

    def __init__(self, d_model, heads, ffn, act, cross, **kwargs):
        super().__init__(**kwargs)
        dt = self.dtype_policy
        self.d_model, self.ffn, self.cross = d_model, ffn, cross
        self.self_attn = SelfAttention(d_model, heads, name="self_attn", dtype=dt)
        self.self_attn_layer_norm = keras.layers.LayerNormalization(epsilon=1e-5, name="self_attn_layer_norm", dtype=dt)
        self.encoder_attn = SelfAttention(d_model, heads, name="encoder_attn", dtype=dt) if cross else None
        self.encoder_attn_layer_norm = (keras.layers.LayerNormalization(epsilon=1e-5, name="encoder_attn_layer_norm",
                                                                        dtype=dt) if cross else None)
        self.fc1 = keras.layers.Dense(ffn, name="fc1", dtype=dt)
        self.fc2 = keras.layers.Dense(d_model, name="fc2", dtype=dt)
        self.final_layer_norm = keras.layers.LayerNormalization(epsilon=1e-5, name="final_layer_norm", dtype=dt)
        self.act = get_activation(act)

    def build(self, shape):
        d = (None, None, self.d_model)
        for layer in (self.self_attn, self.self_attn_layer_norm, self.encoder_attn, self.encoder_attn_layer_norm,
                      self.fc1, self.final_layer_norm):
            if layer is not None:
                layer.build(d)
        self.fc2.build((None, None, self.ffn))
        self.built = True

    def call(self, h, memory=None):
        h = self.self_attn_layer_norm(h + self.self_attn(h, causal=self.cross))
        if self.cross:
            h = self.encoder_attn_layer_norm(h + self.encoder_attn(h, kv=memory))
        return self.final_layer_norm(h + self.fc2(self.act(self.fc1(h))))

    def rules(self, prefix):
        r = self.self_attn.rules(f"{prefix}.self_attn") + norm_rules(f"{prefix}.self_attn_layer_norm",
                                                                     self.self_attn_layer_norm)
        if self.cross:
            r += self.encoder_attn.rules(f"{prefix}.encoder_attn")
            r += norm_rules(f"{prefix}.encoder_attn_layer_norm", self.encoder_attn_layer_norm)
        return r + dense_rules(f"{prefix}.fc1", self.fc1) + dense_rules(f"{prefix}.fc2", self.fc2) + norm_rules(
            f"{prefix}.final_layer_norm", self.final_layer_norm)


@keras.saving.register_keras_serializable(package="keras_models")
@register_backbone("time_series_transformer")
class TimeSeriesTransformerBackbone(Backbone):
    spec_cls = TimeSeriesTransformerSpec
    base_model_prefix = "model"
    hf_architecture = "TimeSeriesTransformerModel"
    verified_backends = ("jax", "torch", "tensorflow")

    def __init__(self, spec=None, **kwargs):
        if spec is None:
            spec = self.spec_cls.pop_from(kwargs)
        elif isinstance(spec, dict):
            spec = self.spec_cls.from_config(spec)
        super().__init__(**kwargs)
        self.spec = s = spec
        dt = self.dtype_policy
        self.embedders = [keras.layers.Embedding(c, d, name=f"embedder_{i}", dtype=dt)
                          for i, (c, d) in enumerate(zip(s.cardinality or (), s.embedding_dimension or ()))]
        self.enc_value = keras.layers.Dense(s.d_model, use_bias=False, name="encoder_value", dtype=dt)
        self.dec_value = keras.layers.Dense(s.d_model, use_bias=False, name="decoder_value", dtype=dt)
        self.enc_norm = keras.layers.LayerNormalization(epsilon=1e-5, name="encoder_layernorm_embedding", dtype=dt)
        self.dec_norm = keras.layers.LayerNormalization(epsilon=1e-5, name="decoder_layernorm_embedding", dtype=dt)
        self.enc_layers = [self.make_layer(i, False) for i in range(s.encoder_layers)]
        self.dec_layers = [self.make_layer(i, True) for i in range(s.decoder_layers)]

    def make_layer(self, index, cross):
        """Encoder (``cross=False``) or decoder layer ``index`` (a subclass may swap the attention)."""
        s = self.spec
        if cross:
            return TSLayer(s.d_model, s.decoder_attention_heads, s.decoder_ffn_dim, s.activation_function, True,
                           name=f"decoder_layer_{index}", dtype=self.dtype_policy)
        return TSLayer(s.d_model, s.encoder_attention_heads, s.encoder_ffn_dim, s.activation_function, False,
                       name=f"encoder_layer_{index}", dtype=self.dtype_policy)

    def build(self, shape=None):
        s = self.spec
        for e in self.embedders:
            e.build((None,))
        n_pos = s.context_length + s.prediction_length
        self.enc_positions = self.add_weight(shape=(n_pos, s.d_model), name="encoder_positions", trainable=False,
                                             initializer=keras.initializers.Constant(sinusoidal_table(n_pos, s.d_model)))
        self.dec_positions = self.add_weight(shape=(n_pos, s.d_model), name="decoder_positions", trainable=False,
                                             initializer=keras.initializers.Constant(sinusoidal_table(n_pos, s.d_model)))
        for layer in (self.enc_value, self.dec_value):
            layer.build((None, None, s.feature_size))
        for layer in (self.enc_norm, self.dec_norm):
            layer.build((None, None, s.d_model))
        for layer in self.enc_layers + self.dec_layers:
            layer.build(None)
        self.built = True

    def dummy_inputs(self):
        return self.spec.dummy_inputs()

    def network_inputs(self, inputs):
        """(per-step transformer inputs (batch, context + prediction, feature_size), loc, scale)."""
        s = self.spec
        who = type(self).__name__
        for key in ("past_values", "past_time_features", "future_values", "future_time_features"):
            if key not in inputs:
                raise InputError(f"{who}: inputs need {key!r} (only the teacher-forced forward is implemented)")
        past = ops.cast(inputs["past_values"], self.compute_dtype)
        future = ops.cast(inputs["future_values"], self.compute_dtype)
        if len(past.shape) == 2:
            past, future = past[..., None], future[..., None]
        if past.shape[1] is not None and past.shape[1] != s.past_length:
            raise InputError(f"{who}: past_values must have {s.past_length} steps (context_length + "
                             f"max(lags_sequence)), got {past.shape[1]}")
        mask = inputs.get("past_observed_mask")
        mask = ops.ones_like(past) if mask is None else ops.cast(mask, past.dtype)
        if len(mask.shape) == 2:
            mask = mask[..., None]
        _, loc, scale = scale_series(past[:, -s.context_length:], mask[:, -s.context_length:], s.scaling)
        values = (ops.concatenate([past, future], axis=1) - loc) / scale
        static = [ops.log1p(ops.abs(loc[:, 0])), ops.log(scale[:, 0])]
        if s.num_static_real_features:
            static = [ops.cast(inputs["static_real_features"], past.dtype)] + static
        if s.num_static_categorical_features:
            cats = inputs["static_categorical_features"]
            static = [ops.concatenate([e(cats[:, i]) for i, e in enumerate(self.embedders)], axis=-1)] + static
        static = ops.concatenate(static, axis=-1)
        time_feat = ops.concatenate([ops.cast(inputs["past_time_features"], past.dtype)[:, s.past_length - s.context_length:],
                                     ops.cast(inputs["future_time_features"], past.dtype)], axis=1)
        steps = s.context_length + s.prediction_length
        total = s.past_length + s.prediction_length
        lagged = ops.stack([values[:, total - lag - steps: total - lag] for lag in s.lags_sequence], axis=-1)
        b = ops.shape(lagged)[0]
        lagged = ops.reshape(lagged, (b, steps, s.input_size * len(s.lags_sequence)))
        static = ops.broadcast_to(static[:, None, :], (b, steps, static.shape[-1]))
        return ops.concatenate([lagged, static, time_feat], axis=-1), loc, scale

    def encode(self, inputs):
        """(encoder states, decoder states, loc, scale)."""
        s = self.spec
        x, loc, scale = self.network_inputs(inputs)
        c = s.context_length
        h = self.enc_norm(self.enc_value(x[:, :c]) + ops.cast(self.enc_positions[:c], x.dtype))
        for layer in self.enc_layers:
            h = layer(h)
        d = self.dec_norm(self.dec_value(x[:, c:]) + ops.cast(self.dec_positions[c:c + s.prediction_length], x.dtype))
        for layer in self.dec_layers:
            d = layer(d, memory=h)
        if s.input_size == 1:
            loc, scale = loc[..., 0], scale[..., 0]
        return h, d, loc, scale

    def call(self, inputs, training=False):
        h, d, _, _ = self.encode(inputs)
        return {"encoder_last_hidden_state": h, "last_hidden_state": d}

    def weight_rules(self):
        r = [Rule(f"embedder.embedders.{i}.weight", e.embeddings) for i, e in enumerate(self.embedders)]
        for side, value, pos, norm, layers in (("encoder", self.enc_value, self.enc_positions, self.enc_norm,
                                                self.enc_layers),
                                               ("decoder", self.dec_value, self.dec_positions, self.dec_norm,
                                                self.dec_layers)):
            r += dense_rules(f"{side}.value_embedding.value_projection", value)
            r.append(Rule(f"{side}.embed_positions.weight", pos))
            r += norm_rules(f"{side}.layernorm_embedding", norm)
            for i, layer in enumerate(layers):
                r += layer.rules(f"{side}.layers.{i}")
        return r

    def get_config(self):
        config = super().get_config()
        config.update(self.spec.to_config())
        return config


__all__ = ["TimeSeriesTransformerBackbone", "TimeSeriesTransformerSpec"]

"""Gemma 3n text decoder (``model_type`` "gemma3n_text", Transformers' Gemma3nTextModel /
Gemma3nForCausalLM).

What sets it apart from the shared DecoderBlock (so it has its own block and backbone):

* **AltUp**: the residual stream is ``altup_num_inputs`` copies (the token embeddings and their
  magnitude-matched projections). Each layer *predicts* all copies from a router over the active
  one, runs attention + MLP on the active prediction only, then *corrects* every copy with the
  innovation; at the end the copies are projected back, magnitude-matched, averaged and normed;
* **LAuReL**: a low-rank residual (``laurel_rank``) beside attention, summed with it / sqrt(2);
* **per-layer inputs**: a second embedding table (``vocab_size_per_layer_input`` rows of
  ``num_layers * hidden_size_per_layer_input``) plus a projection of the token embeddings, one
  slice per layer, gating a small bottleneck whose output is added to the non-active copies;
* attention: per-head RMSNorm on q and k (plain weight), a weightless RMSNorm on v, score scale 1;
  sliding layers (``layer_types``) with their own rope base; the last ``num_kv_shared_layers``
  layers have no k / v of their own and read the keys and values (the KV cache) of the last
  earlier layer of the same type;
* MLP: gated, per-layer width (``intermediate_size`` may be a list), and on the layers where
  ``activation_sparsity_pattern`` is > 0 the gate keeps only what lies above
  mean + std * Phi^-1(sparsity) of each row (Transformers' gaussian top-k);
* final logit soft-capping (read by CausalLM from ``options``).

The KV cache follows DecoderBackbone's layout (one (keys, values) pair of batch-merged
(batch * kv_heads, max_length, head_dim) buffers per layer; an empty tuple for the KV-sharing
layers), so the generation engine drives it unchanged.
"""

import math
import statistics
from dataclasses import dataclass
from typing import ClassVar

import keras
from keras import ops

from keras_models.errors import ConfigError
from keras_models.generation.backend import write_time_slice
from keras_models.layers.activations import get_activation
from keras_models.layers.attention import grouped_attention
from keras_models.layers.decoder_masks import decoder_bias, decoder_inputs, positions_from_mask
from keras_models.layers.norms import RMSNorm
from keras_models.layers.rotary import RotaryEmbedding, apply_rotary
from keras_models.layers.vision_embeddings import dense_rules
from keras_models.models.backbone import SpecBackbone
from keras_models.models.decoder.hf_config import rope_from_hf, rope_to_hf
from keras_models.models.registry import register_backbone
from keras_models.presets.weight_map import Rule
from keras_models.spec import Spec, const, dim, hf

LAYER_TYPES = ("full_attention", "sliding_attention")
_ser = keras.saving.register_keras_serializable(package="keras_models")


def _per_layer(v):
    return tuple(v) if isinstance(v, (list, tuple)) else v


@dataclass(frozen=True, kw_only=True)
class Gemma3nTextSpec(Spec):
    """Gemma3nTextConfig's keys and Transformers' defaults. ``intermediate_size`` and
    ``activation_sparsity_pattern`` are per layer (a single value is repeated); ``layer_types``
    defaults to every fifth layer full; the two rope tables come from ``rope_parameters`` per
    layer type (or the older ``rope_theta`` / ``rope_local_base_freq`` / ``rope_scaling``)."""

    unsupported: ClassVar[dict] = {"use_bidirectional_attention": (False, None)}
    ignored: ClassVar[tuple] = ("altup_coef_clip", "use_cache")

    vocab_size: int = dim("vocab_size", 262_400)
    hidden_size: int = dim("hidden_size", 2048)
    intermediate_size: int | tuple = hf("intermediate_size", 16_384, read=_per_layer,
                                        doc="per layer (a single value: every layer)")
    num_layers: int = dim("num_hidden_layers", 35)
    num_heads: int = dim("num_attention_heads", 8)
    num_kv_heads: int = dim("num_key_value_heads", 2)
    head_dim: int = dim("head_dim", 256)
    hidden_activation: str = hf("hidden_activation", "gelu_pytorch_tanh")
    max_position_embeddings: int = dim("max_position_embeddings", 32_768)
    initializer_range: float = hf("initializer_range", 0.02)
    norm_eps: float = hf("rms_norm_eps", 1e-6)
    pad_token_id: int | None = hf("pad_token_id", 0)
    eos_token_id: int | tuple | None = hf("eos_token_id", 1)
    bos_token_id: int | None = hf("bos_token_id", 2)
    tie_word_embeddings: bool = hf("tie_word_embeddings", True)
    attention_bias: bool = hf("attention_bias", False)
    attention_dropout: float = hf("attention_dropout", 0.0)
    sliding_window: int = dim("sliding_window", 512)
    layer_types: tuple | None = hf("layer_types", None, doc="None: every 5th layer full")
    final_logit_softcap: float | None = hf("final_logit_softcapping", 30.0)
    vocab_size_per_layer_input: int = dim("vocab_size_per_layer_input", 262_144)
    hidden_size_per_layer_input: int = dim("hidden_size_per_layer_input", 256)
    altup_active_idx: int = hf("altup_active_idx", 0)
    altup_correct_scale: bool = hf("altup_correct_scale", True)
    altup_num_inputs: int = dim("altup_num_inputs", 4)
    num_kv_shared_layers: int = hf("num_kv_shared_layers", 15)
    laurel_rank: int = dim("laurel_rank", 64)
    activation_sparsity_pattern: float | tuple | None = hf(
        "activation_sparsity_pattern", None, read=_per_layer, doc="None: 0.95 on the first 10 layers of > 10")
    rope_theta: float = const(1_000_000.0, doc="rope_parameters['full_attention']")
    rope_scaling: dict | None = const(None, doc="rope_parameters['full_attention'] without theta")
    local_rope_theta: float = const(10_000.0, doc="rope_parameters['sliding_attention']")
    local_rope_scaling: dict | None = const(None, doc="rope_parameters['sliding_attention'] without theta")

    @classmethod
    def adjust_from_hf(cls, config, values, source):
        n = values.get("num_layers", 35)
        if not isinstance(n, int) or n <= 0:
            return values
        for name, key in (("intermediate_size", "intermediate_size"),
                          ("activation_sparsity_pattern", "activation_sparsity_pattern")):
            v = values.get(name)
            if isinstance(v, (int, float)) and not isinstance(v, bool):
                values[name] = (v,) * n
        if values.get("intermediate_size") is None:
            values["intermediate_size"] = (16_384,) * n
        if values.get("activation_sparsity_pattern") is None:
            sparse = 10 if n > 10 else 0
            values["activation_sparsity_pattern"] = (0.95,) * sparse + (0.0,) * (n - sparse)
        if values.get("layer_types") is None:
            values["layer_types"] = tuple("full_attention" if (i + 1) % 5 == 0 else "sliding_attention"
                                          for i in range(n))
        params = config.get("rope_parameters")
        params = {} if params is None else params
        if not isinstance(params, dict):
            raise ConfigError(f"{source}: rope_parameters must be an object, got {params!r}")
        per_type = bool(params) and all(isinstance(v, dict) for v in params.values())
        if params and not per_type:
            params = {"full_attention": params}
        legacy = config.get("rope_scaling")
        full = {**(legacy if isinstance(legacy, dict) else {}), **(params.get("full_attention") or {})}
        local = dict(params.get("sliding_attention") or {})
        theta, scaling, partial = rope_from_hf({"rope_parameters": full}, source,
                                               config.get("rope_theta") or 1_000_000.0)
        ltheta, lscaling, lpartial = rope_from_hf({"rope_parameters": local}, source,
                                                  config.get("rope_local_base_freq") or 10_000.0)
        if partial != 1.0 or lpartial != 1.0:
            raise ConfigError(f"{source}: rope_parameters: partial_rotary_factor is not supported for Gemma 3n")
        values.update(rope_theta=theta, rope_scaling=scaling, local_rope_theta=ltheta, local_rope_scaling=lscaling)
        return values

    def validate(self, source="config.json"):
        n = self.num_layers
        for name, key in (("intermediate_size", "intermediate_size"),
                          ("activation_sparsity_pattern", "activation_sparsity_pattern")):
            v = getattr(self, name)
            if not isinstance(v, tuple) or len(v) != n:
                raise ConfigError(f"{source}: {key} must have one value per layer "
                                  f"(num_hidden_layers={n}), got {v!r}")
        if not all(isinstance(x, int) and not isinstance(x, bool) and x > 0 for x in self.intermediate_size):
            raise ConfigError(f"{source}: intermediate_size must hold positive integers, got {self.intermediate_size!r}")
        if not all(isinstance(x, (int, float)) and not isinstance(x, bool) and 0.0 <= x < 1.0
                   for x in self.activation_sparsity_pattern):
            raise ConfigError(f"{source}: activation_sparsity_pattern values must lie in [0, 1), "
                              f"got {self.activation_sparsity_pattern!r}")
        if self.layer_types is None or len(self.layer_types) != n:
            raise ConfigError(f"{source}: layer_types must have num_hidden_layers={n} entries")
        bad = sorted(set(self.layer_types) - set(LAYER_TYPES))
        if bad:
            raise ConfigError(f"{source}: layer_types: unknown {bad}; expected {list(LAYER_TYPES)}")
        if self.num_heads % self.num_kv_heads:
            raise ConfigError(f"{source}: num_attention_heads={self.num_heads} is not a multiple of "
                              f"num_key_value_heads={self.num_kv_heads}")
        if self.head_dim % 2:
            raise ConfigError(f"{source}: head_dim={self.head_dim} must be even (rotary positions)")
        if not 0 <= self.altup_active_idx < self.altup_num_inputs:
            raise ConfigError(f"{source}: altup_active_idx={self.altup_active_idx} must lie in "
                              f"[0, altup_num_inputs={self.altup_num_inputs})")
        if not 0 <= self.num_kv_shared_layers < n:
            raise ConfigError(f"{source}: num_kv_shared_layers={self.num_kv_shared_layers} must lie in "
                              f"[0, num_hidden_layers={n})")
        if self.num_kv_shared_layers:
            first = n - self.num_kv_shared_layers
            if set(self.layer_types[:first]) != set(self.layer_types):
                raise ConfigError(f"{source}: num_kv_shared_layers={self.num_kv_shared_layers}: every layer "
                                  "type of the sharing layers needs an earlier layer of that type (layer_types)")
        if self.final_logit_softcap is not None and not self.final_logit_softcap > 0:
            raise ConfigError(f"{source}: final_logit_softcapping must be > 0 or null")

    def adjust_to_hf(self, out):
        out["rope_parameters"] = {
            "full_attention": rope_to_hf(self.rope_theta, self.rope_scaling)["rope_parameters"],
            "sliding_attention": rope_to_hf(self.local_rope_theta, self.local_rope_scaling)["rope_parameters"]}
        return out

    def kv_sources(self):
        """Per layer: None (own K/V) or the index of the layer whose K/V it reads."""
        n, shared = self.num_layers, self.num_kv_shared_layers
        if not shared:
            return (None,) * n
        first = n - shared
        last = {kind: max(i for i in range(first) if self.layer_types[i] == kind) for kind in set(self.layer_types)}
        return tuple(None if i < first else last[self.layer_types[i]] for i in range(n))


def norm_rules(prefix, norm):
    return [Rule(f"{prefix}.weight", norm.gamma)]


def _rms(x, eps):
    x32 = ops.cast(x, "float32")
    return x32 * ops.rsqrt(ops.mean(ops.square(x32), axis=-1, keepdims=True) + eps)


def _match_magnitude(x, target):
    """x rescaled to the per-position RMS ``target`` (its own RMS floored at sqrt(1e-5))."""
    mag = ops.sqrt(ops.maximum(ops.mean(ops.square(x), axis=-1, keepdims=True), 1e-5))
    return x * target / mag


@_ser
class Gemma3nAttention(keras.layers.Layer):
    """q / k per-head RMSNorm, weightless v RMSNorm, rotary positions, score scale 1; with
    ``shares_kv`` no k / v projections (the caller passes another layer's keys and values)."""

    def __init__(self, hidden_size, num_heads, num_kv_heads, head_dim, use_bias=False, norm_eps=1e-6,
                 shares_kv=False, kernel_initializer="glorot_uniform", **kwargs):
        super().__init__(**kwargs)
        self.hidden_size, self.num_heads, self.num_kv_heads = hidden_size, num_heads, num_kv_heads
        self.head_dim, self.use_bias, self.norm_eps, self.shares_kv = head_dim, use_bias, norm_eps, shares_kv
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        d = dict(use_bias=use_bias, kernel_initializer=self.kernel_initializer, dtype=self.dtype_policy)
        self.query = keras.layers.Dense(num_heads * head_dim, name="query", **d)
        self.query_norm = RMSNorm(norm_eps, name="query_norm", dtype=self.dtype_policy)
        if not shares_kv:
            self.key = keras.layers.Dense(num_kv_heads * head_dim, name="key", **d)
            self.value = keras.layers.Dense(num_kv_heads * head_dim, name="value", **d)
            self.key_norm = RMSNorm(norm_eps, name="key_norm", dtype=self.dtype_policy)
        self.output_dense = keras.layers.Dense(hidden_size, name="output", **d)

    def build(self, input_shape):
        self.query.build(input_shape)
        self.query_norm.build((None, None, self.num_heads, self.head_dim))
        if not self.shares_kv:
            self.key.build(input_shape)
            self.value.build(input_shape)
            self.key_norm.build((None, None, self.num_kv_heads, self.head_dim))
        self.output_dense.build((None, None, self.num_heads * self.head_dim))
        self.built = True

    def init_cache(self, batch_size, max_length, dtype):
        if self.shares_kv:
            return ()
        shape = (batch_size * self.num_kv_heads, max_length, self.head_dim)
        return ops.zeros(shape, dtype=dtype), ops.zeros(shape, dtype=dtype)

    def _split(self, x, heads):
        return ops.reshape(x, (ops.shape(x)[0], ops.shape(x)[1], heads, self.head_dim))

    def call(self, x, bias, rope, cache=None, cache_index=0, shared=None):
        """Returns (output, keys / values this layer attended over, its cache). Keys / values are
        heads-major (b, kv, s, d) without a cache, the batch-merged buffers with one; a KV-sharing
        layer takes them as ``shared``."""
        cos, sin = rope
        q = apply_rotary(self.query_norm(self._split(self.query(x), self.num_heads)), cos, sin)
        b, t = ops.shape(x)[0], ops.shape(x)[1]
        if shared is None:
            k = apply_rotary(self.key_norm(self._split(self.key(x), self.num_kv_heads)), cos, sin)
            v = ops.cast(_rms(self._split(self.value(x), self.num_kv_heads), self.norm_eps), x.dtype)
            k, v = ops.transpose(k, (0, 2, 1, 3)), ops.transpose(v, (0, 2, 1, 3))  # (b, kv, t, d)
            if cache is not None:
                n = ops.shape(cache[0])[0]
                k = write_time_slice(cache[0], ops.reshape(k, (n, t, self.head_dim)), cache_index, axis=1)
                v = write_time_slice(cache[1], ops.reshape(v, (n, t, self.head_dim)), cache_index, axis=1)
                cache = (k, v)
        else:
            k, v = shared
            cache = () if cache is not None else None
        kw = {"num_kv_heads": self.num_kv_heads} if len(k.shape) == 3 else {}
        out = grouped_attention(q, k, v, bias, 1.0, **kw)
        out = ops.reshape(out, (b, t, self.num_heads * self.head_dim))
        return self.output_dense(out), (k, v), cache

    def get_config(self):
        config = super().get_config()
        config.update(hidden_size=self.hidden_size, num_heads=self.num_heads, num_kv_heads=self.num_kv_heads,
                      head_dim=self.head_dim, use_bias=self.use_bias, norm_eps=self.norm_eps,
                      shares_kv=self.shares_kv,
                      kernel_initializer=keras.initializers.serialize(self.kernel_initializer))
        return config


@_ser
class Gemma3nBlock(keras.layers.Layer):
    """One Gemma 3n decoder layer over the AltUp stack (altup_num_inputs, b, t, hidden)."""

    def __init__(self, hidden_size, num_heads, num_kv_heads, head_dim, intermediate_size, per_layer_size,
                 laurel_rank, altup_num_inputs, altup_active_idx=0, altup_correct_scale=True,
                 activation="gelu_pytorch_tanh", sparsity=0.0, norm_eps=1e-6, attention_bias=False,
                 shares_kv=False, kernel_initializer="glorot_uniform", **kwargs):
        super().__init__(**kwargs)
        self.hidden_size, self.num_heads, self.num_kv_heads, self.head_dim = hidden_size, num_heads, num_kv_heads, head_dim
        self.intermediate_size, self.per_layer_size, self.laurel_rank = intermediate_size, per_layer_size, laurel_rank
        self.altup_num_inputs, self.altup_active_idx = altup_num_inputs, altup_active_idx
        self.altup_correct_scale, self.activation, self.sparsity = altup_correct_scale, activation, float(sparsity)
        self.norm_eps, self.attention_bias, self.shares_kv = norm_eps, attention_bias, shares_kv
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.act = get_activation(activation)
        # the gaussian top-k cut-off: mean + std * Phi^-1(sparsity) (a float32 constant, as Transformers)
        self.std_multiplier = statistics.NormalDist().inv_cdf(self.sparsity) if self.sparsity > 0 else None
        common = dict(dtype=self.dtype_policy)
        d = dict(use_bias=False, kernel_initializer=self.kernel_initializer, **common)

        def norm(name):
            return RMSNorm(norm_eps, name=name, **common)

        self.attention = Gemma3nAttention(hidden_size, num_heads, num_kv_heads, head_dim, attention_bias, norm_eps,
                                          shares_kv, kernel_initializer=self.kernel_initializer,
                                          name="attention", **common)
        self.gate = keras.layers.Dense(intermediate_size, name="gate", **d)
        self.up = keras.layers.Dense(intermediate_size, name="up", **d)
        self.down = keras.layers.Dense(hidden_size, name="down", **d)
        self.input_norm, self.attention_out_norm = norm("input_norm"), norm("attention_out_norm")
        self.mlp_norm, self.mlp_out_norm = norm("mlp_norm"), norm("mlp_out_norm")
        a = altup_num_inputs
        self.correction_coefs = keras.layers.Dense(a, name="correction_coefs", **d)
        self.prediction_coefs = keras.layers.Dense(a * a, name="prediction_coefs", **d)
        self.modality_router = keras.layers.Dense(a, name="modality_router", **d)
        self.router_norm = norm("router_norm")
        self.laurel_left = keras.layers.Dense(laurel_rank, name="laurel_left", **d)
        self.laurel_right = keras.layers.Dense(hidden_size, name="laurel_right", **d)
        self.laurel_norm = norm("laurel_norm")
        self.per_layer_gate = keras.layers.Dense(per_layer_size, name="per_layer_gate", **d)
        self.per_layer_projection = keras.layers.Dense(hidden_size, name="per_layer_projection", **d)
        self.per_layer_norm = norm("per_layer_norm")

    def build(self, input_shape=None):
        h = (None, None, self.hidden_size)
        for layer in (self.attention, self.gate, self.up, self.input_norm, self.attention_out_norm, self.mlp_norm,
                      self.mlp_out_norm, self.modality_router, self.router_norm, self.laurel_left, self.laurel_norm,
                      self.per_layer_gate, self.per_layer_norm):
            layer.build(h)
        self.down.build((None, None, self.intermediate_size))
        self.correction_coefs.build((None, None, self.altup_num_inputs))
        self.prediction_coefs.build((None, None, self.altup_num_inputs))
        self.laurel_right.build((None, None, self.laurel_rank))
        self.per_layer_projection.build((None, None, self.per_layer_size))
        self.correct_output_scale = self.add_weight(name="correct_output_scale", shape=(self.hidden_size,),
                                                    initializer="zeros")
        self.built = True

    def _router(self, x):
        h = self.router_norm(x) * ops.cast(1.0 / self.hidden_size, x.dtype)
        return ops.cast(ops.tanh(ops.cast(self.modality_router(h), "float32")), x.dtype)

    def _mlp(self, x):
        gate = self.gate(x)
        if self.std_multiplier is not None:
            mean = ops.mean(gate, axis=-1, keepdims=True)
            std = ops.sqrt(ops.mean(ops.square(gate - mean), axis=-1, keepdims=True))
            gate = ops.relu(gate - (mean + std * ops.cast(self.std_multiplier, gate.dtype)))
        return self.down(self.act(gate) * self.up(x))

    def call(self, stack, per_layer_input, bias, rope, cache=None, cache_index=0, shared=None):
        a, idx = self.altup_num_inputs, self.altup_active_idx
        # predict: every copy plus a router-weighted mix of all copies
        coefs = self.prediction_coefs(self._router(stack[idx]))
        coefs = ops.reshape(coefs, (ops.shape(coefs)[0], ops.shape(coefs)[1], a, a))  # [b, t, out, in]
        predictions = stack + ops.einsum("btqp,pbth->qbth", coefs, stack)
        active = predictions[idx]
        normed = self.input_norm(active)
        laurel = normed + self.laurel_norm(self.laurel_right(self.laurel_left(normed)))
        attn, kv, cache = self.attention(normed, bias=bias, rope=rope, cache=cache, cache_index=cache_index,
                                         shared=shared)
        x = (active + self.attention_out_norm(attn) + laurel) * ops.cast(1.0 / math.sqrt(2.0), active.dtype)
        x = x + self.mlp_out_norm(self._mlp(self.mlp_norm(x)))
        # correct: the innovation of the active copy, weighted per copy
        weights = self.correction_coefs(self._router(x)) + 1.0  # (b, t, a)
        innovation = x - active
        corrected = predictions + ops.transpose(weights, (2, 0, 1))[..., None] * innovation[None]
        first = corrected[idx]
        if self.altup_correct_scale:
            first = first * ops.cast(self.correct_output_scale, first.dtype)
        first = self.per_layer_projection(self.act(self.per_layer_gate(first)) * per_layer_input)
        first = self.per_layer_norm(first)
        out = ops.concatenate([corrected[:1], corrected[1:] + first[None]], axis=0)
        return out, kv, cache

    def get_config(self):
        config = super().get_config()
        config.update(
            hidden_size=self.hidden_size, num_heads=self.num_heads, num_kv_heads=self.num_kv_heads,
            head_dim=self.head_dim, intermediate_size=self.intermediate_size, per_layer_size=self.per_layer_size,
            laurel_rank=self.laurel_rank, altup_num_inputs=self.altup_num_inputs,
            altup_active_idx=self.altup_active_idx, altup_correct_scale=self.altup_correct_scale,
            activation=self.activation, sparsity=self.sparsity, norm_eps=self.norm_eps,
            attention_bias=self.attention_bias, shares_kv=self.shares_kv,
            kernel_initializer=keras.initializers.serialize(self.kernel_initializer))
        return config


@_ser
@register_backbone("gemma3n_text")
class Gemma3nTextBackbone(SpecBackbone):
    """Gemma 3n's text decoder (Gemma3nTextModel): returns the final-normed hidden states; with
    ``init_cache`` / ``call_with_cache`` (DecoderBackbone's interface) for generation."""

    spec_cls = Gemma3nTextSpec
    base_model_prefix = "model"
    hf_architecture = "Gemma3nTextModel"
    hf_model_type = "gemma3n_text"
    lora_targets = ("query", "value")
    verified_backends = ("jax", "torch", "tensorflow")

    def __init__(self, spec=None, **kwargs):
        super().__init__(spec, **kwargs)
        s = self.spec
        self.vocab_size, self.hidden_size, self.num_layers = s.vocab_size, s.hidden_size, s.num_layers
        self.num_heads, self.num_kv_heads, self.head_dim = s.num_heads, s.num_kv_heads, s.head_dim
        # what CausalLM and the generation engine read
        self.options = dict(tie_word_embeddings=s.tie_word_embeddings, lm_head_bias=False,
                            final_logit_softcap=s.final_logit_softcap, embed_proj_dim=None,
                            initializer_range=s.initializer_range, logit_scale=None,
                            pad_token_id=s.pad_token_id, bos_token_id=s.bos_token_id,
                            eos_token_id=s.eos_token_id, max_position_embeddings=s.max_position_embeddings)
        self.kv_sources = s.kv_sources()
        init = keras.initializers.TruncatedNormal(stddev=s.initializer_range)
        common = dict(dtype=self.dtype_policy)
        p, n = s.hidden_size_per_layer_input, s.num_layers
        self.token_embedding = keras.layers.Embedding(s.vocab_size, s.hidden_size, embeddings_initializer=init,
                                                      name="token_embedding", **common)
        self.per_layer_embedding = keras.layers.Embedding(s.vocab_size_per_layer_input, n * p,
                                                          embeddings_initializer=init, name="per_layer_embedding",
                                                          **common)
        d = dict(use_bias=False, kernel_initializer=init, **common)
        self.per_layer_model_projection = keras.layers.Dense(n * p, name="per_layer_model_projection", **d)
        self.per_layer_projection_norm = RMSNorm(s.norm_eps, name="per_layer_projection_norm", **common)
        self.altup_projections = [keras.layers.Dense(s.hidden_size, name=f"altup_projection_{i}", **d)
                                  for i in range(1, s.altup_num_inputs)]
        self.altup_unembed_projections = [keras.layers.Dense(s.hidden_size, name=f"altup_unembed_projection_{i}", **d)
                                          for i in range(1, s.altup_num_inputs)]
        self.rotary = RotaryEmbedding(s.head_dim, s.rope_theta, s.rope_scaling, s.max_position_embeddings,
                                      name="rotary", **common)
        self.local_rotary = RotaryEmbedding(s.head_dim, s.local_rope_theta, s.local_rope_scaling,
                                            s.max_position_embeddings, name="local_rotary", **common)
        self.blocks = [
            Gemma3nBlock(s.hidden_size, s.num_heads, s.num_kv_heads, s.head_dim, s.intermediate_size[i], p,
                         s.laurel_rank, s.altup_num_inputs, s.altup_active_idx, s.altup_correct_scale,
                         s.hidden_activation, s.activation_sparsity_pattern[i], s.norm_eps, s.attention_bias,
                         self.kv_sources[i] is not None, kernel_initializer=init, name=f"block_{i}", **common)
            for i in range(n)]
        self.final_norm = RMSNorm(s.norm_eps, name="final_norm", **common)

    def build(self, input_shape=None):
        h = (None, None, self.hidden_size)
        self.token_embedding.build((None, None))
        self.per_layer_embedding.build((None, None))
        self.per_layer_model_projection.build(h)
        self.per_layer_projection_norm.build((None, None, None, self.spec.hidden_size_per_layer_input))
        for layer in (*self.altup_projections, *self.altup_unembed_projections, *self.blocks, self.final_norm):
            layer.build(h)
        self.built = True

    def build_from_dummy(self):
        if not self.built:
            self.build()
        return self

    def _per_layer_inputs(self, input_ids, embeds):
        s = self.spec
        b, t = ops.shape(input_ids)[0], ops.shape(input_ids)[1]
        shape = (b, t, s.num_layers, s.hidden_size_per_layer_input)
        ids = ops.cast(input_ids, "int32")
        ids = ops.where(ops.logical_and(ids >= 0, ids < s.vocab_size_per_layer_input), ids, 0)
        table = self.per_layer_embedding(ids) * ops.cast(s.hidden_size_per_layer_input ** 0.5, embeds.dtype)
        proj = self.per_layer_model_projection(embeds) * ops.cast(s.hidden_size ** -0.5, embeds.dtype)
        proj = self.per_layer_projection_norm(ops.reshape(proj, shape))
        return (proj + ops.reshape(table, shape)) * ops.cast(0.5 ** 0.5, embeds.dtype)

    def _forward(self, input_ids, key_mask, positions, cache=None, cache_index=0):
        s = self.spec
        x = self.token_embedding(input_ids) * ops.cast(s.hidden_size ** 0.5, self.compute_dtype)
        per_layer = self._per_layer_inputs(input_ids, x)
        target = ops.sqrt(ops.mean(ops.square(x), axis=-1, keepdims=True))
        stack = ops.stack([x] + [_match_magnitude(proj(x), target) for proj in self.altup_projections], axis=0)
        t = ops.shape(input_ids)[1]
        ropes = {"full_attention": self.rotary(positions), "sliding_attention": self.local_rotary(positions)}
        biases = {"full_attention": decoder_bias(key_mask, t, cache_index, None, x.dtype),
                  "sliding_attention": decoder_bias(key_mask, t, cache_index, s.sliding_window, x.dtype)}
        kvs, new_cache = {}, []
        for i, block in enumerate(self.blocks):
            kind = s.layer_types[i]
            source = self.kv_sources[i]
            stack, kvs[i], layer_cache = block(
                stack, per_layer[:, :, i, :], bias=biases[kind], rope=ropes[kind],
                cache=None if cache is None else cache[i], cache_index=cache_index,
                shared=None if source is None else kvs[source])
            new_cache.append(layer_cache)
        target = ops.sqrt(ops.mean(ops.square(stack[0]), axis=-1, keepdims=True))
        outs = [stack[0]] + [_match_magnitude(proj(stack[i + 1]), target)
                             for i, proj in enumerate(self.altup_unembed_projections)]
        x = self.final_norm(ops.mean(ops.stack(outs, axis=0), axis=0))
        return x, (None if cache is None else tuple(new_cache))

    def call(self, inputs, training=False):
        ids, mask, positions = decoder_inputs(inputs)
        return self._forward(ids, mask, positions)[0]

    def init_cache(self, batch_size, max_length):
        """One (keys, values) pair of batch-merged (batch * kv_heads, max_length, head_dim) buffers
        per layer (DecoderBackbone's layout); an empty tuple for the layers that share K/V."""
        return tuple(block.attention.init_cache(batch_size, max_length, self.compute_dtype) for block in self.blocks)

    def call_with_cache(self, input_ids, cache, cache_index, attention_mask, embed=None):
        """Hidden states of ``input_ids`` written at ``cache_index``; returns (hidden, cache)."""
        if embed is not None:
            raise NotImplementedError("Gemma3nTextBackbone: embedding hooks are not supported")
        t = ops.shape(input_ids)[1]
        slots = ops.arange(t, dtype="int32") + ops.cast(cache_index, "int32")
        positions = ops.take(positions_from_mask(attention_mask), slots, axis=1)
        return self._forward(input_ids, attention_mask, positions, cache, cache_index)

    # --- HF conversion ------------------------------------------------------------------------
    def weight_rules(self):
        r = [Rule("embed_tokens.weight", self.token_embedding.embeddings),
             Rule("embed_tokens_per_layer.weight", self.per_layer_embedding.embeddings)]
        r += dense_rules("per_layer_model_projection", self.per_layer_model_projection)
        r += norm_rules("per_layer_projection_norm", self.per_layer_projection_norm)
        for i, proj in enumerate(self.altup_projections):
            r += dense_rules(f"altup_projections.{i}", proj)
        for i, proj in enumerate(self.altup_unembed_projections):
            r += dense_rules(f"altup_unembed_projections.{i}", proj)
        for i, blk in enumerate(self.blocks):
            p, att = f"layers.{i}.", blk.attention
            r += dense_rules(p + "self_attn.q_proj", att.query)
            r += norm_rules(p + "self_attn.q_norm", att.query_norm)
            if not att.shares_kv:
                r += dense_rules(p + "self_attn.k_proj", att.key)
                r += dense_rules(p + "self_attn.v_proj", att.value)
                r += norm_rules(p + "self_attn.k_norm", att.key_norm)
            r += dense_rules(p + "self_attn.o_proj", att.output_dense)
            for hf_name, layer in (("mlp.gate_proj", blk.gate), ("mlp.up_proj", blk.up), ("mlp.down_proj", blk.down),
                                   ("altup.correction_coefs", blk.correction_coefs),
                                   ("altup.prediction_coefs", blk.prediction_coefs),
                                   ("altup.modality_router", blk.modality_router),
                                   ("laurel.linear_left", blk.laurel_left), ("laurel.linear_right", blk.laurel_right),
                                   ("per_layer_input_gate", blk.per_layer_gate),
                                   ("per_layer_projection", blk.per_layer_projection)):
                r += dense_rules(p + hf_name, layer)
            for hf_name, layer in (("input_layernorm", blk.input_norm),
                                   ("post_attention_layernorm", blk.attention_out_norm),
                                   ("pre_feedforward_layernorm", blk.mlp_norm),
                                   ("post_feedforward_layernorm", blk.mlp_out_norm),
                                   ("altup.router_norm", blk.router_norm), ("laurel.post_laurel_norm", blk.laurel_norm),
                                   ("post_per_layer_input_norm", blk.per_layer_norm)):
                r += norm_rules(p + hf_name, layer)
            r.append(Rule(p + "altup.correct_output_scale", blk.correct_output_scale))
        return r + norm_rules("norm", self.final_norm)


__all__ = ["Gemma3nTextSpec", "Gemma3nAttention", "Gemma3nBlock", "Gemma3nTextBackbone"]

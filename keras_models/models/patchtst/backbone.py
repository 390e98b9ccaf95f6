"""PatchTST (channel-independent patch Transformer for time series).

``past_values`` (batch, context_length, channels) are scaled per series (``scaling``: "std",
"mean" or none; ``past_observed_mask`` weights the statistics), cut into patches of
``patch_length`` every ``patch_stride`` steps (the leftover oldest steps are dropped), each patch
projected to ``d_model`` (one projection shared by all channels, or one per channel), positions
added ("sincos" or learned; an optional cls token first), then Transformer encoder layers run on
each channel's patch sequence separately (``channel_attention`` adds, with the same attention
weights, attention across channels at each patch). Norms are BatchNorm over ``d_model`` or
LayerNorm, before (``pre_norm``) or after each sublayer.

Output: ``last_hidden_state`` (batch, channels, num_patches [+1 with the cls token], d_model),
Transformers' layout (a time series has no spatial axes). :meth:`PatchTSTBackbone.encode` also
returns the scaler's ``loc`` and ``scale`` (batch, 1, channels). Only the deterministic model is
built (no random / forecast masking of the inputs: PatchTSTForPretraining is not implemented).
"""

from dataclasses import dataclass

import keras
from keras import ops

from keras_models.errors import ConfigError
from keras_models.layers.activations import get_activation
from keras_models.layers.vision_embeddings import dense_rules, norm_rules
from keras_models.models.backbone import Backbone
from keras_models.models.registry import register_backbone
from keras_models.presets.weight_map import Rule
from keras_models.spec import Spec, dim, hf
from keras_models.tasks.time_series import dummy_series, series_inputs


def _scaling(v):
    if v is True:
        return "mean"
    if v is False:
        return "none"
    return str(v)


@dataclass(frozen=True, kw_only=True)
class PatchTSTSpec(Spec):
    num_input_channels: int = dim("num_input_channels", 1)
    context_length: int = dim("context_length", 32)
    patch_length: int = dim("patch_length", 1)
    patch_stride: int = dim("patch_stride", 1)
    num_hidden_layers: int = dim("num_hidden_layers", 3)
    d_model: int = dim("d_model", 128)
    num_attention_heads: int = dim("num_attention_heads", 4)
    ffn_dim: int = dim("ffn_dim", 512)
    share_embedding: bool = hf("share_embedding", True)
    channel_attention: bool = hf("channel_attention", False)
    norm_type: str = hf("norm_type", "batchnorm", doc="batchnorm or layernorm")
    norm_eps: float = hf("norm_eps", 1e-5)
    bias: bool = hf("bias", True, doc="feed-forward biases")
    activation_function: str = hf("activation_function", "gelu")
    pre_norm: bool = hf("pre_norm", True)
    positional_encoding_type: str = hf("positional_encoding_type", "sincos")
    use_cls_token: bool = hf("use_cls_token", False)
    scaling: str | None = hf("scaling", "std", read=_scaling, doc="std, mean (or true), none/null/false")
    # prediction head
    pooling_type: str | None = hf("pooling_type", "mean", doc="mean, max or null (flatten all patches)")
    share_projection: bool = hf("share_projection", True)
    prediction_length: int = dim("prediction_length", 24)

    unsupported = {"loss": ("mse",)}  # "nll": a distribution head (not implemented)
    ignored = ("do_mask_input", "mask_type", "random_mask_ratio", "num_forecast_mask_patches",
               "channel_consistent_masking", "unmasked_channel_indices", "mask_value", "init_std",
               "attention_dropout", "positional_dropout", "path_dropout", "ff_dropout", "head_dropout",
               "distribution_output", "num_parallel_samples", "num_targets", "output_range")

    def validate(self, source="config.json"):
        if self.context_length <= self.patch_length:
            raise ConfigError(f"{source}: context_length ({self.context_length}) must be greater than "
                              f"patch_length ({self.patch_length})")
        if self.d_model % self.num_attention_heads:
            raise ConfigError(f"{source}: d_model ({self.d_model}) must be divisible by "
                              f"num_attention_heads ({self.num_attention_heads})")
        if not self.share_projection:
            raise ConfigError(f"{source}: share_projection=false (one head per channel) is not supported: "
                              "Transformers' PatchTSTPredictionHead fails on it for every pooling_type, so no "
                              "reference defines its numbers")
        for key, value, allowed in (("norm_type", self.norm_type, ("batchnorm", "layernorm")),
                                    ("positional_encoding_type", self.positional_encoding_type,
                                     ("sincos", "random")),
                                    ("pooling_type", self.pooling_type, ("mean", "max", None))):
            if value not in allowed:
                raise ConfigError(f"{source}: {key}={value!r} is not supported (supported: {list(allowed)})")

    def dummy_inputs(self):
        return dummy_series(self.context_length, self.num_input_channels)


def observed_mask(values, mask):
    return ops.ones_like(values) if mask is None else ops.cast(mask, values.dtype)


def scale_series(values, mask, kind, std_minimum=1e-5, mean_minimum=1e-10):
    """(scaled values, loc, scale) over the time axis (axis 1), as Transformers' time-series scalers
    ("std": observed mean / sqrt(variance + minimum); "mean": observed mean |x|, the batch's for
    series with nothing observed; otherwise loc 0, scale 1). loc and scale are (batch, 1, channels)."""
    if kind == "std":
        den = ops.maximum(ops.sum(mask, axis=1, keepdims=True), 1.0)
        loc = ops.sum(values * mask, axis=1, keepdims=True) / den
        var = ops.sum(ops.square((values - loc) * mask), axis=1, keepdims=True) / den
        scale = ops.sqrt(var + std_minimum)
        return (values - loc) / scale, loc, scale
    if kind == "mean":
        total = ops.sum(ops.abs(values * mask), axis=1, keepdims=True)
        count = ops.sum(mask, axis=1, keepdims=True)
        scale = total / ops.maximum(count, 1.0)
        default = ops.sum(total, axis=0, keepdims=True) / ops.maximum(ops.sum(count, axis=0, keepdims=True), 1.0)
        scale = ops.maximum(ops.where(count > 0, scale, default), mean_minimum)
        return values / scale, ops.zeros_like(scale), scale
    loc = ops.zeros_like(values[:, :1])
    return values, loc, ops.ones_like(loc)


def count_patches(context_length, patch_length, patch_stride):
    return (context_length - patch_length) // patch_stride + 1


def patchify(values, context_length, patch_length, patch_stride):
    """(batch, context_length, channels) -> (batch, channels, num_patches, patch_length): windows
    every ``patch_stride`` steps ending at the last step (the leftover oldest steps are dropped)."""
    n = count_patches(context_length, patch_length, patch_stride)
    start = context_length - (patch_length + patch_stride * (n - 1))
    idx = [[start + i * patch_stride + p for p in range(patch_length)] for i in range(n)]
    return ops.take(ops.transpose(values, (0, 2, 1)), ops.convert_to_tensor(idx, "int32"), axis=2)


class SelfAttention(keras.layers.Layer):
    """Plain multi-head attention (q/k/v/out projections with biases; no padding mask)."""

    def __init__(self, dim_, heads, **kwargs):
        super().__init__(**kwargs)
        self.dim_, self.heads = dim_, heads
        common = dict(dtype=self.dtype_policy)
        self.q_proj = keras.layers.Dense(dim_, name="q_proj", **common)
        self.k_proj = keras.layers.Dense(dim_, name="k_proj", **common)
        self.v_proj = keras.layers.Dense(dim_, name="v_proj", **common)
        self.out_proj = keras.layers.Dense(dim_, name="out_proj", **common)

    def build(self, shape):
        for d in (self.q_proj, self.k_proj, self.v_proj, self.out_proj):
            d.build(shape)
        self.built = True

    def call(self, x, kv=None, causal=False):
        """Attention of ``x`` over itself (or over ``kv``: cross-attention); ``causal`` hides later
        positions."""
        kv = x if kv is None else kv
        n, t, s = ops.shape(x)[0], ops.shape(x)[1], ops.shape(kv)[1]
        hd = self.dim_ // self.heads

        def split(y, length):
            return ops.transpose(ops.reshape(y, (n, length, self.heads, hd)), (0, 2, 1, 3))

        q, k, v = split(self.q_proj(x), t), split(self.k_proj(kv), s), split(self.v_proj(kv), s)
        scores = ops.matmul(q, ops.transpose(k, (0, 1, 3, 2))) * (hd ** -0.5)
        if causal:
            allowed = ops.arange(s)[None, :] <= ops.arange(t)[:, None]
            scores = ops.where(allowed, scores, ops.cast(-1e9, scores.dtype))
        w = ops.softmax(scores, axis=-1)
        out = ops.reshape(ops.transpose(ops.matmul(w, v), (0, 2, 1, 3)), (n, t, self.dim_))
        return self.out_proj(out)

    def rules(self, prefix):
        return sum((dense_rules(f"{prefix}.{n}", getattr(self, n)) for n in ("k_proj", "v_proj", "q_proj", "out_proj")), [])


def make_norm(kind, eps, name, dtype):
    if kind == "batchnorm":
        return keras.layers.BatchNormalization(epsilon=eps, momentum=0.9, name=name, dtype=dtype)
    return keras.layers.LayerNormalization(epsilon=eps, name=name, dtype=dtype)


class PatchTSTLayer(keras.layers.Layer):
    def __init__(self, spec, **kwargs):
        super().__init__(**kwargs)
        s, dt = spec, self.dtype_policy
        self.spec = s
        self.self_attn = SelfAttention(s.d_model, s.num_attention_heads, name="self_attn", dtype=dt)
        self.norms = [make_norm(s.norm_type, s.norm_eps, f"norm_sublayer{i}", dt) for i in (1, 2, 3)
                      if i != 2 or s.channel_attention]
        self.ff_in = keras.layers.Dense(s.ffn_dim, use_bias=s.bias, name="ff_in", dtype=dt)
        self.ff_out = keras.layers.Dense(s.d_model, use_bias=s.bias, name="ff_out", dtype=dt)
        self.act = get_activation(s.activation_function)

    def build(self, shape):
        d = self.spec.d_model
        self.self_attn.build((None, None, d))
        for norm in self.norms:
            norm.build((None, None, d))
        self.ff_in.build((None, None, d))
        self.ff_out.build((None, None, self.spec.ffn_dim))
        self.built = True

    def _sub(self, x, fn, norm, training):
        if self.spec.pre_norm:
            return x + fn(norm(x, training=training))
        return norm(x + fn(x), training=training)

    def call(self, h, training=False):
        b, c, t, d = (ops.shape(h)[i] for i in range(4))
        x = self._sub(ops.reshape(h, (b * c, t, d)), self.self_attn, self.norms[0], training)
        if self.spec.channel_attention:
            x = ops.reshape(ops.transpose(ops.reshape(x, (b, c, t, d)), (0, 2, 1, 3)), (b * t, c, d))
            x = self._sub(x, self.self_attn, self.norms[1], training)
            x = ops.reshape(ops.transpose(ops.reshape(x, (b, t, c, d)), (0, 2, 1, 3)), (b * c, t, d))
        x = self._sub(x, lambda y: self.ff_out(self.act(self.ff_in(y))), self.norms[-1], training)
        return ops.reshape(x, (b, c, t, d))

    def rules(self, prefix):
        r = self.self_attn.rules(f"{prefix}.self_attn")
        for norm in self.norms:
            sub = f"{prefix}.{norm.name}" + (".batchnorm" if self.spec.norm_type == "batchnorm" else "")
            r += norm_rules(sub, norm)
        return r + dense_rules(f"{prefix}.ff.0", self.ff_in) + dense_rules(f"{prefix}.ff.3", self.ff_out)


@keras.saving.register_keras_serializable(package="keras_models")
@register_backbone("patchtst")
class PatchTSTBackbone(Backbone):
    spec_cls = PatchTSTSpec
    base_model_prefix = "model"
    hf_architecture = "PatchTSTModel"
    hf_ignore = ("*num_batches_tracked",)
    verified_backends = ("jax", "torch", "tensorflow")

    def __init__(self, spec=None, **kwargs):
        if spec is None:
            spec = PatchTSTSpec.pop_from(kwargs)
        elif isinstance(spec, dict):
            spec = PatchTSTSpec.from_config(spec)
        super().__init__(**kwargs)
        self.spec = s = spec
        dt = self.dtype_policy
        self.num_patches = count_patches(s.context_length, s.patch_length, s.patch_stride)
        n_emb = 1 if s.share_embedding else s.num_input_channels
        self.embedders = [keras.layers.Dense(s.d_model, name=f"input_embedding_{i}", dtype=dt) for i in range(n_emb)]
        self.encoder_layers = [PatchTSTLayer(s, name=f"layer_{i}", dtype=dt) for i in range(s.num_hidden_layers)]

    def build(self, shape=None):
        s = self.spec
        for e in self.embedders:
            e.build((None, None, None, s.patch_length))
        n_pos = self.num_patches + int(s.use_cls_token)
        self.position_enc = self.add_weight(shape=(n_pos, s.d_model), name="position_enc", initializer="zeros",
                                            trainable=s.positional_encoding_type == "random")
        self.cls_token = (self.add_weight(shape=(1, 1, 1, s.d_model), name="cls_token", initializer="zeros")
                          if s.use_cls_token else None)
        for layer in self.encoder_layers:
            layer.build(None)
        self.built = True

    def dummy_inputs(self):
        return self.spec.dummy_inputs()

    def patchify(self, values):
        return patchify(values, self.spec.context_length, self.spec.patch_length, self.spec.patch_stride)

    def encode(self, inputs, training=False):
        """(last_hidden_state, loc, scale) of ``inputs``."""
        s = self.spec
        values, mask = series_inputs(inputs, s.num_input_channels, s.context_length, type(self).__name__)
        values = ops.cast(values, self.compute_dtype)
        scaled, loc, scale = scale_series(values, observed_mask(values, mask), s.scaling)
        patches = self.patchify(scaled)
        if s.share_embedding:
            h = self.embedders[0](patches)
        else:
            h = ops.stack([e(patches[:, i]) for i, e in enumerate(self.embedders)], axis=1)
        pos = ops.cast(self.position_enc, h.dtype)
        if s.use_cls_token:
            h = h + pos[1:]
            cls = ops.cast(self.cls_token, h.dtype) + pos[:1]
            cls = ops.broadcast_to(cls, (ops.shape(h)[0], s.num_input_channels, 1, s.d_model))
            h = ops.concatenate([cls, h], axis=2)
        else:
            h = h + pos
        for layer in self.encoder_layers:
            h = layer(h, training=training)
        return h, loc, scale

    def call(self, inputs, training=False):
        return self.encode(inputs, training=training)[0]

    def weight_rules(self):
        s = self.spec
        if s.share_embedding:
            r = dense_rules("encoder.embedder.input_embedding", self.embedders[0])
        else:
            r = sum((dense_rules(f"encoder.embedder.input_embedding.{i}", e) for i, e in enumerate(self.embedders)), [])
        r.append(Rule("encoder.positional_encoder.position_enc", self.position_enc))
        if s.use_cls_token:
            r.append(Rule("encoder.positional_encoder.cls_token", self.cls_token))
        for i, layer in enumerate(self.encoder_layers):
            r += layer.rules(f"encoder.layers.{i}")
        return r

    def get_config(self):
        config = super().get_config()
        config.update(self.spec.to_config())
        return config


__all__ = ["PatchTSTBackbone", "PatchTSTSpec"]

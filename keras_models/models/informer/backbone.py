"""Informer: the Time Series Transformer with ProbSparse self-attention and a distilling encoder.

Inputs and outputs are the Time Series Transformer's (``keras_models/models/time_series_transformer``:
lagged, scaled values with static and time features; ``{"encoder_last_hidden_state",
"last_hidden_state"}``), built by the same code. What differs:

* ``attention_type="prob"``: encoder and decoder self-attention are ProbSparse. For each query the
  sparsity measurement M = max_j(q.k_j) - sum_j(q.k_j) / L_K is taken, and only the
  ``u = min(sampling_factor * ceil(log1p(L_Q)), L_Q)`` queries with the largest M attend; the
  others ("lazy" queries) output the mean of the values (encoder) or their running sum up to the
  query (decoder, causal). The decoder's cross-attention stays full.
  Determinism: Transformers estimates M on ``u_part = min(sampling_factor * L_Q * ceil(log1p(L_K)),
  L_K)`` keys drawn at random *with replacement* (torch.randint), so its output changes from call
  to call. For self-attention u_part is always L_K, and we use every key exactly once: the exact
  M that the draw estimates, the same output on every call and backend. It equals Transformers'
  output whenever its draw covers every key (the parity tests record the reference with the draw
  fixed to all keys). ``attention_type="full"`` is plain attention.
* ``distil``: after every encoder layer but the last, a distilling layer (circular Conv1d k=3,
  BatchNorm, ELU, MaxPool k=3 s=2 p=1) halves the sequence, so the encoder's output has
  ``ceil(context_length / 2 ** (encoder_layers - 1))`` steps.
"""

from dataclasses import dataclass
import math

import keras
from keras import ops

from keras_models.errors import ConfigError
from keras_models.layers.vision_embeddings import norm_rules
from keras_models.models.registry import register_backbone
from keras_models.models.time_series_transformer.backbone import (TimeSeriesTransformerBackbone,
                                                                   TimeSeriesTransformerSpec, TSLayer)
from keras_models.presets.weight_map import Rule, Transpose
from keras_models.spec import dim, hf


@dataclass(frozen=True, kw_only=True)
class InformerSpec(TimeSeriesTransformerSpec):
    attention_type: str = hf("attention_type", "prob", doc="prob (ProbSparse) or full")
    sampling_factor: int = dim("sampling_factor", 5)
    distil: bool = hf("distil", True, doc="distilling conv layers between encoder layers")

    def validate(self, source="config.json"):
        super().validate(source)
        if self.attention_type not in ("prob", "full"):
            raise ConfigError(f"{source}: attention_type={self.attention_type!r} is not supported (prob, full)")


def prob_sparse_attention(attn, x, factor, causal):
    """ProbSparse self-attention of ``x`` with the q/k/v/out projections of ``attn`` (a
    patchtst SelfAttention): the top-u queries by the exact sparsity measurement attend (causally
    in the decoder); the others take the mean (encoder) or running sum (decoder) of the values."""
    n, t = ops.shape(x)[0], x.shape[1]
    heads = attn.heads
    hd = attn.dim_ // heads

    def split(y):
        return ops.transpose(ops.reshape(y, (n, t, heads, hd)), (0, 2, 1, 3))

    q, k, v = split(attn.q_proj(x)), split(attn.k_proj(x)), split(attn.v_proj(x))
    scores = ops.matmul(q * (hd ** -0.5), ops.transpose(k, (0, 1, 3, 2)))  # (n, heads, t, t)
    measure = ops.max(scores, axis=-1) - ops.sum(scores, axis=-1) / t  # before any mask, as Transformers
    u = min(factor * math.ceil(math.log1p(t)), t)
    if causal:
        allowed = ops.arange(t)[None, :] <= ops.arange(t)[:, None]
        scores = ops.where(allowed, scores, ops.cast(-1e9, scores.dtype))
    full = ops.matmul(ops.softmax(scores, axis=-1), v)
    if u < t:
        _, top = ops.top_k(measure, u, sorted=False)
        active = ops.sum(ops.one_hot(top, t, dtype=x.dtype), axis=-2)[..., None] > 0  # (n, heads, t, 1)
        lazy = ops.cumsum(v, axis=2) if causal else ops.broadcast_to(ops.mean(v, axis=2, keepdims=True),
                                                                      ops.shape(v))
        full = ops.where(active, full, lazy)
    out = ops.reshape(ops.transpose(full, (0, 2, 1, 3)), (n, t, attn.dim_))
    return attn.out_proj(out)


class InformerLayer(TSLayer):
    """A Time Series Transformer layer whose self-attention is ProbSparse (same weights)."""

    def __init__(self, d_model, heads, ffn, act, cross, sampling_factor=5, **kwargs):
        super().__init__(d_model, heads, ffn, act, cross, **kwargs)
        self.sampling_factor = sampling_factor

    def call(self, h, memory=None):
        a = prob_sparse_attention(self.self_attn, h, self.sampling_factor, causal=self.cross)
        h = self.self_attn_layer_norm(h + a)
        if self.cross:
            h = self.encoder_attn_layer_norm(h + self.encoder_attn(h, kv=memory))
        return self.final_layer_norm(h + self.fc2(self.act(self.fc1(h))))


class DistilLayer(keras.layers.Layer):
    """Circular Conv1d (k=3), BatchNorm, ELU and MaxPool (k=3, stride 2, padding 1): halves the steps."""

    def __init__(self, d_model, **kwargs):
        super().__init__(**kwargs)
        self.d_model = d_model
        self.conv = keras.layers.Conv1D(d_model, 3, name="downConv", dtype=self.dtype_policy)
        self.norm = keras.layers.BatchNormalization(epsilon=1e-5, momentum=0.9, name="norm", dtype=self.dtype_policy)

    def build(self, shape):
        self.conv.build((None, None, self.d_model))
        self.norm.build((None, None, self.d_model))
        self.built = True

    def call(self, x, training=False):
        x = self.conv(ops.concatenate([x[:, -1:], x, x[:, :1]], axis=1))
        x = ops.elu(self.norm(x, training=training))
        pad = ops.full_like(x[:, :1], float("-inf"))
        return ops.max_pool(ops.concatenate([pad, x, pad], axis=1), 3, strides=2, padding="valid")

    def rules(self, prefix):
        return [Rule(f"{prefix}.downConv.weight", self.conv.kernel, Transpose((2, 1, 0))),
                Rule(f"{prefix}.downConv.bias", self.conv.bias)] + norm_rules(f"{prefix}.norm", self.norm)


@keras.saving.register_keras_serializable(package="keras_models")
@register_backbone("informer")
class InformerBackbone(TimeSeriesTransformerBackbone):
    spec_cls = InformerSpec
    hf_architecture = "InformerModel"
    verified_backends = ("jax", "torch", "tensorflow")
    hf_ignore = ("*num_batches_tracked",)  # BatchNorm step counters (unused at inference)

    def __init__(self, spec=None, **kwargs):
        super().__init__(spec, **kwargs)
        s = self.spec
        n = s.encoder_layers - 1 if s.distil else 0
        self.distil_layers = [DistilLayer(s.d_model, name=f"distil_{i}", dtype=self.dtype_policy) for i in range(n)]

    def make_layer(self, index, cross):
        s = self.spec
        if s.attention_type == "full":
            return super().make_layer(index, cross)
        heads, ffn = (s.decoder_attention_heads, s.decoder_ffn_dim) if cross else (s.encoder_attention_heads,
                                                                                   s.encoder_ffn_dim)
        return InformerLayer(s.d_model, heads, ffn, s.activation_function, cross, s.sampling_factor,
                             name=f"{'decoder' if cross else 'encoder'}_layer_{index}", dtype=self.dtype_policy)

    def build(self, shape=None):
        for layer in self.distil_layers:
            layer.build(None)
        super().build(shape)

    def encode(self, inputs, training=False):
        """(encoder states (distilled), decoder states, loc, scale)."""
        s = self.spec
        x, loc, scale = self.network_inputs(inputs)
        c = s.context_length
        h = self.enc_norm(self.enc_value(x[:, :c]) + ops.cast(self.enc_positions[:c], x.dtype))
        for i, layer in enumerate(self.enc_layers):
            h = layer(h)
            if i < len(self.distil_layers):
                h = self.distil_layers[i](h, training=training)
        d = self.dec_norm(self.dec_value(x[:, c:]) + ops.cast(self.dec_positions[c:c + s.prediction_length], x.dtype))
        for layer in self.dec_layers:
            d = layer(d, memory=h)
        if s.input_size == 1:
            loc, scale = loc[..., 0], scale[..., 0]
        return h, d, loc, scale

    def weight_rules(self):
        rules = super().weight_rules()
        for i, layer in enumerate(self.distil_layers):
            rules += layer.rules(f"encoder.conv_layers.{i}")
        return rules


__all__ = ["InformerBackbone", "InformerSpec"]

"""CPM-Ant (model_type ``cpmant``): a pre-norm RMS transformer whose every call is prefixed by
``prompt_length`` learned prompt tokens (ids ``vocab + 2 * prompt_length`` onwards in the input
table), with segment embeddings and a per-head bias that is a bucketed relative position within a
segment and a learned segment-pair entry across segments (prompt: segment 0, text: 2, padding: 0).

As in Transformers:
* attention is bidirectional over the prompt prefix and the input (``CpmAntModel``'s context is
  all ones), and generation with the KV cache makes a new token attend to everything before it
  and itself; the prefill here is bidirectional, each later step reads the whole cache;
* padding is read from the ids (id 0 = padding, segment 0), the valid tokens being the last
  ``count(ids != 0)`` of each row (left padding); ``attention_mask`` is ignored by ``call`` (as by
  Transformers) and used by ``generate`` for its buffer;
* the LM head is an own ``lm_head`` (never tied: the input table also holds the prompt rows).

A call whose static length is 1 at a traced cache index is a decode step; the prefill (the
engine's first forward, at index 0) adds the prompt prefix.
"""

from dataclasses import dataclass

import keras
from keras import ops

from keras_models.errors import ConfigError
from keras_models.layers.bucketed_position_bias import relative_position_bucket
from keras_models.layers.seq2seq_block import make_norm, norm_rules
from keras_models.layers.vision_embeddings import dense_rules
from keras_models.models.backbone import SpecBackbone
from keras_models.models.registry import register_backbone, register_task
from keras_models.presets.weight_map import Rule
from keras_models.spec import Spec, dim, hf
from keras_models.tasks.causal_lm import CausalLM

_ser = keras.saving.register_keras_serializable(package="keras_models")
NEG = -1e30


@dataclass(frozen=True, kw_only=True)
class CpmAntSpec(Spec):
    vocab_size: int = dim("vocab_size", 30720)
    hidden_size: int = dim("hidden_size", 4096)
    num_heads: int = dim("num_attention_heads", 32)
    head_dim: int = dim("dim_head", 128)
    intermediate_size: int = dim("dim_ff", 10240)
    num_layers: int = dim("num_hidden_layers", 48)
    dropout: float = hf("dropout_p", 0.0)
    num_buckets: int = dim("position_bias_num_buckets", 512)
    max_distance: int = dim("position_bias_max_distance", 2048)
    eps: float = hf("eps", 1e-6)
    init_std: float = hf("init_std", 1.0)
    prompt_types: int = dim("prompt_types", 32)
    prompt_length: int = dim("prompt_length", 32)
    segment_types: int = dim("segment_types", 32)
    tie_word_embeddings: bool = hf("tie_word_embeddings", True, doc="no effect: lm_head is always its own")
    bos_token_id: int | None = hf("bos_token_id", None)
    eos_token_id: int | list | None = hf("eos_token_id", None)
    pad_token_id: int | None = hf("pad_token_id", None)

    def validate(self, source="config.json"):
        if self.prompt_types < 3:
            raise ConfigError(f"{source}: prompt_types={self.prompt_types!r} must be >= 3 (the third prompt "
                              "type is the prefix every call uses)")
        if self.segment_types < 3:
            raise ConfigError(f"{source}: segment_types={self.segment_types!r} must be >= 3 (text is segment 2)")
        if self.num_buckets < 4:
            raise ConfigError(f"{source}: position_bias_num_buckets={self.num_buckets!r} must be >= 4")


class CpmAntBlock(keras.layers.Layer):
    """Pre-RMS-norm attention (score bias and mask given) and gated-GELU feed-forward."""

    def __init__(self, hidden_size, num_heads, head_dim, intermediate_size, eps, dropout=0.0, **kwargs):
        super().__init__(**kwargs)
        self.hidden_size, self.num_heads, self.head_dim = hidden_size, num_heads, head_dim
        self.intermediate_size, self.eps, self.dropout_rate = intermediate_size, eps, dropout
        d = self.dtype_policy

        def dense(units, name):
            return keras.layers.Dense(units, use_bias=False, name=name, dtype=d)

        inner = num_heads * head_dim
        self.q, self.k, self.v = dense(inner, "q"), dense(inner, "k"), dense(inner, "v")
        self.o = dense(hidden_size, "o")
        self.w0, self.w1 = dense(intermediate_size, "w0"), dense(intermediate_size, "w1")
        self.w_out = dense(hidden_size, "w_out")
        self.attention_norm = make_norm("rms", eps, "attention_norm", d)
        self.ffn_norm = make_norm("rms", eps, "ffn_norm", d)
        self.drop = keras.layers.Dropout(dropout, dtype=d)

    def build(self, input_shape=None):
        h, inner = self.hidden_size, self.num_heads * self.head_dim
        for layer in (self.q, self.k, self.v, self.w0, self.w1, self.attention_norm, self.ffn_norm):
            layer.build((None, None, h))
        self.o.build((None, None, inner))
        self.w_out.build((None, None, self.intermediate_size))
        self.built = True

    def heads(self, x):
        b, t = ops.shape(x)[0], ops.shape(x)[1]
        return ops.transpose(ops.reshape(x, (b, t, self.num_heads, self.head_dim)), (0, 2, 1, 3))

    def call(self, x, bias, cache=None, write_at=None, training=False):
        """``bias``: (batch, heads, query, key) position bias with the mask folded in. With
        ``cache`` (keys, values of (batch, heads, length, head_dim)) the new keys / values are
        written at ``write_at`` and the whole buffer is read."""
        h = self.attention_norm(x)
        q, k, v = self.heads(self.q(h)), self.heads(self.k(h)), self.heads(self.v(h))
        if cache is not None:
            zero = ops.zeros((), "int32")
            start = (zero, zero, ops.cast(write_at, "int32"), zero)
            k = ops.slice_update(cache[0], start, ops.cast(k, cache[0].dtype))
            v = ops.slice_update(cache[1], start, ops.cast(v, cache[1].dtype))
            cache = (k, v)
        scores = ops.matmul(q, ops.transpose(k, (0, 1, 3, 2))) / ops.cast(self.head_dim ** 0.5, q.dtype)
        probs = ops.softmax(ops.cast(scores, "float32") + bias, axis=-1)
        probs = self.drop(ops.cast(probs, v.dtype), training=training)
        out = ops.transpose(ops.matmul(probs, v), (0, 2, 1, 3))
        b, t = ops.shape(out)[0], ops.shape(out)[1]
        x = x + self.drop(self.o(ops.reshape(out, (b, t, -1))), training=training)
        h = self.ffn_norm(x)
        h = ops.gelu(self.w0(h), approximate=False) * self.w1(h)
        x = x + self.drop(self.w_out(self.drop(h, training=training)), training=training)
        return x, cache

    def get_config(self):
        c = super().get_config()
        c.update(hidden_size=self.hidden_size, num_heads=self.num_heads, head_dim=self.head_dim,
                 intermediate_size=self.intermediate_size, eps=self.eps, dropout=self.dropout_rate)
        return c


@_ser
@register_backbone("cpmant")
class CpmAntBackbone(SpecBackbone):
    """The final-norm hidden state (batch, seq, hidden) of ``{"input_ids"}`` (the prompt prefix
    removed); padding is read from the ids (see the module docstring)."""

    spec_cls = CpmAntSpec
    base_model_prefix = "cpmant"
    hf_architecture = "CpmAntModel"
    verified_backends = ("jax", "torch", "tensorflow")  # tests/models/test_cpmant.py

    def __init__(self, spec=None, **kwargs):
        super().__init__(spec, **kwargs)
        s, d = self.spec, self.dtype_policy
        self.vocab_size, self.hidden_size, self.num_layers = s.vocab_size, s.hidden_size, s.num_layers
        self.prompt_length = s.prompt_length
        init = keras.initializers.RandomNormal(stddev=s.init_std)
        self.token_embedding = keras.layers.Embedding(s.vocab_size + s.prompt_types * s.prompt_length, s.hidden_size,
                                                      embeddings_initializer=init, name="input_embedding", dtype=d)
        self.segment_embedding = keras.layers.Embedding(s.segment_types, s.hidden_size, embeddings_initializer=init,
                                                        name="segment_embedding", dtype=d)
        self.blocks = [CpmAntBlock(s.hidden_size, s.num_heads, s.head_dim, s.intermediate_size, s.eps, s.dropout,
                                   name=f"block_{i}", dtype=d) for i in range(s.num_layers)]
        self.final_norm = make_norm("rms", s.eps, "output_layernorm", d)

    @property
    def options(self):
        return {"tie_word_embeddings": False, "final_logit_softcap": None, "lm_head_bias": False,
                "initializer_range": self.spec.init_std, "embed_proj_dim": None, "logit_scale": None}

    def build(self, input_shape=None):
        s = self.spec
        self.token_embedding.build((None, None))
        self.segment_embedding.build((None, None))
        self.position_table = self.add_weight(
            name="position_bias", shape=(s.segment_types * s.segment_types + s.num_buckets, s.num_heads),
            initializer=keras.initializers.RandomNormal(stddev=s.init_std))
        for layer in (*self.blocks, self.final_norm):
            layer.build((None, None, s.hidden_size))
        self.built = True

    # --- pieces ---------------------------------------------------------------------------------
    def _prefix(self, batch):
        s = self.spec
        ids = ops.arange(s.vocab_size + 2 * s.prompt_length, s.vocab_size + 3 * s.prompt_length, dtype="int32")
        return ops.broadcast_to(ids[None], (batch, s.prompt_length))

    def _bias(self, q_pos, q_seg, k_pos, k_seg, k_valid):
        """(batch, heads, q, k) float32: position / segment-pair bias, -inf-like where invalid."""
        s = self.spec
        same = ops.equal(q_seg[:, :, None], k_seg[:, None, :])
        rel = k_pos[:, None, :] - q_pos[:, :, None]
        pos_bucket = relative_position_bucket(rel, True, s.num_buckets, s.max_distance)
        seg_bucket = q_seg[:, :, None] * s.segment_types + k_seg[:, None, :] + s.num_buckets
        bucket = ops.where(same, pos_bucket, seg_bucket)
        bias = ops.cast(ops.take(self.position_table, bucket, axis=0), "float32")  # (b, q, k, heads)
        bias = ops.transpose(bias, (0, 3, 1, 2))
        return bias + ops.where(k_valid[:, None, None, :], 0.0, NEG)

    def _embed(self, ids, segments):
        return self.token_embedding(ids) + self.segment_embedding(segments)

    # --- forward --------------------------------------------------------------------------------
    def call(self, inputs, training=False):
        ids = inputs["input_ids"] if isinstance(inputs, dict) else inputs
        ids = ops.cast(ids, "int32")
        b, n = ops.shape(ids)[0], ops.shape(ids)[1]
        p = self.prompt_length
        nonzero = ops.not_equal(ids, 0)
        length = ops.sum(ops.cast(nonzero, "int32"), axis=-1)
        valid = ops.concatenate([ops.ones((b, p), "bool"),
                                 (n - 1 - ops.arange(n, dtype="int32"))[None, :] < length[:, None]], axis=1)
        seg = ops.concatenate([ops.zeros((b, p), "int32"), ops.cast(nonzero, "int32") * 2], axis=1)
        pos = ops.broadcast_to(ops.arange(p + n, dtype="int32")[None], (b, p + n))
        x = self._embed(ops.concatenate([self._prefix(b), ids], axis=1), seg)
        bias = self._bias(pos, seg, pos, seg, valid)
        for block in self.blocks:
            x, _ = block(x, bias, training=training)
        return self.final_norm(x)[:, p:]

    def init_cache(self, batch_size, max_length):
        s = self.spec
        shape = (batch_size, s.num_heads, s.prompt_length + max_length, s.head_dim)
        return tuple((ops.zeros(shape, self.compute_dtype), ops.zeros(shape, self.compute_dtype))
                     for _ in self.blocks)

    def call_with_cache(self, input_ids, cache, cache_index, attention_mask):
        """Hidden states of ``input_ids`` at buffer positions ``cache_index ..`` (``attention_mask``
        spans the buffer). The prefill (index 0, or any call longer than one token) adds the prompt
        prefix and attends bidirectionally; a step attends to every filled position."""
        ids = ops.cast(input_ids, "int32")
        b, t = ops.shape(ids)[0], ids.shape[1]
        p = self.prompt_length
        length = ops.shape(attention_mask)[1]
        mask = ops.cast(attention_mask, "int32")
        prefill = (isinstance(cache_index, int) and cache_index == 0) or t != 1
        index = ops.cast(cache_index, "int32") if not isinstance(cache_index, int) else cache_index
        q_mask = ops.slice(mask, (0, index), (b, t)) if not isinstance(index, int) else mask[:, index:index + t]
        k_seg = ops.concatenate([ops.zeros((b, p), "int32"), mask * 2], axis=1)
        k_pos = ops.broadcast_to(ops.arange(p + length, dtype="int32")[None], (b, p + length))
        filled = ops.arange(p + length, dtype="int32")[None, :] < (p + index + t)
        k_valid = ops.logical_and(ops.concatenate([ops.ones((b, p), "bool"), mask > 0], axis=1), filled)
        if prefill:
            x = self._embed(ops.concatenate([self._prefix(b), ids], axis=1),
                            ops.concatenate([ops.zeros((b, p), "int32"), q_mask * 2], axis=1))
            q_pos = ops.broadcast_to(ops.arange(p + t, dtype="int32")[None], (b, p + t))
            q_seg = ops.concatenate([ops.zeros((b, p), "int32"), q_mask * 2], axis=1)
            write_at = 0
        else:
            x = self._embed(ids, q_mask * 2)
            q_pos = ops.broadcast_to((p + index + ops.arange(t, dtype="int32"))[None], (b, t))
            q_seg = q_mask * 2
            write_at = p + index
        bias = self._bias(q_pos, q_seg, k_pos, k_seg, k_valid)
        new = []
        for block, layer_cache in zip(self.blocks, cache):
            x, layer_cache = block(x, bias, cache=layer_cache, write_at=write_at)
            new.append(layer_cache)
        x = self.final_norm(x)
        if prefill:
            x = x[:, p:]
        return x, tuple(new)

    # --- weights --------------------------------------------------------------------------------
    def weight_rules(self):
        r = [Rule("input_embedding.weight", self.token_embedding.embeddings),
             Rule("segment_embedding.weight", self.segment_embedding.embeddings),
             Rule("position_bias.relative_attention_bias", self.position_table)]
        r += norm_rules("encoder.output_layernorm", self.final_norm)
        for i, b in enumerate(self.blocks):
            p = f"encoder.layers.{i}."
            r += norm_rules(p + "self_att.layernorm_before_attention", b.attention_norm)
            for name, layer in (("project_q", b.q), ("project_k", b.k), ("project_v", b.v),
                                ("attention_out", b.o)):
                r += dense_rules(f"{p}self_att.self_attention.{name}", layer)
            r += norm_rules(p + "ffn.layernorm_before_ffn", b.ffn_norm)
            r += dense_rules(p + "ffn.ffn.w_in.w_0", b.w0) + dense_rules(p + "ffn.ffn.w_in.w_1", b.w1)
            r += dense_rules(p + "ffn.ffn.w_out", b.w_out)
        return r


@_ser
@register_task(CpmAntBackbone, "CausalLM", ("CpmAntForCausalLM",))
class CpmAntCausalLM(CausalLM):
    """Logits (batch, seq, vocab) from the own ``lm_head``; ``generate`` as Transformers' (cached)."""


__all__ = ["CpmAntSpec", "CpmAntBackbone", "CpmAntBlock", "CpmAntCausalLM"]

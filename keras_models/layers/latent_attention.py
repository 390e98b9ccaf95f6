"""Multi-head latent attention (MLA, DeepSeek-V2 / V3), with a KV cache of the compressed latent.

Keys and values come from one low-rank latent per token: ``kv_a`` projects the token to
[latent (kv_lora_rank) | shared rotary key (qk_rope_head_dim)], the latent is RMS-normed, and
``kv_b`` expands it to per-head [key without positions (qk_nope_head_dim) | value (v_head_dim)].
Queries are one projection (``q_lora_rank`` None) or a low-rank pair with an RMSNorm between
(``query_a`` -> ``query_a_norm`` -> ``query_b``); each head is [nope part | rope part]. Rotary
positions rotate only the rope parts (``rotary_interleaved``: adjacent pairs, as DeepSeek's
checkpoints lay them out), and the score of a query/key pair is nope . nope + rope . rope.

The cache holds what the architecture needs and nothing more: per layer two buffers, the
normed latent (batch, max_length, kv_lora_rank) and the rotated shared key (batch, max_length,
qk_rope_head_dim) -- not per-head keys and values. Attention over the cache runs in latent space
("absorbed" form): the query's nope part is mapped through ``kv_b``'s key half into the latent
space, scored against the cached latents directly, and the probability-weighted latents are
expanded through ``kv_b``'s value half once per query. The full (uncached) forward pass expands
keys and values explicitly; both give the same numbers up to float rounding.
"""

import keras
from keras import ops

from keras_models.generation.backend import visible_length, write_time_slice
from keras_models.layers.attention import softmax_with_sinks
from keras_models.layers.norms import RMSNorm
from keras_models.layers.rotary import apply_rotary


@keras.saving.register_keras_serializable(package="keras_models")
class LatentAttention(keras.layers.Layer):
    def __init__(self, hidden_size, num_heads, kv_lora_rank, qk_nope_head_dim, qk_rope_head_dim,
                 v_head_dim, q_lora_rank=None, use_bias=False, output_bias=None, scale=None,
                 norm_eps=1e-6, rotary_interleaved=True, dropout=0.0,
                 kernel_initializer="glorot_uniform", **kwargs):
        super().__init__(**kwargs)
        self.hidden_size, self.num_heads = hidden_size, num_heads
        self.kv_lora_rank, self.q_lora_rank = kv_lora_rank, q_lora_rank
        self.qk_nope_head_dim, self.qk_rope_head_dim = qk_nope_head_dim, qk_rope_head_dim
        self.v_head_dim = v_head_dim
        self.qk_head_dim = qk_nope_head_dim + qk_rope_head_dim
        self.use_bias = use_bias
        self.output_bias = use_bias if output_bias is None else output_bias
        self.scale = scale if scale is not None else self.qk_head_dim ** -0.5
        self.norm_eps = norm_eps
        self.rotary_interleaved = rotary_interleaved
        self.dropout = dropout
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        d = dict(dtype=self.dtype_policy, kernel_initializer=self.kernel_initializer)
        q_width = num_heads * self.qk_head_dim
        if q_lora_rank is None:
            self.query = keras.layers.Dense(q_width, use_bias=False, name="query", **d)
            self.query_a = self.query_a_norm = self.query_b = None
        else:
            self.query = None
            self.query_a = keras.layers.Dense(q_lora_rank, use_bias=use_bias, name="query_a", **d)
            self.query_a_norm = RMSNorm(norm_eps, name="query_a_norm", dtype=self.dtype_policy)
            self.query_b = keras.layers.Dense(q_width, use_bias=False, name="query_b", **d)
        self.kv_a = keras.layers.Dense(kv_lora_rank + qk_rope_head_dim, use_bias=use_bias, name="kv_a", **d)
        self.kv_a_norm = RMSNorm(norm_eps, name="kv_a_norm", dtype=self.dtype_policy)
        self.kv_b = keras.layers.Dense(num_heads * (qk_nope_head_dim + v_head_dim), use_bias=False,
                                       name="kv_b", **d)
        self.output_dense = keras.layers.Dense(hidden_size, use_bias=self.output_bias, name="output", **d)
        self.attention_dropout = keras.layers.Dropout(dropout, dtype=self.dtype_policy)

    def build(self, input_shape):
        lead = tuple(input_shape[:-1])
        if self.query is not None:
            self.query.build(input_shape)
        else:
            self.query_a.build(input_shape)
            self.query_a_norm.build(lead + (self.q_lora_rank,))
            self.query_b.build(lead + (self.q_lora_rank,))
        self.kv_a.build(input_shape)
        self.kv_a_norm.build(lead + (self.kv_lora_rank,))
        self.kv_b.build(lead + (self.kv_lora_rank,))
        self.output_dense.build(lead + (self.num_heads * self.v_head_dim,))
        self.built = True

    def init_cache(self, batch_size, max_length, dtype):
        """Empty buffers: the normed latents (batch, max_length, kv_lora_rank) and the rotated
        shared keys (batch, max_length, qk_rope_head_dim)."""
        return (ops.zeros((batch_size, max_length, self.kv_lora_rank), dtype=dtype),
                ops.zeros((batch_size, max_length, self.qk_rope_head_dim), dtype=dtype))

    def _project(self, x, rope):
        """q_nope (b, t, h, dn), q_rope (b, t, h, dr), latent (b, t, r), k_rope (b, t, dr)."""
        b, t = ops.shape(x)[0], ops.shape(x)[1]
        q = self.query(x) if self.query is not None else self.query_b(self.query_a_norm(self.query_a(x)))
        q = ops.reshape(q, (b, t, self.num_heads, self.qk_head_dim))
        dn = self.qk_nope_head_dim
        q_nope, q_rope = q[..., :dn], q[..., dn:]
        kv = self.kv_a(x)
        latent = self.kv_a_norm(kv[..., : self.kv_lora_rank])
        k_rope = kv[..., self.kv_lora_rank :][:, :, None, :]
        if rope is not None:
            q_rope = apply_rotary(q_rope, rope[0], rope[1], self.rotary_interleaved)
            k_rope = apply_rotary(k_rope, rope[0], rope[1], self.rotary_interleaved)
        return q_nope, q_rope, latent, k_rope[:, :, 0, :]

    def _probs(self, scores, bias, training):
        scores = ops.cast(scores, "float32") * self.scale
        if bias is not None:
            scores = scores + ops.cast(bias, "float32")
        probs = softmax_with_sinks(scores, None)
        if training and self.dropout > 0:
            probs = self.attention_dropout(probs, training=training)
        return probs

    def call_decoder(self, x, bias=None, rope=None, cache=None, cache_index=None, training=False):
        """As ``Attention.call_decoder``; ``cache`` is this layer's (latents, rotated keys) pair."""
        q_nope, q_rope, latent, k_rope = self._project(x, rope)
        b, t = ops.shape(x)[0], ops.shape(x)[1]
        if cache is None:
            kv = ops.reshape(self.kv_b(latent), (b, t, self.num_heads, self.qk_nope_head_dim + self.v_head_dim))
            k_nope, v = kv[..., : self.qk_nope_head_dim], kv[..., self.qk_nope_head_dim :]
            scores = ops.einsum("bqhd,bkhd->bhqk", q_nope, k_nope) + ops.einsum("bqhd,bkd->bhqk", q_rope, k_rope)
            probs = ops.cast(self._probs(scores, bias, training), v.dtype)
            out = ops.einsum("bhqk,bkhd->bqhd", probs, v)
            return self.output_dense(ops.reshape(out, (b, t, self.num_heads * self.v_head_dim))), None
        lat_buf = write_time_slice(cache[0], latent, cache_index, axis=1)
        rope_buf = write_time_slice(cache[1], k_rope, cache_index, axis=1)
        lat, kr = lat_buf, rope_buf
        n = visible_length(cache_index, t)
        if n is not None and n < lat.shape[1]:  # eager loop: only the filled part
            lat, kr = lat[:, :n], kr[:, :n]
            bias = None if bias is None else bias[..., :n]
        w = ops.reshape(ops.cast(self.kv_b.kernel, q_nope.dtype),
                        (self.kv_lora_rank, self.num_heads, self.qk_nope_head_dim + self.v_head_dim))
        w_key, w_value = w[..., : self.qk_nope_head_dim], w[..., self.qk_nope_head_dim :]
        q_latent = ops.einsum("bqhd,chd->bqhc", q_nope, w_key)
        scores = ops.einsum("bqhc,bkc->bhqk", q_latent, lat) + ops.einsum("bqhd,bkd->bhqk", q_rope, kr)
        probs = ops.cast(self._probs(scores, bias, training), lat.dtype)
        out = ops.einsum("bqhc,chd->bqhd", ops.einsum("bhqk,bkc->bqhc", probs, lat), w_value)
        out = self.output_dense(ops.reshape(out, (b, t, self.num_heads * self.v_head_dim)))
        return out, (lat_buf, rope_buf)

    def get_config(self):
        config = super().get_config()
        config.update(hidden_size=self.hidden_size, num_heads=self.num_heads, kv_lora_rank=self.kv_lora_rank,
                      qk_nope_head_dim=self.qk_nope_head_dim, qk_rope_head_dim=self.qk_rope_head_dim,
                      v_head_dim=self.v_head_dim, q_lora_rank=self.q_lora_rank, use_bias=self.use_bias,
                      output_bias=self.output_bias, scale=self.scale, norm_eps=self.norm_eps,
                      rotary_interleaved=self.rotary_interleaved, dropout=self.dropout,
                      kernel_initializer=keras.initializers.serialize(self.kernel_initializer))
        return config

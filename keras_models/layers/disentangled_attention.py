"""DeBERTa's disentangled attention: content-to-content scores plus content-to-position (c2p)
and position-to-content (p2c) scores over shared relative-position embeddings."""

import keras
from keras import ops


def log_bucket_position(relative_pos, bucket_size, max_position):
    """DeBERTa-v2's log buckets: offsets within ``bucket_size // 2`` are kept, larger ones are
    compressed logarithmically up to ``max_position``."""
    sign = ops.sign(relative_pos)
    mid = bucket_size // 2
    rel = ops.cast(relative_pos, "float32")
    small = ops.logical_and(relative_pos < mid, relative_pos > -mid)
    abs_pos = ops.where(small, float(mid - 1), ops.abs(rel))
    log_pos = ops.ceil(ops.log(abs_pos / mid) / ops.log((max_position - 1) / mid) * (mid - 1)) + mid
    bucket = ops.where(abs_pos <= mid, rel, log_pos * ops.cast(sign, "float32"))
    return ops.cast(bucket, "int32")


def relative_positions(query_len, key_len, bucket_size=-1, max_position=-1):
    """(query_len, key_len) int32 offsets ``q - k``, log-bucketed when both sizes are > 0."""
    rel = ops.arange(query_len, dtype="int32")[:, None] - ops.arange(key_len, dtype="int32")[None, :]
    if bucket_size > 0 and max_position > 0:
        rel = log_bucket_position(rel, bucket_size, max_position)
    return rel


@keras.saving.register_keras_serializable(package="keras_models")
class DisentangledAttention(keras.layers.Layer):
    """Self-attention with c2p / p2c relative terms.

    Attribute names ``query``/``key``/``value``/``output_dense`` match :class:`Attention`, so blocks
    and weight maps treat both alike. ``call(x, bias, relative=(rel_pos, rel_embeddings))``.

    DeBERTa (v1) switches: ``fused_qkv`` (one bias-free ``in_proj`` laid out per head as
    [q | k | v], plus ``q_bias`` / ``v_bias`` vectors; ``query``/``key``/``value`` are then None),
    ``pos_key_bias`` (its c2p projection has no bias) and ``scale_factor`` (scores are divided by
    sqrt(head_dim * scale_factor); None: 1 + len(pos_att_type)).
    """

    def __init__(self, hidden_size, num_heads, pos_att_type=("c2p", "p2c"), share_att_key=False,
                 attention_span=512, dropout=0.0, kernel_initializer="glorot_uniform", fused_qkv=False,
                 pos_key_bias=True, scale_factor=None, **kwargs):
        super().__init__(**kwargs)
        self.hidden_size, self.num_heads = hidden_size, num_heads
        self.head_dim = hidden_size // num_heads
        self.pos_att_type = tuple(pos_att_type or ())
        self.share_att_key, self.attention_span, self.dropout = share_att_key, attention_span, dropout
        self.fused_qkv, self.pos_key_bias, self.scale_factor = fused_qkv, pos_key_bias, scale_factor
        if fused_qkv and share_att_key:
            raise ValueError("fused_qkv and share_att_key cannot be combined")
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        dense = dict(dtype=self.dtype_policy, kernel_initializer=self.kernel_initializer)
        self.in_proj = keras.layers.Dense(3 * hidden_size, use_bias=False, name="in_proj", **dense) if fused_qkv else None
        self.query = None if fused_qkv else keras.layers.Dense(hidden_size, name="query", **dense)
        self.key = None if fused_qkv else keras.layers.Dense(hidden_size, name="key", **dense)
        self.value = None if fused_qkv else keras.layers.Dense(hidden_size, name="value", **dense)
        self.output_dense = keras.layers.Dense(hidden_size, name="output", **dense)
        own = not share_att_key
        self.pos_key = keras.layers.Dense(hidden_size, use_bias=pos_key_bias, name="pos_key",
                                          **dense) if own and "c2p" in self.pos_att_type else None
        self.pos_query = keras.layers.Dense(hidden_size, name="pos_query", **dense) if own and "p2c" in self.pos_att_type else None
        self.attention_dropout = keras.layers.Dropout(dropout, dtype=self.dtype_policy)

    def build(self, input_shape):
        for d in (self.in_proj, self.query, self.key, self.value, self.output_dense, self.pos_key, self.pos_query):
            if d is not None:
                d.build(input_shape)
        if self.fused_qkv:
            self.q_bias = self.add_weight(name="q_bias", shape=(self.hidden_size,), initializer="zeros")
            self.v_bias = self.add_weight(name="v_bias", shape=(self.hidden_size,), initializer="zeros")
        self.built = True

    def project_qkv(self, x):
        """q, k, v, each (b, heads, t, d)."""
        if not self.fused_qkv:
            return self._heads(self.query(x)), self._heads(self.key(x)), self._heads(self.value(x))
        b, t = ops.shape(x)[0], ops.shape(x)[1]
        qkv = ops.transpose(ops.reshape(self.in_proj(x), (b, t, self.num_heads, 3 * self.head_dim)), (0, 2, 1, 3))
        d = self.head_dim
        q, k, v = qkv[..., :d], qkv[..., d : 2 * d], qkv[..., 2 * d :]
        heads = lambda bias: ops.cast(ops.reshape(bias, (self.num_heads, 1, d)), x.dtype)  # noqa: E731
        return q + heads(self.q_bias), k, v + heads(self.v_bias)

    def _heads(self, x):
        """(b, t, hidden) -> (b, heads, t, d)."""
        b, t = ops.shape(x)[0], ops.shape(x)[1]
        return ops.transpose(ops.reshape(x, (b, t, self.num_heads, self.head_dim)), (0, 2, 1, 3))

    def call(self, x, bias=None, relative=None, training=False):
        q, k, v = self.project_qkv(x)
        factor = 1 + len(self.pos_att_type) if self.scale_factor is None else self.scale_factor
        scale = ops.cast(ops.sqrt(float(self.head_dim * factor)), x.dtype)
        scores = ops.einsum("bhqd,bhkd->bhqk", q, k) / scale
        if relative is not None and self.pos_att_type:
            scores = scores + self.relative_scores(q, k, *relative) / scale
        if bias is not None:
            scores = scores + ops.cast(bias, scores.dtype)
        probs = self.attention_dropout(ops.softmax(scores, axis=-1), training=training)
        out = ops.transpose(ops.einsum("bhqk,bhkd->bhqd", probs, v), (0, 2, 1, 3))
        b, t = ops.shape(out)[0], ops.shape(out)[1]
        return self.output_dense(ops.reshape(out, (b, t, self.hidden_size)))

    def relative_scores(self, q, k, rel_pos, rel_embeddings):
        span = self.attention_span
        rel = rel_embeddings[None, : 2 * span]
        score = 0.0
        batch = ops.shape(q)[0]
        if "c2p" in self.pos_att_type:
            pos_k = self._heads(self.key(rel) if self.share_att_key else self.pos_key(rel))  # (1, h, 2s, d)
            c2p = ops.einsum("bhqd,hpd->bhqp", q, pos_k[0])
            idx = ops.clip(rel_pos + span, 0, 2 * span - 1)
            idx = ops.broadcast_to(idx[None, None], (batch, self.num_heads) + tuple(ops.shape(idx)))
            score = score + ops.take_along_axis(c2p, idx, axis=-1)
        if "p2c" in self.pos_att_type:
            pos_q = self._heads(self.query(rel) if self.share_att_key else self.pos_query(rel))
            p2c = ops.einsum("bhkd,hpd->bhkp", k, pos_q[0])
            idx = ops.clip(-rel_pos + span, 0, 2 * span - 1)
            idx = ops.broadcast_to(idx[None, None], (batch, self.num_heads) + tuple(ops.shape(idx)))
            score = score + ops.swapaxes(ops.take_along_axis(p2c, idx, axis=-1), -1, -2)
        return score

    def get_config(self):
        config = super().get_config()
        config.update(hidden_size=self.hidden_size, num_heads=self.num_heads, pos_att_type=list(self.pos_att_type),
                      share_att_key=self.share_att_key, attention_span=self.attention_span, dropout=self.dropout,
                      fused_qkv=self.fused_qkv, pos_key_bias=self.pos_key_bias, scale_factor=self.scale_factor,
                      kernel_initializer=keras.initializers.serialize(self.kernel_initializer))
        return config

"""ProphetNet's decoder layer: a Seq2SeqBlock whose self-attention runs n-gram streams.

The decoder carries a *main* stream ``x`` (b, t, hidden) and ``n`` *predict* streams ``p``
(b, n, t, hidden) that share every projection. Main queries attend to main keys (causal, as a
normal decoder). Predict-stream queries attend to the main keys (a per-stream mask) plus their own
key at the same position; they never see other predict positions or streams. Both attentions add a
*query-dependent* bucketed relative-position bias: ``relative_bias`` (a Dense hidden ->
buckets * heads applied to the attention input) is read at each (query, key) pair's bucket
(for the predict streams in Transformers' interleaved layout, see ``_predict_bias_table``).
Cross-attention and the feed-forward run on every stream alike.
"""

import keras
from keras import ops

from keras_models.layers.seq2seq_block import Seq2SeqBlock, heads_major, update_cache


@keras.saving.register_keras_serializable(package="keras_models")
class NgramSeq2SeqBlock(Seq2SeqBlock):
    def __init__(self, *args, num_buckets=32, **kwargs):
        super().__init__(*args, **kwargs)
        if self.norm_first:
            raise ValueError("NgramSeq2SeqBlock is post-norm only (norm_first=False)")
        self.num_buckets = num_buckets
        self.relative_bias = keras.layers.Dense(
            num_buckets * self.num_heads, use_bias=True, name="relative_bias",
            kernel_initializer=self.kernel_initializer, dtype=self.dtype_policy,
        )

    def build(self, input_shape):
        super().build(input_shape)
        self.relative_bias.build(input_shape)

    def _bias_table(self, h):
        """(..., t, hidden) -> (..., heads, t, buckets)."""
        table = self.relative_bias(h)
        lead = ops.shape(table)[:-1]
        table = ops.reshape(table, tuple(lead) + (self.num_buckets, self.num_heads))
        rank = len(table.shape)
        perm = tuple(range(rank - 3)) + (rank - 1, rank - 3, rank - 2)
        return ops.transpose(table, perm)

    def _predict_bias_table(self, p):
        """(b, n, t, hidden) -> (b, n, heads, t, buckets) in Transformers' layout: its table is
        laid out (position, stream, head) and read back as (stream, head, position), so a row of
        stream s at position i generally comes from another stream / position. Identity when
        t == 1 (cached decoding); reproduced for parity of teacher-forced passes."""
        table = self.relative_bias(p)
        b, n, t = ops.shape(p)[0], ops.shape(p)[1], ops.shape(p)[2]
        table = ops.reshape(table, (b, n, t, self.num_buckets, self.num_heads))
        table = ops.transpose(table, (0, 2, 1, 4, 3))  # (b, t, n, heads, buckets)
        return ops.reshape(table, (b, n, self.num_heads, t, self.num_buckets))

    @staticmethod
    def _gather(table, buckets):
        """table (..., heads, t, buckets), buckets (t, keys) -> (..., heads, t, keys)."""
        idx = ops.broadcast_to(buckets, tuple(ops.shape(table)[:-1]) + (ops.shape(buckets)[-1],))
        return ops.take_along_axis(table, idx, axis=-1)

    def _split(self, h):
        a = self.self_attention
        shape = ops.shape(h)
        return ops.reshape(h, tuple(shape[:-1]) + (a.num_heads, a.head_dim))

    def _ngram_attend(self, x, p, main_bias, predict_bias, main_buckets, predict_buckets, cache,
                      cache_index, training):
        a = self.self_attention
        q = self._split(a.query(x))
        k, v = heads_major(self._split(a.key(x))), heads_major(self._split(a.value(x)))  # (b, h, s, d)
        new_cache = None
        if cache is not None:
            k = update_cache(cache[0], k, cache_index)
            v = update_cache(cache[1], v, cache_index)
            new_cache = (k, v)
        main = a.attend_heads_major(q, k, v, self._gather(self._bias_table(x), main_buckets) + main_bias,
                                    training=training)
        main = a.output_dense(main)

        # predict streams: keys = the main keys, plus each query's own key
        scale = a.scale if a.scale is not None else a.head_dim ** -0.5
        qp, kp, vp = self._split(a.query(p)), self._split(a.key(p)), self._split(a.value(p))
        table = self._predict_bias_table(p)  # (b, n, heads, t, buckets)
        scores = ops.einsum("bnthd,bhsd->bnhts", qp, ops.cast(k, qp.dtype)) * ops.cast(scale, qp.dtype)
        scores = scores + self._gather(table, predict_buckets) + ops.cast(predict_bias, qp.dtype)
        own = ops.einsum("bnthd,bnthd->bnht", qp, kp) * ops.cast(scale, qp.dtype)
        own = own + table[..., 0]  # own key: relative distance 0 -> bucket 0
        probs = ops.softmax(ops.cast(ops.concatenate([scores, own[..., None]], axis=-1), "float32"),
                            axis=-1)
        probs = a.attention_dropout(ops.cast(probs, vp.dtype), training=training)
        out = ops.einsum("bnhts,bhsd->bnthd", probs[..., :-1], ops.cast(v, vp.dtype))
        out = out + ops.transpose(probs[..., -1], (0, 1, 3, 2))[..., None] * vp
        shape = ops.shape(out)
        out = ops.reshape(out, tuple(shape[:3]) + (a.num_heads * a.head_dim,))
        return main, a.output_dense(out), new_cache

    def call(self, x, p=None, main_bias=None, predict_bias=None, main_buckets=None,
             predict_buckets=None, context=None, cross_bias=None, cache=None, cache_index=None,
             cross_kv=None, training=False):
        """x (b, t, hidden), p (b, n, t, hidden). ``main_bias`` (b|1, 1, t, keys) and
        ``predict_bias`` (b|1, n, 1, t, keys) are additive masks over the main keys (keys = the
        cache buffer when ``cache`` is given); ``main_buckets`` / ``predict_buckets`` (t, keys)
        are the relative-position bucket ids. Returns ``(x, p)`` or ``(x, p, (k, v))``."""
        main, pred, new_cache = self._ngram_attend(x, p, main_bias, predict_bias, main_buckets,
                                                   predict_buckets, cache, cache_index, training)
        b, n, t = ops.shape(p)[0], ops.shape(p)[1], ops.shape(p)[2]
        x = self._residual(x, self.self_attention_norm, lambda _: main, training)
        p = self._residual(p, self.self_attention_norm, lambda _: pred, training)
        h = ops.concatenate([x, ops.reshape(p, (b, n * t, self.hidden_size))], axis=1)
        if self.cross_attention and (context is not None or cross_kv is not None):
            h = self._residual(
                h, self.cross_attention_norm,
                lambda z: self._cross_attend(z, context, cross_bias, cross_kv, training), training,
            )
        h = self._residual(h, self.ffn_norm, lambda z: self._ffn(z, training), training)
        x, p = h[:, :t], ops.reshape(h[:, t:], (b, n, t, self.hidden_size))
        return (x, p) if cache is None else (x, p, new_cache)

    def get_config(self):
        c = super().get_config()
        c.update(num_buckets=self.num_buckets)
        return c

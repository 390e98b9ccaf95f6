"""Multi-head attention (MHA, GQA and MQA) for encoders and decoders.

Decoder features are named switches: ``fused_qkv`` (one projection laid out [q heads | k heads |
v heads]), ``qk_norm`` ("rms"/"layer"), ``qk_norm_scope`` ("head": over each head's head_dim;
"full": over the whole q / k projection width, before splitting heads), ``clip_qkv`` (clamp the
q / k / v projections to [-clip, clip]), ``softcap`` (tanh soft-capping of scores),
``rotary_interleaved``, ``qk_norm_after_rope`` (the per-head q / k norm applied after the rotary
positions instead of before: Llama 4), ``query_temperature`` ((floor_scale, scale): queries at
buffer slot ``p`` multiplied by ``1 + scale * log(1 + floor((p + 1) / floor_scale))``: Llama 4's
long-context temperature on its NoPE layers), ``sinks`` (a learned logit per head that joins every query's softmax
and takes its share of the probability without contributing a value: GPT-OSS's attention
sinks); :meth:`Attention.call_decoder` adds rotary positions and a fixed-size KV
buffer written at ``cache_index``.
"""


import keras
from keras import ops

from keras_models import compat, jax_attention
from keras_models.generation.backend import EAGER_LOOP, direct_ops, visible_length, write_time_slice
from keras_models.layers.masks import ALL_VISIBLE
from keras_models.layers.norms import make_norm
from keras_models.layers.rotary import apply_rotary
from keras_models.backend_choice import switch_on


# The one switch for the fused attention path: ``keras.ops.dot_product_attention`` (PyTorch SDPA
# under torch, ``jax.nn.dot_product_attention`` under JAX, cuDNN/flash kernels on GPUs). On by
# default; ``KM_FUSED_ATTENTION=0`` (or setting this to False) selects the explicit einsum +
# softmax path, which is also used whenever the fused kernel cannot express the layer (logit
# soft-capping, attention dropout while training).
FUSED_ATTENTION = switch_on("KM_FUSED_ATTENTION")
# jax: ``grouped_attention`` (heads-major attention: XLA:CPU's encoder route and every compiled
# decode step) divides by the softmax's row sums after the second product instead of normalising
# the (.., t, s) probabilities first. ``KM_LATE_SOFTMAX_DIVISION=0`` (or this set to False before a
# model is traced) normalises first, as Keras' softmax does. Same sums, divided at the other end.
LATE_DIVISION = switch_on("KM_LATE_SOFTMAX_DIVISION")


@compat.traced_when_symbolic
def fused_attention(q, k, v, bias, scale, heads_major=False):
    """q (b, t, h, d), k / v (b, s, kv, d) -- or heads-major (b, kv, s, d) with ``heads_major`` --
    with kv dividing h -> (b, t, h, d).

    torch: ``torch.nn.functional.scaled_dot_product_attention`` on (transposed) views with its own
    grouped-query support. (Keras' op repeats the K/V heads and copies all three inputs to
    contiguous (b, h, t, d) tensors on every call: for one decode step over a long KV buffer the
    copies cost more than the attention.) Other backends: ``keras.ops.dot_product_attention``
    with the K/V heads repeated, or ``grouped_attention`` for heads-major K/V.
    """
    if bias is not None and getattr(bias, ALL_VISIBLE, False):
        bias = None  # a padding bias with nothing padded (masks.padding_bias, torch only)
    if bias is not None:
        bias = ops.cast(bias, q.dtype)
    h, kv = q.shape[2], k.shape[1 if heads_major else 2]
    if keras.backend.backend() == "torch":
        import torch.nn.functional as F

        if not heads_major:
            k, v = k.transpose(1, 2), v.transpose(1, 2)
        out = F.scaled_dot_product_attention(q.transpose(1, 2), k, v, attn_mask=bias, scale=scale,
                                             enable_gqa=int(kv) != int(h))  # static: ONNX tracing sees sizes as tensors
        return out.transpose(1, 2)
    if heads_major:
        return grouped_attention(q, k, v, bias, scale)
    if keras.backend.backend() == "jax" and jax_attention.use_cpu_attention(q, k):
        return jax_attention.cpu_attention(q, k, v, bias, scale)
    if keras.backend.backend() == "jax" and jax_attention.use_heads_major(q, k, bias):
        return grouped_attention(q, ops.transpose(k, (0, 2, 1, 3)), ops.transpose(v, (0, 2, 1, 3)), bias, scale)
    if kv != h:
        k, v = ops.repeat(k, h // kv, axis=2), ops.repeat(v, h // kv, axis=2)
    return ops.dot_product_attention(q, k, v, bias=bias, scale=scale)


def visible_part(k, v, bias, cache_index, t):
    """Heads-major K/V buffers and their bias cut to the part a chunk can see (see
    ``generation.backend.visible_length``); unchanged inside compiled loops."""
    n = visible_length(cache_index, t)
    if n is None or n >= k.shape[2]:
        return k, v, bias
    return k[:, :, :n], v[:, :, :n], (None if bias is None else bias[..., :n])


def softmax_with_sinks(scores, sinks):
    """Softmax over the last axis with one extra logit per row (``sinks``, broadcastable to
    ``scores[..., :1]``) whose probability is dropped: rows sum to less than one."""
    if sinks is None:
        return ops.softmax(scores, axis=-1)
    extra = ops.zeros_like(scores[..., :1]) + ops.cast(sinks, scores.dtype)
    return ops.softmax(ops.concatenate([scores, extra], axis=-1), axis=-1)[..., :-1]


def grouped_attention(q, k, v, bias, scale, softcap=None, dropout=None, num_kv_heads=None, sinks=None):
    """q (b, t, h, d); k / v heads-major (b, kv, s, d), or batch-merged (b * kv, s, d) with batch
    row ``i`` at rows ``i * kv .. i * kv + kv - 1`` (then ``num_kv_heads`` = kv) -> (b, t, h, d).
    kv divides h.

    Query head ``j`` reads K/V head ``j // (h // kv)`` (the order ``repeat`` gives). The K/V heads
    are not repeated and the two products contract K/V in their stored layout, so a compiled
    decode step reads the cache once, with no transposed copy of it (under XLA, attention over a
    time-major (b, s, kv, d) buffer copied every layer's K and V to heads-major form on every
    step: 37% of a batch-8 step). With batch-merged K/V the products have one batch axis and the
    buffers are read without any reshape (see ``DecoderBackbone.init_cache``). ``bias``
    broadcasts to (b, h, t, s); ``dropout`` is a callable applied to the probabilities; ``sinks``
    (h,) are per-head sink logits (:func:`softmax_with_sinks`).
    """
    b, t, h, d = ops.shape(q)[0], ops.shape(q)[1], q.shape[2], q.shape[3]
    merged = len(k.shape) == 3
    kv = num_kv_heads if merged else k.shape[1]
    n = b * kv
    r = h // kv
    qg = ops.transpose(ops.reshape(q, (b, t, kv, r, d)), (0, 2, 3, 1, 4))  # (b, kv, r, t, d)
    if merged:
        scores = ops.einsum("nqd,nsd->nqs", ops.reshape(qg, (n, r * t, d)), k)
    else:
        scores = ops.einsum("bkqd,bksd->bkqs", ops.reshape(qg, (b, kv, r * t, d)), k)
    scores = scores * ops.cast(scale, q.dtype)
    s = ops.shape(scores)[-1]
    scores = ops.reshape(ops.cast(scores, "float32"), (b, kv, r, t, s))
    if softcap is not None:
        scores = ops.tanh(scores / softcap) * softcap
    if bias is not None:
        bias = ops.cast(bias, "float32")
        if len(bias.shape) == 4 and bias.shape[1] not in (None, 1):
            bias = ops.reshape(bias, (ops.shape(bias)[0], kv, r, ops.shape(bias)[2], ops.shape(bias)[3]))
        else:
            bias = ops.expand_dims(bias, 2) if len(bias.shape) == 4 else bias
        scores = scores + bias
    if sinks is not None:
        sinks = ops.reshape(ops.cast(sinks, "float32"), (1, kv, r, 1, 1))
    late = LATE_DIVISION and sinks is None and dropout is None and keras.backend.backend() == "jax"
    if late:
        # jax (XLA): the softmax's division after the second product, on (.., t, d) instead of the
        # (.., t, s) probabilities: one pass over the scores less (a (32, 12, 128) MiniLM
        # attention on one Zen 3 core, 32 -> 19 ms); the same sums, divided at the other end
        top = ops.stop_gradient(ops.max(scores, axis=-1, keepdims=True))
        weights = ops.exp(scores - top)
        total = ops.sum(weights, axis=-1)  # (b, kv, r, t)
        probs = ops.cast(weights, v.dtype)
    else:
        probs = ops.cast(softmax_with_sinks(scores, sinks), v.dtype)
    if dropout is not None:
        probs = dropout(probs)
    if merged:
        out = ops.einsum("nqs,nsd->nqd", ops.reshape(probs, (n, r * t, s)), v)
    else:
        out = ops.einsum("bkqs,bksd->bkqd", ops.reshape(probs, (b, kv, r * t, s)), v)
    out = ops.reshape(out, (b, kv, r, t, d))
    if late:
        out = ops.cast(ops.cast(out, "float32") / ops.expand_dims(total, -1), v.dtype)
    out = ops.transpose(out, (0, 3, 1, 2, 4))
    return ops.reshape(out, (b, t, h, d))


_PLAIN_DECODE = {}


def _plain_decode(cls):
    """Whether ``cls`` keeps Attention's own decode pieces (so ``_call_decoder_direct``, which
    inlines them, computes what its ``call_decoder`` would)."""
    plain = _PLAIN_DECODE.get(cls)
    if plain is None:
        names = ("project_qkv", "attend_with_cache", "attend_heads_major", "_split", "call_decoder", "_explicit")
        plain = _PLAIN_DECODE[cls] = all(getattr(cls, n) is getattr(Attention, n) for n in names)
    return plain


@keras.saving.register_keras_serializable(package="keras_models")
class Attention(keras.layers.Layer):
    """Scaled dot-product attention.

    Projections are 2-D Dense kernels (hidden, heads*head_dim) so HF Linear weights map onto them
    with a transpose. ``bias`` is an additive float tensor broadcastable to
    (batch, heads, query_len, key_len).
    """

    def __init__(
        self,
        hidden_size,
        num_heads,
        num_kv_heads=None,
        head_dim=None,
        use_bias=True,
        output_bias=None,
        dropout=0.0,
        scale=None,
        kernel_initializer="glorot_uniform",
        fused_qkv=False,
        qk_norm=None,
        qk_norm_eps=1e-6,
        qk_norm_unit_offset=False,
        softcap=None,
        rotary_interleaved=False,
        qk_norm_scope="head",
        clip_qkv=None,
        sinks=False,
        qk_norm_after_rope=False,
        query_temperature=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.use_sinks = bool(sinks)
        if qk_norm_after_rope and qk_norm_scope != "head":
            raise ValueError("qk_norm_after_rope needs qk_norm_scope='head'")
        self.qk_norm_after_rope = qk_norm_after_rope
        self.query_temperature = None if query_temperature is None else tuple(query_temperature)
        if qk_norm_scope not in ("head", "full"):
            raise ValueError(f"qk_norm_scope={qk_norm_scope!r}: expected 'head' or 'full'")
        self.qk_norm_scope = qk_norm_scope
        self.clip_qkv = clip_qkv
        self.fused_qkv = fused_qkv
        self.qk_norm = qk_norm
        self.qk_norm_eps = qk_norm_eps
        self.qk_norm_unit_offset = qk_norm_unit_offset
        self.softcap = softcap
        self.rotary_interleaved = rotary_interleaved
        self.hidden_size = hidden_size
        self.num_heads = num_heads
        self.num_kv_heads = num_kv_heads or num_heads
        self.head_dim = head_dim or hidden_size // num_heads
        self.use_bias = use_bias
        self.output_bias = use_bias if output_bias is None else output_bias
        self.dropout = dropout
        self.scale = scale
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        dense = dict(dtype=self.dtype_policy, kernel_initializer=self.kernel_initializer)
        q_dim, kv_dim = num_heads * self.head_dim, self.num_kv_heads * self.head_dim
        if fused_qkv:
            self.qkv = keras.layers.Dense(q_dim + 2 * kv_dim, use_bias=use_bias, name="qkv", **dense)
            self.query = self.key = self.value = None
        else:
            self.query = keras.layers.Dense(q_dim, use_bias=use_bias, name="query", **dense)
            self.key = keras.layers.Dense(kv_dim, use_bias=use_bias, name="key", **dense)
            self.value = keras.layers.Dense(kv_dim, use_bias=use_bias, name="value", **dense)
        if qk_norm:
            norm = dict(epsilon=qk_norm_eps, unit_offset=qk_norm_unit_offset, dtype=self.dtype_policy)
            self.query_norm = make_norm(qk_norm, name="query_norm", **norm)
            self.key_norm = make_norm(qk_norm, name="key_norm", **norm)
        self.output_dense = keras.layers.Dense(hidden_size, use_bias=self.output_bias, name="output", **dense)
        self.attention_dropout = keras.layers.Dropout(dropout, dtype=self.dtype_policy)

    def build(self, input_shape):
        for dense in (self.qkv,) if self.fused_qkv else (self.query, self.key, self.value):
            dense.build(input_shape)
        if self.qk_norm and self.qk_norm_scope == "full":
            self.query_norm.build((None, None, self.num_heads * self.head_dim))
            self.key_norm.build((None, None, self.num_kv_heads * self.head_dim))
        elif self.qk_norm:
            self.query_norm.build((None, None, self.num_heads, self.head_dim))
            self.key_norm.build((None, None, self.num_kv_heads, self.head_dim))
        self.output_dense.build(tuple(input_shape[:-1]) + (self.num_heads * self.head_dim,))
        if self.use_sinks:
            self.sinks = self.add_weight(name="sinks", shape=(self.num_heads,), initializer="zeros")
        self.built = True

    def _explicit(self, training):
        """Whether the fused kernel cannot express this call (soft-capping, sinks, dropout)."""
        return (not FUSED_ATTENTION or self.softcap is not None or self.use_sinks
                or (training and self.dropout > 0))

    def _sinks(self):
        return self.sinks if self.use_sinks else None

    def init_cache(self, batch_size, max_length, dtype):
        """This layer's empty KV buffers (see ``DecoderBackbone.init_cache``): keys and values,
        each batch-merged (batch * num_kv_heads, max_length, head_dim)."""
        shape = (batch_size * self.num_kv_heads, max_length, self.head_dim)
        return ops.zeros(shape, dtype=dtype), ops.zeros(shape, dtype=dtype)

    def _split(self, x, heads):
        b, s = ops.shape(x)[0], ops.shape(x)[1]
        return ops.reshape(x, (b, s, heads, self.head_dim))

    def attend(self, q, k, v, bias=None, training=False):
        """q: (b, t, h, d); k, v: (b, s, kv, d) -> (b, t, h*d)."""
        scale = self.scale if self.scale is not None else self.head_dim**-0.5
        if not self._explicit(training):
            out = fused_attention(q, k, v, bias, scale)
            b, t = ops.shape(out)[0], ops.shape(out)[1]
            return ops.reshape(out, (b, t, self.num_heads * self.head_dim))
        if keras.backend.backend() == "jax" and jax_attention.use_heads_major(q, k, bias):
            # XLA:CPU: heads-major products (jax_attention.use_heads_major), dropout included
            k, v = ops.transpose(k, (0, 2, 1, 3)), ops.transpose(v, (0, 2, 1, 3))
            return self.attend_heads_major(q, k, v, bias, training=training)
        if self.num_kv_heads != self.num_heads:
            rep = self.num_heads // self.num_kv_heads
            k = ops.repeat(k, rep, axis=2)
            v = ops.repeat(v, rep, axis=2)
        scores = ops.einsum("bthd,bshd->bhts", q, k) * ops.cast(scale, q.dtype)
        if self.softcap is not None:
            scores = ops.tanh(scores / self.softcap) * self.softcap
        if bias is not None:
            scores = scores + ops.cast(bias, scores.dtype)
        sinks = None if not self.use_sinks else ops.reshape(ops.cast(self.sinks, "float32"), (1, -1, 1, 1))
        probs = softmax_with_sinks(ops.cast(scores, "float32"), sinks)
        probs = ops.cast(probs, v.dtype)
        probs = self.attention_dropout(probs, training=training)
        out = ops.einsum("bhts,bshd->bthd", probs, v)
        b, t = ops.shape(out)[0], ops.shape(out)[1]
        return ops.reshape(out, (b, t, self.num_heads * self.head_dim))

    def attend_heads_major(self, q, k, v, bias=None, training=False):
        """q: (b, t, h, d); k, v heads-major (b, kv, s, d), e.g. a KV cache -> (b, t, h*d)."""
        scale = self.scale if self.scale is not None else self.head_dim**-0.5
        dropping = training and self.dropout > 0
        if not self._explicit(training):
            out = fused_attention(q, k, v, bias, scale, heads_major=True)
        else:
            drop = (lambda p: self.attention_dropout(p, training=training)) if dropping else None
            out = grouped_attention(q, k, v, bias, scale, self.softcap, drop, sinks=self._sinks())
        b, t = ops.shape(out)[0], ops.shape(out)[1]
        return ops.reshape(out, (b, t, self.num_heads * self.head_dim))

    def call(self, x, bias=None, context=None, training=False):
        kv_in = x if context is None else context
        q = self._split(self.query(x), self.num_heads)
        k = self._split(self.key(kv_in), self.num_kv_heads)
        v = self._split(self.value(kv_in), self.num_kv_heads)
        return self.output_dense(self.attend(q, k, v, bias, training=training))

    def project_qkv(self, x):
        """(b, t, hidden) -> q (b, t, h, d), k and v (b, t, kv, d), qk-normed if configured."""
        if self.fused_qkv:
            qkv = self.qkv(x)
            q_dim, kv_dim = self.num_heads * self.head_dim, self.num_kv_heads * self.head_dim
            q, k, v = qkv[..., :q_dim], qkv[..., q_dim : q_dim + kv_dim], qkv[..., q_dim + kv_dim :]
        else:
            q, k, v = self.query(x), self.key(x), self.value(x)
        if self.clip_qkv is not None:
            c = self.clip_qkv
            q, k, v = ops.clip(q, -c, c), ops.clip(k, -c, c), ops.clip(v, -c, c)
        if self.qk_norm and self.qk_norm_scope == "full":
            q, k = self.query_norm(q), self.key_norm(k)
        q, k, v = self._split(q, self.num_heads), self._split(k, self.num_kv_heads), self._split(v, self.num_kv_heads)
        if self.qk_norm and self.qk_norm_scope == "head" and not self.qk_norm_after_rope:
            q, k = self.query_norm(q), self.key_norm(k)
        return q, k, v

    def call_decoder(self, x, bias=None, rope=None, cache=None, cache_index=None, training=False):
        """Self-attention over the current chunk, or over a KV buffer.

        rope: (cos, sin) for the chunk's positions or None. cache: None, or a (keys, values) pair of
        heads-major (b, kv, max_len, d) buffers; the chunk's k/v are written at ``cache_index`` and
        attention runs over the whole buffer (``bias`` must then span max_len keys). Returns
        (output, updated cache).
        """
        if (cache is not None and type(cache_index) is int and direct_ops(x, *cache)
                and self.clip_qkv is None and self.query_temperature is None and _plain_decode(type(self))):
            return self._call_decoder_direct(x, bias, rope, cache, cache_index, training)
        q, k, v = self.project_qkv(x)
        if rope is not None:
            q = apply_rotary(q, rope[0], rope[1], self.rotary_interleaved)
            k = apply_rotary(k, rope[0], rope[1], self.rotary_interleaved)
        if self.qk_norm and self.qk_norm_after_rope:
            q, k = self.query_norm(q), self.key_norm(k)
        if self.query_temperature is not None:
            floor_scale, strength = self.query_temperature
            start = 0 if cache_index is None else ops.cast(cache_index, "float32")
            slots = ops.arange(ops.shape(q)[1], dtype="float32") + start
            factor = ops.log1p(ops.floor((slots + 1.0) / floor_scale)) * strength + 1.0
            q = q * ops.cast(factor, q.dtype)[None, :, None, None]
        if cache is None:
            return self.output_dense(self.attend(q, k, v, bias, training=training)), None
        out, cache = self.attend_with_cache(q, k, v, cache, cache_index, bias, training=training)
        return self.output_dense(out), cache

    def _call_decoder_direct(self, x, bias, rope, cache, cache_index, training):
        """``call_decoder`` with a KV buffer in the eager torch decode loop (``direct_ops``, a Python
        int ``cache_index``): the same computation as ``project_qkv`` + ``attend_with_cache`` with
        the head reshapes, transposes and casts as torch tensor methods instead of keras.ops."""
        b, t = x.shape[0], x.shape[1]
        h, kv, d = self.num_heads, self.num_kv_heads, self.head_dim
        if self.fused_qkv:
            qkv = self.qkv(x)
            q_dim, kv_dim = h * d, kv * d
            q, k, v = qkv[..., :q_dim], qkv[..., q_dim : q_dim + kv_dim], qkv[..., q_dim + kv_dim :]
        else:
            q, k, v = self.query(x), self.key(x), self.value(x)
        if self.qk_norm and self.qk_norm_scope == "full":
            q, k = self.query_norm(q), self.key_norm(k)
        q, k, v = q.reshape(b, t, h, d), k.reshape(b, t, kv, d), v.reshape(b, t, kv, d)
        if self.qk_norm and self.qk_norm_scope == "head" and not self.qk_norm_after_rope:
            q, k = self.query_norm(q), self.key_norm(k)
        if rope is not None:
            q = apply_rotary(q, rope[0], rope[1], self.rotary_interleaved)
            k = apply_rotary(k, rope[0], rope[1], self.rotary_interleaved)
        if self.qk_norm and self.qk_norm_after_rope:
            q, k = self.query_norm(q), self.key_norm(k)
        k, v = k.transpose(1, 2), v.transpose(1, 2)  # (b, kv, t, d)
        keys, values = cache
        if keys.dim() == 4:
            keys = write_time_slice(keys, k, cache_index, axis=2)
            values = write_time_slice(values, v, cache_index, axis=2)
            k4, v4 = keys, values
        else:  # batch-merged (b * kv, max_len, d)
            n = keys.shape[0]
            keys = write_time_slice(keys, k.reshape(n, t, d), cache_index, axis=1)
            values = write_time_slice(values, v.reshape(n, t, d), cache_index, axis=1)
            length = keys.shape[1]
            k4, v4 = keys.reshape(b, kv, length, d), values.reshape(b, kv, length, d)
        k_seen, v_seen, bias = visible_part(k4, v4, bias, cache_index, t)
        if self._explicit(training):
            out = self.attend_heads_major(q, k_seen, v_seen, bias, training=training)
        else:  # fused_attention's torch branch
            import torch.nn.functional as F

            scale = self.scale if self.scale is not None else d**-0.5
            mask = None if bias is None else bias.to(q.dtype)
            out = F.scaled_dot_product_attention(q.transpose(1, 2), k_seen, v_seen, attn_mask=mask, scale=scale,
                                                 enable_gqa=kv != h).transpose(1, 2).reshape(b, t, h * d)
        return self.output_dense(out), (keys, values)

    def attend_with_cache(self, q, k, v, cache, cache_index, bias, training=False):
        """Write the chunk's k / v (b, t, kv, d) into the KV buffers ``cache`` at ``cache_index``
        and attend q (b, t, h, d) over them (``bias`` spans max_len keys) -> ((b, t, h*d),
        (keys, values) buffers).

        Buffers are heads-major (b, kv, max_len, d) or batch-merged (b * kv, max_len, d) (decoder
        LMs, see ``DecoderBackbone.init_cache``). The eager torch loop writes them in place and
        reads only their filled part (``visible_part``); compiled loops read the whole static
        buffer."""
        k, v = ops.transpose(k, (0, 2, 1, 3)), ops.transpose(v, (0, 2, 1, 3))  # (b, kv, t, d)
        if len(cache[0].shape) == 4:
            k = write_time_slice(cache[0], k, cache_index, axis=2)
            v = write_time_slice(cache[1], v, cache_index, axis=2)
            k_seen, v_seen, bias = visible_part(k, v, bias, cache_index, ops.shape(q)[1])
            return self.attend_heads_major(q, k_seen, v_seen, bias, training=training), (k, v)
        b, t = ops.shape(q)[0], ops.shape(q)[1]
        n, d = ops.shape(cache[0])[0], self.head_dim
        k = write_time_slice(cache[0], ops.reshape(k, (n, t, d)), cache_index, axis=1)
        v = write_time_slice(cache[1], ops.reshape(v, (n, t, d)), cache_index, axis=1)
        if EAGER_LOOP or (training and self.dropout > 0):  # torch SDPA / dropout: a 4-D view
            length = ops.shape(k)[1]
            k4 = ops.reshape(k, (b, self.num_kv_heads, length, d))
            v4 = ops.reshape(v, (b, self.num_kv_heads, length, d))
            k_seen, v_seen, bias = visible_part(k4, v4, bias, cache_index, t)
            return self.attend_heads_major(q, k_seen, v_seen, bias, training=training), (k, v)
        scale = self.scale if self.scale is not None else self.head_dim**-0.5
        out = grouped_attention(q, k, v, bias, scale, self.softcap, num_kv_heads=self.num_kv_heads,
                                sinks=self._sinks())
        return ops.reshape(out, (b, t, self.num_heads * d)), (k, v)

    def get_config(self):
        config = super().get_config()
        config.update(
            fused_qkv=self.fused_qkv,
            qk_norm=self.qk_norm,
            qk_norm_eps=self.qk_norm_eps,
            qk_norm_unit_offset=self.qk_norm_unit_offset,
            softcap=self.softcap,
            rotary_interleaved=self.rotary_interleaved,
            qk_norm_scope=self.qk_norm_scope,
            clip_qkv=self.clip_qkv,
            sinks=self.use_sinks,
            qk_norm_after_rope=self.qk_norm_after_rope,
            query_temperature=self.query_temperature,
            hidden_size=self.hidden_size,
            num_heads=self.num_heads,
            num_kv_heads=self.num_kv_heads,
            head_dim=self.head_dim,
            use_bias=self.use_bias,
            output_bias=self.output_bias,
            dropout=self.dropout,
            scale=self.scale,
            kernel_initializer=keras.initializers.serialize(self.kernel_initializer),
        )
        return config

"""Reformer's reversible layer: chunked local self-attention or hashed LSH self-attention (rotations
from torch's seeded ``randn`` re-drawn in numpy, multi-round log-sum-exp, chunk look-back), then the
chunked feed-forward; see the package docstring."""

import math

import keras
import numpy as np
from keras import ops

from keras_models.errors import InputError
from keras_models.layers.activations import get_activation

_ser = keras.saving.register_keras_serializable(package="keras_models")


def _look_adjacent(x, before, after):
    """(B, H, n, c, ...) chunks -> each chunk with its neighbours (wrapping around) along axis 3."""
    if before == 0 and after == 0:
        return x
    return ops.concatenate([x if i == 0 else ops.roll(x, -i, axis=2) for i in range(-before, after + 1)], axis=3)


def torch_randn(seed, shape):
    """The float32 numbers ``torch.manual_seed(seed); torch.randn(shape)`` gives on CPU, in numpy:
    MT19937 words -> 24-bit uniforms -> Box-Muller over blocks of 16 (the last block redrawn when
    the size is not a multiple of 16); below 16 numbers torch's scalar path (53-bit uniforms, a
    pair of normals per two draws)."""
    import numpy as np

    n = int(np.prod(shape))
    gen = np.random.MT19937()
    gen._legacy_seeding(int(seed) & 0xFFFFFFFF)
    if n < 16:
        raw = gen.random_raw(4 * ((n + 1) // 2)).astype(np.uint64).reshape(-1, 4)
        mask53 = np.uint64((1 << 53) - 1)
        u1 = (((raw[:, 0] << np.uint64(32)) | raw[:, 1]) & mask53) * 2.0 ** -53
        u2 = (((raw[:, 2] << np.uint64(32)) | raw[:, 3]) & mask53) * 2.0 ** -53
        radius, theta = np.sqrt(-2.0 * np.log1p(-u2)), 2.0 * np.pi * u1
        pairs = np.stack([radius * np.cos(theta), radius * np.sin(theta)], axis=-1).reshape(-1)
        return pairs[:n].astype(np.float32).reshape(shape)
    raw = gen.random_raw(n + (16 if n % 16 else 0)).astype(np.uint64)
    uniform = (raw & np.uint64((1 << 24) - 1)).astype(np.float32) * np.float32(2.0 ** -24)

    def box_muller(block):
        radius = np.sqrt(np.float32(-2.0) * np.log(np.float32(1.0) - block[:, :8]))
        theta = np.float32(2.0 * np.pi) * block[:, 8:]
        return np.concatenate([radius * np.cos(theta), radius * np.sin(theta)], axis=1)

    full = n // 16 * 16
    out = np.empty(n, np.float32)
    out[:full] = box_muller(uniform[:full].reshape(-1, 16)).reshape(-1)
    if n % 16:
        out[full:] = uniform[full:n]
        out[n - 16:] = box_muller(uniform[n:].reshape(1, 16)).reshape(-1)
    return out.reshape(shape)


def lsh_num_buckets(sequence_length, chunk_length, max_position_embeddings):
    """Transformers' choice when ``num_buckets`` is unset: 2 * length / chunk rounded down to a
    power of two, split into two factors beyond 2 * max(sqrt(max positions / chunk), chunk)."""
    power = (2 * (sequence_length // chunk_length)).bit_length() - 1
    buckets = 2 ** power
    if buckets > 2 * max(int((max_position_embeddings // chunk_length) ** 0.5), chunk_length):
        return (2 ** (power // 2), 2 ** (power - power // 2))
    return buckets


@_ser
class ReformerLayer(keras.layers.Layer):
    """One reversible layer: ``attn + attention(LN(hidden))``, then ``hidden + ffn(LN(attn))``."""

    def __init__(self, spec_config, kind, **kwargs):
        super().__init__(**kwargs)
        self.spec_config, self.kind = dict(spec_config), kind
        s = self.spec_config
        d, inner = self.dtype_policy, s["num_attention_heads"] * s["attention_head_size"]

        def dense(units, name, bias=False):
            return keras.layers.Dense(units, use_bias=bias, name=name, dtype=d)

        self.attn_norm = keras.layers.LayerNormalization(epsilon=s["layer_norm_eps"], name="attn_norm", dtype=d)
        self.ffn_norm = keras.layers.LayerNormalization(epsilon=s["layer_norm_eps"], name="ffn_norm", dtype=d)
        if kind == "lsh":
            self.query_key, self.value = dense(inner, "query_key"), dense(inner, "value")
        else:
            self.query, self.key, self.value = dense(inner, "query"), dense(inner, "key"), dense(inner, "value")
        self.attn_out = dense(s["hidden_size"], "attn_out")
        self.ffn_in = dense(s["feed_forward_size"], "ffn_in", True)
        self.ffn_out = dense(s["hidden_size"], "ffn_out", True)
        self.act = get_activation(s["hidden_act"])

    def build(self, input_shape=None):
        s, h = self.spec_config, self.spec_config["hidden_size"]
        inner = s["num_attention_heads"] * s["attention_head_size"]
        for layer in (self.attn_norm, self.ffn_norm, self.value, self.ffn_in):
            layer.build((None, None, h))
        for layer in ((self.query_key,) if self.kind == "lsh" else (self.query, self.key)):
            layer.build((None, None, h))
        self.attn_out.build((None, None, inner))
        self.ffn_out.build((None, None, s["feed_forward_size"]))
        self.built = True

    def _heads(self, x):
        s = self.spec_config
        b, t = ops.shape(x)[0], ops.shape(x)[1]
        x = ops.reshape(x, (b, t, s["num_attention_heads"], s["attention_head_size"]))
        return ops.transpose(x, (0, 2, 1, 3))

    def _attention(self, x, mask):
        """x (B, T, hidden), mask (B, T) of 0 / 1 or None -> (B, T, heads * head size)."""
        s = self.spec_config
        b, t = ops.shape(x)[0], x.shape[1]
        dh, causal = s["attention_head_size"], s["is_decoder"]
        pos = ops.arange(t, dtype="int32")
        if self.kind == "lsh" and t > s["lsh_attn_chunk_length"]:
            out = self._hashed_attention(x, mask)
        elif self.kind == "lsh":
            qk = self._heads(self.query_key(x))
            v = self._heads(self.value(x))
            var = ops.mean(ops.square(qk), axis=-1, keepdims=True)
            k = qk * ops.rsqrt(var + 1e-6) / math.sqrt(dh)
            dots = ops.matmul(qk, ops.swapaxes(k, -1, -2))
            keep = None
            if mask is not None:
                keep = ops.cast(mask, "bool")[:, None, None, :]
            if causal:
                c = (pos[:, None] >= pos[None, :])[None, None]
                keep = c if keep is None else ops.logical_and(keep, c)
            if keep is not None:
                dots = ops.where(keep, dots, ops.cast(-1e9, dots.dtype))
            self_mask = (pos[:, None] != pos[None, :])[None, None]
            dots = ops.where(self_mask, dots, ops.cast(-1e5, dots.dtype))
            out = ops.matmul(ops.softmax(dots, axis=-1), v)
        else:
            chunk = s["local_attn_chunk_length"]
            q, k, v = self._heads(self.query(x)), self._heads(self.key(x)), self._heads(self.value(x))
            k = k / ops.cast(math.sqrt(dh), k.dtype)
            if t <= chunk:
                dots = ops.matmul(q, ops.swapaxes(k, -1, -2))
                keep = None if mask is None else ops.cast(mask, "bool")[:, None, None, :]
                if causal:
                    c = (pos[:, None] >= pos[None, :])[None, None]
                    keep = c if keep is None else ops.logical_and(keep, c)
                if keep is not None:
                    dots = ops.where(keep, dots, ops.cast(-1e9, dots.dtype))
                out = ops.matmul(ops.softmax(dots, axis=-1), v)
            else:
                n, nh = t // chunk, s["num_attention_heads"]
                bef, aft = s["local_num_chunks_before"], s["local_num_chunks_after"]

                def split(y):
                    return ops.reshape(y, (b, nh, n, chunk, dh))

                q, k, v = split(q), _look_adjacent(split(k), bef, aft), _look_adjacent(split(v), bef, aft)
                dots = ops.matmul(q, ops.swapaxes(k, -1, -2))  # (B, H, n, c, K)
                keep = None
                if mask is not None:
                    m = ops.reshape(ops.cast(mask, "bool"), (b, 1, n, chunk))
                    keep = _look_adjacent(m, bef, aft)[:, :, :, None, :]
                if causal:
                    qi = ops.reshape(pos, (1, 1, n, chunk))
                    ki = _look_adjacent(qi, bef, aft)
                    c = qi[..., :, None] >= ki[..., None, :]
                    keep = c if keep is None else ops.logical_and(keep, c)
                if keep is not None:
                    dots = ops.where(keep, dots, ops.cast(-1e9, dots.dtype))
                out = ops.matmul(ops.softmax(dots, axis=-1), v)
                out = ops.reshape(out, (b, nh, t, dh))
        out = ops.transpose(out, (0, 2, 1, 3))
        return ops.reshape(out, (b, t, s["num_attention_heads"] * dh))

    def _rotations(self, t):
        """(heads, head size, num_hashes, rotation size / 2) random rotations and the bucket
        factors, drawn as Transformers draws them with ``torch.manual_seed(hash_seed)``."""
        s = self.spec_config
        buckets = s.get("num_buckets")
        if buckets is None:
            buckets = lsh_num_buckets(t, s["lsh_attn_chunk_length"], s.get("max_position_embeddings", 4096))
        factors = (buckets,) if isinstance(buckets, int) else tuple(buckets)
        seed = s.get("hash_seed")
        if seed is None:
            import warnings

            warnings.warn("Reformer LSH attention: config hash_seed is null, so Transformers draws new random "
                          "rotations at every call; this model uses the fixed draw of seed 0 (set hash_seed in "
                          "config.json to choose the draw)", stacklevel=3)
            seed = 0
        shape = (s["num_attention_heads"], s["attention_head_size"], s.get("num_hashes", 1), sum(factors) // 2)
        return torch_randn(seed, shape), factors

    def _hashed_attention(self, x, mask):
        """LSH attention over a sequence of several chunks, as Transformers computes it in eval:
        hash the shared query/key vectors with random rotations (argmax over [xR, -xR], one
        factor at a time), padding tokens (mask 0) in an extra last bucket; stable-sort the
        num_hashes * T (hash round, bucket, position) keys; attend within each chunk of the sorted
        sequence and its ``lsh_num_chunks_before`` / ``_after`` neighbours (wrapping around, also
        across hash rounds), masking by the original positions (padding, causal, a token's own key
        -1e5); unsort and combine the hash rounds by softmax of their log-sum-exp scores."""
        s = self.spec_config
        b, t = ops.shape(x)[0], x.shape[1]
        nh, dh, heads = s.get("num_hashes", 1), s["attention_head_size"], s["num_attention_heads"]
        chunk = s["lsh_attn_chunk_length"]
        bef, aft = s.get("lsh_num_chunks_before", 1), s.get("lsh_num_chunks_after", 0)
        qk, v = self._heads(self.query_key(x)), self._heads(self.value(x))
        rot, factors = self._rotations(t)
        rotated = ops.einsum("bmtd,mdhr->bmhtr", qk, ops.cast(rot, qk.dtype))  # (B, H, nh, T, rot / 2)
        buckets, start, product = None, 0, 1
        for factor in factors:
            part = rotated[..., start:start + factor // 2]
            start += factor // 2
            part = ops.cast(ops.argmax(ops.concatenate([part, -part], axis=-1), axis=-1), "int32")
            buckets = part if buckets is None else buckets + product * part
            product *= factor
        hf_offsets = product  # Transformers' per-round offset: one more bucket when any token is padding
        if mask is not None:  # padding tokens share one extra bucket, sorted after the others
            buckets = ops.where(ops.cast(mask, "bool")[:, None, None, :], buckets, product)
            hf_offsets = product + ops.cast(ops.any(ops.logical_not(ops.cast(mask, "bool"))), "int32")
        self._last_buckets = buckets + hf_offsets * ops.arange(nh, dtype="int32")[:, None]  # (B, H, nh, T)
        buckets = buckets + (product + 1) * ops.arange(nh, dtype="int32")[:, None]
        length = nh * t
        key = ops.reshape(buckets, (b, heads, length)) * length + ops.arange(length, dtype="int32")
        order = ops.argsort(key, axis=-1)  # keys are distinct: the sort is stable by construction
        undo = ops.argsort(order, axis=-1)
        pos = order % t  # (B, H, nh * T) original positions in sorted order
        qk = ops.take_along_axis(qk, pos[..., None], axis=2)
        v = ops.take_along_axis(v, pos[..., None], axis=2)
        k = qk * ops.rsqrt(ops.mean(ops.square(qk), axis=-1, keepdims=True) + 1e-6) / math.sqrt(dh)
        n = length // chunk

        def split(y):
            return ops.reshape(y, (b, heads, n, chunk, dh))

        q, k, v = split(qk), _look_adjacent(split(k), bef, aft), _look_adjacent(split(v), bef, aft)
        qpos = ops.reshape(pos, (b, heads, n, chunk))
        kpos = _look_adjacent(qpos, bef, aft)
        dots = ops.matmul(q, ops.swapaxes(k, -1, -2))  # (B, H, n, c, K)
        keep = None
        if mask is not None:
            full = ops.broadcast_to(ops.cast(mask, "int32")[:, None, :], (b, heads, t))
            keep = ops.take_along_axis(full, ops.reshape(kpos, (b, heads, -1)), axis=2)
            keep = ops.cast(ops.reshape(keep, (b, heads, n, 1, -1)), "bool")
        if s["is_decoder"]:
            c = qpos[..., :, None] >= kpos[..., None, :]
            keep = c if keep is None else ops.logical_and(keep, c)
        if keep is not None:
            dots = ops.where(keep, dots, ops.cast(-1e9, dots.dtype))
        dots = ops.where(qpos[..., :, None] != kpos[..., None, :], dots, ops.cast(-1e5, dots.dtype))
        logits = ops.logsumexp(dots, axis=-1, keepdims=True)
        out = ops.matmul(ops.exp(dots - logits), v)
        out = ops.take_along_axis(ops.reshape(out, (b, heads, length, dh)), undo[..., None], axis=2)
        logits = ops.take_along_axis(ops.reshape(logits, (b, heads, length)), undo, axis=2)
        if nh > 1:
            out = ops.reshape(out, (b, heads, nh, t, dh))
            logits = ops.reshape(logits, (b, heads, nh, t, 1))
            out = ops.sum(out * ops.exp(logits - ops.logsumexp(logits, axis=2, keepdims=True)), axis=2)
        return out

    def call(self, attn, hidden, token_mask=None, collect=False):
        """``collect``: also return the attention input (the normed stream) and, for an LSH layer
        that hashed, its buckets (B, H, num_hashes, T) with Transformers' offsets: a prefill's cache."""
        self._last_buckets = None
        normed = self.attn_norm(hidden)
        attn = attn + self.attn_out(self._attention(normed, token_mask))
        hidden = hidden + self.ffn_out(self.act(self.ffn_in(self.ffn_norm(attn))))
        if collect:
            return attn, hidden, normed, self._last_buckets
        return attn, hidden

    def _per_head(self, dense, x):
        """x (B, H, nh, K, hidden), head h's rows -> (B, H, nh, K, head size) through head h's part
        of ``dense``'s kernel."""
        s = self.spec_config
        kernel = ops.reshape(dense.kernel, (s["hidden_size"], s["num_attention_heads"], s["attention_head_size"]))
        return ops.einsum("bhnkd,dhe->bhnke", x, ops.cast(kernel, x.dtype))

    def step(self, attn, hidden, states, buckets, index, hashed):
        """One new token at ``index`` (attn / hidden (B, 1, hidden)) with Transformers' incremental
        cache: ``states`` (B, M, hidden) the earlier attention inputs, ``buckets`` (B, H, nh, M),
        ``hashed`` whether buckets were cached before this step. Returns the two streams and the
        updated states / buckets."""
        s = self.spec_config
        m = states.shape[1]
        heads, dh = s["num_attention_heads"], s["attention_head_size"]
        normed = self.attn_norm(hidden)
        states = ops.slice_update(states, (0, index, 0), ops.cast(normed, states.dtype))
        pos = ops.arange(m, dtype="int32")
        neg = ops.cast(-1e9, normed.dtype)
        if self.kind == "local":
            chunk, bef = s["local_attn_chunk_length"], s["local_num_chunks_before"]
            start = (index // chunk - bef) * chunk  # Transformers slices past[:, start:] (negative: from the end)
            start = ops.where(start < 0, ops.maximum(index + start, 0), start)
            q = self._heads(self.query(normed))
            k = self._heads(self.key(states)) / ops.cast(math.sqrt(dh), normed.dtype)
            v = self._heads(self.value(states))
            dots = ops.matmul(q, ops.swapaxes(k, -1, -2))  # (B, H, 1, M)
            dots = ops.where(ops.logical_and(pos >= start, pos <= index)[None, None, None], dots, neg)
            out = ops.matmul(ops.softmax(dots, axis=-1), v)
        else:
            out, buckets = self._lsh_step(normed, states, buckets, index, hashed, pos)
        b = ops.shape(attn)[0]
        out = ops.reshape(ops.transpose(out, (0, 2, 1, 3)), (b, 1, heads * dh))
        attn = attn + self.attn_out(out)
        hidden = hidden + self.ffn_out(self.act(self.ffn_in(self.ffn_norm(attn))))
        return attn, hidden, states, buckets

    def _lsh_step(self, normed, states, buckets, index, hashed, pos):
        s = self.spec_config
        m, chunk = states.shape[1], s["lsh_attn_chunk_length"]
        nh, dh = s.get("num_hashes", 1), s["attention_head_size"]
        bef, aft = s.get("lsh_num_chunks_before", 1), s.get("lsh_num_chunks_after", 0)
        if s.get("num_buckets") is None:
            raise InputError("Reformer generate: with num_buckets null Transformers' cached decoding cannot hash "
                             f"past lsh_attn_chunk_length={chunk} (set num_buckets in config.json)")
        rot, factors = self._rotations(m)
        rot = ops.cast(rot, normed.dtype)
        nb = int(np.prod(factors))

        def hash_(vectors):  # (B, H, T, dh) -> (B, H, nh, T) bucket ids without offsets
            rotated = ops.einsum("bmtd,mdhr->bmhtr", vectors, rot)
            out, start, product = None, 0, 1
            for factor in factors:
                part = rotated[..., start:start + factor // 2]
                start += factor // 2
                part = ops.cast(ops.argmax(ops.concatenate([part, -part], axis=-1), axis=-1), "int32")
                out = part if out is None else out + product * part
                product *= factor
            return out

        def len_norm(x):
            return x * ops.rsqrt(ops.mean(ops.square(x), axis=-1, keepdims=True) + 1e-6) / math.sqrt(dh)

        rounds = ops.arange(nh, dtype="int32")[:, None]
        q = self._heads(self.query_key(normed))  # (B, H, 1, dh)
        # before any bucket is cached: plain attention over every earlier token, the token's own key -1e5
        qk_all = self._heads(self.query_key(states))
        dots = ops.matmul(q, ops.swapaxes(len_norm(qk_all), -1, -2))  # (B, H, 1, M)
        dots = ops.where((pos <= index)[None, None, None], dots, ops.cast(-1e9, dots.dtype))
        dots = ops.where((pos != index)[None, None, None], dots, ops.cast(-1e5, dots.dtype))
        plain = ops.matmul(ops.softmax(dots, axis=-1), self._heads(self.value(states)))  # (B, H, 1, dh)
        first = hash_(qk_all) + nb * rounds  # once the buffer reaches one chunk: every token hashed
        # with cached buckets: the new token's bucket (Transformers adds the padding bucket to its offsets
        # when the cached ones had it), a stable sort per round, the new token's chunk and neighbours
        valid = (pos < index)[None, None, None]
        past_max = ops.max(ops.where(valid, buckets, -1))
        offsets = nb + ops.cast(past_max > nh * nb - 1, "int32")
        mine = hash_(q) + offsets * rounds  # (B, H, nh, 1)
        updated = ops.slice_update(buckets, (0, 0, 0, index), mine)
        key = ops.where((pos <= index)[None, None, None], updated, 2**20) * m + pos
        order = ops.cast(ops.argsort(key, axis=-1), "int32")  # (B, H, nh, M)
        rank = ops.cast(ops.argmax(ops.cast(order == index, "int32"), axis=-1), "int32")  # (B, H, nh)
        width = chunk * (1 + bef + aft)
        start = (rank // chunk - bef) * chunk
        idx = ops.mod(start[..., None] + ops.arange(width, dtype="int32"), index + 1)
        kpos = ops.take_along_axis(order, idx, axis=-1)  # (B, H, nh, K) token positions
        picked = ops.take_along_axis(states[:, None, None], kpos[..., None], axis=3)  # (B, H, nh, K, hidden)
        qk_rel = self._per_head(self.query_key, picked)  # (B, H, nh, K, dh): head h's projection
        v_rel = self._per_head(self.value, picked)
        scores = ops.einsum("bhe,bhnke->bhnk", q[:, :, 0], len_norm(qk_rel))
        scores = ops.where(kpos != index, scores, ops.cast(-1e5, scores.dtype))
        lse = ops.logsumexp(scores, axis=-1)  # (B, H, nh)
        per_round = ops.einsum("bhnk,bhnke->bhne", ops.exp(scores - lse[..., None]), v_rel)
        weights = ops.exp(lse - ops.logsumexp(lse, axis=-1, keepdims=True))
        cached = ops.sum(per_round * weights[..., None], axis=2)[:, :, None]  # (B, H, 1, dh)
        hashed_now = ops.reshape(hashed, (-1, 1, 1, 1)) > 0
        out = ops.where(hashed_now, cached, plain)
        reached = ops.logical_and(ops.logical_not(hashed_now), index + 1 >= chunk)
        buckets = ops.where(hashed_now, updated, ops.where(reached, first, buckets))
        return out, buckets

    def get_config(self):
        config = super().get_config()
        config.update(spec_config=self.spec_config, kind=self.kind)
        return config

"""Reformer (``model_type`` "reformer"): reversible residual layers alternating chunked local
self-attention and LSH self-attention, axial position embeddings, a 2 * hidden wide output.

* Inference runs the reversible layers forward: two streams start equal to the embeddings; per
  layer ``attn += attention(LN(hidden))`` then ``hidden += feed_forward(LN(attn))``; the output is
  a LayerNorm over ``concat(attn, hidden)`` (width 2 * hidden_size). The feed-forward chunking
  (``chunk_size_feed_forward``) does not change the numbers.
* As Transformers does outside training, a sequence longer than the smallest chunk length and
  not a multiple of the least common multiple of the chunk lengths is right-padded with
  ``pad_token_id`` (mask 0) to that multiple, and the outputs are cut back.
* Local attention: queries of each chunk attend to their chunk and ``local_num_chunks_before`` /
  ``_after`` neighbours (wrapping around at the ends, as Transformers does), keys scaled by
  1 / sqrt(head size), masked scores -1e9; a sequence no longer than one chunk is plain attention.
* LSH attention: shared query/key projection, keys length-normalised (rsqrt(mean(x^2) + 1e-6)) and
  scaled by 1 / sqrt(head size), a token's own key scored -1e5 (applied after the padding /
  causal mask, -1e9). A sequence (after padding) no longer than ``lsh_attn_chunk_length`` is plain
  attention. A longer one is hashed as Transformers does in eval: random rotations (heads, head
  size, ``num_hashes``, buckets / 2) equal to ``torch.manual_seed(hash_seed); torch.randn(...)``
  (re-drawn in numpy, no torch needed), bucket = argmax over [xR, -xR] (per factor when
  ``num_buckets`` is a list; unset, it is Transformers' choice for the length), padding in an extra
  bucket; the (hash round, bucket, position) order is sorted, each chunk attends to itself and
  ``lsh_num_chunks_before`` / ``_after`` neighbours (wrapping), and the hash rounds are combined by
  the softmax of their log-sum-exp scores. With ``hash_seed`` null Transformers draws new
  rotations at every call (its outputs are random); here the draw of seed 0 is used, with a
  warning. Transformers also writes an unset ``num_buckets`` into its config on its first long
  call (later calls keep it); here it is chosen again for each length.
* Generation follows Transformers' cached decoding (``ReformerBackbone.call_with_cache``): the
  prompt runs the full model and caches each layer's attention input (and an LSH layer's buckets
  when it hashed); each new token is then computed alone against that cache: local layers attend
  to the cached inputs of their chunk window, LSH layers to every earlier token until the buffer
  reaches one chunk, then to the new token's chunk and neighbours in the bucket-sorted cache. As
  in Transformers' generate, the attention mask is dropped (prompt padding is read as tokens), and
  ``num_buckets`` must be set to hash during decoding. Transformers gathers the sorted tokens from
  the first batch row for every row (a bug for batches > 1); here each row uses its own.
* Heads: ReformerModelWithLMHead (CausalLM), ReformerForMaskedLM (MaskedLM),
  ReformerForSequenceClassification (TextClassifier), ReformerForQuestionAnswering (QuestionAnswerer).
"""

import math
from dataclasses import dataclass

import keras
import numpy as np
from keras import ops

from keras_models.errors import ConfigError, InputError
from keras_models.layers.activations import get_activation
from keras_models.layers.vision_embeddings import dense_rules, norm_rules
from keras_models.models.backbone import SpecBackbone
from keras_models.models.registry import register_backbone, register_task
from keras_models.presets.weight_map import Reshape, Rule
from keras_models.spec import Spec, dim, hf
from keras_models.models.encoder.tasks import ClassifierDenseOutProj
from keras_models.tasks.causal_lm import CausalLM
from keras_models.tasks.text import MaskedLM, QuestionAnswerer

_ser = keras.saving.register_keras_serializable(package="keras_models")


def _tuple(value):
    return tuple(value) if isinstance(value, (list, tuple)) else value


@dataclass(frozen=True, kw_only=True)
class ReformerSpec(Spec):
    vocab_size: int = dim("vocab_size", 320)
    hidden_size: int = dim("hidden_size", 256)
    num_attention_heads: int = dim("num_attention_heads", 12)
    attention_head_size: int = dim("attention_head_size", 64)
    attn_layers: tuple = hf("attn_layers", ("local", "lsh", "local", "lsh", "local", "lsh"), read=_tuple)
    axial_pos_embds: bool = hf("axial_pos_embds", True)
    axial_pos_shape: tuple = hf("axial_pos_shape", (64, 64), read=_tuple)
    axial_pos_embds_dim: tuple = hf("axial_pos_embds_dim", (64, 192), read=_tuple)
    axial_norm_std: float = hf("axial_norm_std", 1.0)
    max_position_embeddings: int = dim("max_position_embeddings", 4096)
    feed_forward_size: int = dim("feed_forward_size", 512)
    hidden_act: str = hf("hidden_act", "relu")
    layer_norm_eps: float = hf("layer_norm_eps", 1e-12)
    local_attn_chunk_length: int = dim("local_attn_chunk_length", 64)
    local_num_chunks_before: int = hf("local_num_chunks_before", 1)
    local_num_chunks_after: int = hf("local_num_chunks_after", 0)
    lsh_attn_chunk_length: int = dim("lsh_attn_chunk_length", 64)
    lsh_num_chunks_before: int = hf("lsh_num_chunks_before", 1)
    lsh_num_chunks_after: int = hf("lsh_num_chunks_after", 0)
    num_buckets: int | tuple | None = hf("num_buckets", None, read=_tuple)
    num_hashes: int = dim("num_hashes", 1)
    hash_seed: int | None = hf("hash_seed", None)
    is_decoder: bool = hf("is_decoder", False)
    chunk_size_lm_head: int = hf("chunk_size_lm_head", 0)
    chunk_size_feed_forward: int = hf("chunk_size_feed_forward", 0)
    tie_word_embeddings: bool = hf("tie_word_embeddings", False)
    pad_token_id: int | None = hf("pad_token_id", 0)
    eos_token_id: int | tuple | None = hf("eos_token_id", 2)
    bos_token_id: int | None = hf("bos_token_id", None)

    # the LM head reads 2 * hidden_size: it cannot be tied to the hidden_size-wide table
    unsupported = {"tie_word_embeddings": (False, None)}

    def validate(self, source="config.json"):
        layers = self.attn_layers
        if not isinstance(layers, tuple) or not layers or any(a not in ("local", "lsh") for a in layers):
            raise ConfigError(f"{source}: attn_layers={layers!r} must be a non-empty list of 'local' / 'lsh'")
        for key in ("local_num_chunks_before", "local_num_chunks_after", "lsh_num_chunks_before",
                    "lsh_num_chunks_after"):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ConfigError(f"{source}: {key}={value!r} must be an integer >= 0")
        if self.axial_pos_embds:
            shape, dims = self.axial_pos_shape, self.axial_pos_embds_dim
            for key, value in (("axial_pos_shape", shape), ("axial_pos_embds_dim", dims)):
                if (not isinstance(value, tuple) or len(value) != 2
                        or any(isinstance(v, bool) or not isinstance(v, int) or v <= 0 for v in value)):
                    raise ConfigError(f"{source}: {key}={value!r} must be two positive integers")
            if sum(dims) != self.hidden_size:
                raise ConfigError(f"{source}: axial_pos_embds_dim={dims!r} must sum to hidden_size "
                                  f"({self.hidden_size})")
        try:
            get_activation(self.hidden_act)
        except Exception as err:
            raise ConfigError(f"{source}: hidden_act={self.hidden_act!r} is not supported") from err


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


@_ser
@register_backbone("reformer")
class ReformerBackbone(SpecBackbone):
    """Returns the final hidden state (batch, seq, 2 * hidden_size) of ``{"input_ids",
    "attention_mask"}`` (the mask optional): the LayerNorm of the two reversible streams."""

    spec_cls = ReformerSpec
    base_model_prefix = "reformer"
    hf_architecture = "ReformerModel"
    initializer_range = 0.02  # what fresh task heads are drawn with
    dropout_rate = 0.0
    slot_dependent = True  # absolute positions from the buffer slot: generation must not left-pad to a bucket
    verified_backends = ("jax", "torch", "tensorflow")

    def __init__(self, spec=None, **kwargs):
        super().__init__(spec, **kwargs)
        s, d = self.spec, self.dtype_policy
        self.vocab_size, self.hidden_size = s.vocab_size, s.hidden_size
        self.num_layers = len(s.attn_layers)
        self.hidden_act = s.hidden_act
        self.token_embedding = keras.layers.Embedding(s.vocab_size, s.hidden_size, name="embeddings", dtype=d)
        if not s.axial_pos_embds:
            self.position_embedding = keras.layers.Embedding(s.max_position_embeddings, s.hidden_size,
                                                             name="position_embeddings", dtype=d)
        keys = ("hidden_size", "num_attention_heads", "attention_head_size", "feed_forward_size", "hidden_act",
                "layer_norm_eps", "local_attn_chunk_length", "local_num_chunks_before", "local_num_chunks_after",
                "lsh_attn_chunk_length", "is_decoder", "lsh_num_chunks_before", "lsh_num_chunks_after",
                "num_buckets", "num_hashes", "hash_seed", "max_position_embeddings")
        layer_config = {k: getattr(s, k) for k in keys}
        self.layers_ = [ReformerLayer(layer_config, kind, name=f"layer_{i}", dtype=d)
                        for i, kind in enumerate(s.attn_layers)]
        self.final_norm = keras.layers.LayerNormalization(epsilon=s.layer_norm_eps, name="final_norm", dtype=d)
        kinds = set(s.attn_layers)
        lengths = [s.local_attn_chunk_length if k == "local" else s.lsh_attn_chunk_length for k in sorted(kinds)]
        self.lcm_chunk = math.lcm(*lengths)
        self.min_chunk = min(lengths)

    @property
    def options(self):
        return {"tie_word_embeddings": False, "final_logit_softcap": None, "lm_head_bias": True,
                "initializer_range": 0.02, "embed_proj_dim": 2 * self.hidden_size, "logit_scale": None}

    def build(self, input_shape=None):
        s, h = self.spec, self.hidden_size
        self.token_embedding.build((None, None))
        if s.axial_pos_embds:
            (rows, cols), (d0, d1) = s.axial_pos_shape, s.axial_pos_embds_dim
            self.axial_rows = self.add_weight(name="axial_rows", shape=(rows, d0), initializer="ones")
            self.axial_cols = self.add_weight(name="axial_cols", shape=(cols, d1), initializer="ones")
        else:
            self.position_embedding.build((None, None))
        for layer in self.layers_:
            layer.build((None, None, h))
        self.final_norm.build((None, None, 2 * h))
        self.built = True

    def _positions(self, t):
        s = self.spec
        if not s.axial_pos_embds:
            return self.position_embedding(ops.arange(t, dtype="int32"))
        rows, cols = s.axial_pos_shape
        if t > rows * cols:
            raise InputError(f"Reformer: {t} positions (after padding) exceed axial_pos_shape {s.axial_pos_shape}")
        pos = ops.arange(t, dtype="int32")
        return ops.concatenate([ops.take(self.axial_rows, pos // cols, axis=0),
                                ops.take(self.axial_cols, pos % cols, axis=0)], axis=-1)

    def call(self, inputs, training=False):
        ids = inputs["input_ids"] if isinstance(inputs, dict) else inputs
        mask = inputs.get("attention_mask") if isinstance(inputs, dict) else None
        return self._forward(ids, mask)[0]

    def _forward(self, ids, mask, collect=False):
        """(hidden (B, T, 2 * hidden), per layer (attention input, buckets or None) when ``collect``)."""
        s = self.spec
        ids = ops.cast(ids, "int32")
        t = ids.shape[1]
        if t > s.max_position_embeddings:
            raise InputError(f"Reformer: {t} tokens exceed max_position_embeddings={s.max_position_embeddings}")
        pad = 0
        if t % self.lcm_chunk != 0 and t > self.min_chunk:
            pad = self.lcm_chunk - t % self.lcm_chunk
            b = ops.shape(ids)[0]
            ids = ops.concatenate([ids, ops.full((b, pad), s.pad_token_id or 0, "int32")], axis=1)
            mask = ops.ones((b, t), "int32") if mask is None else ops.cast(mask, "int32")
            mask = ops.concatenate([mask, ops.zeros((b, pad), "int32")], axis=1)
        x = self.token_embedding(ids) + ops.cast(self._positions(t + pad), self.compute_dtype)[None]
        attn = hidden = x
        collected = []
        for layer in self.layers_:
            if collect:
                attn, hidden, normed, buckets = layer(attn, hidden, token_mask=mask, collect=True)
                collected.append((normed[:, :t], None if buckets is None else buckets[..., :t]))
            else:
                attn, hidden = layer(attn, hidden, token_mask=mask)
        out = self.final_norm(ops.concatenate([attn, hidden], axis=-1))
        return (out[:, :t] if pad else out), collected

    @property
    def max_generation_length(self):
        """The longest token buffer: the positions (max_position_embeddings, axial_pos_shape)."""
        s = self.spec
        cap = s.max_position_embeddings
        if s.axial_pos_embds:
            cap = min(cap, s.axial_pos_shape[0] * s.axial_pos_shape[1])
        return cap

    # --- generation: Transformers' incremental cache (attention inputs and LSH buckets) -------------
    def init_cache(self, batch_size, max_length):
        """Per layer the attention inputs ``states`` (L, B, M, hidden) and LSH ``buckets``
        (L, B, H, num_hashes, M), and ``hashed`` (B,): whether buckets are cached yet."""
        s = self.spec
        return {"states": ops.zeros((self.num_layers, batch_size, max_length, s.hidden_size), self.compute_dtype),
                "buckets": ops.zeros((self.num_layers, batch_size, s.num_attention_heads, s.num_hashes, max_length),
                                     "int32"),
                "hashed": ops.zeros((batch_size,), "int32")}

    def call_with_cache(self, input_ids, cache, cache_index, attention_mask):
        """As Transformers' generate drives ReformerModelWithLMHead (its attention mask is dropped:
        padding in a prompt is read as tokens): the prompt runs the full model (padded to the
        chunk lengths) and caches each layer's attention input, and an LSH layer's buckets when it
        hashed; then each new token is computed alone against that cache: a local layer attends to
        the cached inputs from ``(index // chunk - chunks before) * chunk`` on (a negative start
        counts from the end, as Python slicing does there); an LSH layer attends to all earlier
        tokens until the buffer reaches one LSH chunk, when every cached input is hashed, and
        afterwards hashes the new token, sorts it among the cached buckets per hash round and
        attends to the tokens of its chunk and neighbours (wrapping) in that order, the rounds
        combined by log-sum-exp. (Transformers gathers those tokens from the first batch row for
        every row; here each row uses its own.)"""
        s = self.spec
        t = input_ids.shape[1]
        states, buckets, hashed = cache["states"], cache["buckets"], cache["hashed"]
        if t is None or t > 1:  # the prompt (cache_index 0)
            hidden, collected = self._forward(input_ids, None, collect=True)
            new_states, new_buckets = [], []
            did_hash = False
            for i, (normed, bk) in enumerate(collected):
                new_states.append(ops.slice_update(states[i], (0, 0, 0), ops.cast(normed, states.dtype)))
                if bk is not None:
                    did_hash = True
                    new_buckets.append(ops.slice_update(buckets[i], (0, 0, 0, 0), ops.cast(bk, "int32")))
                else:
                    new_buckets.append(buckets[i])
            hashed = ops.full(ops.shape(hashed), 1 if did_hash else 0, "int32")
            return hidden, {"states": ops.stack(new_states), "buckets": ops.stack(new_buckets), "hashed": hashed}
        m = states.shape[2]
        index = ops.cast(cache_index, "int32")
        ids = ops.cast(input_ids, "int32")
        position = ops.take(self._positions(m), ops.reshape(index, (1,)), axis=0)
        x = self.token_embedding(ids) + ops.cast(position, self.compute_dtype)[None]
        attn = hidden = x
        new_states, new_buckets = [], []
        for i, layer in enumerate(self.layers_):
            attn, hidden, st, bk = layer.step(attn, hidden, states[i], buckets[i], index, hashed)
            new_states.append(st)
            new_buckets.append(bk)
        if "lsh" in s.attn_layers:
            hashed = ops.where(index + 1 >= s.lsh_attn_chunk_length, ops.ones_like(hashed), hashed)
        out = self.final_norm(ops.concatenate([attn, hidden], axis=-1))
        return out, {"states": ops.stack(new_states), "buckets": ops.stack(new_buckets), "hashed": hashed}

    def weight_rules(self):
        s = self.spec
        r = [Rule("embeddings.word_embeddings.weight", self.token_embedding.embeddings)]
        if s.axial_pos_embds:
            (rows, cols), (d0, d1) = s.axial_pos_shape, s.axial_pos_embds_dim
            r += [Rule("embeddings.position_embeddings.weights.0", self.axial_rows, Reshape((rows, 1, d0), (rows, d0))),
                  Rule("embeddings.position_embeddings.weights.1", self.axial_cols, Reshape((1, cols, d1), (cols, d1)))]
        else:
            r.append(Rule("embeddings.position_embeddings.embedding.weight", self.position_embedding.embeddings))
        for i, layer in enumerate(self.layers_):
            p = f"encoder.layers.{i}."
            r += norm_rules(p + "attention.layer_norm", layer.attn_norm)
            names = ("query_key", "value") if layer.kind == "lsh" else ("query", "key", "value")
            for name in names:
                r += dense_rules(f"{p}attention.self_attention.{name}", getattr(layer, name))
            r += dense_rules(p + "attention.output.dense", layer.attn_out)
            r += norm_rules(p + "feed_forward.layer_norm", layer.ffn_norm)
            r += dense_rules(p + "feed_forward.dense.dense", layer.ffn_in)
            r += dense_rules(p + "feed_forward.output.dense", layer.ffn_out)
        r += norm_rules("encoder.layer_norm", self.final_norm)
        return r


@_ser
@register_task(ReformerBackbone, "CausalLM", ("ReformerModelWithLMHead",))
class ReformerCausalLM(CausalLM):
    """Logits (batch, seq, vocab) from ``lm_head.decoder`` (2 * hidden -> vocab, with bias).
    The checkpoint's separate ``lm_head.bias`` (unused by Transformers' forward) is kept for
    export. ``generate`` uses Transformers' incremental cache (see ``ReformerBackbone.call_with_cache``)."""

    hf_lm_head = "lm_head.decoder"
    hf_head_patterns = ("lm_head.*",)

    def build(self, input_shape=None):
        super().build(input_shape)
        self.spare_bias = self.add_weight(name="spare_bias", shape=(self.backbone.vocab_size,),
                                          initializer="zeros", trainable=False)

    def head_rules(self):
        return super().head_rules() + [Rule("lm_head.bias", self.spare_bias, base=False, optional=True)]

    def generate(self, inputs=None, *args, max_new_tokens=None, **kwargs):
        ids = inputs.get("input_ids") if isinstance(inputs, dict) else None
        cap = self.backbone.max_generation_length
        if ids is not None and max_new_tokens is not None and ids.shape[1] + max_new_tokens > cap:
            raise InputError(f"ReformerCausalLM.generate: {ids.shape[1]} prompt + {max_new_tokens} new tokens exceed "
                             f"{cap} (max_position_embeddings / axial_pos_shape)")
        return super().generate(inputs, *args, max_new_tokens=max_new_tokens, **kwargs)


@_ser
@register_task(ReformerBackbone, "MaskedLM", ("ReformerForMaskedLM",))
class ReformerMaskedLM(MaskedLM):
    """Logits (batch, seq, vocab) from ``lm_head.decoder`` (2 * hidden -> vocab, with bias), as
    Transformers' ReformerForMaskedLM (no transform layer; ``lm_head.bias`` kept for export)."""

    hf_head_patterns = ("lm_head.*",)

    def __init__(self, backbone, preprocessor=None, tie_word_embeddings=False, **kwargs):
        super(MaskedLM, self).__init__(backbone, preprocessor=preprocessor, **kwargs)
        self.tie_word_embeddings = False
        self.decoder = keras.layers.Dense(backbone.vocab_size, name="lm_head", dtype=backbone.dtype_policy,
                                          kernel_initializer=keras.initializers.TruncatedNormal(stddev=0.02))

    @classmethod
    def task_config_from_hf(cls, hf, head_from_checkpoint, **kwargs):
        return kwargs

    def task_config_to_hf(self):
        return {}

    def build(self, input_shape=None):
        self.backbone.build_from_dummy()
        self.decoder.build((None, None, 2 * self.backbone.hidden_size))
        self.spare_bias = self.add_weight(name="spare_bias", shape=(self.backbone.vocab_size,),
                                          initializer="zeros", trainable=False)
        self.built = True

    def call(self, inputs, training=False):
        return self.decoder(self.backbone(inputs, training=training))

    def head_rules(self):
        return dense_rules("lm_head.decoder", self.decoder, base=False) + [
            Rule("lm_head.bias", self.spare_bias, base=False, optional=True)]


@_ser
@register_task(ReformerBackbone, "TextClassifier", ("ReformerForSequenceClassification",))
class ReformerTextClassifier(ClassifierDenseOutProj):
    """First position's 2 * hidden state -> ``classifier.dense`` (to hidden) -> tanh ->
    ``classifier.out_proj``."""

    inner_activation = "tanh"


@_ser
@register_task(ReformerBackbone, "QuestionAnswerer", ("ReformerForQuestionAnswering",))
class ReformerQuestionAnswerer(QuestionAnswerer):
    """``qa_outputs`` over the 2 * hidden states."""


__all__ = ["ReformerSpec", "ReformerBackbone", "ReformerLayer", "ReformerCausalLM", "ReformerMaskedLM",
           "ReformerTextClassifier", "ReformerQuestionAnswerer"]

"""Funnel Transformer (``model_type`` "funnel"): an encoder that pools the sequence between
blocks, with relative-position attention, and (FunnelModel) a decoder that upsamples back.

* Embeddings: word embeddings, LayerNorm, dropout (no position or token-type tables).
* Each block after the first halves the sequence before its first layer: the queries of that
  layer are the pooled hidden states (``pooling_type`` mean or max, windows of 2, a partial last
  window pooled alone); its keys / values are the unpooled ones (``pool_q_only``) or pooled too.
  ``separate_cls`` keeps the first token out of the pooling (it is prepended again, and with
  ``truncate_seq`` the last token is dropped first); the attention mask is min-pooled.
* Attention (``FunnelRelMultiheadAttention``): content scores ``(q + r_w_bias) . k`` plus
  relative-position scores and token-type scores, all with q scaled by ``d_head ** -0.5``:
  ``attention_type="relative_shift"`` projects sinusoidal relative-position vectors with
  ``r_kernel`` and aligns them by Transformer-XL's shift (reshape, drop ``shift`` rows, reshape);
  ``"factorized"`` uses the four sinusoid tables (phi, pi, psi, omega) of the paper's appendix
  A.2.2. Token types: ``seg_embed`` picks a same-type or different-type score (type 2, [CLS],
  matches every type). With ``separate_cls`` the position and type scores of [CLS] rows and
  columns are zeroed. Padding adds ``-1e6``. Post-norm residual LayerNorms.
* Decoder (``decoder=True``, Transformers' FunnelModel and the heads built on it): the last
  encoder state, upsampled by repetition to the input length, plus the hidden state after the
  first ``block_sizes[0]`` layer applications, then ``num_decoder_layers`` full-length layers.
  ``decoder=False`` is FunnelBaseModel (the pooled encoder output; FunnelForSequenceClassification
  is built on it). The switch is read from config.json ``architectures``.

Positions are computed from the static sequence length when the model is called. Dropout on the
sinusoid tables (Transformers' ``sin_dropout`` / ``cos_dropout``, training only) is not applied.
"""

from dataclasses import dataclass

import keras
import numpy as np
from keras import ops

from keras_models.errors import ConfigError, InputError
from keras_models.layers.activations import get_activation
from keras_models.models.backbone import SpecBackbone
from keras_models.models.encoder.backbone import dense_rules
from keras_models.models.registry import register_backbone
from keras_models.presets.weight_map import Rule
from keras_models.spec import Spec, const, dim, hf

MASK_PENALTY = 1e6
CLS_TOKEN_TYPE = 2
BASE_ARCHITECTURES = ("FunnelBaseModel", "FunnelForSequenceClassification", "FunnelForMultipleChoice")


def _ints(value):
    return tuple(int(v) for v in value)


@dataclass(frozen=True, kw_only=True)
class FunnelSpec(Spec):
    """FunnelConfig (Transformers' defaults); ``decoder`` comes from ``architectures``."""

    vocab_size: int = dim("vocab_size", 30522)
    block_sizes: tuple = hf("block_sizes", (4, 4, 4), read=_ints)
    block_repeats: tuple | None = hf("block_repeats", None, read=_ints)
    num_decoder_layers: int = hf("num_decoder_layers", 2)
    hidden_size: int = dim("d_model", 768)
    num_heads: int = dim("n_head", 12)
    head_dim: int = dim("d_head", 64)
    intermediate_size: int = dim("d_inner", 3072)
    hidden_act: str = hf("hidden_act", "gelu_new")
    dropout: float = hf("hidden_dropout", 0.1)
    attention_dropout: float = hf("attention_dropout", 0.1)
    activation_dropout: float = hf("activation_dropout", 0.0)
    initializer_range: float = hf("initializer_range", 0.1)
    initializer_std: float | None = hf("initializer_std", None)
    layer_norm_eps: float = hf("layer_norm_eps", 1e-9)
    pooling_type: str = hf("pooling_type", "mean")
    attention_type: str = hf("attention_type", "relative_shift")
    separate_cls: bool = hf("separate_cls", True)
    truncate_seq: bool = hf("truncate_seq", True)
    pool_q_only: bool = hf("pool_q_only", True)
    pad_token_id: int | None = hf("pad_token_id", None)
    decoder: bool = const(True, doc="FunnelModel (True) or FunnelBaseModel (False), from architectures")

    @classmethod
    def adjust_from_hf(cls, config, values, source):
        archs = config.get("architectures") or ()
        if any(a in BASE_ARCHITECTURES for a in archs):
            values["decoder"] = False
        return values

    def validate(self, source="config.json"):
        if self.pooling_type not in ("mean", "max"):
            raise ConfigError(f"{source}: pooling_type={self.pooling_type!r}: expected 'mean' or 'max'")
        if self.attention_type not in ("relative_shift", "factorized"):
            raise ConfigError(f"{source}: attention_type={self.attention_type!r}: expected 'relative_shift' "
                              "or 'factorized'")
        if self.block_repeats is not None and len(self.block_repeats) != len(self.block_sizes):
            raise ConfigError(f"{source}: block_repeats={list(self.block_repeats)} must have one entry per "
                              f"block (block_sizes={list(self.block_sizes)})")
        if not self.block_sizes or any(b < 1 for b in self.block_sizes):
            raise ConfigError(f"{source}: block_sizes={list(self.block_sizes)}: expected positive sizes")
        if self.hidden_size % 2:
            raise ConfigError(f"{source}: d_model={self.hidden_size}: the sinusoid tables need an even d_model")

    def dummy_inputs(self):
        import numpy as np

        n = 2 ** len(self.block_sizes) + 1  # shorter inputs run out of relative positions
        return {"input_ids": np.ones((1, n), "int32"), "attention_mask": np.ones((1, n), "int32")}

    @property
    def repeats(self):
        return self.block_repeats or (1,) * len(self.block_sizes)


# --- the attention structure: positions, token types, masks, pooling (all static per length) -----
def _inv_freq(d_model):
    half = d_model // 2
    return (1.0 / np.power(np.float32(10000.0), np.arange(half, dtype=np.float32) / np.float32(half))).astype(np.float32)


def _relative_pos(pos, stride, pooled_pos=None, shift=1):
    """Relative distances between ``pooled_pos`` (queries) and ``pos`` (keys), descending."""
    pooled_pos = pos if pooled_pos is None else pooled_pos
    ref_point = pooled_pos[0] - pos[0]
    max_dist = ref_point + shift * len(pooled_pos) * stride
    min_dist = pooled_pos[0] - pos[-1]
    return np.arange(max_dist, min_dist - 1, -stride)


class FunnelStructure:
    """The spec's pooling rules applied to static lengths and to tensors."""

    def __init__(self, spec):
        self.spec = spec

    def stride_pool_pos(self, pos, block_index):
        if self.spec.separate_cls:
            rest = pos[1:-1] if self.spec.truncate_seq else pos[1:]
            return [-(2**block_index) + 1] + rest[::2]
        return pos[::2]

    def shift_tables(self, seq_len):
        """relative_shift: per block, [table without pooling, table with pooling (or None)]."""
        d_model = self.spec.hidden_size
        rel = np.arange(-seq_len * 2, seq_len * 2, dtype=np.float32)
        sinusoid = rel[:, None] * _inv_freq(d_model)[None]
        table = np.concatenate([np.sin(sinusoid), np.cos(sinusoid)], axis=-1)
        zero = seq_len * 2
        pos = list(range(seq_len))
        pooled = pos
        out = []

        def rows(rel):
            index = rel + zero
            if index.min() < 0 or index.max() >= len(table):
                raise InputError(f"Funnel Transformer: a sequence of {seq_len} tokens is too short for "
                                 f"{len(self.spec.block_sizes)} pooling blocks (no relative position table "
                                 "covers it; Transformers fails on it too)")
            return table[index]

        for block in range(len(self.spec.block_sizes)):
            pooling = None
            if block > 0:
                pooled = self.stride_pool_pos(pos, block)
                pooling = rows(_relative_pos(pos, 2 ** (block - 1), pooled, shift=2))
            pos = pooled
            out.append([rows(_relative_pos(pos, 2**block)), pooling])
        return out

    def factorized_tables(self, seq_len):
        sinusoid = np.arange(seq_len, dtype=np.float32)[:, None] * _inv_freq(self.spec.hidden_size)[None]
        sin, cos = np.sin(sinusoid), np.cos(sinusoid)
        return [np.concatenate(p, axis=-1) for p in ((sin, sin), (cos, cos), (cos, sin), (-sin, cos))]

    def init(self, x, mask, token_type_ids):
        """The attention inputs of a full-length sequence ``x`` (b, t, d)."""
        t = x.shape[1]
        if t is None:
            raise InputError("Funnel Transformer needs a static sequence length (input_ids with a known shape)")
        dtype = x.dtype
        if self.spec.attention_type == "factorized":
            positions = [ops.convert_to_tensor(p, dtype) for p in self.factorized_tables(t)]
        else:
            positions = [[None if p is None else ops.convert_to_tensor(p, dtype) for p in pair]
                         for pair in self.shift_tables(t)]
        same = ops.equal(token_type_ids[:, :, None], token_type_ids[:, None, :])
        is_cls = ops.equal(token_type_ids, CLS_TOKEN_TYPE)
        type_mat = ops.logical_or(same, ops.logical_or(is_cls[:, :, None], is_cls[:, None, :]))
        cls_mask = None
        if self.spec.separate_cls:
            m = np.ones((t, t), np.float32)
            m[0, :] = m[:, 0] = 0.0
            cls_mask = ops.convert_to_tensor(m, dtype)
        return {"positions": positions, "type_mat": type_mat, "mask": ops.cast(mask, dtype), "cls_mask": cls_mask}

    def stride_pool(self, x, axis):
        """Keep every other position along ``axis`` ([CLS] kept apart, see the module docstring)."""
        if x is None:
            return None
        if self.spec.separate_cls:
            first = ops.take(x, ops.arange(1), axis=axis)
            x = ops.concatenate([first, x], axis=axis)
        n = x.shape[axis]
        stop = n - 1 if self.spec.separate_cls and self.spec.truncate_seq else n
        return ops.take(x, ops.arange(0, stop, 2), axis=axis)

    def pool(self, x, mode):
        """Windows of 2 along axis 1 of (b, t[, d]); a partial last window is pooled alone."""
        if self.spec.separate_cls:
            suffix = x[:, :-1] if self.spec.truncate_seq else x
            x = ops.concatenate([x[:, :1], suffix], axis=1)
        t = x.shape[1]
        if t % 2:
            x = ops.concatenate([x, x[:, -1:]], axis=1)
        pairs = ops.reshape(x, (ops.shape(x)[0], (t + 1) // 2, 2) + tuple(x.shape[2:]))
        if mode == "mean":
            return ops.mean(pairs, axis=2)
        if mode == "max":
            return ops.max(pairs, axis=2)
        return ops.min(pairs, axis=2)

    def before_attention(self, hidden, a):
        a = dict(a)
        s = self.spec
        factorized = s.attention_type == "factorized"
        if s.pool_q_only:
            if factorized:
                a["positions"] = [self.stride_pool(p, 0) for p in a["positions"][:2]] + a["positions"][2:]
            a["type_mat"] = self.stride_pool(a["type_mat"], 1)
            a["cls_mask"] = self.stride_pool(a["cls_mask"], 0)
        else:
            if factorized:
                a["positions"] = [self.stride_pool(p, 0) for p in a["positions"]]
            a["type_mat"] = self.stride_pool(self.stride_pool(a["type_mat"], 1), 2)
            a["cls_mask"] = self.stride_pool(self.stride_pool(a["cls_mask"], 0), 1)
            a["mask"] = self.pool(a["mask"], "min")
        return self.pool(hidden, s.pooling_type), a

    def after_attention(self, a):
        if not self.spec.pool_q_only:
            return a
        a = dict(a)
        if self.spec.attention_type == "factorized":
            a["positions"] = a["positions"][:2] + [self.stride_pool(p, 0) for p in a["positions"][2:]]
        a["type_mat"] = self.stride_pool(a["type_mat"], 2)
        a["cls_mask"] = self.stride_pool(a["cls_mask"], 1)
        a["mask"] = self.pool(a["mask"], "min")
        return a


def upsample(x, stride, target_len, separate_cls, truncate_seq):
    """Repeat each position ``stride`` times along axis 1 up to ``target_len`` ([CLS] apart)."""
    if stride == 1:
        return x
    if separate_cls:
        cls, x = x[:, :1], x[:, 1:]
    b, t, d = ops.shape(x)[0], x.shape[1], x.shape[2]
    out = ops.reshape(ops.broadcast_to(x[:, :, None, :], (b, t, stride, d)), (b, t * stride, d))
    if separate_cls:
        if truncate_seq:
            out = ops.pad(out, ((0, 0), (0, stride - 1), (0, 0)))
        return ops.concatenate([cls, out[:, : target_len - 1]], axis=1)
    return out[:, :target_len]


# --- layers ----------------------------------------------------------------------------------------
@keras.saving.register_keras_serializable(package="keras_models")
class FunnelLayer(keras.layers.Layer):
    """Relative multi-head attention (query / key / value inputs may differ in length) and the
    position-wise feed-forward, each with a post-norm residual."""

    def __init__(self, hidden_size, num_heads, head_dim, intermediate_size, block_index=0, hidden_act="gelu_new",
                 layer_norm_eps=1e-9, dropout=0.0, attention_dropout=0.0, activation_dropout=0.0,
                 attention_type="relative_shift", kernel_initializer="glorot_uniform", **kwargs):
        super().__init__(**kwargs)
        self.hidden_size, self.num_heads, self.head_dim = hidden_size, num_heads, head_dim
        self.intermediate_size, self.block_index, self.hidden_act = intermediate_size, block_index, hidden_act
        self.layer_norm_eps, self.dropout_rate = layer_norm_eps, dropout
        self.attention_dropout_rate, self.activation_dropout_rate = attention_dropout, activation_dropout
        self.attention_type = attention_type
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        common = dict(dtype=self.dtype_policy)
        init = dict(kernel_initializer=self.kernel_initializer)
        inner = num_heads * head_dim
        self.q_head = keras.layers.Dense(inner, use_bias=False, name="q_head", **common, **init)
        self.k_head = keras.layers.Dense(inner, name="k_head", **common, **init)
        self.v_head = keras.layers.Dense(inner, name="v_head", **common, **init)
        self.post_proj = keras.layers.Dense(hidden_size, name="post_proj", **common, **init)
        self.attention_norm = keras.layers.LayerNormalization(epsilon=layer_norm_eps, name="attention_norm", **common)
        self.linear_1 = keras.layers.Dense(intermediate_size, name="linear_1", **common, **init)
        self.linear_2 = keras.layers.Dense(hidden_size, name="linear_2", **common, **init)
        self.ffn_norm = keras.layers.LayerNormalization(epsilon=layer_norm_eps, name="ffn_norm", **common)
        self.act = get_activation(hidden_act)
        self.dropout = keras.layers.Dropout(dropout, **common)
        self.attention_dropout = keras.layers.Dropout(attention_dropout, **common)
        self.activation_dropout = keras.layers.Dropout(activation_dropout, **common)

    def build(self, input_shape):
        n, d, h = self.num_heads, self.head_dim, self.hidden_size
        for dense in (self.q_head, self.k_head, self.v_head):
            dense.build((None, None, h))
        self.post_proj.build((None, None, n * d))
        self.attention_norm.build((None, None, h))
        self.linear_1.build((None, None, h))
        self.linear_2.build((None, None, self.intermediate_size))
        self.ffn_norm.build((None, None, h))
        init = self.kernel_initializer
        self.r_w_bias = self.add_weight(shape=(n, d), initializer=init, name="r_w_bias")
        self.r_r_bias = self.add_weight(shape=(n, d), initializer=init, name="r_r_bias")
        self.r_kernel = self.add_weight(shape=(h, n, d), initializer=init, name="r_kernel")
        self.r_s_bias = self.add_weight(shape=(n, d), initializer=init, name="r_s_bias")
        self.seg_embed = self.add_weight(shape=(2, n, d), initializer=init, name="seg_embed")
        self.built = True

    def _heads(self, dense, x):
        return ops.reshape(dense(x), (ops.shape(x)[0], x.shape[1], self.num_heads, self.head_dim))

    def positional_scores(self, positions, q, context_len, cls_mask):
        scale = self.head_dim**-0.5
        r_kernel = ops.cast(self.r_kernel, q.dtype)
        qr = q + ops.cast(self.r_r_bias, q.dtype) * scale
        if self.attention_type == "factorized":
            phi, pi, psi, omega = positions
            q_r = ops.einsum("binh,dnh->bind", qr, r_kernel)
            scores = (ops.einsum("bind,jd->bnij", q_r * phi[:, None], psi)
                      + ops.einsum("bind,jd->bnij", q_r * pi[:, None], omega))
        else:
            q_len = q.shape[1]
            shift = 2 if q_len != context_len else 1
            r = positions[self.block_index][shift - 1]
            r_head = ops.einsum("td,dnh->tnh", r, r_kernel)
            scores = ops.einsum("binh,tnh->bnit", qr, r_head)
            b, n, max_rel = ops.shape(scores)[0], self.num_heads, scores.shape[-1]
            scores = ops.reshape(scores, (b, n, max_rel, q_len))[:, :, shift:, :]
            scores = ops.reshape(scores, (b, n, q_len, max_rel - shift))[..., :context_len]
        return scores if cls_mask is None else scores * cls_mask

    def token_type_scores(self, type_mat, q, cls_mask):
        scale = self.head_dim**-0.5
        bias = ops.einsum("bind,snd->bnis", q + ops.cast(self.r_s_bias, q.dtype) * scale,
                          ops.cast(self.seg_embed, q.dtype))
        scores = ops.where(type_mat[:, None], bias[..., 1:2], bias[..., 0:1])
        return scores if cls_mask is None else scores * cls_mask

    def call(self, query, key, value, attention_inputs, training=False):
        a = attention_inputs
        scale = self.head_dim**-0.5
        q = self._heads(self.q_head, query) * scale
        k, v = self._heads(self.k_head, key), self._heads(self.v_head, value)
        content = ops.einsum("bind,bjnd->bnij", q + ops.cast(self.r_w_bias, q.dtype) * scale, k)
        scores = (content + self.positional_scores(a["positions"], q, key.shape[1], a["cls_mask"])
                  + self.token_type_scores(a["type_mat"], q, a["cls_mask"]))
        scores = ops.cast(scores, "float32")
        scores = scores - MASK_PENALTY * (1.0 - ops.cast(a["mask"], "float32")[:, None, None, :])
        probs = self.attention_dropout(ops.cast(ops.softmax(scores, axis=-1), v.dtype), training=training)
        out = ops.einsum("bnij,bjnd->bind", probs, v)
        out = self.post_proj(ops.reshape(out, (ops.shape(out)[0], query.shape[1], self.num_heads * self.head_dim)))
        h = self.attention_norm(query + self.dropout(out, training=training))
        f = self.activation_dropout(self.act(self.linear_1(h)), training=training)
        return self.ffn_norm(h + self.dropout(self.linear_2(f), training=training))

    def get_config(self):
        config = super().get_config()
        config.update(
            hidden_size=self.hidden_size, num_heads=self.num_heads, head_dim=self.head_dim,
            intermediate_size=self.intermediate_size, block_index=self.block_index, hidden_act=self.hidden_act,
            layer_norm_eps=self.layer_norm_eps, dropout=self.dropout_rate,
            attention_dropout=self.attention_dropout_rate, activation_dropout=self.activation_dropout_rate,
            attention_type=self.attention_type,
            kernel_initializer=keras.initializers.serialize(self.kernel_initializer),
        )
        return config


@keras.saving.register_keras_serializable(package="keras_models")
@register_backbone("funnel")
class FunnelBackbone(SpecBackbone):
    spec_cls = FunnelSpec
    base_model_prefix = "funnel"
    hf_architecture = "FunnelModel"
    hf_model_type = "funnel"
    # a FunnelModel checkpoint's decoder is unused by a FunnelBaseModel-shaped backbone
    hf_known_unused = ("*decoder.layers.*",)
    verified_backends = ("jax", "torch", "tensorflow")

    def __init__(self, spec=None, **kwargs):
        super().__init__(spec, **kwargs)
        for name, value in self.spec.kwargs().items():
            setattr(self, "dropout_rate" if name == "dropout" else name, value)
        self.structure = FunnelStructure(self.spec)
        std = self.initializer_std
        common = dict(dtype=self.dtype_policy)
        self.token_embedding = keras.layers.Embedding(
            self.vocab_size, self.hidden_size, name="token_embedding",
            embeddings_initializer=keras.initializers.RandomNormal(stddev=1.0 if std is None else std), **common)
        self.embeddings_norm = keras.layers.LayerNormalization(epsilon=self.layer_norm_eps, name="embeddings_norm",
                                                               **common)
        self.embeddings_dropout = keras.layers.Dropout(self.dropout_rate, **common)
        init = keras.initializers.TruncatedNormal(stddev=std or self.initializer_range)

        def layer(block, name):
            return FunnelLayer(
                self.hidden_size, self.num_heads, self.head_dim, self.intermediate_size, block_index=block,
                hidden_act=self.hidden_act, layer_norm_eps=self.layer_norm_eps, dropout=self.dropout_rate,
                attention_dropout=self.attention_dropout, activation_dropout=self.activation_dropout,
                attention_type=self.attention_type, kernel_initializer=init, name=name, **common)

        self.blocks = [[layer(b, f"block_{b}_{i}") for i in range(size)] for b, size in enumerate(self.block_sizes)]
        self.decoder_layers = (
            [layer(0, f"decoder_{i}") for i in range(self.num_decoder_layers)] if self.decoder else []
        )

    def embed(self, inputs, training=False):
        x = self.embeddings_norm(self.token_embedding(inputs["input_ids"]))
        return self.embeddings_dropout(x, training=training)

    def _mask_and_types(self, inputs):
        ids = inputs["input_ids"]
        mask = inputs.get("attention_mask")
        types = inputs.get("token_type_ids")
        return (ops.ones_like(ids) if mask is None else mask), (ops.zeros_like(ids) if types is None else types)

    def encode(self, inputs, training=False):
        """(last pooled encoder state, hidden state after block_sizes[0] layer applications)."""
        if not isinstance(inputs, dict):
            inputs = {"input_ids": inputs}
        x = self.embed(inputs, training=training)
        mask, types = self._mask_and_types(inputs)
        s = self.structure
        a = s.init(x, mask, types)
        states = [x]
        for b, block in enumerate(self.blocks):
            pooling = x.shape[1] > (2 if self.separate_cls else 1) and b > 0
            if pooling:
                pooled, a = s.before_attention(x, a)
            for i, layer in enumerate(block):
                for r in range(self.spec.repeats[b]):
                    if pooling and i == 0 and r == 0:
                        x = layer(pooled, x if self.pool_q_only else pooled, x if self.pool_q_only else pooled, a,
                                  training=training)
                        a = s.after_attention(a)
                    else:
                        x = layer(x, x, x, a, training=training)
                    states.append(x)
        return x, states[self.block_sizes[0]]

    def call(self, inputs, training=False):
        if not isinstance(inputs, dict):
            inputs = {"input_ids": inputs}
        final, first = self.encode(inputs, training=training)
        if not self.decoder:
            return final
        x = upsample(final, 2 ** (len(self.block_sizes) - 1), first.shape[1], self.separate_cls,
                     self.truncate_seq) + first
        mask, types = self._mask_and_types(inputs)
        a = self.structure.init(x, mask, types)
        for layer in self.decoder_layers:
            x = layer(x, x, x, a, training=training)
        return x

    def config_to_hf(self):
        out = super().config_to_hf()
        out["architectures"] = ["FunnelModel" if self.decoder else "FunnelBaseModel"]
        return out

    # --- HF conversion ------------------------------------------------------------------------
    @staticmethod
    def layer_rules(prefix, layer):
        r = []
        for name, dense in (("attention.q_head", layer.q_head), ("attention.k_head", layer.k_head),
                            ("attention.v_head", layer.v_head), ("attention.post_proj", layer.post_proj),
                            ("ffn.linear_1", layer.linear_1), ("ffn.linear_2", layer.linear_2)):
            r += dense_rules(prefix + name, dense)
        for name, norm in (("attention.layer_norm", layer.attention_norm), ("ffn.layer_norm", layer.ffn_norm)):
            r += [Rule(f"{prefix}{name}.weight", norm.gamma), Rule(f"{prefix}{name}.bias", norm.beta)]
        for name in ("r_w_bias", "r_r_bias", "r_kernel", "r_s_bias", "seg_embed"):
            r.append(Rule(f"{prefix}attention.{name}", getattr(layer, name)))
        return r

    def weight_rules(self):
        r = [Rule("embeddings.word_embeddings.weight", self.token_embedding.embeddings),
             Rule("embeddings.layer_norm.weight", self.embeddings_norm.gamma),
             Rule("embeddings.layer_norm.bias", self.embeddings_norm.beta)]
        for b, block in enumerate(self.blocks):
            for i, layer in enumerate(block):
                r += self.layer_rules(f"encoder.blocks.{b}.{i}.", layer)
        for i, layer in enumerate(self.decoder_layers):
            r += self.layer_rules(f"decoder.layers.{i}.", layer)
        return r


__all__ = ["FunnelBackbone"]

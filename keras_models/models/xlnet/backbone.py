"""XLNet (``model_type`` "xlnet"): the content stream of XLNetModel (no ``perm_mask`` /
``target_mapping``, no memory), bidirectional (``attn_type="bi"``, ``bi_data`` off).

Each layer is post-norm relative-position attention (Transformer-XL style) + a feed-forward:
scores are ``(q + r_w_bias) . k`` (content) + ``(q + r_r_bias) . r`` (relative position: fixed
sinusoids of ``klen .. -qlen + 1``, clamped to ``clamp_len`` when it is > 0, projected by ``r``
and shifted so that query i reads distance i - j) + ``(q + r_s_bias) . seg_embed[same / other
segment]`` (only when ``token_type_ids`` are given, as in Transformers), times ``d_head**-0.5``.
``attention_mask`` masks padded keys except a token's own position. No embedding scale, norm or
absolute positions. Projections are stored as Transformers stores them, (d_model, heads, d_head).
Weights use Transformers' names under ``transformer.``.
"""

from dataclasses import dataclass

import keras
from keras import ops

from keras_models.errors import ConfigError
from keras_models.layers.activations import get_activation
from keras_models.layers.masks import mask_value
from keras_models.models.backbone import SpecBackbone
from keras_models.models.encoder.backbone import dense_rules, norm_rules
from keras_models.models.registry import register_backbone
from keras_models.presets.weight_map import Rule
from keras_models.spec import Spec, dim, hf

_ser = keras.saving.register_keras_serializable(package="keras_models")
SUMMARY_TYPES = ("last", "first", "mean", "cls_index")


@dataclass(frozen=True, kw_only=True)
class XLNetSpec(Spec):
    """XLNetConfig's keys and Transformers' defaults."""

    vocab_size: int = dim("vocab_size", 32000)
    hidden_size: int = dim("d_model", 1024)
    num_layers: int = dim("n_layer", 24)
    num_heads: int = dim("n_head", 16)
    head_dim: int | None = hf("d_head", None, doc="None: d_model // n_head")
    intermediate_size: int = dim("d_inner", 4096)
    hidden_act: str = hf("ff_activation", "gelu")
    layer_norm_eps: float = hf("layer_norm_eps", 1e-12)
    dropout: float = hf("dropout", 0.1)
    initializer_range: float = hf("initializer_range", 0.02)
    clamp_len: int = hf("clamp_len", -1, doc="> 0: relative distances clamped to +-clamp_len")
    summary_type: str = hf("summary_type", "last", doc="TextClassifier's pooling: last, first, mean, cls_index")
    summary_activation: str | None = hf("summary_activation", "tanh")
    summary_last_dropout: float = hf("summary_last_dropout", 0.1)
    pad_token_id: int | None = hf("pad_token_id", 5)
    bos_token_id: int | None = hf("bos_token_id", 1)
    eos_token_id: int | None = hf("eos_token_id", 2)

    # the memory settings only matter when mems are fed back, which this model never does
    ignored = ("mem_len", "reuse_len", "use_mems_eval", "use_mems_train", "same_length", "start_n_top",
               "end_n_top")
    unsupported = {"attn_type": ("bi",), "bi_data": (False,), "summary_use_proj": (True,),
                   "summary_first_dropout": (0, 0.0, None)}

    def validate(self, source="config.json"):
        if self.head_dim is None and self.hidden_size % self.num_heads:
            raise ConfigError(f"{source}: d_model={self.hidden_size} is not divisible by n_head={self.num_heads}")
        if self.head_dim is not None and (isinstance(self.head_dim, bool) or self.head_dim <= 0):
            raise ConfigError(f"{source}: d_head must be a positive integer, got {self.head_dim!r}")
        if self.summary_type not in SUMMARY_TYPES:
            raise ConfigError(f"{source}: summary_type={self.summary_type!r} is not supported "
                              f"(supported: {', '.join(SUMMARY_TYPES)})")
        if self.hidden_size % 2:
            raise ConfigError(f"{source}: d_model={self.hidden_size} must be even (sinusoidal positions)")

    def adjust_to_hf(self, out):
        out.update(attn_type="bi", bi_data=False, summary_use_proj=True, mem_len=None)
        if out.get("d_head") is None:
            out["d_head"] = self.hidden_size // self.num_heads
        return out


def relative_positions(qlen, klen, width, clamp_len, dtype):
    """(klen + qlen, width) sinusoids [sin | cos] of the distances klen, klen - 1, ..., -qlen + 1."""
    pos = ops.cast(klen - ops.arange(klen + qlen, dtype="int32"), "float32")
    if clamp_len > 0:
        pos = ops.clip(pos, -clamp_len, clamp_len)
    inv_freq = 1.0 / ops.power(10000.0, ops.cast(ops.arange(0, width, 2, dtype="int32"), "float32") / width)
    angles = pos[:, None] * inv_freq[None, :]
    return ops.cast(ops.concatenate([ops.sin(angles), ops.cos(angles)], axis=-1), dtype)


def shift_relative(scores, klen):
    """(b, n, q, klen + q) scores against the distances above -> (b, n, q, klen): entry (i, j) is
    the score of distance i - j (the reshape trick of Transformer-XL)."""
    b, n, q, p = ops.shape(scores)
    x = ops.reshape(scores, (b, n, p, q))[:, :, 1:, :]
    return ops.reshape(x, (b, n, q, p - 1))[..., :klen]


@_ser
class XLNetLayer(keras.layers.Layer):
    """Relative attention (content, position and segment terms) + feed-forward, both post-norm."""

    def __init__(self, hidden_size, num_heads, head_dim, intermediate_size, hidden_act="gelu", layer_norm_eps=1e-12,
                 dropout=0.0, kernel_initializer="glorot_uniform", **kwargs):
        super().__init__(**kwargs)
        self.hidden_size, self.num_heads, self.head_dim = hidden_size, num_heads, head_dim
        self.intermediate_size, self.hidden_act, self.layer_norm_eps = intermediate_size, hidden_act, layer_norm_eps
        self.dropout_rate = dropout
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.act = get_activation(hidden_act)
        common = dict(dtype=self.dtype_policy)
        self.attention_norm = keras.layers.LayerNormalization(epsilon=layer_norm_eps, name="attention_norm", **common)
        self.ffn_in = keras.layers.Dense(intermediate_size, kernel_initializer=self.kernel_initializer,
                                         name="ffn_in", **common)
        self.ffn_out = keras.layers.Dense(hidden_size, kernel_initializer=self.kernel_initializer,
                                          name="ffn_out", **common)
        self.ffn_norm = keras.layers.LayerNormalization(epsilon=layer_norm_eps, name="ffn_norm", **common)
        self.dropout = keras.layers.Dropout(dropout, **common)

    def build(self, input_shape):
        shape = (self.hidden_size, self.num_heads, self.head_dim)
        for name in ("q", "k", "v", "o", "r"):
            setattr(self, name, self.add_weight(name=name, shape=shape, initializer=self.kernel_initializer))
        for name in ("r_w_bias", "r_r_bias", "r_s_bias"):
            setattr(self, name, self.add_weight(name=name, shape=shape[1:], initializer="zeros"))
        self.seg_embed = self.add_weight(name="seg_embed", shape=(2,) + shape[1:], initializer=self.kernel_initializer)
        self.attention_norm.build(input_shape)
        self.ffn_in.build(input_shape)
        self.ffn_out.build(tuple(input_shape[:-1]) + (self.intermediate_size,))
        self.ffn_norm.build(input_shape)
        self.built = True

    def call(self, h, positions, segments=None, bias=None, training=False):
        """``h`` (b, t, d); ``positions`` (2t, d) from :func:`relative_positions`; ``segments``
        (b, t, t, 2) one-hot same / other segment or None; ``bias`` additive (b, 1, t, t) or None."""
        dt = h.dtype

        def w(x):
            return ops.cast(x, dt)

        q = ops.einsum("bih,hnd->bind", h, w(self.q))
        k = ops.einsum("bih,hnd->bind", h, w(self.k))
        v = ops.einsum("bih,hnd->bind", h, w(self.v))
        r = ops.einsum("ph,hnd->pnd", positions, w(self.r))
        scores = ops.einsum("bind,bjnd->bnij", q + w(self.r_w_bias), k)
        scores = scores + shift_relative(ops.einsum("bind,pnd->bnip", q + w(self.r_r_bias), r), ops.shape(h)[1])
        if segments is not None:
            seg = ops.einsum("bind,snd->bins", q + w(self.r_s_bias), w(self.seg_embed))
            scores = scores + ops.einsum("bijs,bins->bnij", segments, seg)
        scores = scores * ops.cast(self.head_dim**-0.5, dt)
        if bias is not None:
            scores = scores + bias
        probs = self.dropout(ops.softmax(scores, axis=-1), training=training)
        out = ops.einsum("bind,hnd->bih", ops.einsum("bnij,bjnd->bind", probs, v), w(self.o))
        h = self.attention_norm(h + self.dropout(out, training=training))
        f = self.ffn_out(self.dropout(self.act(self.ffn_in(h)), training=training))
        return self.ffn_norm(h + self.dropout(f, training=training))

    def get_config(self):
        config = super().get_config()
        config.update(hidden_size=self.hidden_size, num_heads=self.num_heads, head_dim=self.head_dim,
                      intermediate_size=self.intermediate_size, hidden_act=self.hidden_act,
                      layer_norm_eps=self.layer_norm_eps, dropout=self.dropout_rate,
                      kernel_initializer=keras.initializers.serialize(self.kernel_initializer))
        return config


@_ser
@register_backbone("xlnet")
class XLNetBackbone(SpecBackbone):
    """(batch, seq, d_model): XLNetModel's last hidden state for ``{"input_ids",
    "attention_mask", "token_type_ids"}``."""

    spec_cls = XLNetSpec
    base_model_prefix = "transformer"
    hf_architecture = "XLNetModel"
    hf_model_type = "xlnet"
    hf_known_unused = ("*mask_emb",)  # the query stream's embedding (perm_mask / target_mapping only)
    verified_backends = ("jax", "torch", "tensorflow")

    def __init__(self, spec=None, **kwargs):
        super().__init__(spec, **kwargs)
        for name, value in self.spec.kwargs().items():
            setattr(self, "dropout_rate" if name == "dropout" else name, value)
        self.head_dim = self.head_dim or self.hidden_size // self.num_heads
        init = keras.initializers.TruncatedNormal(stddev=self.initializer_range)
        common = dict(dtype=self.dtype_policy)
        self.token_embedding = keras.layers.Embedding(self.vocab_size, self.hidden_size, embeddings_initializer=init,
                                                      name="token_embedding", **common)
        self.embeddings_dropout = keras.layers.Dropout(self.dropout_rate, **common)
        self.blocks = [XLNetLayer(self.hidden_size, self.num_heads, self.head_dim, self.intermediate_size,
                                  hidden_act=self.hidden_act, layer_norm_eps=self.layer_norm_eps,
                                  dropout=self.dropout_rate, kernel_initializer=init, name=f"layer_{i}", **common)
                       for i in range(self.num_layers)]

    def call(self, inputs, training=False):
        if not isinstance(inputs, dict):
            inputs = {"input_ids": inputs}
        ids = inputs["input_ids"]
        x = self.embeddings_dropout(self.token_embedding(ids), training=training)
        t = ops.shape(ids)[1]
        positions = self.embeddings_dropout(relative_positions(t, t, self.hidden_size, self.clamp_len, x.dtype),
                                            training=training)
        segments = None
        types = inputs.get("token_type_ids")
        if types is not None:
            other = ops.not_equal(types[:, :, None], types[:, None, :])
            segments = ops.one_hot(ops.cast(other, "int32"), 2, dtype=x.dtype)
        bias = None
        mask = inputs.get("attention_mask")
        if mask is not None:  # padded keys are masked, except each position's own
            own = ops.eye(t, dtype="bool")[None]
            allowed = ops.logical_or(ops.cast(mask, "bool")[:, None, :], own)
            bias = ops.where(allowed, 0.0, mask_value(x.dtype))[:, None]
            bias = ops.cast(bias, x.dtype)
        for block in self.blocks:
            x = block(x, positions, segments, bias, training=training)
        return self.embeddings_dropout(x, training=training)

    def weight_rules(self):
        r = [Rule("word_embedding.weight", self.token_embedding.embeddings)]
        for i, blk in enumerate(self.blocks):
            p = f"layer.{i}."
            for name in ("q", "k", "v", "o", "r", "r_w_bias", "r_r_bias", "r_s_bias", "seg_embed"):
                r.append(Rule(f"{p}rel_attn.{name}", getattr(blk, name)))
            r += norm_rules(f"{p}rel_attn.layer_norm", blk.attention_norm)
            r += dense_rules(f"{p}ff.layer_1", blk.ffn_in) + dense_rules(f"{p}ff.layer_2", blk.ffn_out)
            r += norm_rules(f"{p}ff.layer_norm", blk.ffn_norm)
        return r


__all__ = ["XLNetSpec", "XLNetLayer", "XLNetBackbone", "relative_positions", "shift_relative"]

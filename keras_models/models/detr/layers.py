"""Building blocks of the DETR family (channels_last, keras.ops only).

* :func:`downsample_mask` / :func:`sine_positions`: the pixel mask cut to a feature map's grid
  (PyTorch's ``interpolate(mode="nearest")`` index rule) and DETR's normalised 2-D sine embedding
  of the mask's running sums (``[y features | x features]``, each interleaving sin and cos).
* :class:`LearnedPositions`: DETR's ``position_embedding_type="learned"`` (50 rows / 50 columns,
  ``[column | row]``).
* :class:`DetrAttention`: multi-head attention whose query / key inputs carry position embeddings
  that the value input does not.
* :class:`DetrEncoderLayer` / :class:`DetrDecoderLayer`: post-norm (DETR) or pre-norm
  (``pre_norm``, Table Transformer) residual layers.
"""

import math

import keras
import numpy as np
from keras import ops

from keras_models.layers.activations import get_activation
from keras_models.layers.masks import padding_bias
from keras_models.layers.vision_embeddings import dense_rules, norm_rules

_ser = keras.saving.register_keras_serializable(package="keras_models")


def downsample_mask(mask, height, width):
    """(batch, H, W) 0/1 pixel mask -> (batch, height, width) float32, nearest neighbour as
    PyTorch picks it: source index ``floor(i * (H / height))``."""
    mask = ops.cast(mask, "float32")

    def index(size, out):
        scale = ops.cast(size, "float32") / ops.cast(out, "float32")
        return ops.cast(ops.floor(ops.cast(ops.arange(out), "float32") * scale), "int32")

    rows, cols = index(ops.shape(mask)[1], height), index(ops.shape(mask)[2], width)
    return ops.take(ops.take(mask, rows, axis=1), cols, axis=2)


def _frequencies(num_features, temperature=10000):
    i = np.arange(num_features, dtype=np.float32)
    return (np.float32(temperature) ** (2 * np.floor(i / 2) / np.float32(num_features))).astype(np.float32)


def _sin_cos(angles):
    """(..., n) angles -> (..., n): sin of the even features, cos of the odd ones (in place)."""
    even = ops.convert_to_tensor(np.arange(angles.shape[-1]) % 2 == 0)
    return ops.where(even, ops.sin(angles), ops.cos(angles))


def sine_positions(mask, num_features, dtype="float32", offset=0.0):
    """DETR's sine embedding of a (batch, h, w) mask -> (batch, h, w, 2 * num_features): running
    sums of the mask down / across (minus ``offset``: 0.5 in Deformable DETR), normalised by the
    last sum to (0, 2 pi], each over ``num_features`` frequencies; y features first."""
    y = ops.cumsum(mask, axis=1)
    x = ops.cumsum(mask, axis=2)
    y = (y - offset) / (y[:, -1:, :] + 1e-6) * (2 * math.pi)
    x = (x - offset) / (x[:, :, -1:] + 1e-6) * (2 * math.pi)
    freq = ops.convert_to_tensor(_frequencies(num_features))
    pos = ops.concatenate([_sin_cos(y[..., None] / freq), _sin_cos(x[..., None] / freq)], axis=-1)
    return ops.cast(pos, dtype)


def coordinate_sine(coords, num_features):
    """Conditional DETR's embedding of (..., 2) (x, y) points in [0, 1] -> (..., 2 * num_features),
    ``[y | x]``, each coordinate times 2 pi over the DETR frequencies."""
    freq = ops.convert_to_tensor(_frequencies(num_features))
    x = _sin_cos(coords[..., 0:1] * (2 * math.pi) / freq)
    y = _sin_cos(coords[..., 1:2] * (2 * math.pi) / freq)
    return ops.concatenate([y, x], axis=-1)


def inverse_sigmoid(x, eps=1e-5):
    x = ops.clip(x, 0.0, 1.0)
    return ops.log(ops.maximum(x, eps) / ops.maximum(1.0 - x, eps))


@_ser
class LearnedPositions(keras.layers.Layer):
    """Learned row and column embeddings (``max_size`` each); ``grid(h, w)`` -> (1, h, w, 2 * dim),
    columns first."""

    def __init__(self, dim, max_size=50, **kwargs):
        super().__init__(**kwargs)
        self.dim, self.max_size = dim, max_size

    def build(self, input_shape=None):
        init = keras.initializers.RandomUniform(0.0, 1.0)
        self.rows = self.add_weight(name="row_embeddings", shape=(self.max_size, self.dim), initializer=init)
        self.cols = self.add_weight(name="column_embeddings", shape=(self.max_size, self.dim), initializer=init)
        self.built = True

    def grid(self, height, width):
        if height > self.max_size or width > self.max_size:
            from keras_models.errors import InputError

            raise InputError(f"learned position embeddings: the feature map is {height}x{width}, larger than "
                             f"their {self.max_size}x{self.max_size} table (use smaller pixel_values)")
        cols = ops.broadcast_to(self.cols[None, :width], (height, width, self.dim))
        rows = ops.broadcast_to(self.rows[:height, None], (height, width, self.dim))
        return ops.concatenate([cols, rows], axis=-1)[None]

    def get_config(self):
        c = super().get_config()
        c.update(dim=self.dim, max_size=self.max_size)
        return c


def attend(q, k, v, bias=None, dropout=None, training=False):
    """q (b, t, h, dq), k (b, s, h, dq), v (b, s, h, d) -> (b, t, h * d); scores scaled by dq ** -0.5,
    ``bias`` additive (b, 1, 1, s). Through the fused kernel (``attention.FUSED_ATTENTION``: torch SDPA,
    no score tensor) unless dropout is active or the query and value head sizes differ."""
    from keras_models.layers import attention as attention_lib

    if (attention_lib.FUSED_ATTENTION and q.shape[-1] == v.shape[-1]
            and not (training and dropout is not None and dropout.rate > 0)):
        out = attention_lib.fused_attention(q, k, v, bias, q.shape[-1] ** -0.5)
        return ops.reshape(out, (ops.shape(out)[0], ops.shape(out)[1], v.shape[2] * v.shape[3]))
    scores = ops.einsum("bthd,bshd->bhts", q, k) * ops.cast(q.shape[-1] ** -0.5, q.dtype)
    if bias is not None:
        scores = scores + ops.cast(bias, scores.dtype)
    probs = ops.softmax(scores, axis=-1)
    if dropout is not None:
        probs = dropout(probs, training=training)
    out = ops.einsum("bhts,bshd->bthd", probs, v)
    return ops.reshape(out, (ops.shape(out)[0], ops.shape(out)[1], v.shape[2] * v.shape[3]))


def split_heads(x, num_heads):
    return ops.reshape(x, (ops.shape(x)[0], ops.shape(x)[1], num_heads, x.shape[-1] // num_heads))


@_ser
class DetrAttention(keras.layers.Layer):
    """Multi-head attention over separate query, key and value inputs (q_proj, k_proj, v_proj,
    out_proj); ``bias`` is an additive (batch, 1, 1, keys) mask."""

    def __init__(self, hidden_size, num_heads, dropout=0.0, **kwargs):
        super().__init__(**kwargs)
        self.hidden_size, self.num_heads, self.dropout_rate = hidden_size, num_heads, dropout
        self.head_dim = hidden_size // num_heads
        common = dict(dtype=self.dtype_policy)
        self.q_proj = keras.layers.Dense(hidden_size, name="q_proj", **common)
        self.k_proj = keras.layers.Dense(hidden_size, name="k_proj", **common)
        self.v_proj = keras.layers.Dense(hidden_size, name="v_proj", **common)
        self.out_proj = keras.layers.Dense(hidden_size, name="out_proj", **common)
        self.drop = keras.layers.Dropout(dropout, **common)

    def build(self, input_shape=None):
        for d in (self.q_proj, self.k_proj, self.v_proj, self.out_proj):
            d.build((None, None, self.hidden_size))
        self.built = True

    def heads(self, x):
        return split_heads(x, self.num_heads)

    def attend(self, q, k, v, bias=None, training=False):
        return attend(q, k, v, bias, self.drop, training)

    def call(self, query, key, value, bias=None, training=False):
        out = self.attend(self.heads(self.q_proj(query)), self.heads(self.k_proj(key)),
                          self.heads(self.v_proj(value)), bias, training=training)
        return self.out_proj(out)

    def rules(self, prefix):
        return [r for name in ("q_proj", "k_proj", "v_proj", "out_proj")
                for r in dense_rules(f"{prefix}.{name}", getattr(self, name))]

    def get_config(self):
        c = super().get_config()
        c.update(hidden_size=self.hidden_size, num_heads=self.num_heads, dropout=self.dropout_rate)
        return c


class _Layer(keras.layers.Layer):
    """Shared parts of the encoder and decoder layers: the MLP (fc1, fc2) and their LayerNorms."""

    def __init__(self, hidden_size, num_heads, ffn_dim, activation="relu", pre_norm=False, dropout=0.0,
                 attention_dropout=0.0, activation_dropout=0.0, **kwargs):
        super().__init__(**kwargs)
        self.hidden_size, self.num_heads, self.ffn_dim = hidden_size, num_heads, ffn_dim
        self.activation, self.pre_norm = activation, pre_norm
        self.dropout_rate, self.attention_dropout, self.activation_dropout = dropout, attention_dropout, activation_dropout
        common = dict(dtype=self.dtype_policy)
        self.fc1 = keras.layers.Dense(ffn_dim, name="fc1", **common)
        self.fc2 = keras.layers.Dense(hidden_size, name="fc2", **common)
        self.act = get_activation(activation)
        self.drop = keras.layers.Dropout(dropout, **common)
        self.act_drop = keras.layers.Dropout(activation_dropout, **common)

    def norm(self, name):
        return keras.layers.LayerNormalization(epsilon=1e-5, name=name, dtype=self.dtype_policy)

    def mlp(self, x, training=False):
        return self.drop(self.fc2(self.act_drop(self.act(self.fc1(x)), training=training)), training=training)

    def residual(self, x, branch, norm, training=False):
        """x + branch(x), normalised after (DETR) or before the branch (``pre_norm``)."""
        if self.pre_norm:
            return x + self.drop(branch(norm(x)), training=training)
        return norm(x + self.drop(branch(x), training=training))

    def build(self, input_shape=None):
        d = self.hidden_size
        for layer in self._sublayers():
            layer.build((None, None, d))
        self.fc1.build((None, None, d))
        self.fc2.build((None, None, self.ffn_dim))
        self.built = True

    def mlp_rules(self, prefix):
        return dense_rules(f"{prefix}.fc1", self.fc1) + dense_rules(f"{prefix}.fc2", self.fc2)

    def get_config(self):
        c = super().get_config()
        c.update(hidden_size=self.hidden_size, num_heads=self.num_heads, ffn_dim=self.ffn_dim,
                 activation=self.activation, pre_norm=self.pre_norm, dropout=self.dropout_rate,
                 attention_dropout=self.attention_dropout, activation_dropout=self.activation_dropout)
        return c


@_ser
class DetrEncoderLayer(_Layer):
    """Self-attention over the image tokens (positions added to queries and keys) + MLP."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.self_attn = DetrAttention(self.hidden_size, self.num_heads, self.attention_dropout, name="self_attn",
                                       dtype=self.dtype_policy)
        self.self_attn_layer_norm = self.norm("self_attn_layer_norm")
        self.final_layer_norm = self.norm("final_layer_norm")

    def _sublayers(self):
        return (self.self_attn, self.self_attn_layer_norm, self.final_layer_norm)

    def call(self, x, pos, bias=None, training=False):
        x = self.residual(x, lambda h: self.self_attn(h + pos, h + pos, h, bias, training=training),
                          self.self_attn_layer_norm, training)
        return self.residual(x, lambda h: self.mlp(h, training), self.final_layer_norm, training)

    def rules(self, p):
        return (self.self_attn.rules(f"{p}.self_attn") + norm_rules(f"{p}.self_attn_layer_norm", self.self_attn_layer_norm)
                + self.mlp_rules(p) + norm_rules(f"{p}.final_layer_norm", self.final_layer_norm))


@_ser
class DetrDecoderLayer(_Layer):
    """Self-attention over the object queries (query positions on queries and keys), cross-attention
    to the image tokens (query positions on the queries, image positions on the keys) + MLP."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        common = dict(dtype=self.dtype_policy)
        self.self_attn = DetrAttention(self.hidden_size, self.num_heads, self.attention_dropout, name="self_attn",
                                       **common)
        self.encoder_attn = DetrAttention(self.hidden_size, self.num_heads, self.attention_dropout,
                                          name="encoder_attn", **common)
        self.self_attn_layer_norm = self.norm("self_attn_layer_norm")
        self.encoder_attn_layer_norm = self.norm("encoder_attn_layer_norm")
        self.final_layer_norm = self.norm("final_layer_norm")

    def _sublayers(self):
        return (self.self_attn, self.encoder_attn, self.self_attn_layer_norm, self.encoder_attn_layer_norm,
                self.final_layer_norm)

    def call(self, x, query_pos, memory, memory_pos, bias=None, training=False):
        x = self.residual(x, lambda h: self.self_attn(h + query_pos, h + query_pos, h, training=training),
                          self.self_attn_layer_norm, training)
        x = self.residual(x, lambda h: self.encoder_attn(h + query_pos, memory + memory_pos, memory, bias,
                                                         training=training),
                          self.encoder_attn_layer_norm, training)
        return self.residual(x, lambda h: self.mlp(h, training), self.final_layer_norm, training)

    def rules(self, p):
        r = self.self_attn.rules(f"{p}.self_attn") + self.encoder_attn.rules(f"{p}.encoder_attn")
        for name in ("self_attn_layer_norm", "encoder_attn_layer_norm", "final_layer_norm"):
            r += norm_rules(f"{p}.{name}", getattr(self, name))
        return r + self.mlp_rules(p)


def attention_bias(mask, dtype):
    """(batch, tokens) 1/0 -> additive (batch, 1, 1, tokens)."""
    return padding_bias(mask, dtype)


__all__ = ["attend", "split_heads", "DetrAttention", "DetrEncoderLayer", "DetrDecoderLayer", "LearnedPositions",
           "attention_bias", "coordinate_sine", "downsample_mask", "inverse_sigmoid", "sine_positions"]

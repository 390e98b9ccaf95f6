"""ConvBERT's mixed attention (self-attention heads + span-based dynamic convolution heads) and
its grouped linear layer (block-diagonal feed-forward).

``MixedConvAttention`` keeps ``num_heads // head_ratio`` self-attention heads of width
``hidden_size // heads // 2`` and as many convolution heads of the same width. Each convolution
head mixes a window of ``conv_kernel_size`` neighbouring value vectors (``conv_out``) with weights
predicted per token by a softmax over ``conv_kernel`` applied to ``query * separable_conv(x)``.
Both halves are concatenated ([attention heads | convolution heads]) and projected back by
``output_dense``. Attribute names ``query``/``key``/``value``/``output_dense`` match
:class:`~keras_models.layers.attention.Attention`.
"""

import keras
from keras import ops


def mixed_attention_heads(num_heads, head_ratio):
    """Self-attention heads kept by ConvBERT (at least one)."""
    return max(num_heads // head_ratio, 1)


def sliding_windows(x, kernel_size):
    """(b, t, c) -> (b, t, c, kernel_size): window j of token i is x[i + j - (k-1)//2], zero
    outside the sequence (``unfold`` with "same" padding, odd kernel sizes)."""
    pad = (kernel_size - 1) // 2
    t = ops.shape(x)[1]
    padded = ops.pad(x, [[0, 0], [pad, kernel_size - 1 - pad], [0, 0]])
    return ops.stack([padded[:, j : j + t] for j in range(kernel_size)], axis=-1)


@keras.saving.register_keras_serializable(package="keras_models")
class MixedConvAttention(keras.layers.Layer):
    """ConvBERT self-attention. ``call(x, bias)``; ``bias`` masks the attention half only (the
    convolution half sees padded positions, as in the reference)."""

    def __init__(self, hidden_size, num_heads, head_ratio=2, conv_kernel_size=9, dropout=0.0,
                 kernel_initializer="glorot_uniform", **kwargs):
        super().__init__(**kwargs)
        if conv_kernel_size % 2 == 0:
            raise ValueError(f"conv_kernel_size={conv_kernel_size}: ConvBERT needs an odd kernel size")
        self.hidden_size, self.num_heads, self.head_ratio = hidden_size, num_heads, head_ratio
        self.conv_kernel_size, self.dropout = conv_kernel_size, dropout
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.heads = mixed_attention_heads(num_heads, head_ratio)
        self.head_dim = hidden_size // self.heads // 2
        self.all_head_size = self.heads * self.head_dim
        common = dict(dtype=self.dtype_policy)
        dense = dict(kernel_initializer=self.kernel_initializer, **common)
        self.query = keras.layers.Dense(self.all_head_size, name="query", **dense)
        self.key = keras.layers.Dense(self.all_head_size, name="key", **dense)
        self.value = keras.layers.Dense(self.all_head_size, name="value", **dense)
        # separable convolution over the sequence: depthwise (no bias), pointwise (no bias), bias
        self.key_conv_depthwise = keras.layers.DepthwiseConv1D(
            conv_kernel_size, padding="same", use_bias=False, name="key_conv_depthwise",
            depthwise_initializer=self.kernel_initializer, **common,
        )
        self.key_conv_pointwise = keras.layers.Dense(self.all_head_size, use_bias=False,
                                                     name="key_conv_pointwise", **dense)
        self.conv_kernel = keras.layers.Dense(self.heads * conv_kernel_size, name="conv_kernel", **dense)
        self.conv_out = keras.layers.Dense(self.all_head_size, name="conv_out", **dense)
        self.output_dense = keras.layers.Dense(hidden_size, name="output", **dense)
        self.attention_dropout = keras.layers.Dropout(dropout, **common)

    def build(self, input_shape):
        input_shape = tuple(input_shape)
        inner = input_shape[:-1] + (self.all_head_size,)
        for layer in (self.query, self.key, self.value, self.key_conv_depthwise, self.key_conv_pointwise,
                      self.conv_out):
            layer.build(input_shape)
        self.key_conv_bias = self.add_weight(name="key_conv_bias", shape=(self.all_head_size,),
                                             initializer="zeros")
        self.conv_kernel.build(inner)
        self.output_dense.build(input_shape[:-1] + (2 * self.all_head_size,))
        self.built = True

    def call(self, x, bias=None, training=False):
        b, t = ops.shape(x)[0], ops.shape(x)[1]
        heads, d, k = self.heads, self.head_dim, self.conv_kernel_size
        q, key, v = self.query(x), self.key(x), self.value(x)
        # dynamic convolution: per-token softmax weights over a window of conv_out vectors
        key_conv = self.key_conv_pointwise(self.key_conv_depthwise(x)) + ops.cast(self.key_conv_bias, x.dtype)
        weights = ops.reshape(self.conv_kernel(key_conv * q), (b, t, heads, k))
        weights = ops.cast(ops.softmax(ops.cast(weights, "float32"), axis=-1), x.dtype)
        windows = ops.reshape(sliding_windows(self.conv_out(x), k), (b, t, heads, d, k))
        conv = ops.reshape(ops.einsum("bthdk,bthk->bthd", windows, weights), (b, t, self.all_head_size))
        # self-attention over the reduced heads
        q, key, v = (ops.reshape(y, (b, t, heads, d)) for y in (q, key, v))
        scores = ops.einsum("bthd,bshd->bhts", q, key) * ops.cast(d**-0.5, q.dtype)
        if bias is not None:
            scores = scores + ops.cast(bias, scores.dtype)
        probs = ops.cast(ops.softmax(ops.cast(scores, "float32"), axis=-1), v.dtype)
        probs = self.attention_dropout(probs, training=training)
        context = ops.reshape(ops.einsum("bhts,bshd->bthd", probs, v), (b, t, self.all_head_size))
        return self.output_dense(ops.concatenate([context, conv], axis=-1))

    def get_config(self):
        c = super().get_config()
        c.update(hidden_size=self.hidden_size, num_heads=self.num_heads, head_ratio=self.head_ratio,
                 conv_kernel_size=self.conv_kernel_size, dropout=self.dropout,
                 kernel_initializer=keras.initializers.serialize(self.kernel_initializer))
        return c


@keras.saving.register_keras_serializable(package="keras_models")
class GroupedDense(keras.layers.Layer):
    """Block-diagonal linear layer: the input's last axis is split into ``groups`` equal parts,
    each projected by its own (in/groups, units/groups) kernel; kernel shape (groups, in/g, out/g)."""

    def __init__(self, units, groups, kernel_initializer="glorot_uniform", **kwargs):
        super().__init__(**kwargs)
        self.units, self.groups = units, groups
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.use_bias = True

    def build(self, input_shape):
        fan_in = input_shape[-1]
        if fan_in % self.groups or self.units % self.groups:
            raise ValueError(f"GroupedDense: {fan_in} -> {self.units} is not divisible into {self.groups} groups")
        self.kernel = self.add_weight(name="kernel", initializer=self.kernel_initializer,
                                      shape=(self.groups, fan_in // self.groups, self.units // self.groups))
        self.bias = self.add_weight(name="bias", shape=(self.units,), initializer="zeros")
        self.built = True

    def call(self, x):
        b, t = ops.shape(x)[0], ops.shape(x)[1]  # (batch, seq, features) inputs
        x = ops.reshape(x, (b, t, self.groups, self.kernel.shape[1]))
        y = ops.einsum("btgi,gio->btgo", x, ops.cast(self.kernel, x.dtype))
        return ops.reshape(y, (b, t, self.units)) + ops.cast(self.bias, x.dtype)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1]) + (self.units,)

    def get_config(self):
        c = super().get_config()
        c.update(units=self.units, groups=self.groups,
                 kernel_initializer=keras.initializers.serialize(self.kernel_initializer))
        return c

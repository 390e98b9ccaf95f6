"""Multi-head attention with separate q/k/v/o projections (MHA, GQA and MQA)."""

import keras
from keras import ops


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
        **kwargs,
    ):
        super().__init__(**kwargs)
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
        self.query = keras.layers.Dense(num_heads * self.head_dim, use_bias=use_bias, name="query", **dense)
        self.key = keras.layers.Dense(self.num_kv_heads * self.head_dim, use_bias=use_bias, name="key", **dense)
        self.value = keras.layers.Dense(self.num_kv_heads * self.head_dim, use_bias=use_bias, name="value", **dense)
        self.output_dense = keras.layers.Dense(hidden_size, use_bias=self.output_bias, name="output", **dense)
        self.attention_dropout = keras.layers.Dropout(dropout, dtype=self.dtype_policy)

    def build(self, input_shape):
        self.query.build(input_shape)
        self.key.build(input_shape)
        self.value.build(input_shape)
        self.output_dense.build(tuple(input_shape[:-1]) + (self.num_heads * self.head_dim,))
        self.built = True

    def _split(self, x, heads):
        b, s = ops.shape(x)[0], ops.shape(x)[1]
        return ops.reshape(x, (b, s, heads, self.head_dim))

    def attend(self, q, k, v, bias=None, training=False):
        """q: (b, t, h, d); k, v: (b, s, kv, d) -> (b, t, h*d)."""
        if self.num_kv_heads != self.num_heads:
            rep = self.num_heads // self.num_kv_heads
            k = ops.repeat(k, rep, axis=2)
            v = ops.repeat(v, rep, axis=2)
        scale = self.scale if self.scale is not None else self.head_dim**-0.5
        scores = ops.einsum("bthd,bshd->bhts", q, k) * ops.cast(scale, q.dtype)
        if bias is not None:
            scores = scores + ops.cast(bias, scores.dtype)
        probs = ops.softmax(ops.cast(scores, "float32"), axis=-1)
        probs = ops.cast(probs, v.dtype)
        probs = self.attention_dropout(probs, training=training)
        out = ops.einsum("bhts,bshd->bthd", probs, v)
        b, t = ops.shape(out)[0], ops.shape(out)[1]
        return ops.reshape(out, (b, t, self.num_heads * self.head_dim))

    def call(self, x, bias=None, context=None, training=False):
        kv_in = x if context is None else context
        q = self._split(self.query(x), self.num_heads)
        k = self._split(self.key(kv_in), self.num_kv_heads)
        v = self._split(self.value(kv_in), self.num_kv_heads)
        return self.output_dense(self.attend(q, k, v, bias, training=training))

    def get_config(self):
        config = super().get_config()
        config.update(
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

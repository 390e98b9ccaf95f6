"""A transformer encoder block: attention + feed-forward with post- or pre-norm residuals."""

import keras

from keras_models.layers.activations import get_activation
from keras_models.layers.attention import Attention


@keras.saving.register_keras_serializable(package="keras_models")
class EncoderBlock(keras.layers.Layer):
    """BERT-style block. ``norm_first=False`` (post-norm, BERT) or ``True`` (pre-norm)."""

    def __init__(
        self,
        hidden_size,
        num_heads,
        intermediate_size,
        hidden_act="gelu",
        layer_norm_eps=1e-12,
        dropout=0.0,
        attention_dropout=0.0,
        norm_first=False,
        use_bias=True,
        kernel_initializer="glorot_uniform",
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.hidden_size = hidden_size
        self.num_heads = num_heads
        self.intermediate_size = intermediate_size
        self.hidden_act = hidden_act
        self.layer_norm_eps = layer_norm_eps
        self.dropout_rate = dropout
        self.attention_dropout = attention_dropout
        self.norm_first = norm_first
        self.use_bias = use_bias
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.act = get_activation(hidden_act)
        common = dict(dtype=self.dtype_policy)
        init = dict(kernel_initializer=self.kernel_initializer)
        self.attention = Attention(
            hidden_size, num_heads, use_bias=use_bias, dropout=attention_dropout,
            name="attention", **common, **init,
        )
        self.attention_norm = keras.layers.LayerNormalization(epsilon=layer_norm_eps, name="attention_norm", **common)
        self.intermediate = keras.layers.Dense(intermediate_size, use_bias=use_bias, name="intermediate", **common, **init)
        self.output_dense = keras.layers.Dense(hidden_size, use_bias=use_bias, name="output", **common, **init)
        self.output_norm = keras.layers.LayerNormalization(epsilon=layer_norm_eps, name="output_norm", **common)
        self.dropout = keras.layers.Dropout(dropout, **common)

    def build(self, input_shape):
        self.attention.build(input_shape)
        self.attention_norm.build(input_shape)
        self.intermediate.build(input_shape)
        self.output_dense.build(tuple(input_shape[:-1]) + (self.intermediate_size,))
        self.output_norm.build(input_shape)
        self.built = True

    def call(self, x, bias=None, training=False):
        if self.norm_first:
            h = x + self.dropout(self.attention(self.attention_norm(x), bias, training=training), training=training)
            f = self.output_dense(self.act(self.intermediate(self.output_norm(h))))
            return h + self.dropout(f, training=training)
        h = self.attention_norm(x + self.dropout(self.attention(x, bias, training=training), training=training))
        f = self.output_dense(self.act(self.intermediate(h)))
        return self.output_norm(h + self.dropout(f, training=training))

    def get_config(self):
        config = super().get_config()
        config.update(
            hidden_size=self.hidden_size, num_heads=self.num_heads,
            intermediate_size=self.intermediate_size, hidden_act=self.hidden_act,
            layer_norm_eps=self.layer_norm_eps, dropout=self.dropout_rate,
            attention_dropout=self.attention_dropout, norm_first=self.norm_first,
            use_bias=self.use_bias,
            kernel_initializer=keras.initializers.serialize(self.kernel_initializer),
        )
        return config

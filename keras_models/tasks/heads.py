"""Head layers shared by families (the HF tensor names live in the task classes)."""

import keras
from keras import ops

from keras_models.layers.activations import get_activation


@keras.saving.register_keras_serializable(package="keras_models")
class MaskedLMHead(keras.layers.Layer):
    """dense -> activation -> LayerNorm -> vocabulary projection (tied or own) + bias.

    ``projection_size`` is the dense layer's width (default ``hidden_size``): factorised-embedding
    models (ALBERT, ELECTRA's generator, RemBERT) project to their embedding width first.
    """

    def __init__(self, hidden_size, vocab_size, hidden_act="gelu", layer_norm_eps=1e-12,
                 tied=True, kernel_initializer="glorot_uniform", projection_size=None, **kwargs):
        super().__init__(**kwargs)
        self.hidden_size, self.vocab_size = hidden_size, vocab_size
        self.projection_size = projection_size or hidden_size
        self.hidden_act, self.layer_norm_eps, self.tied = hidden_act, layer_norm_eps, tied
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.act = get_activation(hidden_act)
        self.dense = keras.layers.Dense(self.projection_size, name="dense", dtype=self.dtype_policy,
                                        kernel_initializer=self.kernel_initializer)
        self.norm = keras.layers.LayerNormalization(epsilon=layer_norm_eps, name="norm", dtype=self.dtype_policy)

    def build(self, input_shape):
        self.dense.build(input_shape)
        self.norm.build(tuple(input_shape[:-1]) + (self.projection_size,))
        if not self.tied:
            self.decoder = self.add_weight(name="decoder", shape=(self.vocab_size, self.projection_size),
                                           initializer=self.kernel_initializer)
        self.bias = self.add_weight(name="bias", shape=(self.vocab_size,), initializer="zeros")
        self.built = True

    def call(self, x, embeddings=None):
        h = self.norm(self.act(self.dense(x)))
        table = embeddings if self.tied else self.decoder
        return ops.matmul(h, ops.transpose(ops.cast(table, h.dtype))) + ops.cast(self.bias, h.dtype)

    def get_config(self):
        c = super().get_config()
        c.update(hidden_size=self.hidden_size, vocab_size=self.vocab_size, hidden_act=self.hidden_act,
                 layer_norm_eps=self.layer_norm_eps, tied=self.tied, projection_size=self.projection_size,
                 kernel_initializer=keras.initializers.serialize(self.kernel_initializer))
        return c


@keras.saving.register_keras_serializable(package="keras_models")
class ClassificationHead(keras.layers.Layer):
    """[dense -> activation ->] dropout -> out. Applied to an already pooled vector."""

    def __init__(self, hidden_size, num_classes, inner_dense=True, activation="tanh", dropout=0.1,
                 input_dropout=True, kernel_initializer="glorot_uniform", **kwargs):
        super().__init__(**kwargs)
        self.input_dropout = input_dropout
        self.hidden_size, self.num_classes = hidden_size, num_classes
        self.inner_dense, self.activation, self.dropout_rate = inner_dense, activation, dropout
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        common = dict(dtype=self.dtype_policy, kernel_initializer=self.kernel_initializer)
        self.dense = keras.layers.Dense(hidden_size, name="dense", **common) if inner_dense else None
        self.act = get_activation(activation)
        self.dropout = keras.layers.Dropout(dropout, dtype=self.dtype_policy)
        self.out = keras.layers.Dense(num_classes, name="out", **common)

    def build(self, input_shape):
        if self.dense is not None:
            self.dense.build(input_shape)
        self.out.build(tuple(input_shape[:-1]) + (self.hidden_size,))
        self.built = True

    def call(self, x, training=False):
        if self.dense is not None:
            if self.input_dropout:
                x = self.dropout(x, training=training)
            x = self.act(self.dense(x))
        return self.out(self.dropout(x, training=training))

    def get_config(self):
        c = super().get_config()
        c.update(hidden_size=self.hidden_size, num_classes=self.num_classes,
                 inner_dense=self.inner_dense, activation=self.activation, dropout=self.dropout_rate,
                 input_dropout=self.input_dropout,
                 kernel_initializer=keras.initializers.serialize(self.kernel_initializer))
        return c

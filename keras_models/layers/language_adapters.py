"""A bank of bottleneck adapters (dense -> activation -> dense), one per language, chosen per
example (``ids`` of shape (batch,)) or per token (``ids`` of shape (batch, seq)) (X-MOD)."""

import keras
from keras import ops

from keras_models.layers.activations import get_activation


@keras.saving.register_keras_serializable(package="keras_models")
class LanguageAdapters(keras.layers.Layer):
    def __init__(self, hidden_size, bottleneck_size, num_languages, activation="gelu",
                 kernel_initializer="glorot_uniform", **kwargs):
        super().__init__(**kwargs)
        self.hidden_size, self.bottleneck_size = hidden_size, bottleneck_size
        self.num_languages, self.activation = num_languages, activation
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.act = get_activation(activation)
        dense = dict(dtype=self.dtype_policy, kernel_initializer=self.kernel_initializer)
        self.down = [keras.layers.Dense(bottleneck_size, name=f"down_{i}", **dense) for i in range(num_languages)]
        self.up = [keras.layers.Dense(hidden_size, name=f"up_{i}", **dense) for i in range(num_languages)]

    def build(self, input_shape):
        for down, up in zip(self.down, self.up):
            down.build(input_shape)
            up.build(tuple(input_shape[:-1]) + (self.bottleneck_size,))
        self.built = True

    def call(self, x, ids):
        ids = ops.cast(ids, "int32")
        if len(ids.shape) == 2:  # per token: a mixture of every adapter, weighted one-hot
            onehot = ops.cast(ops.one_hot(ids, self.num_languages), x.dtype)
            out = 0.0
            for i, (down, up) in enumerate(zip(self.down, self.up)):
                out = out + onehot[..., i : i + 1] * up(self.act(down(x)))
            return out

        def stacked(layers, attr):  # (languages, ...) gathered per example
            value = ops.concatenate([ops.expand_dims(getattr(layer, attr), 0) for layer in layers], axis=0)
            return ops.cast(ops.take(value, ids, axis=0), x.dtype)

        h = ops.einsum("bth,bhk->btk", x, stacked(self.down, "kernel")) + stacked(self.down, "bias")[:, None]
        h = self.act(h)
        return ops.einsum("btk,bkh->bth", h, stacked(self.up, "kernel")) + stacked(self.up, "bias")[:, None]

    def get_config(self):
        config = super().get_config()
        config.update(hidden_size=self.hidden_size, bottleneck_size=self.bottleneck_size,
                      num_languages=self.num_languages, activation=self.activation,
                      kernel_initializer=keras.initializers.serialize(self.kernel_initializer))
        return config

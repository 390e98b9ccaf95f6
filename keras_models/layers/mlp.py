"""Feed-forward blocks: plain (up -> act -> down) or gated (act(gate) * up -> down)."""

import keras

from keras_models.layers.activations import activated_projection, get_activation


@keras.saving.register_keras_serializable(package="keras_models")
class MLP(keras.layers.Layer):
    def __init__(self, hidden_size, intermediate_size, activation="silu", gated=True, use_bias=False,
                 kernel_initializer="glorot_uniform", **kwargs):
        super().__init__(**kwargs)
        self.hidden_size = hidden_size
        self.intermediate_size = intermediate_size
        self.activation = activation
        self.gated = gated
        self.use_bias = use_bias
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.act = get_activation(activation)
        d = dict(use_bias=use_bias, dtype=self.dtype_policy, kernel_initializer=self.kernel_initializer)
        self.gate = keras.layers.Dense(intermediate_size, name="gate", **d) if gated else None
        self.up = keras.layers.Dense(intermediate_size, name="up", **d)
        self.down = keras.layers.Dense(hidden_size, name="down", **d)

    def build(self, input_shape):
        if self.gate is not None:
            self.gate.build(input_shape)
        self.up.build(input_shape)
        self.down.build(tuple(input_shape[:-1]) + (self.intermediate_size,))
        self.built = True

    def call(self, x):
        if self.gate is not None:
            return self.down(activated_projection(self.gate, x, self.activation, self.act) * self.up(x))
        return self.down(activated_projection(self.up, x, self.activation, self.act))

    def get_config(self):
        config = super().get_config()
        config.update(hidden_size=self.hidden_size, intermediate_size=self.intermediate_size,
                      activation=self.activation, gated=self.gated, use_bias=self.use_bias,
                      kernel_initializer=keras.initializers.serialize(self.kernel_initializer))
        return config

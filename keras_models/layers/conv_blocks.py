"""Convolutional building blocks (channels_last): ConvNeXT block with optional layer scale / GRN,
conv + norm + activation units (ResNet-style)."""

import keras
from keras import ops

from keras_models.layers.activations import get_activation


@keras.saving.register_keras_serializable(package="keras_models")
class GlobalResponseNorm(keras.layers.Layer):
    """ConvNeXT V2 GRN over (batch, H, W, C): x + gamma * (x * N(x)) + beta, N = L2 over space
    divided by its channel mean (+ ``eps``)."""

    def __init__(self, dim, eps=1e-6, **kwargs):
        super().__init__(**kwargs)
        self.dim, self.eps = dim, eps

    def build(self, input_shape):
        self.gamma = self.add_weight(name="gamma", shape=(self.dim,), initializer="zeros")
        self.beta = self.add_weight(name="beta", shape=(self.dim,), initializer="zeros")
        self.built = True

    def call(self, x):
        g = ops.sqrt(ops.sum(ops.square(x), axis=(1, 2), keepdims=True))
        n = g / (ops.mean(g, axis=-1, keepdims=True) + self.eps)
        return ops.cast(self.gamma, x.dtype) * (x * n) + ops.cast(self.beta, x.dtype) + x

    def get_config(self):
        c = super().get_config()
        c.update(dim=self.dim, eps=self.eps)
        return c


@keras.saving.register_keras_serializable(package="keras_models")
class ConvNeXtBlock(keras.layers.Layer):
    """depthwise 7x7 -> LayerNorm -> Linear(4x) -> act [-> GRN] -> Linear [-> layer scale] + x."""

    def __init__(self, dim, hidden_act="gelu", layer_scale=None, grn=False, kernel_size=7, eps=1e-6,
                 mlp_ratio=4, **kwargs):
        super().__init__(**kwargs)
        self.dim, self.hidden_act, self.layer_scale, self.grn = dim, hidden_act, layer_scale, grn
        self.kernel_size, self.eps, self.mlp_ratio = kernel_size, eps, mlp_ratio
        common = dict(dtype=self.dtype_policy)
        self.dwconv = keras.layers.DepthwiseConv2D(kernel_size, padding="same", name="dwconv", **common)
        self.norm = keras.layers.LayerNormalization(epsilon=eps, name="norm", **common)
        self.pwconv1 = keras.layers.Dense(mlp_ratio * dim, name="pwconv1", **common)
        self.act = get_activation(hidden_act)
        self.grn_layer = GlobalResponseNorm(mlp_ratio * dim, name="grn", **common) if grn else None
        self.pwconv2 = keras.layers.Dense(dim, name="pwconv2", **common)

    def build(self, input_shape):
        self.dwconv.build(input_shape)
        self.norm.build(input_shape)
        self.pwconv1.build(input_shape)
        inner = tuple(input_shape[:-1]) + (self.mlp_ratio * self.dim,)
        if self.grn_layer is not None:
            self.grn_layer.build(inner)
        self.pwconv2.build(inner)
        self.gamma = (self.add_weight(name="layer_scale", shape=(self.dim,),
                                      initializer=keras.initializers.Constant(self.layer_scale))
                      if self.layer_scale else None)
        self.built = True

    def call(self, x):
        h = self.act(self.pwconv1(self.norm(self.dwconv(x))))
        if self.grn_layer is not None:
            h = self.grn_layer(h)
        h = self.pwconv2(h)
        if self.gamma is not None:
            h = h * ops.cast(self.gamma, h.dtype)
        return x + h

    def get_config(self):
        c = super().get_config()
        c.update(dim=self.dim, hidden_act=self.hidden_act, layer_scale=self.layer_scale, grn=self.grn,
                 kernel_size=self.kernel_size, eps=self.eps, mlp_ratio=self.mlp_ratio)
        return c


@keras.saving.register_keras_serializable(package="keras_models")
class ConvNormAct(keras.layers.Layer):
    """Conv2D (torch-style symmetric padding ``kernel_size // 2``, no bias) -> BatchNorm -> act."""

    def __init__(self, filters, kernel_size=3, strides=1, activation="relu", eps=1e-5, use_bias=False,
                 padding=None, **kwargs):
        super().__init__(**kwargs)
        self.filters, self.kernel_size, self.strides = filters, kernel_size, strides
        self.activation, self.eps, self.use_bias = activation, eps, use_bias
        self.padding = kernel_size // 2 if padding is None else padding
        common = dict(dtype=self.dtype_policy)
        self.pad = keras.layers.ZeroPadding2D(self.padding, **common) if self.padding else None
        self.conv = keras.layers.Conv2D(filters, kernel_size, strides=strides, use_bias=use_bias,
                                        name="conv", **common)
        self.norm = keras.layers.BatchNormalization(epsilon=eps, momentum=0.9, name="norm", **common)
        self.act = get_activation(activation) if activation else None

    def build(self, input_shape):
        shape = tuple(input_shape)
        if self.pad is not None:
            shape = self.pad.compute_output_shape(shape)
        self.conv.build(shape)
        self.norm.build(self.conv.compute_output_shape(shape))
        self.built = True

    def call(self, x, training=False):
        if self.pad is not None:
            x = self.pad(x)
        x = self.norm(self.conv(x), training=training)
        return self.act(x) if self.act is not None else x

    def get_config(self):
        c = super().get_config()
        c.update(filters=self.filters, kernel_size=self.kernel_size, strides=self.strides,
                 activation=self.activation, eps=self.eps, use_bias=self.use_bias, padding=self.padding)
        return c

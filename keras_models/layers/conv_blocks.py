"""Convolutional building blocks (channels_last): ConvNeXT block with optional layer scale / GRN,
conv + norm + activation units (ResNet-style; grouped / depthwise / weight-standardised convs,
BatchNorm or GroupNorm, PyTorch or TensorFlow "SAME" padding), squeeze-and-excitation."""

import keras
from keras import ops

from keras_models.layers.activations import get_activation


def grouped_conv(x, kernel, groups, strides=1, padding="valid"):
    """Grouped convolution of channels_last ``x`` with ``kernel`` (*k, in // groups, out): one
    ``ops.conv`` (torch / jax run the groups in one kernel); under tensorflow, whose CPU
    convolutions reject groups, one conv per group, concatenated."""
    if groups == 1 or keras.backend.backend() != "tensorflow":
        return ops.conv(x, kernel, strides=strides, padding=padding)
    cin, cout = x.shape[-1] // groups, kernel.shape[-1] // groups
    return ops.concatenate([ops.conv(x[..., g * cin:(g + 1) * cin], kernel[..., g * cout:(g + 1) * cout],
                                     strides=strides, padding=padding) for g in range(groups)], axis=-1)


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


def make_divisible(value, divisor=8, min_value=None):
    """Round a channel count to a multiple of ``divisor`` (at least ``min_value``, default
    ``divisor``; never more than 10% below ``value``) -- the MobileNet / EfficientNet / BiT rule."""
    new = max(divisor if min_value is None else min_value, int(value + divisor / 2) // divisor * divisor)
    return int(new + divisor if new < 0.9 * value else new)


def same_padding(size, kernel_size, stride=1, dilation=1):
    """TensorFlow "SAME" padding of one spatial axis: (before, after), the odd pixel after."""
    k = (kernel_size - 1) * dilation + 1
    total = max((-(-size // stride) - 1) * stride + k - size, 0)
    return total // 2, total - total // 2


def pad_spatial(x, padding, value=0.0):
    """Pad (batch, H, W, C) by ``((top, bottom), (left, right))`` with ``value``."""
    (t, b), (l, r) = padding
    if not (t or b or l or r):
        return x
    return ops.pad(x, ((0, 0), (t, b), (l, r), (0, 0)), constant_values=value)


def resolve_padding(padding, x, kernel_size, stride, dilation=1):
    """``padding``: int (symmetric, PyTorch), ``((t, b), (l, r))`` or ``"same"`` (TensorFlow SAME,
    computed from the static input size) -> ``((t, b), (l, r))``."""
    if padding == "same":
        return (same_padding(x.shape[1], kernel_size, stride, dilation),
                same_padding(x.shape[2], kernel_size, stride, dilation))
    if isinstance(padding, int):
        return (padding, padding), (padding, padding)
    return tuple(tuple(p) for p in padding)


@keras.saving.register_keras_serializable(package="keras_models")
class WSConv2D(keras.layers.Conv2D):
    """Conv2D with weight standardisation (BiT): each output filter's kernel is normalised to zero
    mean, unit (biased) variance over (kh, kw, in) with ``ws_eps`` before the convolution."""

    def __init__(self, *args, ws_eps=1e-8, **kwargs):
        super().__init__(*args, **kwargs)
        self.ws_eps = ws_eps

    def convolution_op(self, inputs, kernel):
        mean = ops.mean(kernel, axis=(0, 1, 2), keepdims=True)
        var = ops.mean(ops.square(kernel - mean), axis=(0, 1, 2), keepdims=True)
        return super().convolution_op(inputs, (kernel - mean) * ops.rsqrt(var + self.ws_eps))

    def get_config(self):
        c = super().get_config()
        c.update(ws_eps=self.ws_eps)
        return c


@keras.saving.register_keras_serializable(package="keras_models")
class SqueezeExcite(keras.layers.Layer):
    """x * sigmoid(expand(act(reduce(mean over space of x)))), reduce/expand 1x1 convs with bias."""

    def __init__(self, dim, reduced_dim, activation="relu", **kwargs):
        super().__init__(**kwargs)
        self.dim, self.reduced_dim, self.activation = dim, reduced_dim, activation
        common = dict(dtype=self.dtype_policy)
        self.reduce = keras.layers.Conv2D(reduced_dim, 1, name="reduce", **common)
        self.expand = keras.layers.Conv2D(dim, 1, name="expand", **common)
        self.act = get_activation(activation)

    def build(self, input_shape):
        self.reduce.build((None, 1, 1, self.dim))
        self.expand.build((None, 1, 1, self.reduced_dim))
        self.built = True

    def call(self, x):
        s = self.expand(self.act(self.reduce(ops.mean(x, axis=(1, 2), keepdims=True))))
        return x * ops.sigmoid(s)

    def get_config(self):
        c = super().get_config()
        c.update(dim=self.dim, reduced_dim=self.reduced_dim, activation=self.activation)
        return c


@keras.saving.register_keras_serializable(package="keras_models")
class ConvNormAct(keras.layers.Layer):
    """Conv2D (no bias by default) -> norm -> act.

    ``padding``: None = PyTorch-style symmetric ``kernel_size // 2`` (times ``dilation``); an int;
    ``((top, bottom), (left, right))``; or ``"same"`` = TensorFlow SAME from the input size.
    ``groups``: grouped conv; ``depthwise=True``: one filter per channel (DepthwiseConv2D).
    ``norm``: ``"batch"`` (BatchNorm, ``eps``), ``"group"`` (GroupNorm with ``norm_groups``) or None.
    ``weight_standardization``: epsilon of a weight-standardised conv (:class:`WSConv2D`), or None.
    """

    def __init__(self, filters, kernel_size=3, strides=1, activation="relu", eps=1e-5, use_bias=False,
                 padding=None, groups=1, dilation=1, depthwise=False, norm="batch", norm_groups=32,
                 weight_standardization=None, **kwargs):
        super().__init__(**kwargs)
        self.filters, self.kernel_size, self.strides = filters, kernel_size, strides
        self.activation, self.eps, self.use_bias = activation, eps, use_bias
        self.groups, self.dilation, self.depthwise = groups, dilation, depthwise
        self.norm_type, self.norm_groups, self.weight_standardization = norm, norm_groups, weight_standardization
        if isinstance(padding, (list, tuple)):
            padding = tuple(tuple(p) for p in padding)
        self.padding = (kernel_size // 2) * dilation if padding is None else padding
        common = dict(dtype=self.dtype_policy)
        conv_kw = dict(strides=strides, use_bias=use_bias, dilation_rate=dilation, name="conv", **common)
        if depthwise:
            self.conv = keras.layers.DepthwiseConv2D(kernel_size, **conv_kw)
        elif weight_standardization is not None:
            self.conv = WSConv2D(filters, kernel_size, groups=groups, ws_eps=weight_standardization, **conv_kw)
        else:
            self.conv = keras.layers.Conv2D(filters, kernel_size, groups=groups, **conv_kw)
        if norm == "batch":
            self.norm = keras.layers.BatchNormalization(epsilon=eps, momentum=0.9, name="norm", **common)
        elif norm == "group":
            self.norm = keras.layers.GroupNormalization(norm_groups, epsilon=eps, name="norm", **common)
        elif norm is None:
            self.norm = None
        else:
            raise ValueError(f"ConvNormAct: norm must be 'batch', 'group' or None, got {norm!r}")
        self.act = get_activation(activation) if activation else None

    def build(self, input_shape):
        self.conv.build((None, None, None, input_shape[-1]))
        if self.norm is not None:
            self.norm.build((None, None, None, self.filters))
        self.built = True

    def call(self, x, training=False, residual=None, post_activation=None):
        """``residual``: added after the activation (a ResNet layer's last unit, built with
        ``activation=None``), followed by the ``post_activation`` name (e.g. ``"relu"``) if given."""
        pad = resolve_padding(self.padding, x, self.kernel_size, self.strides, self.dilation)
        fused = self._torch_fused(x, pad, training, residual, post_activation)
        if fused is not None:
            return fused
        x = self.conv(pad_spatial(x, pad))
        if self.norm is not None:
            x = self.norm(x, training=training)
        x = self.act(x) if self.act is not None else x
        if residual is None:
            return x
        x = x + residual
        return get_activation(post_activation)(x) if post_activation else x

    def _torch_fused(self, x, pad, training, residual, post_activation):
        """Torch inference (``torch_kernels.FAST_CONV2D``): conv + frozen BatchNorm (folded into the
        conv's cached weights) + ReLU [+ residual + ReLU] as one oneDNN call; None where it does not
        apply (then the Keras path runs, with the same values up to float rounding)."""
        from keras_models import torch_kernels as tk

        if (training or type(self.conv) is not keras.layers.Conv2D or self.norm_type not in ("batch", None)
                or not tk.torch_fused_conv_ready(x)):
            return None
        (t, b), (l, r) = pad
        if t != b or l != r:
            return None
        if residual is None:
            if self.activation not in (None, "relu"):
                return None
            relu = self.activation == "relu"
        else:
            if self.activation is not None or post_activation not in (None, "relu"):
                return None
            relu = post_activation == "relu"
        conv, norm = self.conv, self.norm
        sources = [conv.kernel] + ([conv.bias] if conv.use_bias else [])
        if norm is not None:
            sources += [v for v in (norm.gamma if norm.scale else None, norm.beta if norm.center else None,
                                    norm.moving_mean, norm.moving_variance) if v is not None]

        def folded():
            value = (lambda v: None if v is None else v.value)
            if norm is None:
                return tk.torch_folded_conv_weights(conv.kernel.value, value(conv.bias) if conv.use_bias else None)
            return tk.torch_folded_conv_weights(
                conv.kernel.value, value(conv.bias) if conv.use_bias else None,
                value(norm.gamma) if norm.scale else None, value(norm.beta) if norm.center else None,
                norm.moving_mean.value, norm.moving_variance.value, norm.epsilon)

        weight, bias = tk.inference_cache(self, "fused_conv", sources, folded)
        strides = (self.strides,) * 2 if isinstance(self.strides, int) else tuple(self.strides)
        dilation = (self.dilation,) * 2 if isinstance(self.dilation, int) else tuple(self.dilation)
        return tk.torch_fused_conv2d(x, weight, bias, strides, (t, l), dilation, self.groups, relu, residual)

    def get_config(self):
        c = super().get_config()
        c.update(filters=self.filters, kernel_size=self.kernel_size, strides=self.strides,
                 activation=self.activation, eps=self.eps, use_bias=self.use_bias, padding=self.padding,
                 groups=self.groups, dilation=self.dilation, depthwise=self.depthwise, norm=self.norm_type,
                 norm_groups=self.norm_groups, weight_standardization=self.weight_standardization)
        return c


def conv_norm_rules(prefix, unit, conv="convolution", norm="normalization"):
    """Weight-map rules of a :class:`ConvNormAct` stored as ``{prefix}.{conv}`` + ``{prefix}.{norm}``."""
    from keras_models.layers.vision_embeddings import conv_rules, norm_rules

    r = conv_rules(f"{prefix}.{conv}", unit.conv)
    return r + (norm_rules(f"{prefix}.{norm}", unit.norm) if unit.norm is not None else [])


def squeeze_excite_rules(prefix, se, reduce="reduce", expand="expand"):
    from keras_models.layers.vision_embeddings import conv_rules

    return conv_rules(f"{prefix}.{reduce}", se.reduce) + conv_rules(f"{prefix}.{expand}", se.expand)


@keras.saving.register_keras_serializable(package="keras_models")
class InvertedResidual(keras.layers.Layer):
    """MobileNetV2 / EfficientNet (MBConv) block: [1x1 expand + BN + act] -> depthwise kxk (stride,
    dilation, ``depthwise_padding`` as in :class:`ConvNormAct`) + BN + act [-> squeeze-excite to
    ``se_channels`` with ``activation``] -> 1x1 project + BN [+ x when ``residual``]."""

    def __init__(self, in_channels, out_channels, expanded_channels, expand=True, kernel_size=3, stride=1,
                 dilation=1, depthwise_padding=None, residual=False, se_channels=None, activation="relu6",
                 eps=1e-3, **kwargs):
        super().__init__(**kwargs)
        if isinstance(depthwise_padding, (list, tuple)):
            depthwise_padding = tuple(tuple(p) for p in depthwise_padding)
        self.in_channels, self.out_channels, self.expanded_channels = in_channels, out_channels, expanded_channels
        self.expand, self.kernel_size, self.stride, self.dilation = expand, kernel_size, stride, dilation
        self.depthwise_padding, self.residual, self.se_channels = depthwise_padding, residual, se_channels
        self.activation, self.eps = activation, eps
        common = dict(dtype=self.dtype_policy, eps=eps)
        mid = expanded_channels if expand else in_channels
        self.expand_conv = (ConvNormAct(expanded_channels, 1, padding=0, activation=activation, name="expand",
                                        **common) if expand else None)
        self.depthwise = ConvNormAct(mid, kernel_size, stride, activation=activation, dilation=dilation,
                                     padding=depthwise_padding, depthwise=True, name="depthwise", **common)
        self.se = (SqueezeExcite(mid, se_channels, activation, name="se", dtype=self.dtype_policy)
                   if se_channels else None)
        self.project = ConvNormAct(out_channels, 1, padding=0, activation=None, name="project", **common)

    def call(self, x, training=False):
        h = x if self.expand_conv is None else self.expand_conv(x, training=training)
        h = self.depthwise(h, training=training)
        if self.se is not None:
            h = self.se(h)
        h = self.project(h, training=training)
        return x + h if self.residual else h

    def get_config(self):
        c = super().get_config()
        c.update(in_channels=self.in_channels, out_channels=self.out_channels,
                 expanded_channels=self.expanded_channels, expand=self.expand, kernel_size=self.kernel_size,
                 stride=self.stride, dilation=self.dilation, depthwise_padding=self.depthwise_padding,
                 residual=self.residual, se_channels=self.se_channels, activation=self.activation, eps=self.eps)
        return c

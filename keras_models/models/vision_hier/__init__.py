"""Small building blocks shared by the hierarchical / hybrid vision families (CvT, PVT,
FocalNet, MobileViTV2, SwiftFormer, LeViT, VAN, EfficientFormer): torch-style padded
convolutions, BatchNorm / LayerNorm with torch's epsilons, and multi-head attention over
(batch, tokens, dim) tensors. All channels_last."""

import keras
from keras import ops

from keras_models.layers.vision_embeddings import conv_rules, norm_rules

_ser = keras.saving.register_keras_serializable(package="keras_models")


@_ser
class TorchConv(keras.layers.Layer):
    """A Conv2D with torch's explicit symmetric zero ``padding``; ``depthwise=True`` for a
    convolution with ``groups`` = channels (torch weight (C, 1, k, k)); ``groups`` > 1 otherwise
    for a grouped one. ``rules(prefix)`` maps ``prefix.weight`` / ``prefix.bias``."""

    def __init__(self, filters, kernel_size, strides=1, padding=0, use_bias=True, depthwise=False, groups=1,
                 dilation=1, **kwargs):
        super().__init__(**kwargs)
        self.filters, self.kernel_size, self.strides, self.padding = filters, kernel_size, strides, padding
        self.use_bias, self.depthwise, self.groups, self.dilation = use_bias, depthwise, groups, dilation
        conv = dict(strides=strides, use_bias=use_bias, dilation_rate=dilation, name="conv", dtype=self.dtype_policy)
        self.conv = (keras.layers.DepthwiseConv2D(kernel_size, **conv) if depthwise
                     else keras.layers.Conv2D(filters, kernel_size, groups=groups, **conv))

    def build(self, input_shape):
        p = (self.padding, self.padding) if isinstance(self.padding, int) else tuple(self.padding)
        shape = list(input_shape)
        for axis, extra in ((1, p[0]), (2, p[1])):
            if shape[axis] is not None:
                shape[axis] += 2 * extra
        self.conv.build(tuple(shape))
        self.built = True

    def call(self, x):
        p = self.padding
        if p:
            p = (p, p) if isinstance(p, int) else tuple(p)
            x = ops.pad(x, ((0, 0), (p[0], p[0]), (p[1], p[1]), (0, 0)))
        return self.conv(x)

    def rules(self, prefix):
        return conv_rules(prefix, self.conv)

    def get_config(self):
        c = super().get_config()
        c.update(filters=self.filters, kernel_size=self.kernel_size, strides=self.strides, padding=self.padding,
                 use_bias=self.use_bias, depthwise=self.depthwise, groups=self.groups, dilation=self.dilation)
        return c


def batch_norm(name, dtype=None, epsilon=1e-5):
    """torch BatchNorm (eval: running statistics), channels_last."""
    return keras.layers.BatchNormalization(epsilon=epsilon, momentum=0.9, name=name, dtype=dtype)


def layer_norm(name, dtype=None, epsilon=1e-5):
    return keras.layers.LayerNormalization(epsilon=epsilon, name=name, dtype=dtype)


def split_heads(x, heads):
    """(batch, tokens, heads * d) -> (batch, heads, tokens, d)."""
    d = x.shape[-1] // heads
    return ops.transpose(ops.reshape(x, (-1, x.shape[1], heads, d)), (0, 2, 1, 3))


def merge_heads(x):
    """(batch, heads, tokens, d) -> (batch, tokens, heads * d)."""
    h, d = x.shape[1], x.shape[3]
    return ops.reshape(ops.transpose(x, (0, 2, 1, 3)), (-1, x.shape[2], h * d))


def attend(q, k, v, scale, bias=None):
    """softmax(q k^T * scale [+ bias]) v over (batch, heads, tokens, d), in float32."""
    s = ops.einsum("bhqd,bhkd->bhqk", q, k) * scale
    if bias is not None:
        s = s + bias
    return ops.einsum("bhqk,bhkd->bhqd", ops.softmax(s, axis=-1), v)


def bn_rules(prefix, bn):
    return norm_rules(prefix, bn)


__all__ = ["TorchConv", "batch_norm", "layer_norm", "split_heads", "merge_heads", "attend", "bn_rules"]


def conv1x1_rules(prefix, dense, base=True):
    """A torch 1x1 Conv2d (out, in, 1, 1) held as a Dense kernel (in, out) on channels_last maps."""
    from keras_models.presets.weight_map import Chain, Reshape, Rule, Transpose

    cin, cout = dense.kernel.shape
    r = [Rule(prefix + ".weight", dense.kernel, Chain(Reshape((cout, cin, 1, 1), (cout, cin)), Transpose()), base=base)]
    if dense.use_bias:
        r.append(Rule(prefix + ".bias", dense.bias, base=base))
    return r


def pad_to_multiple(x, size):
    """Zero-pad a (batch, H, W, C) map on the bottom / right up to multiples of ``size``."""
    ph, pw = -x.shape[1] % size, -x.shape[2] % size
    return ops.pad(x, ((0, 0), (0, ph), (0, pw), (0, 0))) if ph or pw else x


__all__ += ["conv1x1_rules", "pad_to_multiple"]


def two_conv_stem(width, eps, dtype=None):
    """The stride-4 stem of EfficientFormer and SwiftFormer: a 3x3 stride-2 conv to half the width
    and BatchNorm, ReLU, then the same to the full width. Run it with :func:`run_stem_and_stages`."""
    return [TorchConv(width // 2, 3, strides=2, padding=1, name="stem_conv1", dtype=dtype),
            batch_norm("stem_norm1", dtype=dtype, epsilon=eps),
            TorchConv(width, 3, strides=2, padding=1, name="stem_conv2", dtype=dtype),
            batch_norm("stem_norm2", dtype=dtype, epsilon=eps)]


def run_stem_and_stages(stem, stages, downs, x, training=False):
    """``stem`` (:func:`two_conv_stem`), then each stage's blocks and, after stage i, the
    downsampling ``downs[i] = (hf_index, conv, norm)`` where there is one. Returns (x, the map
    after each stage, before its downsampling)."""
    c1, n1, c2, n2 = stem
    x = ops.relu(n2(c2(ops.relu(n1(c1(x), training=training))), training=training))
    maps = []
    for i, blocks in enumerate(stages):
        for b in blocks:
            x = b(x, training=training)
        maps.append(x)
        if i in downs:
            _, conv, norm = downs[i]
            x = norm(conv(x), training=training)
    return x, maps

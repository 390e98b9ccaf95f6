"""Vision embeddings: patch embedding (channels_last) and position-grid interpolation.

Position grids are resized by a separable interpolation written as two small matrices computed
in numpy at trace time (image shapes are static), so the result is the same on every backend and
equals PyTorch's ``F.interpolate(mode="bicubic", align_corners=False)`` (``antialias`` False or
True) that checkpoints were trained and evaluated with.
"""

import math

import keras
import numpy as np
from keras import ops


def _cubic(x, a):
    x = np.abs(x)
    return np.where(
        x <= 1, ((a + 2) * x - (a + 3)) * x * x + 1,
        np.where(x < 2, (((x - 5) * x + 8) * x - 4) * a, 0.0),
    )


def bicubic_matrix(in_size, out_size, antialias=False):
    """(out_size, in_size) float64 matrix M with ``out = M @ in`` along one axis, matching torch.

    antialias=False: PyTorch's bicubic kernel (a=-0.75), taps clamped at the border.
    antialias=True: PyTorch's anti-aliased path (a=-0.5, support widened when downscaling, taps
    outside the image dropped and the weights renormalised).
    """
    scale = in_size / out_size
    m = np.zeros((out_size, in_size), np.float64)
    if not antialias:
        for i in range(out_size):
            src = (i + 0.5) * scale - 0.5
            base = math.floor(src)
            t = src - base
            for k in range(-1, 3):
                j = min(max(base + k, 0), in_size - 1)
                m[i, j] += _cubic(np.float64(t - k), -0.75)
        return m
    support = 2.0 * max(scale, 1.0)
    inv = 1.0 / max(scale, 1.0)
    for i in range(out_size):
        center = (i + 0.5) * scale
        lo = max(int(center - support + 0.5), 0)
        hi = min(int(center + support + 0.5), in_size)
        js = np.arange(lo, hi)
        w = _cubic((js - center + 0.5) * inv, -0.5)
        total = w.sum()
        m[i, lo:hi] = w / total if total != 0 else w
    return m


def bilinear_matrix(in_size, out_size):
    """(out_size, in_size) matrix of PyTorch's ``bilinear`` resize (align_corners=False)."""
    scale = in_size / out_size
    m = np.zeros((out_size, in_size), np.float64)
    for i in range(out_size):
        src = max((i + 0.5) * scale - 0.5, 0.0)
        i0 = min(int(math.floor(src)), in_size - 1)
        i1 = min(i0 + 1, in_size - 1)
        t = src - i0
        m[i, i0] += 1 - t
        m[i, i1] += t
    return m


def resize_grid(grid, out_h, out_w, antialias=False, mode="bicubic"):
    """grid: (1, h, w, d) tensor -> (1, out_h, out_w, d), resized as PyTorch's ``mode``."""
    h, w = int(grid.shape[1]), int(grid.shape[2])
    if (h, w) == (out_h, out_w):
        return grid
    if mode == "bilinear":
        mh, mw = bilinear_matrix(h, out_h), bilinear_matrix(w, out_w)
    else:
        mh, mw = bicubic_matrix(h, out_h, antialias), bicubic_matrix(w, out_w, antialias)
    mh = ops.convert_to_tensor(mh.astype("float32"))
    mw = ops.convert_to_tensor(mw.astype("float32"))
    g = ops.cast(grid, "float32")
    g = ops.einsum("ij,bjwd->biwd", mh, g)
    g = ops.einsum("kw,biwd->bikd", mw, g)
    return ops.cast(g, grid.dtype)


@keras.saving.register_keras_serializable(package="keras_models")
class PatchEmbedding(keras.layers.Layer):
    """(batch, H, W, C) -> (batch, H/p, W/p, hidden) with a stride-p convolution."""

    def __init__(self, hidden_size, patch_size, num_channels=3, use_bias=True,
                 kernel_initializer="glorot_uniform", **kwargs):
        super().__init__(**kwargs)
        self.hidden_size, self.num_channels, self.use_bias = hidden_size, num_channels, use_bias
        self.patch_size = tuple(patch_size) if isinstance(patch_size, (list, tuple)) else (patch_size,) * 2
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.projection = keras.layers.Conv2D(
            hidden_size, self.patch_size, strides=self.patch_size, padding="valid", use_bias=use_bias,
            data_format="channels_last", kernel_initializer=self.kernel_initializer,
            name="projection", dtype=self.dtype_policy,
        )

    def build(self, input_shape):
        self.projection.build(tuple(input_shape[:-1]) + (self.num_channels,))
        self.built = True

    def call(self, pixel_values):
        c = pixel_values.shape[-1]
        if c is not None and c != self.num_channels:
            raise ValueError(
                f"pixel_values have {c} channels (last axis, channels_last) but the model expects "
                f"{self.num_channels}"
            )
        return self.projection(pixel_values)

    def get_config(self):
        c = super().get_config()
        c.update(hidden_size=self.hidden_size, patch_size=list(self.patch_size),
                 num_channels=self.num_channels, use_bias=self.use_bias,
                 kernel_initializer=keras.initializers.serialize(self.kernel_initializer))
        return c


# torch Conv2d weight (out, in, kh, kw) <-> keras Conv2D kernel (kh, kw, in, out).
CONV_KERNEL_AXES = (2, 3, 1, 0)


def conv_rules(prefix, conv, base=True):
    """Weight-map rules of a Conv2D / DepthwiseConv2D named ``prefix`` in the checkpoint."""
    from keras_models.presets.weight_map import Rule, Transpose

    if isinstance(conv, keras.layers.DepthwiseConv2D):
        # torch depthwise (C, 1, kh, kw) <-> keras (kh, kw, C, 1)
        r = [Rule(f"{prefix}.weight", conv.kernel, Transpose((2, 3, 0, 1)), base=base)]
    else:
        r = [Rule(f"{prefix}.weight", conv.kernel, Transpose(CONV_KERNEL_AXES), base=base)]
    if conv.use_bias:
        r.append(Rule(f"{prefix}.bias", conv.bias, base=base))
    return r


def dense_rules(prefix, dense, base=True):
    from keras_models.presets.weight_map import TRANSPOSE, Rule

    r = [Rule(f"{prefix}.weight", dense.kernel, TRANSPOSE, base=base)]
    if dense.use_bias:
        r.append(Rule(f"{prefix}.bias", dense.bias, base=base))
    return r


def norm_rules(prefix, norm, base=True):
    """LayerNormalization (gamma/beta) or BatchNormalization (+ running stats)."""
    from keras_models.presets.weight_map import Rule

    if isinstance(norm, keras.layers.BatchNormalization):
        return [Rule(f"{prefix}.weight", norm.gamma, base=base), Rule(f"{prefix}.bias", norm.beta, base=base),
                Rule(f"{prefix}.running_mean", norm.moving_mean, base=base),
                Rule(f"{prefix}.running_var", norm.moving_variance, base=base)]
    r = [Rule(f"{prefix}.weight", norm.gamma, base=base)]
    if norm.beta is not None:
        r.append(Rule(f"{prefix}.bias", norm.beta, base=base))
    return r


__all__ = ["PatchEmbedding", "bicubic_matrix", "bilinear_matrix", "resize_grid", "conv_rules", "dense_rules", "norm_rules"]

"""Dense-prediction pieces shared by the depth families (channels_last throughout).

* :func:`resize` -- PyTorch's ``interpolate`` (bilinear with or without ``align_corners``, bicubic)
  as two small matrices computed in numpy at trace time, so every backend gives the same numbers.
* :class:`ReassembleNeck` -- DPT / Depth Anything's neck: ViT tokens at a few depths -> readout of
  the class token ("ignore" / "add" / "project") -> (batch, gh, gw, hidden) maps -> 1x1 projection
  and a resize per map (transposed conv for factors > 1, strided 3x3 conv below 1) -> 3x3 conv to
  ``fusion_hidden_size`` -> fusion stage (deepest first; pre-activation residual conv units,
  upsampling and a 1x1 projection per step).
* :func:`vit_hidden_states` -- Transformers' ``hidden_states`` of a :class:`ViTBackbone` (index 0:
  the embeddings, index i: after block i), optionally final-normed.
"""

import math

import keras
import numpy as np
from keras import ops

from keras_models.layers.activations import get_activation
from keras_models.layers.vision_embeddings import bicubic_matrix, bilinear_matrix, conv_rules, dense_rules, norm_rules
from keras_models.presets.weight_map import Rule, Transpose

_ser = keras.saving.register_keras_serializable(package="keras_models")


def aligned_bilinear_matrix(in_size, out_size):
    """(out, in) matrix of PyTorch's bilinear resize with ``align_corners=True``."""
    m = np.zeros((out_size, in_size), np.float64)
    scale = (in_size - 1) / (out_size - 1) if out_size > 1 else 0.0
    for i in range(out_size):
        src = i * scale
        i0 = min(int(math.floor(src)), in_size - 1)
        i1 = min(i0 + 1, in_size - 1)
        t = src - i0
        m[i, i0] += 1 - t
        m[i, i1] += t
    return m


def resize_matrix(in_size, out_size, mode):
    if mode == "bilinear_aligned":
        return aligned_bilinear_matrix(in_size, out_size)
    if mode == "bilinear":
        return bilinear_matrix(in_size, out_size)
    if mode == "bicubic":
        return bicubic_matrix(in_size, out_size)
    raise ValueError(f"unknown resize mode {mode!r}")


def resize(x, out_h, out_w, mode):
    """(batch, h, w, c) -> (batch, out_h, out_w, c) as ``torch.nn.functional.interpolate``:
    mode "bilinear" (align_corners=False), "bilinear_aligned" (align_corners=True) or "bicubic"."""
    h, w = int(x.shape[1]), int(x.shape[2])
    if (h, w) == (out_h, out_w) and mode != "bicubic":
        return x
    mh = ops.convert_to_tensor(resize_matrix(h, out_h, mode).astype("float32"))
    mw = ops.convert_to_tensor(resize_matrix(w, out_w, mode).astype("float32"))
    y = ops.cast(x, "float32")
    y = ops.einsum("ij,bjwc->biwc", mh, y)
    y = ops.einsum("kw,biwc->bikc", mw, y)
    return ops.cast(y, x.dtype)


def resize_numpy(depth, out_h, out_w, mode="bicubic"):
    """(h, w) numpy map -> (out_h, out_w), float32 result as PyTorch's interpolate."""
    d = np.asarray(depth, np.float64)
    out = resize_matrix(d.shape[0], out_h, mode) @ d @ resize_matrix(d.shape[1], out_w, mode).T
    return out.astype(np.float32)


def vit_hidden_states(vit, pixel_values, indices, final_norm=False, training=False):
    """Transformers' ``hidden_states[i]`` for ``i`` in ``indices`` (0 = embeddings, i = after block
    i), in increasing order, each (batch, tokens, hidden); and the (gh, gw) patch grid."""
    x, grid = vit.embed(pixel_values, training=training)
    wanted = sorted(set(indices))
    outs = {}
    if 0 in wanted:
        outs[0] = x
    for i, block in enumerate(vit.blocks[: max(wanted)]):
        x = block(x, training=training)
        if i + 1 in wanted:
            outs[i + 1] = x
    hs = [outs[i] for i in wanted]
    if final_norm:
        hs = [vit.final_norm(h) for h in hs]
    return hs, grid


def _conv(filters, kernel, name, use_bias=True, dtype=None, strides=1, padding="same"):
    return keras.layers.Conv2D(filters, kernel, strides=strides, padding=padding, use_bias=use_bias, name=name,
                               dtype=dtype)


def conv_transpose_rules(prefix, conv, base=False):
    # torch ConvTranspose2d weight (in, out, kh, kw) <-> keras Conv2DTranspose kernel (kh, kw, out, in)
    return [Rule(f"{prefix}.weight", conv.kernel, Transpose((2, 3, 1, 0)), base=base),
            Rule(f"{prefix}.bias", conv.bias, base=base)]


@_ser
class ResidualConvUnit(keras.layers.Layer):
    """x + conv(relu(conv(relu(x)))) with 3x3 convs (optionally each followed by BatchNorm)."""

    def __init__(self, channels, use_batch_norm=False, use_bias=True, **kwargs):
        super().__init__(**kwargs)
        self.channels, self.use_batch_norm, self.use_bias = channels, use_batch_norm, use_bias
        d = self.dtype_policy
        self.conv1 = _conv(channels, 3, "convolution1", use_bias, d)
        self.conv2 = _conv(channels, 3, "convolution2", use_bias, d)
        bn = lambda n: keras.layers.BatchNormalization(epsilon=1e-5, momentum=0.9, name=n, dtype=d)  # noqa: E731
        self.bn1, self.bn2 = (bn("batch_norm1"), bn("batch_norm2")) if use_batch_norm else (None, None)

    def build(self, input_shape):
        s = (None, None, None, self.channels)
        for layer in (self.conv1, self.conv2, self.bn1, self.bn2):
            if layer is not None:
                layer.build(s)
        self.built = True

    def call(self, x, training=False):
        y = self.conv1(ops.relu(x))
        if self.bn1 is not None:
            y = self.bn1(y, training=training)
        y = self.conv2(ops.relu(y))
        if self.bn2 is not None:
            y = self.bn2(y, training=training)
        return x + y

    def rules(self, prefix):
        r = conv_rules(prefix + ".convolution1", self.conv1, base=False)
        r += conv_rules(prefix + ".convolution2", self.conv2, base=False)
        if self.bn1 is not None:
            r += norm_rules(prefix + ".batch_norm1", self.bn1, base=False)
            r += norm_rules(prefix + ".batch_norm2", self.bn2, base=False)
        return r

    def get_config(self):
        c = super().get_config()
        c.update(channels=self.channels, use_batch_norm=self.use_batch_norm, use_bias=self.use_bias)
        return c


@_ser
class FusionLayer(keras.layers.Layer):
    """[x + unit1(residual)] -> unit2 -> bilinear upsample (x2, or to ``size``) -> 1x1 projection."""

    def __init__(self, channels, use_batch_norm=False, use_bias=True, **kwargs):
        super().__init__(**kwargs)
        self.channels, self.use_batch_norm, self.use_bias = channels, use_batch_norm, use_bias
        d = self.dtype_policy
        self.projection = _conv(channels, 1, "projection", True, d)
        self.unit1 = ResidualConvUnit(channels, use_batch_norm, use_bias, name="residual_layer1", dtype=d)
        self.unit2 = ResidualConvUnit(channels, use_batch_norm, use_bias, name="residual_layer2", dtype=d)

    def build(self, input_shape):
        s = (None, None, None, self.channels)
        self.projection.build(s)
        self.unit1.build(s)
        self.unit2.build(s)
        self.built = True

    def call(self, x, residual=None, size=None, training=False):
        if residual is not None:
            if tuple(residual.shape[1:3]) != tuple(x.shape[1:3]):
                residual = resize(residual, x.shape[1], x.shape[2], "bilinear")
            x = x + self.unit1(residual, training=training)
        x = self.unit2(x, training=training)
        h, w = size if size is not None else (2 * x.shape[1], 2 * x.shape[2])
        return self.projection(resize(x, h, w, "bilinear_aligned"))

    def rules(self, prefix):
        return (conv_rules(prefix + ".projection", self.projection, base=False)
                + self.unit1.rules(prefix + ".residual_layer1") + self.unit2.rules(prefix + ".residual_layer2"))

    def get_config(self):
        c = super().get_config()
        c.update(channels=self.channels, use_batch_norm=self.use_batch_norm, use_bias=self.use_bias)
        return c


@_ser
class ReassembleNeck(keras.layers.Layer):
    """ViT token sequences (batch, 1 + gh*gw, hidden) -> fused maps, deepest first.

    ``readout``: "ignore" (drop the class token), "add" (add it to every patch token) or
    "project" (concatenate it to every patch token, Dense back to ``hidden_size`` + ``act``).
    ``fuse_to_next``: each fusion step resizes to the next map's size (Depth Anything) instead of
    doubling (DPT). Call with ``grid=(gh, gw)``; returns the list of fused maps."""

    def __init__(self, hidden_size, neck_hidden_sizes, reassemble_factors, fusion_hidden_size, readout="ignore",
                 hidden_act="gelu", use_batch_norm=False, use_bias=True, fuse_to_next=False, **kwargs):
        super().__init__(**kwargs)
        self.hidden_size, self.neck_hidden_sizes = hidden_size, list(neck_hidden_sizes)
        self.reassemble_factors, self.fusion_hidden_size = list(reassemble_factors), fusion_hidden_size
        self.readout, self.hidden_act, self.fuse_to_next = readout, hidden_act, fuse_to_next
        self.use_batch_norm, self.use_bias = use_batch_norm, use_bias
        d = self.dtype_policy
        self.projections, self.resizers, self.readouts, self.convs, self.fusions = [], [], [], [], []
        for i, (c, f) in enumerate(zip(self.neck_hidden_sizes, self.reassemble_factors)):
            self.projections.append(_conv(c, 1, f"reassemble_{i}_projection", True, d))
            if f > 1:
                self.resizers.append(keras.layers.Conv2DTranspose(c, int(f), strides=int(f), padding="valid",
                                                                  name=f"reassemble_{i}_resize", dtype=d))
            elif f == 1:
                self.resizers.append(None)
            else:
                self.resizers.append(_conv(c, 3, f"reassemble_{i}_resize", True, d, strides=int(1 / f),
                                           padding="valid"))
            if readout == "project":
                self.readouts.append(keras.layers.Dense(hidden_size, name=f"readout_{i}", dtype=d))
            self.convs.append(_conv(fusion_hidden_size, 3, f"conv_{i}", False, d))
            self.fusions.append(FusionLayer(fusion_hidden_size, use_batch_norm, use_bias, name=f"fusion_{i}", dtype=d))
        self.act = get_activation(hidden_act)

    def build(self, input_shape=None):
        for i, c in enumerate(self.neck_hidden_sizes):
            self.projections[i].build((None, None, None, self.hidden_size))
            if self.resizers[i] is not None:
                self.resizers[i].build((None, None, None, c))
            if self.readouts:
                self.readouts[i].build((None, None, 2 * self.hidden_size))
            self.convs[i].build((None, None, None, c))
            self.fusions[i].build(None)
        self.built = True

    def reassemble(self, i, tokens, grid):
        gh, gw = grid
        cls, x = tokens[:, :1], tokens[:, 1:]
        if self.readout == "project":
            x = self.act(self.readouts[i](ops.concatenate([x, ops.repeat(cls, gh * gw, axis=1)], axis=-1)))
        elif self.readout == "add":
            x = x + cls
        x = self.projections[i](ops.reshape(x, (-1, gh, gw, self.hidden_size)))
        f, resizer = self.reassemble_factors[i], self.resizers[i]
        if resizer is None:
            return x
        if f < 1:
            x = ops.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
        return resizer(x)

    def call(self, hidden_states, grid, training=False):
        maps = [self.convs[i](self.reassemble(i, h, grid)) for i, h in enumerate(hidden_states)][::-1]
        fused, out = None, []
        for idx, (m, layer) in enumerate(zip(maps, self.fusions)):
            size = None
            if self.fuse_to_next and idx < len(maps) - 1:
                size = (maps[idx + 1].shape[1], maps[idx + 1].shape[2])
            fused = layer(m, size=size, training=training) if fused is None else layer(
                fused, m, size=size, training=training)
            out.append(fused)
        return out

    def rules(self, prefix="neck"):
        r = []
        for i in range(len(self.neck_hidden_sizes)):
            p = f"{prefix}.reassemble_stage.layers.{i}"
            r += conv_rules(p + ".projection", self.projections[i], base=False)
            resizer = self.resizers[i]
            if isinstance(resizer, keras.layers.Conv2DTranspose):
                r += conv_transpose_rules(p + ".resize", resizer)
            elif resizer is not None:
                r += conv_rules(p + ".resize", resizer, base=False)
            if self.readouts:
                r += dense_rules(f"{prefix}.reassemble_stage.readout_projects.{i}.0", self.readouts[i], base=False)
            r += conv_rules(f"{prefix}.convs.{i}", self.convs[i], base=False)
            r += self.fusions[i].rules(f"{prefix}.fusion_stage.layers.{i}")
        return r

    def get_config(self):
        c = super().get_config()
        c.update(hidden_size=self.hidden_size, neck_hidden_sizes=self.neck_hidden_sizes,
                 reassemble_factors=self.reassemble_factors, fusion_hidden_size=self.fusion_hidden_size,
                 readout=self.readout, hidden_act=self.hidden_act, use_batch_norm=self.use_batch_norm,
                 use_bias=self.use_bias, fuse_to_next=self.fuse_to_next)
        return c


__all__ = ["resize", "resize_numpy", "vit_hidden_states", "ResidualConvUnit", "FusionLayer", "ReassembleNeck",
           "conv_transpose_rules", "aligned_bilinear_matrix"]

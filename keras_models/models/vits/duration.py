"""VITS duration predictors: the deterministic convolutional one, and the stochastic one (a flow
of rational-quadratic splines over dilated depth-separable convolutions, run in reverse from noise)."""

import keras
import numpy as np
from keras import ops

from keras_models.presets.weight_map import Reshape, Rule
from keras_models.models.vits.layers import (VitsConv, _layer_norm, _norm_rules)


class VitsDDSConv(keras.layers.Layer):
    """Dilated depth-separable convolutions (depthwise dilated conv, LayerNorm, GELU, pointwise conv,
    LayerNorm, GELU, residual)."""

    def __init__(self, spec, **kwargs):
        super().__init__(**kwargs)
        s = spec
        c, k = s.hidden_size, s.duration_predictor_kernel_size
        self.channels, self.n = c, s.depth_separable_num_layers
        common = dict(dtype=self.dtype_policy)
        self.dilated = [VitsConv(c, c, k, dilation=k ** i, depthwise=True, name=f"dilated_{i}", **common)
                        for i in range(self.n)]
        self.pointwise = [VitsConv(c, c, 1, name=f"pointwise_{i}", **common) for i in range(self.n)]
        self.norms_1 = [_layer_norm(f"norm1_{i}", dtype=self.dtype_policy) for i in range(self.n)]
        self.norms_2 = [_layer_norm(f"norm2_{i}", dtype=self.dtype_policy) for i in range(self.n)]

    def build(self, input_shape=None):
        for i in range(self.n):
            self.dilated[i].build(None)
            self.pointwise[i].build(None)
            self.norms_1[i].build((None, None, self.channels))
            self.norms_2[i].build((None, None, self.channels))
        self.built = True

    def call(self, x, pmask, cond=None):
        if cond is not None:
            x = x + cond
        for i in range(self.n):
            h = ops.gelu(self.norms_1[i](self.dilated[i](x * pmask)), approximate=False)
            h = ops.gelu(self.norms_2[i](self.pointwise[i](h)), approximate=False)
            x = x + h
        return x * pmask

    def rules(self, p):
        r = []
        for i in range(self.n):
            r += self.dilated[i].rules(f"{p}convs_dilated.{i}") + self.pointwise[i].rules(f"{p}convs_pointwise.{i}")
            r += _norm_rules(f"{p}norms_1.{i}", self.norms_1[i]) + _norm_rules(f"{p}norms_2.{i}", self.norms_2[i])
        return r


def rational_quadratic_spline_inverse(x, widths, heights, derivatives, tail_bound, min_bin=1e-3, min_derivative=1e-3):
    """The inverse of an unconstrained rational-quadratic spline: ``x`` (...), unnormalised widths and
    heights (..., bins) and inner derivatives (..., bins - 1); identity outside [-tail, tail]."""
    bins = widths.shape[-1]
    inside = ops.logical_and(x >= -tail_bound, x <= tail_bound)
    xc = ops.clip(x, -tail_bound, tail_bound)
    edge = float(np.log(np.exp(1 - min_derivative) - 1))
    pad = ops.full_like(derivatives[..., :1], edge)
    derivatives = min_derivative + ops.softplus(ops.concatenate([pad, derivatives, pad], axis=-1))

    def knots(unnormalised):
        w = min_bin + (1 - min_bin * bins) * ops.softmax(unnormalised, axis=-1)
        cum = ops.concatenate([ops.zeros_like(w[..., :1]), ops.cumsum(w, axis=-1)], axis=-1)
        cum = 2 * tail_bound * cum - tail_bound
        cum = ops.concatenate([ops.full_like(cum[..., :1], -tail_bound), cum[..., 1:-1],
                               ops.full_like(cum[..., :1], tail_bound)], axis=-1)
        return cum, cum[..., 1:] - cum[..., :-1]

    cumwidths, widths = knots(widths)
    cumheights, heights = knots(heights)
    locations = ops.concatenate([cumheights[..., :-1], cumheights[..., -1:] + 1e-6], axis=-1)
    idx = ops.sum(ops.cast(xc[..., None] >= locations, "int32"), axis=-1, keepdims=True) - 1
    idx = ops.clip(idx, 0, bins - 1)

    def pick(t):
        return ops.take_along_axis(t, idx, axis=-1)[..., 0]

    delta = heights / widths
    in_cw, in_w, in_ch, in_h = pick(cumwidths), pick(widths), pick(cumheights), pick(heights)
    in_delta, d0, d1 = pick(delta), pick(derivatives[..., :-1]), pick(derivatives[..., 1:])
    i1 = d0 + d1 - 2 * in_delta
    i2 = xc - in_ch
    i3 = i2 * i1
    a = in_h * (in_delta - d0) + i3
    b = in_h * d0 - i3
    c = -in_delta * i2
    root = (2 * c) / (-b - ops.sqrt(ops.maximum(b * b - 4 * a * c, 0.0)))
    return ops.where(inside, root * in_w + in_cw, x)


class VitsConvFlow(keras.layers.Layer):
    def __init__(self, spec, **kwargs):
        super().__init__(**kwargs)
        s = spec
        self.filters, self.bins, self.tail = s.hidden_size, s.duration_predictor_flow_bins, s.duration_predictor_tail_bound
        common = dict(dtype=self.dtype_policy)
        self.conv_pre = VitsConv(1, s.hidden_size, 1, name="conv_pre", **common)
        self.conv_dds = VitsDDSConv(s, name="conv_dds", **common)
        self.conv_proj = VitsConv(s.hidden_size, 3 * self.bins - 1, 1, name="conv_proj", **common)

    def build(self, input_shape=None):
        for layer in (self.conv_pre, self.conv_dds, self.conv_proj):
            layer.build(None)
        self.built = True

    def call(self, x, pmask, cond):
        first, second = x[..., :1], x[..., 1:]
        h = self.conv_proj(self.conv_dds(self.conv_pre(first), pmask, cond)) * pmask  # (b, t, 3 * bins - 1)
        scale = float(np.sqrt(self.filters))
        nb = self.bins
        second = rational_quadratic_spline_inverse(second[..., 0], h[..., :nb] / scale, h[..., nb:2 * nb] / scale,
                                                   h[..., 2 * nb:], self.tail)
        return ops.concatenate([first, second[..., None]], axis=-1) * pmask

    def rules(self, p):
        return (self.conv_pre.rules(f"{p}conv_pre") + self.conv_dds.rules(f"{p}conv_dds.")
                + self.conv_proj.rules(f"{p}conv_proj"))


class VitsAffine(keras.layers.Layer):
    def build(self, input_shape=None):
        self.translate = self.add_weight(name="translate", shape=(2,), initializer="zeros")
        self.log_scale = self.add_weight(name="log_scale", shape=(2,), initializer="zeros")
        self.built = True

    def call(self, x, pmask, cond=None):
        return (x - self.translate) * ops.exp(-self.log_scale) * pmask

    def rules(self, p):
        return [Rule(f"{p}translate", self.translate, Reshape((2, 1), (2,))),
                Rule(f"{p}log_scale", self.log_scale, Reshape((2, 1), (2,)))]


class VitsStochasticDurationPredictor(keras.layers.Layer):
    """Run in reverse only (inference): noise through the reversed spline flows, the first channel
    is the log duration. The posterior flows exist for training checkpoints only."""

    def __init__(self, spec, **kwargs):
        super().__init__(**kwargs)
        s = spec
        c = s.hidden_size
        common = dict(dtype=self.dtype_policy)
        self.conv_pre = VitsConv(c, c, 1, name="conv_pre", **common)
        self.conv_proj = VitsConv(c, c, 1, name="conv_proj", **common)
        self.conv_dds = VitsDDSConv(s, name="conv_dds", **common)
        self.cond = VitsConv(s.speaker_embedding_size, c, 1, name="cond", **common) if s.speaker_embedding_size else None
        n = s.duration_predictor_num_flows
        self.flows = [VitsAffine(name="flow_0", **common)] + [VitsConvFlow(s, name=f"flow_{i + 1}", **common)
                                                              for i in range(n)]
        self.post_conv_pre = VitsConv(1, c, 1, name="post_conv_pre", **common)
        self.post_conv_proj = VitsConv(c, c, 1, name="post_conv_proj", **common)
        self.post_conv_dds = VitsDDSConv(s, name="post_conv_dds", **common)
        self.post_flows = [VitsAffine(name="post_flow_0", **common)] + [
            VitsConvFlow(s, name=f"post_flow_{i + 1}", **common) for i in range(n)]

    def _parts(self):
        return ([self.conv_pre, self.conv_proj, self.conv_dds] + ([self.cond] if self.cond is not None else [])
                + self.flows + [self.post_conv_pre, self.post_conv_proj, self.post_conv_dds] + self.post_flows)

    def build(self, input_shape=None):
        for layer in self._parts():
            layer.build(None)
        self.built = True

    def call(self, x, pmask, speaker=None, noise=None):
        x = self.conv_pre(x)
        if speaker is not None:
            x = x + self.cond(speaker)
        x = self.conv_proj(self.conv_dds(x, pmask)) * pmask
        flows = list(reversed(self.flows))
        flows = flows[:-2] + [flows[-1]]  # the first conv flow is skipped in reverse, as in VITS
        z = noise
        for flow in flows:
            z = flow(ops.flip(z, axis=-1), pmask, x)
        return z[..., :1]

    def rules(self, p):
        r = (self.conv_pre.rules(f"{p}conv_pre") + self.conv_proj.rules(f"{p}conv_proj")
             + self.conv_dds.rules(f"{p}conv_dds.") + self.post_conv_pre.rules(f"{p}post_conv_pre")
             + self.post_conv_proj.rules(f"{p}post_conv_proj") + self.post_conv_dds.rules(f"{p}post_conv_dds."))
        if self.cond is not None:
            r += self.cond.rules(f"{p}cond")
        for i, f in enumerate(self.flows):
            r += f.rules(f"{p}flows.{i}.")
        for i, f in enumerate(self.post_flows):
            r += f.rules(f"{p}post_flows.{i}.")
        return r


class VitsDurationPredictor(keras.layers.Layer):
    def __init__(self, spec, **kwargs):
        super().__init__(**kwargs)
        s = spec
        k, f = s.duration_predictor_kernel_size, s.duration_predictor_filter_channels
        common = dict(dtype=self.dtype_policy)
        self.f = f
        self.conv_1 = VitsConv(s.hidden_size, f, k, padding=(k // 2, k // 2), name="conv_1", **common)
        self.conv_2 = VitsConv(f, f, k, padding=(k // 2, k // 2), name="conv_2", **common)
        self.norm_1 = _layer_norm("norm_1", s.layer_norm_eps, self.dtype_policy)
        self.norm_2 = _layer_norm("norm_2", s.layer_norm_eps, self.dtype_policy)
        self.proj = VitsConv(f, 1, 1, name="proj", **common)
        self.cond = (VitsConv(s.speaker_embedding_size, s.hidden_size, 1, name="cond", **common)
                     if s.speaker_embedding_size else None)

    def build(self, input_shape=None):
        for layer in (self.conv_1, self.conv_2, self.proj) + ((self.cond,) if self.cond is not None else ()):
            layer.build(None)
        self.norm_1.build((None, None, self.f))
        self.norm_2.build((None, None, self.f))
        self.built = True

    def call(self, x, pmask, speaker=None, noise=None):
        if speaker is not None:
            x = x + self.cond(speaker)
        x = self.norm_1(ops.relu(self.conv_1(x * pmask)))
        x = self.norm_2(ops.relu(self.conv_2(x * pmask)))
        return self.proj(x * pmask) * pmask

    def rules(self, p):
        r = (self.conv_1.rules(f"{p}conv_1") + self.conv_2.rules(f"{p}conv_2") + self.proj.rules(f"{p}proj")
             + _norm_rules(f"{p}norm_1", self.norm_1) + _norm_rules(f"{p}norm_2", self.norm_2))
        return r + (self.cond.rules(f"{p}cond") if self.cond is not None else [])

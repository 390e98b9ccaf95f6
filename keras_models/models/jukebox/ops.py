"""Jukebox building blocks: weight holders with Transformers' parameter names, torch-layout conv
and layer-norm ops, and the VQ-VAE's resnet / decoder-block stacks."""

import math

import keras
from keras import ops

from keras_models.errors import ConfigError
from keras_models.presets.weight_map import Rule


def _act(name):
    acts = {"quick_gelu": lambda x: x * ops.sigmoid(1.702 * x), "relu": ops.relu,
            "gelu": lambda x: ops.gelu(x, approximate=False), "gelu_new": lambda x: ops.gelu(x, approximate=True)}
    if name not in acts:
        raise ConfigError(f"config.json: act_fn={name!r} is not supported (supported: {sorted(acts)})")
    return acts[name]


class _Params(keras.layers.Layer):
    """A holder of variables in Transformers' shapes, named by their checkpoint names."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.params = {}

    def param(self, hf_name, shape, init="zeros"):
        v = self.add_weight(name=hf_name.replace(".", "__"), shape=tuple(int(s) for s in shape), initializer=init)
        self.params[hf_name] = v
        return v

    def rules(self):
        return [Rule(name, v) for name, v in self.params.items()]


def conv1d(x, w, b, stride=1, pad=0, dilation=1):
    """torch Conv1d on (batch, time, channels); ``w`` is (out, in, k)."""
    if pad:
        x = ops.pad(x, ((0, 0), (pad, pad), (0, 0)))
    y = ops.conv(x, ops.transpose(w, (2, 1, 0)), strides=stride, padding="valid", dilation_rate=dilation)
    return y + b


def conv_transpose1d(x, w, b, stride, pad):
    """torch ConvTranspose1d on (batch, time, channels); ``w`` is (in, out, k)."""
    y = ops.conv_transpose(x, ops.transpose(w, (2, 1, 0)), strides=stride, padding="valid")
    if pad:
        y = y[:, pad:y.shape[1] - pad]
    return y + b


def layer_norm(x, w, b, eps=1e-5):
    mean = ops.mean(x, axis=-1, keepdims=True)
    var = ops.mean(ops.square(x - mean), axis=-1, keepdims=True)
    return (x - mean) / ops.sqrt(var + eps) * w + b


class _Net:
    """Builds Jukebox's conv stacks into a _Params holder and runs them."""

    def __init__(self, holder, cfg):
        self.h, self.cfg = holder, cfg

    def conv(self, name, cin, cout, k, transpose=False):
        shape = (cin, cout, k) if transpose else (cout, cin, k)
        w = self.h.param(name + ".weight", shape, "glorot_uniform")
        return (w, self.h.param(name + ".bias", (cout,)))

    def resnet(self, name, width, depth, reverse):
        c = self.cfg
        scale = 1.0 / math.sqrt(depth) if c.get("conv_res_scale") else 1.0
        blocks = []
        for d in range(depth):
            dd = d if c.get("res_dilation_cycle") is None else d % c["res_dilation_cycle"]
            blocks.append((c["res_dilation_growth_rate"] ** dd, scale))
        if reverse:
            blocks = blocks[::-1]
        hidden = c.get("res_convolution_multiplier", 1) * width
        out = []
        for i, (dil, s) in enumerate(blocks):
            p = f"{name}.resnet_block.{i}."
            out.append((dil, s, self.conv(p + "conv1d_1", width, hidden, 3), self.conv(p + "conv1d_2", hidden, width, 1)))
        return out

    @staticmethod
    def run_resnet(x, blocks):
        for dil, s, (w1, b1), (w2, b2) in blocks:
            h = conv1d(ops.relu(x), w1, b1, pad=dil, dilation=dil)
            x = x + s * conv1d(ops.relu(h), w2, b2)
        return x

    def decoder_block(self, name, embed_dim, width, depth, down_t, stride_t, reverse):
        blk = {"proj_in": self.conv(name + ".proj_in", embed_dim, width, 3), "stages": [], "stride": stride_t}
        for i in range(down_t):
            res = self.resnet(f"{name}.upsample_block.{2 * i}", width, depth, reverse)
            up = self.conv(f"{name}.upsample_block.{2 * i + 1}", width, width if i < down_t - 1 else embed_dim,
                           2 * stride_t, transpose=True)
            blk["stages"].append((res, up))
        return blk

    def run_decoder_block(self, x, blk):
        x = conv1d(x, *blk["proj_in"], pad=1)
        s = blk["stride"]
        for res, (w, b) in blk["stages"]:
            x = conv_transpose1d(self.run_resnet(x, res), w, b, s, s // 2)
        return x

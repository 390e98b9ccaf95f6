"""Rotary position embeddings: inverse frequencies for every Transformers RoPE type, cos/sin
tables from position ids, and rotation (half-split or interleaved pairs), with partial rotary.

Static types (default, linear, llama3, yarn) are computed once in numpy; ``dynamic`` (NTK) and
``longrope`` depend on the longest position in the batch and are computed in-graph.
"""

import math

import keras
import numpy as np
from keras import ops

from keras_models.errors import ConfigError
from keras_models.generation.backend import direct_ops

ROPE_TYPES = ("default", "linear", "dynamic", "llama3", "yarn", "longrope")


def _base_exponents(dim):
    return np.arange(0, dim, 2, dtype=np.float64) / dim


def _yarn(dim, base, p, max_pos):
    factor = p.get("factor")
    orig = p["original_max_position_embeddings"]
    if factor is None:
        factor = max_pos / orig

    def mscale(scale, m=1.0):
        return 1.0 if scale <= 1 else 0.1 * m * math.log(scale) + 1.0

    att = p.get("attention_factor")
    if att is None:
        if p.get("mscale") and p.get("mscale_all_dim"):
            att = mscale(factor, p["mscale"]) / mscale(factor, p["mscale_all_dim"])
        else:
            att = mscale(factor)
    beta_fast, beta_slow = p.get("beta_fast") or 32, p.get("beta_slow") or 1

    def corr(rot):
        return dim * math.log(orig / (rot * 2 * math.pi)) / (2 * math.log(base))

    low, high = corr(beta_fast), corr(beta_slow)
    if p.get("truncate", True):
        low, high = math.floor(low), math.ceil(high)
    low, high = max(low, 0), min(high, dim - 1)
    if low == high:
        high += 0.001
    ramp = np.clip((np.arange(dim // 2, dtype=np.float64) - low) / (high - low), 0, 1)
    pos = base ** _base_exponents(dim)
    extra = 1.0 - ramp
    inv = (1.0 / (factor * pos)) * (1 - extra) + (1.0 / pos) * extra
    return inv, float(att)


def _llama3(dim, base, p):
    inv = 1.0 / base ** _base_exponents(dim)
    factor, lo, hi = p["factor"], p["low_freq_factor"], p["high_freq_factor"]
    old = p["original_max_position_embeddings"]
    wavelen = 2 * math.pi / inv
    out = np.where(wavelen > old / lo, inv / factor, inv)
    smooth = (old / wavelen - lo) / (hi - lo)
    smoothed = (1 - smooth) * out / factor + smooth * out
    medium = ~(wavelen < old / hi) & ~(wavelen > old / lo)
    return np.where(medium, smoothed, out)


def static_inv_freq(dim, base, scaling, max_pos):
    """(inv_freq float64 array, attention factor) for the static part of a RoPE config."""
    p = dict(scaling or {})
    kind = p.get("rope_type", p.get("type", "default")) or "default"
    if kind not in ROPE_TYPES:
        raise ConfigError(f"config.json: unsupported rope_type {kind!r}; supported: {ROPE_TYPES}")
    inv = 1.0 / base ** _base_exponents(dim)
    if kind == "linear":
        return inv / p["factor"], 1.0
    if kind == "llama3":
        return _llama3(dim, base, p), 1.0
    if kind == "yarn":
        return _yarn(dim, base, p, max_pos)
    if kind == "longrope":
        orig = p["original_max_position_embeddings"]
        factor = p.get("factor") or max_pos / orig
        att = p.get("attention_factor")
        if att is None:
            att = 1.0 if factor <= 1.0 else math.sqrt(1 + math.log(factor) / math.log(orig))
        return inv, float(att)
    return inv, 1.0


def rotate(x, interleaved):
    """Rotate pairs: (x1, x2) -> (-x2, x1), pairs being halves or adjacent elements."""
    if interleaved:
        shape = ops.shape(x)
        pairs = ops.reshape(x, tuple(shape[:-1]) + (shape[-1] // 2, 2))
        out = ops.stack([-pairs[..., 1], pairs[..., 0]], axis=-1)
        return ops.reshape(out, shape)
    half = ops.shape(x)[-1] // 2
    return ops.concatenate([-x[..., half:], x[..., :half]], axis=-1)


def _rotate_torch(x, interleaved):
    """``rotate`` as torch tensor methods (the eager torch decode loop)."""
    import torch

    if interleaved:
        pairs = x.reshape(*x.shape[:-1], x.shape[-1] // 2, 2)
        return torch.stack([-pairs[..., 1], pairs[..., 0]], dim=-1).reshape(x.shape)
    half = x.shape[-1] // 2
    return torch.cat([-x[..., half:], x[..., :half]], dim=-1)


def apply_rotary(x, cos, sin, interleaved=False):
    """x: (b, t, heads, d); cos/sin: (b, t, rot). Rotates the first ``rot`` features of each head."""
    rot = cos.shape[-1]
    if direct_ops(x, cos, sin):  # the eager torch decode loop: the same arithmetic as torch tensor methods
        import torch

        cos, sin = cos[:, :, None, :].to(x.dtype), sin[:, :, None, :].to(x.dtype)
        if rot == x.shape[-1]:
            return x * cos + _rotate_torch(x, interleaved) * sin
        x_rot, x_pass = x[..., :rot], x[..., rot:]
        return torch.cat([x_rot * cos + _rotate_torch(x_rot, interleaved) * sin, x_pass], dim=-1)
    cos = ops.cast(cos[:, :, None, :], x.dtype)
    sin = ops.cast(sin[:, :, None, :], x.dtype)
    if rot == x.shape[-1]:
        return x * cos + rotate(x, interleaved) * sin
    x_rot, x_pass = x[..., :rot], x[..., rot:]
    return ops.concatenate([x_rot * cos + rotate(x_rot, interleaved) * sin, x_pass], axis=-1)


@keras.saving.register_keras_serializable(package="keras_models")
class RotaryEmbedding(keras.layers.Layer):
    """Computes (cos, sin), each (batch, seq, rotary_dim), from integer position ids."""

    def __init__(self, rotary_dim, base=10000.0, scaling=None, max_position_embeddings=2048,
                 interleaved=False, **kwargs):
        super().__init__(**kwargs)
        self.rotary_dim = int(rotary_dim)
        self.base = float(base)
        self.scaling = dict(scaling) if scaling else None
        self.max_position_embeddings = max_position_embeddings
        self.interleaved = interleaved
        inv, self.attention_factor = static_inv_freq(self.rotary_dim, self.base, self.scaling,
                                                     max_position_embeddings)
        self._inv = inv.astype("float32")
        self.kind = (self.scaling or {}).get("rope_type", (self.scaling or {}).get("type", "default"))

    def _inv_freq(self, positions):
        p, dim = self.scaling or {}, self.rotary_dim
        exps = ops.convert_to_tensor(_base_exponents(dim).astype("float32"))
        seq_len = ops.cast(ops.max(positions) + 1, "float32")
        if self.kind == "dynamic":
            mpe = float(self.max_position_embeddings)
            s = ops.maximum(seq_len, mpe)
            base = self.base * ((p["factor"] * s / mpe) - (p["factor"] - 1)) ** (dim / (dim - 2))
            return 1.0 / ops.power(base, exps)
        if self.kind == "longrope":
            long_f = ops.convert_to_tensor(np.asarray(p["long_factor"], "float32"))
            short_f = ops.convert_to_tensor(np.asarray(p["short_factor"], "float32"))
            use_long = seq_len > float(p["original_max_position_embeddings"])
            factors = ops.where(use_long, long_f, short_f)
            return 1.0 / (factors * ops.power(self.base, exps))
        return ops.convert_to_tensor(self._inv)

    def _torch_inv(self, device):
        """The static inverse frequencies as a float32 torch tensor on ``device``, converted once
        (cached against the numpy array it came from, so a recomputed ``_inv`` is never stale)."""
        cached = getattr(self, "_inv_torch", None)
        if cached is None or cached[0] is not self._inv or cached[1] != device:
            import torch

            cached = (self._inv, device, torch.as_tensor(self._inv, device=device))
            self._inv_torch = cached  # one tuple assignment: safe with concurrent readers
        return cached[2]

    def call(self, positions):
        if direct_ops(positions) and self.kind not in ("dynamic", "longrope"):
            # the eager torch decode loop: static frequencies converted once, the same arithmetic
            # as below in torch tensor methods (dynamic / longrope depend on the positions)
            import torch

            freqs = positions.float()[..., None] * self._torch_inv(positions.device)
            emb = freqs.repeat_interleave(2, dim=-1) if self.interleaved else torch.cat([freqs, freqs], dim=-1)
            cos, sin = emb.cos(), emb.sin()
            if self.attention_factor != 1.0:
                cos, sin = cos * self.attention_factor, sin * self.attention_factor
            return cos, sin
        inv = self._inv_freq(positions)
        freqs = ops.cast(positions, "float32")[..., None] * inv  # (b, t, rot/2)
        if self.interleaved:
            emb = ops.repeat(freqs, 2, axis=-1)
        else:
            emb = ops.concatenate([freqs, freqs], axis=-1)
        return ops.cos(emb) * self.attention_factor, ops.sin(emb) * self.attention_factor

    def get_config(self):
        config = super().get_config()
        config.update(rotary_dim=self.rotary_dim, base=self.base, scaling=self.scaling,
                      max_position_embeddings=self.max_position_embeddings,
                      interleaved=self.interleaved)
        return config

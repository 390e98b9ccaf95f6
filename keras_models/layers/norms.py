"""Normalisation layers for decoders: RMSNorm (with optional unit offset) and a norm factory."""

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="keras_models")
class RMSNorm(keras.layers.Layer):
    """Root-mean-square norm computed in float32.

    ``unit_offset=True`` stores the weight as an offset from one (Gemma: ``x * (1 + w)``, with the
    product taken in float32); otherwise the normalised input is cast back to the input dtype and
    then scaled (Llama). ``scale=False``: no weight at all (Llama 4's query / key norm).
    """

    def __init__(self, epsilon=1e-6, unit_offset=False, scale=True, **kwargs):
        super().__init__(**kwargs)
        self.epsilon = epsilon
        self.unit_offset = unit_offset
        self.scale = scale

    def build(self, input_shape):
        init = "zeros" if self.unit_offset else "ones"
        self.gamma = (self.add_weight(name="gamma", shape=(input_shape[-1],), initializer=init)
                      if self.scale else None)
        self.built = True

    def call(self, x):
        x32 = ops.cast(x, "float32")
        var = ops.mean(ops.square(x32), axis=-1, keepdims=True)
        y = x32 * ops.rsqrt(var + self.epsilon)
        if self.gamma is None:
            return ops.cast(y, x.dtype)
        if self.unit_offset:
            return ops.cast(y * (1.0 + ops.cast(self.gamma, "float32")), x.dtype)
        return ops.cast(y, x.dtype) * ops.cast(self.gamma, x.dtype)

    def get_config(self):
        config = super().get_config()
        config.update(epsilon=self.epsilon, unit_offset=self.unit_offset, scale=self.scale)
        return config


def make_norm(kind, epsilon, bias=True, unit_offset=False, name=None, dtype=None, scale=True):
    """``kind``: "rms" (RMSNorm; ``scale=False``: without a weight), "rms_unscaled" (the same,
    always without a weight) or "layer" (LayerNorm, ``bias`` toggles its beta and ``scale`` its
    gamma: ``scale=False, bias=False`` is a non-parametric LayerNorm, OLMo's)."""
    if kind in ("rms", "rms_unscaled"):
        return RMSNorm(epsilon=epsilon, unit_offset=unit_offset, scale=scale and kind == "rms", name=name,
                       dtype=dtype)
    if kind == "layer":
        return keras.layers.LayerNormalization(epsilon=epsilon, center=bias, scale=scale, name=name, dtype=dtype)
    raise ValueError(f"Unknown norm type {kind!r} (expected 'rms', 'rms_unscaled' or 'layer')")


def norm_weights(norm):
    """(gamma or None, beta or None) of a norm made by :func:`make_norm`."""
    return norm.gamma, getattr(norm, "beta", None)


@keras.saving.register_keras_serializable(package="keras_models")
class GroupNorm(keras.layers.GroupNormalization):
    """``keras.layers.GroupNormalization`` (same weights, config and values) that, under the torch
    backend on channels-last float32 inputs, runs torch's fused ``group_norm`` kernel on the free
    channels_last view of the input (one pass for statistics, one for the affine output) instead of
    Keras' reshape / moments / rsqrt / scale / shift ops (five or more passes over the activation:
    Wav2Vec2's per-channel norm over 512 channels x 32,000 frames). Equal up to float rounding;
    differentiable. Any other case runs Keras' own ``call``."""

    def call(self, inputs):
        if keras.backend.backend() != "torch":
            return super().call(inputs)
        import torch
        import torch.nn.functional as F

        x = inputs
        if (not isinstance(x, torch.Tensor) or x.dtype != torch.float32 or x.ndim not in (3, 4)
                or self.axis not in (-1, x.ndim - 1)):
            return super().call(inputs)
        view = x.unsqueeze(1) if x.ndim == 3 else x  # (N, L, C) -> (N, 1, L, C)
        view = view.permute(0, 3, 1, 2)  # channels_last memory when x is contiguous
        if not view.is_contiguous(memory_format=torch.channels_last):
            view = view.contiguous(memory_format=torch.channels_last)
        gamma = self.gamma.value if self.scale else None
        beta = self.beta.value if self.center else None
        y = F.group_norm(view, self.groups, gamma, beta, self.epsilon).permute(0, 2, 3, 1)
        y = y.squeeze(1) if x.ndim == 3 else y
        return ops.cast(y if y.is_contiguous() else y.contiguous(), self.compute_dtype)

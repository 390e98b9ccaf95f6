"""Activation functions by their Hugging Face config names (``hidden_act``), exact numerics."""

import math

import keras
from keras import ops

from keras_models import compat


_BACKEND = keras.config.backend()

# Activation names a GEMM can apply to its float32 accumulator before writing the output (a fused
# post-op: oneDNN through ``torch_gemm``, grappler's remapper through ``tf_kernels``):
# name -> (kind, GELU approximation).
FUSED_ACTIVATIONS = {"gelu": ("gelu", "none"), "gelu_python": ("gelu", "none"), "gelu_new": ("gelu", "tanh"),
                     "gelu_pytorch_tanh": ("gelu", "tanh"), "gelu_accurate": ("gelu", "tanh"),
                     "relu": ("relu", ""), "silu": ("silu", ""), "swish": ("silu", "")}
_SQRT_HALF = 1.0 / math.sqrt(2.0)


def _gelu(x):
    """Exact GELU, for half-precision inputs computed in float32 and rounded once: the precision
    PyTorch's kernel uses (jax's and TF's own bf16 gelu round every intermediate to bf16: up to
    0.009-0.01 off on inputs in [-8, 8]). Under tensorflow and jax as x / 2 * (1 + erf(x / sqrt 2)),
    PyTorch's formula: their own ``gelu`` is the erfc form, 3x slower in bfloat16 under TF and 2.6x
    slower in float32 under XLA:CPU (docs/performance.md, "Stop 27 (issue 21)", "Stop 29")."""
    if _BACKEND == "torch":
        return ops.gelu(x, approximate=False)
    dtype = keras.backend.standardize_dtype(x.dtype)
    y = ops.cast(x, "float32") if dtype in ("bfloat16", "float16") else x
    if _BACKEND == "tensorflow":
        y = 0.5 * y * (1.0 + ops.erf(y * _SQRT_HALF))
    elif keras.backend.standardize_dtype(y.dtype) == "float32":
        from keras_models.jax_kernels import erf_float32

        y = 0.5 * y * (1.0 + erf_float32(y * _SQRT_HALF))
    else:
        y = ops.gelu(y, approximate=False)
    return ops.cast(y, dtype)


def _gelu_tanh(x):
    return ops.gelu(x, approximate=True)


def _quick_gelu(x):
    return x * ops.sigmoid(1.702 * x)


def _gelu_fast(x):
    return 0.5 * x * (1.0 + ops.tanh(x * 0.7978845608 * (1.0 + 0.044715 * x * x)))


def _relu2(x):
    return ops.square(ops.relu(x))


def _laplace(x, mu=0.707107, sigma=0.282095):
    """MEGA's attention activation: the normal CDF at (x - mu) / sigma."""
    return 0.5 * (1.0 + ops.erf((x - mu) / (sigma * math.sqrt(2.0))))


def _mish(x):
    return x * ops.tanh(ops.softplus(x))


_ACTIVATIONS = {
    "gelu": _gelu,
    "gelu_python": _gelu,
    "gelu_new": _gelu_tanh,
    "gelu_pytorch_tanh": _gelu_tanh,
    "gelu_fast": _gelu_fast,
    "gelu_accurate": _gelu_tanh,  # Transformers' AccurateGELUActivation: the tanh approximation
    "quick_gelu": _quick_gelu,
    "relu": ops.relu,
    "relu2": _relu2,
    "relu6": ops.relu6,
    "silu": ops.silu,
    "swish": ops.silu,
    "tanh": ops.tanh,
    "sigmoid": ops.sigmoid,
    "mish": _mish,
    "laplace": _laplace,
    "linear": lambda x: x,
    "identity": lambda x: x,
}


def activated_projection(dense, x, name, act=None):
    """``act(dense(x))`` for a Dense projection followed by the activation ``name`` (an HF name or a
    callable; ``act``: its function, else ``get_activation(name)``). Where a fast path has redirected
    ``dense`` for the calling context (torch ``predict`` and decode: ``generation.backend``) and
    offers ``activated``, the activation is applied inside the projection's GEMM (oneDNN post-op)
    instead of as a second pass over its output; elsewhere, the two calls."""
    fast = compat.redirect_for(dense)
    if fast is not None and isinstance(name, str):
        activated = getattr(fast, "activated", None)
        if activated is not None and name in FUSED_ACTIVATIONS:
            return activated(x, name)
    return (act or get_activation(name))(dense(x))


def clamped_swiglu(gate, up, alpha=1.702, limit=7.0):
    """GPT-OSS's gated unit: the gate clamped above at ``limit``, the up projection to
    [-limit, limit]; (up + 1) * gate * sigmoid(alpha * gate)."""
    gate = ops.minimum(gate, limit)
    up = ops.clip(up, -limit, limit)
    return (up + 1.0) * (gate * ops.sigmoid(gate * alpha))


# gated units that combine the gate and up projections themselves (not act(gate) * up)
GLU_UNITS = {"clamped_swiglu": clamped_swiglu}


def get_glu(name, **params):
    """``fn(gate, up)`` for a GLU_UNITS name with its parameters; ValueError naming it if unknown."""
    if name not in GLU_UNITS:
        raise ValueError(f"Unknown gated unit {name!r}; known: {', '.join(sorted(GLU_UNITS))}")
    unit = GLU_UNITS[name]
    return lambda gate, up: unit(gate, up, **params)


def get_activation(name):
    """Return the function for an HF activation name; raise ValueError naming it if unknown."""
    if callable(name):
        return name
    key = str(name).lower()
    if key not in _ACTIVATIONS:
        raise ValueError(
            f"Unknown activation {name!r} (hidden_act); known: {', '.join(sorted(_ACTIVATIONS))}"
        )
    return _ACTIVATIONS[key]


__all__ = ["activated_projection", "get_activation", "get_glu", "clamped_swiglu", "GLU_UNITS", "math"]

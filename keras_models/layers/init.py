"""Building models fast when their values come from a checkpoint.

Backend RNG initialisers compile one program per variable shape under JAX (seconds for a BERT),
and a preset load overwrites every value anyway: ``skip_init()`` makes every initialiser return
zeros, and ``build_symbolically`` creates the variables by a symbolic call (no computation).
"""

import contextlib
import threading

import keras
import ml_dtypes
import numpy as np

_state = threading.local()


def _all_subclasses(cls):
    out, stack = [], [cls]
    while stack:
        c = stack.pop()
        out.append(c)
        stack.extend(c.__subclasses__())
    return out


def _zeros_call(self, shape, dtype=None):
    dtype = keras.backend.standardize_dtype(dtype or keras.config.floatx())
    return np.zeros(shape, ml_dtypes.bfloat16 if dtype == "bfloat16" else dtype)


def _random_base():
    try:
        from keras.src.initializers.random_initializers import RandomInitializer
    except ImportError:  # pragma: no cover - other Keras layouts: fall back to every initialiser
        return keras.initializers.Initializer
    return RandomInitializer


@contextlib.contextmanager
def skip_init():
    """Within this block every *random* Keras initialiser returns (lazily allocated) zeros: the
    values come from a checkpoint. This skips one random-number program per variable shape (JAX
    compiles each). Deterministic initialisers (zeros, ones, constants, computed tables such as
    sinusoidal positions) still run, so a variable the checkpoint does not hold keeps its value."""
    previous = getattr(_state, "skip", False)
    _state.skip = True
    patched = {}
    if not previous:
        for cls in _all_subclasses(_random_base()):
            if "__call__" in vars(cls):
                patched[cls] = vars(cls)["__call__"]
                cls.__call__ = _zeros_call
    try:
        yield
    finally:
        for cls, fn in patched.items():
            cls.__call__ = fn
        _state.skip = previous


def build_symbolically(model, example_inputs):
    """Build ``model`` by calling it on KerasTensors shaped like ``example_inputs``."""
    symbolic = keras.tree.map_structure(
        lambda x: keras.KerasTensor(np.shape(x), dtype=keras.backend.standardize_dtype(np.asarray(x).dtype)),
        example_inputs,
    )
    model(symbolic)

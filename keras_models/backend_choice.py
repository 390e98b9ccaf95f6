"""Choosing KERAS_BACKEND before keras is imported (the one place that looks at installed backends)."""

import importlib.util
import os

PREFERENCE = ("jax", "torch", "tensorflow")


def ensure_backend(requested=None):
    """Set KERAS_BACKEND to ``requested``, or keep the user's, or pick the first installed of
    jax / torch / tensorflow. Must run before ``import keras``; returns the backend name."""
    if requested:
        os.environ["KERAS_BACKEND"] = requested
    elif not os.environ.get("KERAS_BACKEND"):
        for name in PREFERENCE:
            if importlib.util.find_spec(name) is not None:
                os.environ["KERAS_BACKEND"] = name
                break
    return os.environ.get("KERAS_BACKEND", "tensorflow")

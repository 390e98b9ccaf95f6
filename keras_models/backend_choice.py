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


# --- JAX persistent compilation cache ---------------------------------------------------------------

JAX_CACHE_ENV = "KERAS_MODELS_JAX_CACHE"  # a folder, or "0"/"off"/"false"/"none" to switch it off
_JAX_CACHE_OFF = {"0", "off", "false", "no", "none"}
JAX_CACHE_MIN_COMPILE_SECS = 0.25  # compiles cheaper than this are not worth a disk entry


def default_jax_cache_dir():
    """``$XDG_CACHE_HOME/keras_models/jax`` (``~/.cache/keras_models/jax`` when XDG_CACHE_HOME is
    unset)."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "keras_models", "jax")


def configure_jax_compilation_cache():
    """Switch on JAX's persistent compilation cache, so that a second process (a notebook restart,
    the next script run) reuses the XLA executables the first one compiled instead of compiling
    again (a tiny Llama's first ``generate``: ~8 s -> ~0.6 s in a second process).

    The folder is ``$KERAS_MODELS_JAX_CACHE`` or :func:`default_jax_cache_dir`; setting the variable
    to ``0`` / ``off`` switches it off. A cache folder the user already gave JAX
    (``JAX_COMPILATION_CACHE_DIR`` or ``jax.config.update("jax_compilation_cache_dir", ...)``) is
    kept untouched, as is a minimum compile time the user changed. Returns the folder in use, or
    None. Does nothing under other backends. Must run before the first compilation to take effect
    (keras_models calls it when its model module is imported)."""
    import keras

    if keras.backend.backend() != "jax":
        return None
    setting = os.environ.get(JAX_CACHE_ENV, "").strip()
    if setting.lower() in _JAX_CACHE_OFF:
        return None
    import jax

    current = jax.config.jax_compilation_cache_dir
    if current:  # the user's own choice wins
        return current
    folder = setting or default_jax_cache_dir()
    try:
        os.makedirs(folder, exist_ok=True)
    except OSError:  # a read-only home: run without the cache rather than fail
        return None
    jax.config.update("jax_compilation_cache_dir", folder)
    if jax.config.jax_persistent_cache_min_compile_time_secs == 1.0:  # JAX's default, not the user's
        jax.config.update("jax_persistent_cache_min_compile_time_secs", JAX_CACHE_MIN_COMPILE_SECS)
    return folder

"""Choosing KERAS_BACKEND before keras is imported (the one place that looks at installed backends)."""

import importlib.util
import os
import threading

PREFERENCE = ("jax", "torch", "tensorflow")
SWITCH_OFF = {"0", "off", "false", "no", "none"}  # values that turn a KM_* switch off (any case)


def switch_on(name, default=True):
    """Read the on/off switch ``name`` from the environment: unset or empty gives ``default``;
    ``0`` / ``off`` / ``false`` / ``no`` / ``none`` (any case, spaces ignored) switch it off, any
    other value on. Every KM_* fast-path switch is read through here (docs/fast_paths.md)."""
    value = os.environ.get(name, "").strip().lower()
    if not value:
        return default
    return value not in SWITCH_OFF


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
    if setting.lower() in SWITCH_OFF:
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


# --- XLA:CPU temporaries kept in the heap -----------------------------------------------------------
# XLA:CPU gives each run of a compiled program one temporary buffer for all its intermediates (a
# MiniLM-L6 training step at 16 x 128: 594 MB; its forward at 32 x 128: ~100 MB). glibc serves an
# allocation over 32 MB from a fresh mmap and unmaps it on free, so every run page-faulted the whole
# buffer in again: 145,000 minor faults, ~17% of the training step on one core (docs/performance.md,
# "Stop 29"). With mmap off for malloc and a high trim threshold the buffer stays in the heap and the
# next run reuses it. That holds only where the run allocates from glibc's main arena, i.e. on the
# calling thread, so jax's CPU dispatch is made synchronous (``jax_cpu_enable_async_dispatch``; it
# has to be decided before jax creates its CPU client, so this happens when the model module is
# imported, and only when no jax backend exists yet).
#
# One switch: KM_JAX_HEAP_TEMPS=0 leaves both jax's dispatch and the allocator untouched. Cost: free
# heap memory (at most the largest temporary buffer seen, plus fragmentation) is not returned to the
# system while models run; loading a preset returns it (``malloc_trim``). The allocator settings are
# process-wide and made once, under a lock, on the first fit / predict / evaluate / generate on the
# jax CPU platform; glibc only (elsewhere nothing changes).

JAX_HEAP_ENV = "KM_JAX_HEAP_TEMPS"
_M_TRIM_THRESHOLD, _M_MMAP_MAX = -1, -4
_HEAP_TRIM_THRESHOLD = 2 ** 31 - 1  # mallopt takes an int
_HEAP = {"sync_set": False, "applied": False, "libc": None}
_HEAP_LOCK = threading.Lock()


def heap_temps_enabled():
    return switch_on(JAX_HEAP_ENV)


def configure_jax_cpu_dispatch():
    """Make jax's CPU dispatch synchronous (see the section comment) when the switch is on, the
    backend is jax and jax has created no backend yet. Returns whether it did."""
    import keras

    if keras.backend.backend() != "jax" or not heap_temps_enabled():
        return False
    import jax

    from keras_models.compat import jax_backends_initialised

    if jax_backends_initialised():
        return False
    try:
        jax.config.update("jax_cpu_enable_async_dispatch", False)
    except (AttributeError, KeyError, ValueError):  # a jax without the setting: leave it alone
        return False
    _HEAP["sync_set"] = True
    return True


def _glibc():
    import ctypes

    try:
        libc = ctypes.CDLL(None)
        libc.mallopt, libc.malloc_trim  # glibc only
    except (OSError, AttributeError):
        return None
    return libc


def keep_xla_temporaries_in_heap():
    """Once per process, on the jax CPU platform with synchronous dispatch: malloc serves large
    blocks from the heap and keeps up to 2 GB of free heap (see the section comment). Returns
    whether the settings are in effect. Thread-safe; cheap after the first call."""
    if _HEAP["applied"] or not _HEAP["sync_set"] or not heap_temps_enabled():
        return _HEAP["applied"]
    import jax

    if jax.config.read("jax_cpu_enable_async_dispatch") or jax.default_backend() != "cpu":
        return False
    with _HEAP_LOCK:
        if not _HEAP["applied"]:
            libc = _glibc()
            if libc is None:
                return False
            libc.mallopt(_M_MMAP_MAX, 0)
            libc.mallopt(_M_TRIM_THRESHOLD, _HEAP_TRIM_THRESHOLD)
            _HEAP["libc"] = libc
            _HEAP["applied"] = True
    return True


def release_free_heap():
    """Return free heap pages to the system (``malloc_trim``) when the heap settings above are in
    effect: after a preset's weights are loaded, whose host copies are freed."""
    if _HEAP["applied"]:
        _HEAP["libc"].malloc_trim(0)

"""Building models fast and lean when their values come from a checkpoint.

``deferred_variables()`` builds a model without materialising its variables (Keras' deferred
initialisation: variables created inside a ``StatelessScope`` hold no value yet). The preset loader
then gives each variable its checkpoint value directly (:func:`materialise`), so no placeholder
copy of the model is ever resident (peak memory stays near one copy of the weights) and no random
initialiser runs (JAX would compile one program per variable shape). Variables the checkpoint does
not fill, such as a new task head, are initialised normally afterwards (:func:`initialise_rest`);
after a failed load they are forgotten instead (:func:`discard_deferred`). Keras' internals used
here live in :mod:`keras_models.compat`.
``build_symbolically`` creates the variables by a symbolic call (no computation); a backbone built
that way remembers its output spec, so that building the task around it (``stand_in_for``) does not
trace the backbone a second time (under TensorFlow each trace builds a graph op by op: tracing a
backbone again was most of a small model's load time).
"""

import contextlib
import inspect

import keras
import numpy as np

from keras_models import compat
from keras_models.backend_choice import switch_on

# from_preset's symbolic builds infer each layer's output at the Keras level (compat.keras_level_specs);
# off: Keras' own trace of the whole model in the backend (docs/fast_paths.md).
KERAS_LEVEL_BUILD = switch_on("KM_KERAS_LEVEL_BUILD")


def _pending():
    """Keras' list of variables awaiting deferred initialisation (this thread's)."""
    return compat.uninitialised_variables()


@contextlib.contextmanager
def deferred_variables():
    """Variables created in this block stay unmaterialised until :func:`materialise` gives them a
    value or :func:`initialise_rest` runs their own initialiser. Pair with ``initialise_rest()``
    once the load succeeded, and with :func:`discard_deferred` when it failed. If the block itself
    raises, the variables it registered are forgotten."""
    before = {id(v) for v in _pending()}
    try:
        with keras.StatelessScope(initialize_variables=False):
            yield
    except BaseException:
        compat.forget_uninitialised([v for v in _pending() if id(v) not in before])
        raise


def is_deferred(variable):
    return compat.is_deferred(variable)


def materialise(variable, value):
    """Give ``variable`` the value ``value`` (numpy): directly as its first value if it is still
    deferred (no placeholder is ever allocated), else by assignment."""
    if compat.is_deferred(variable):
        compat.initialise_deferred(variable, _adoptable(value))
    else:
        variable.assign(value)
    # JAX copies host arrays asynchronously: wait, so that this tensor's host buffer is released
    # before the next one is read (otherwise several transient copies can pile up at the peak).
    ready = getattr(variable.value, "block_until_ready", None)
    if ready is not None:
        ready()


def _adoptable(value):
    """Under torch, a numpy array that owns its buffer goes in as a torch tensor sharing that buffer:
    Keras' torch ``convert_to_tensor`` would copy it (``np.array``), a second pass over every weight
    (BART-base: 0.7 of a 2.2-s load). A view into a larger buffer (one part of a fused checkpoint
    tensor) still goes through Keras' copy, so that the rest of its buffer is not kept alive; so does
    a dtype torch cannot adopt (numpy's bfloat16 extension type)."""
    if keras.backend.backend() != "torch" or not isinstance(value, np.ndarray):
        return value
    root = value
    while isinstance(root.base, np.ndarray):
        root = root.base
    if root.nbytes > value.nbytes + 64 or not (value.flags.c_contiguous and value.flags.writeable):
        return value  # (+ 64: the loader's alignment padding, safetensors_io._aligned_empty)
    import torch

    try:
        return torch.from_numpy(value)
    except TypeError:
        return value


def initialise_rest():
    """Run the own initialiser of every variable still deferred (new heads, tables the checkpoint
    does not hold) and forget the ones already materialised."""
    pending = _pending()
    pending[:] = [v for v in pending if compat.is_deferred(v)]
    compat.initialise_all_pending()


def discard_deferred(model):
    """After a failed load: forget ``model``'s variables that are still deferred, without running
    any initialiser (the model is dropped; initialising it would only cost time and memory, and
    would mask the load's own error if it failed too). Later loads start from a clean list."""
    compat.forget_uninitialised(model.variables)


@contextlib.contextmanager
def placeholder_variables(model):
    """For a build whose values are about to be overwritten (Keras' ``.keras`` loading builds the
    model, then assigns every variable from the file): variables created in the block get zeros
    instead of running their random initialisers, which under JAX compile one program per
    variable shape (most of a small model's ``load_model`` time)."""
    with deferred_variables():
        yield
    pending = _pending()
    ours = {id(v) for v in model.variables}
    for variable in [v for v in pending if id(v) in ours and compat.is_deferred(v)]:
        dtype = keras.backend.standardize_dtype(variable.dtype)
        try:
            value = np.zeros(tuple(variable.shape), dtype)
        except TypeError:  # a dtype numpy does not know (bfloat16, float8): made by the backend
            value = keras.ops.zeros(tuple(variable.shape), dtype)
        compat.initialise_deferred(variable, value)
    pending[:] = [v for v in pending if compat.is_deferred(v)]


def _signature(inputs):
    """(structure, shapes, dtypes) of a call's inputs, comparable across KerasTensors and the
    backends' symbolic tensors; None where a leaf has no shape."""
    leaves = keras.tree.flatten(inputs)
    try:
        return (keras.tree.map_structure(lambda _: 0, inputs),
                tuple((tuple(None if d is None else int(d) for d in x.shape),
                       keras.backend.standardize_dtype(x.dtype)) for x in leaves))
    except (AttributeError, TypeError, ValueError):
        return None


def _spec_of(outputs):
    """KerasTensors shaped like ``outputs`` (backend tensors inside a trace); other leaves kept."""
    def spec(t):
        if hasattr(t, "shape") and hasattr(t, "dtype"):
            return keras.KerasTensor(tuple(t.shape), dtype=keras.backend.standardize_dtype(t.dtype))
        return t
    return keras.tree.map_structure(spec, outputs)


def _zeros_like_spec(spec, symbolic=False):
    """Zeros shaped like ``spec`` inside a backend trace; fresh KerasTensors in a Keras-level
    symbolic call (``symbolic``)."""
    def leaf(t):
        if not isinstance(t, keras.KerasTensor):
            return t
        return keras.KerasTensor(t.shape, t.dtype) if symbolic else keras.ops.zeros(t.shape, t.dtype)
    return keras.tree.map_structure(leaf, spec)


@contextlib.contextmanager
def _replaying(layer, signature, recorded):
    """Within the block, a call of ``layer`` on inputs of exactly ``signature`` (and no argument
    but ``training``) returns zeros shaped like ``recorded["spec"]`` when it is set; the first such
    call, when it is not, runs the layer and records its output spec. Other calls run as usual."""
    real_call = layer.call
    params = inspect.signature(real_call).parameters
    first = next(iter(params), None)

    def call(*args, **kwargs):
        try:
            bound = inspect.signature(real_call).bind(*args, **kwargs).arguments
        except TypeError:
            return real_call(*args, **kwargs)
        others = [k for k, v in bound.items() if k not in (first, "training") and v is not None]
        if others or first not in bound or _signature(bound[first]) != signature:
            return real_call(*args, **kwargs)
        if "spec" in recorded:
            symbolic = any(isinstance(x, keras.KerasTensor) for x in keras.tree.flatten(bound[first]))
            return _zeros_like_spec(recorded["spec"], symbolic)
        out = real_call(*args, **kwargs)
        recorded["spec"] = _spec_of(out)
        return out

    layer.__dict__["call"] = call
    try:
        yield
    finally:
        layer.__dict__.pop("call", None)


def build_symbolically(model, example_inputs):
    """Build ``model`` by calling it on KerasTensors shaped like ``example_inputs``: each layer's
    output is inferred at the Keras level where its call allows (:func:`compat.keras_level_specs`;
    under TensorFlow a trace builds a graph op by op, 0.45 ms an op). Where Keras traces, the model is
    traced once: Keras traces a model without its own ``build`` once to build it and once more for
    the symbolic call's output, and the second trace replays the first one's output spec. The
    output spec is remembered (see :func:`stand_in_for`)."""
    symbolic = keras.tree.map_structure(
        lambda x: keras.KerasTensor(np.shape(x), dtype=keras.backend.standardize_dtype(np.asarray(x).dtype)),
        example_inputs,
    )
    signature = _signature(symbolic)
    with compat.keras_level_specs(model) if KERAS_LEVEL_BUILD else contextlib.nullcontext():
        if signature is None:
            out = model(symbolic)
        else:
            with _replaying(model, signature, {}):
                out = model(symbolic)
    model.__dict__["_km_dummy_spec"] = (signature, out)
    return out


@contextlib.contextmanager
def stand_in_for(layer):
    """While building an enclosing model symbolically: a call of ``layer`` (already built by
    :func:`build_symbolically`) on inputs of exactly the recorded shapes and dtypes returns zeros
    of its recorded output spec instead of tracing it again. Any other call (other shapes, extra
    arguments) runs the layer as usual. Only shapes matter in a symbolic build, so the variables
    created are the same."""
    recorded = layer.__dict__.get("_km_dummy_spec")
    if recorded is None or recorded[0] is None:
        yield
        return
    with _replaying(layer, recorded[0], {"spec": recorded[1]}):
        yield

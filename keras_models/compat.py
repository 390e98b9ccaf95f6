"""Every use of Keras internals (``keras.src`` modules, underscored attributes, call redirection).

Each function below names the Keras internal it relies on; ``tests/test_compat.py`` checks every
one of them against the installed Keras, so that a Keras release that changes one fails there,
with the internal's name, rather than somewhere deep in a model. The supported Keras range is
pinned in pyproject.toml. Nothing here replaces a method of a Keras class for the whole process:

* :func:`redirected_calls` lets ``layer(x)`` run another function, but only for the given layer
  instances (each gets a per-class subclass for the duration of the context) and only in the
  calling thread / context (a :class:`contextvars.ContextVar`); anyone else calling the same layers
  meanwhile goes through Keras' ``Layer.__call__`` unchanged.
* :func:`shallow_symbolic_checks` replaces ``any_symbolic_tensors`` in ``keras.src.ops`` modules
  once, by a function that is Keras' own outside the context and gives the same answer inside it.
* :func:`fast_torch_kernels` (torch backend only) rebinds ``conv`` and ``batch_normalization`` of
  Keras' torch backend module once, to versions that compute the same values (conv: the same
  oneDNN call without Keras' two redundant input copies; batch norm: torch's fused inference
  kernel, equal up to float rounding) and hand every other case to Keras' own function.
* :func:`inference_cache` keeps a value derived from variables (a weight-normed, reordered
  kernel) for torch inference, invalidated when a variable is assigned; :func:`torch_conv1d` /
  :func:`torch_conv_transpose1d` run a channels-last 1-D (transposed) conv with its padding / crop
  and bias inside torch's one call (callers use them on the torch backend only).

Everything else in the library calls these functions, never ``keras.src`` directly. This module
imports Keras lazily (inside the functions), because ``import keras_models`` installs the
``load_model`` registry fallback from here (:func:`install_registry_fallback`) and must stay cheap,
importing no Keras and no backend.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import importlib
import importlib.abc
import importlib.util
import sys
import threading

# --- deferred variables (keras_models.layers.init) ----------------------------------------------


def uninitialised_variables():
    """The live list of variables created with deferred initialisation that Keras will initialise
    at its next ``initialize_all_variables()`` (per thread).

    Relies on: ``keras.src.backend.common.global_state`` attribute ``"uninitialized_variables"``
    (appended to by ``keras.src.backend.common.variables.register_uninitialized_variable``)."""
    from keras.src.backend.common import global_state

    return global_state.get_global_attribute("uninitialized_variables", [], set_to_default=True)


def initialise_all_pending():
    """Run the initialiser of every variable in :func:`uninitialised_variables` and empty the list.

    Relies on: ``keras.src.backend.common.variables.initialize_all_variables``."""
    from keras.src.backend.common.variables import initialize_all_variables

    initialize_all_variables()


def forget_uninitialised(variables):
    """Remove ``variables`` from :func:`uninitialised_variables` without initialising them (a
    failed load: its model is dropped, so its variables must not cost an initialisation later).

    Relies on: the list of :func:`uninitialised_variables` being the one Keras initialises."""
    drop = {id(v) for v in variables}
    pending = uninitialised_variables()
    pending[:] = [v for v in pending if id(v) not in drop]


def is_deferred(variable):
    """Whether ``variable`` was created without a value and still waits for its initialiser.

    Relies on: ``Variable._value`` (None until initialised) and ``Variable._initializer`` (kept
    until the deferred initialisation runs)."""
    return getattr(variable, "_value", 0) is None and getattr(variable, "_initializer", None) is not None


def initialise_deferred(variable, value):
    """Give the deferred ``variable`` its first value ``value`` (numpy) directly: no placeholder is
    allocated, its own initialiser never runs. On failure the variable is left as it was.

    Relies on: ``Variable._initializer`` (called as ``initializer(shape, dtype=...)``) and
    ``Variable._deferred_initialize()`` (runs it and clears it)."""
    initializer = variable._initializer
    variable._initializer = lambda shape, dtype=None: value
    try:
        variable._deferred_initialize()
    except BaseException:
        variable._initializer = initializer
        raise


# --- layer structure -----------------------------------------------------------------------------


def sublayers(layer):
    """Every layer nested in ``layer`` (recursively, each once, ``layer`` itself excluded).

    Relies on: ``Layer._flatten_layers(include_self=False)`` (Keras has no public recursive
    listing; ``Model.layers`` is one level only)."""
    return layer._flatten_layers(include_self=False)


def build_for_training(model, data_batch):
    """What Keras' trainers do before tracing a step (jax and torch always; TensorFlow only under a
    distribution strategy): build the model, the compiled metrics and losses and the optimizer from
    the shapes of ``data_batch`` ((x, y, sample_weight) arrays), symbolically.

    Relies on: ``Trainer._symbolic_build(data_batch=...)``."""
    model._symbolic_build(data_batch=data_batch)


def own_variables(layer):
    """The variables a layer tracks itself (not its sublayers'), trainable first.

    Relies on: ``Layer._trainable_variables`` / ``Layer._non_trainable_variables``."""
    return list(layer._trainable_variables) + list(layer._non_trainable_variables)


def keras_would_quantize(layer, filters):
    """Whether Keras' ``Model.quantize(filters=...)`` selects ``layer``.

    Relies on: ``keras.src.quantizers.utils.should_quantize_layer(layer, filters)``."""
    from keras.src.quantizers.utils import should_quantize_layer

    return should_quantize_layer(layer, filters)


def stored_kernel(layer):
    """The variable a Dense / EinsumDense stores its kernel in: without the LoRA product that
    ``layer.kernel`` adds, and packed for int4.

    Relies on: ``Dense._kernel`` / ``EinsumDense._kernel``."""
    return layer._kernel


def stored_embeddings(layer):
    """The variable an Embedding stores its table in (quantized: the int8 / packed int4 values).

    Relies on: ``Embedding._embeddings``."""
    return layer._embeddings


def int4_output_dim(layer):
    """The unpacked size of an int4 layer's packed last axis.

    Relies on: ``Dense._orig_output_dim`` / ``Embedding._orig_output_dim`` (set by int4 quantize)."""
    return layer._orig_output_dim


def dtype_policy_of(layer):
    """The policy object a layer holds (a DTypePolicyMap stays a map; ``layer.dtype_policy`` may
    resolve it).

    Relies on: ``Layer._dtype_policy``."""
    return layer._dtype_policy


def set_dtype_policy(layer, policy):
    """Put ``policy`` back (or in) without Keras' setter, which would re-quantize or refuse.

    Relies on: ``Layer._dtype_policy``."""
    object.__setattr__(layer, "_dtype_policy", policy)


@contextlib.contextmanager
def cheap_collections():
    """Keras' quantize deletes each float kernel through ``Layer.__delattr__``, which runs a full
    ``gc.collect()`` per layer: 0.5 s each in a process holding a large heap (transformers, a
    second framework). Inside this context the objects that already existed are frozen out of
    collections (``gc.freeze``), so each collect only scans what is new; they rejoin on exit."""
    import gc

    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


def has_sublayers(layer):
    """Whether ``layer`` tracks any layer of its own (a composite, not a leaf such as Dense).

    Relies on: ``Layer._layers`` (the directly tracked sublayers)."""
    return bool(layer._layers)


def call_context_training():
    """The ``training`` value of the Keras layer call in progress (what ``Layer.__call__`` passes to
    a nested layer called without ``training``), or None outside any call / where none was set.

    Relies on: the global attribute ``"current_call_ctx"`` (a ``CallContext`` whose ``training``
    attribute ``Layer.__call__`` sets while resolving the argument)."""
    from keras.src.backend.common import global_state

    ctx = global_state.get_global_attribute("current_call_ctx")
    return None if ctx is None else getattr(ctx, "training", None)


def remat_mode(layer):
    """The rematerialisation mode ``layer`` was created under (``keras.RematScope``), or None.

    Relies on: ``Layer._remat_mode`` (set in ``Layer.__init__``, read by ``Layer.__call__``)."""
    return getattr(layer, "_remat_mode", None)


def torch_device():
    """The torch device Keras places new tensors on (torch backend only).

    Relies on: ``keras.src.backend.torch.core.get_device``."""
    from keras.src.backend.torch.core import get_device

    return get_device()


# --- redirected layer calls ----------------------------------------------------------------------
_REDIRECTS = contextvars.ContextVar("keras_models_redirected_calls", default=None)
_swap_lock = threading.Lock()
_swapped = {}  # id(layer) -> [layer, Keras class, number of open contexts using it]


@functools.lru_cache(maxsize=None)
def _redirectable(cls):
    """``cls`` with a ``__call__`` that runs this context's redirect for the instance, else
    ``cls.__call__`` (Keras' path). Same name and module as ``cls``."""
    keras_call = cls.__call__

    class Redirectable(cls):
        def __call__(self, *args, **kwargs):
            redirects = _REDIRECTS.get()
            if redirects is not None:
                fn = redirects.get(id(self))
                if fn is not None:
                    return fn(*args, **kwargs)
            return keras_call(self, *args, **kwargs)

    Redirectable.__name__, Redirectable.__qualname__ = cls.__name__, cls.__qualname__
    Redirectable.__module__ = cls.__module__
    Redirectable.keras_models_keras_class = cls
    return Redirectable


def keras_class(layer):
    """``type(layer)``, or the Keras class under it while :func:`redirected_calls` is open."""
    cls = type(layer)
    return cls.__dict__.get("keras_models_keras_class", cls)


def calls_go_through_keras(layer):
    """Whether ``layer(x)`` is Keras' plain ``Layer.__call__`` (its class does not override it),
    the precondition for :func:`redirected_calls` to replace it by ``layer.call``-like functions.

    Relies on: ``keras.layers.Layer.__call__`` being the single entry point of ``layer(x)``."""
    import keras

    return keras_class(layer).__call__ is keras.layers.Layer.__call__


def plain_call(layer):
    """Whether ``layer(x)`` would only forward to ``layer.call(x)``: built, Keras' own
    ``__call__``, no quantised or rematerialised call, no mixed-precision autocast (compute dtype =
    variable dtype). The precondition of every redirect of a layer's call (torch predict / decode,
    TensorFlow's flat Dense, jax / torch training)."""
    policy = layer.dtype_policy
    return (layer.built and getattr(layer, "quantization_mode", None) is None and not remat_mode(layer)
            and policy.compute_dtype == policy.variable_dtype and calls_go_through_keras(layer))


def plain_dense(layer):
    """A :func:`plain_call` Keras ``Dense`` with a 2-D kernel, no LoRA and no activity regulariser:
    its call is ``activation(x @ kernel + bias)``, nothing else."""
    import keras

    return (keras_class(layer) is keras.layers.Dense and plain_call(layer) and not layer.lora_enabled
            and len(layer.kernel.shape) == 2 and layer.activity_regularizer is None)


@contextlib.contextmanager
def redirected_calls(redirects):
    """Inside this context, ``layer(*args, **kwargs)`` runs ``redirects[layer](*args, **kwargs)``
    instead of Keras' ``Layer.__call__``, for the layer instances in ``redirects`` (a dict) and
    only in the calling thread / asyncio task (the redirects live in a ContextVar). Other threads
    calling the same layers, and every other layer, keep Keras' path. Nested contexts: the outer
    context's redirect wins for a layer both name.

    How: Python looks ``__call__`` up on the type, so each named instance gets, for the duration of
    the context, a cached subclass of its class (same name and module) whose ``__call__`` consults
    the ContextVar and otherwise calls the class's own ``__call__``; the instance's class is
    restored when the last context using it closes. While it is open, ``type(layer)`` is that
    subclass (``isinstance`` and :func:`keras_class` are unchanged).

    Relies on: ``Layer.__call__`` being looked up on the instance's class (no ``__slots__``, so
    ``__class__`` can be reassigned)."""
    outer = _REDIRECTS.get()
    merged = {id(layer): fn for layer, fn in redirects.items()}
    if outer:
        merged.update(outer)
    layers = list(redirects)
    with _swap_lock:
        for layer in layers:
            entry = _swapped.get(id(layer))
            if entry is None:
                cls = type(layer)
                _swapped[id(layer)] = [layer, cls, 1]
                object.__setattr__(layer, "__class__", _redirectable(cls))
            else:
                entry[2] += 1
    token = _REDIRECTS.set(merged)
    try:
        yield
    finally:
        _REDIRECTS.reset(token)
        with _swap_lock:
            for layer in layers:
                entry = _swapped[id(layer)]
                entry[2] -= 1
                if entry[2] == 0:
                    object.__setattr__(layer, "__class__", entry[1])
                    del _swapped[id(layer)]


def redirect_for(layer):
    """The function :func:`redirected_calls` runs for ``layer`` in the calling context, or None."""
    redirects = _REDIRECTS.get()
    return None if redirects is None else redirects.get(id(layer))


def in_redirected_calls():
    """Whether the calling context is inside :func:`redirected_calls`."""
    return _REDIRECTS.get() is not None


# --- symbolic builds at the Keras level -----------------------------------------------------------
_KERAS_LEVEL = contextvars.ContextVar("keras_models_keras_level_specs", default=False)


def _keras_build_internals():
    """Relies on: ``Layer._maybe_build(call_spec)``, ``keras.src.layers.layer.get_shapes_dict``,
    ``keras.src.backend.compute_output_spec`` and ``keras.src.utils.is_default``."""
    from keras.src import backend as keras_backend
    from keras.src import utils
    from keras.src.layers import layer as layer_module

    return keras_backend.compute_output_spec, layer_module.get_shapes_dict, utils.is_default


def _traced_by_keras(layer):
    """Whether Keras would infer ``layer``'s output by tracing its ``call`` in the backend (the
    layer defines neither ``compute_output_spec`` nor ``compute_output_shape``)."""
    import keras

    _, _, is_default = _keras_build_internals()
    return (type(layer).compute_output_spec is keras.layers.Layer.compute_output_spec
            and is_default(layer.compute_output_shape))


@contextlib.contextmanager
def keras_level_specs(model):
    """Within the block, calling ``model`` (or any layer nested in it) on KerasTensors infers the
    output of a layer that Keras would trace in the backend (one without ``compute_output_spec`` /
    ``compute_output_shape``) by running its ``call`` on the KerasTensors themselves: each
    ``keras.ops`` op then infers its output shape in Python, and each nested layer builds itself
    when called, as in an eager call. Keras would instead trace the call in the backend (under
    TensorFlow a graph built op by op, twice for a layer without ``build``: once to build it, once
    for its output). A layer whose call does not run on KerasTensors (a backend-only kernel, a
    value-dependent branch) falls back to Keras' own trace, so the variables created are the same.
    Inside the block keras.ops count a Variable as symbolic (see :func:`shallow_symbolic_checks` for
    the gated check): an op whose only tensor is a variable (a tied projection's ``cast(table)``)
    infers its output instead of computing it, which for a variable still awaiting its checkpoint
    value would run its random initialiser (BART-base's 50265 x 768 table: 2.4 s).

    Under jax the block changes nothing: Keras' trace there is ``jax.eval_shape`` (cheap), and a jax
    array does not hand ``array + keras_tensor`` over to the KerasTensor (it raises), so a call
    mixing an eagerly made constant into its symbolic inputs would fall back to the trace anyway.

    Choice: per-instance ``compute_output_spec`` / ``_maybe_build`` attributes on the layers nested
    in ``model`` when the block starts, removed when it ends; no Keras class is changed. Relies on
    the internals named in :func:`_keras_build_internals`, ``Layer._flatten_layers`` and the
    ``Operation._inbound_nodes`` / ``_outbound_nodes`` lists (the nested calls' nodes are dropped at
    the end)."""
    import keras

    if keras.backend.backend() == "jax":
        yield
        return
    keras_trace, shapes_of, is_default = _keras_build_internals()

    patched = []
    _install_symbolic_check()

    def install(layer):
        keras_maybe_build = layer._maybe_build
        deferred = {}

        def maybe_build(call_spec):
            if layer.built or not is_default(layer.build) or not _KERAS_LEVEL.get():
                return keras_maybe_build(call_spec)
            deferred["spec"] = call_spec  # built by the call below, as an eager call would

        def compute_output_spec(*args, **kwargs):
            call_spec = deferred.pop("spec", None)
            args, kwargs = _dense_specs(args), _dense_specs(kwargs)
            try:
                out = layer.call(*args, **kwargs)
            except Exception:
                with _keras_level(False):
                    if call_spec is not None and not layer.built:
                        keras_maybe_build(call_spec)
                    return keras_trace(layer.call, *args, **kwargs)
            if call_spec is not None and not layer.built:
                layer.build(next(iter(shapes_of(call_spec).values()), None))
            return keras.tree.map_structure(_as_spec, out)

        layer.__dict__["_maybe_build"] = maybe_build
        layer.__dict__["compute_output_spec"] = compute_output_spec
        patched.append(layer)

    nodes = {}
    for layer in model._flatten_layers(include_self=True):
        nodes[id(layer)] = (len(layer._inbound_nodes), len(layer._outbound_nodes))
        if "compute_output_spec" not in layer.__dict__ and _traced_by_keras(layer):
            install(layer)
    try:
        with _keras_level(True), _trace_environment():
            yield
    finally:
        for layer in patched:
            layer.__dict__.pop("_maybe_build", None)
            layer.__dict__.pop("compute_output_spec", None)
        # Forget the graph of the nested symbolic calls (each nested layer's Keras nodes): it would
        # keep every intermediate KerasTensor alive with the model. The model keeps its own node.
        for layer in model._flatten_layers(include_self=False):
            inbound, outbound = nodes.get(id(layer), (0, 0))
            del layer._inbound_nodes[inbound:], layer._outbound_nodes[outbound:]


@contextlib.contextmanager
def _context_value(variable, value):
    """``variable`` (a ContextVar) holds ``value`` for the block, in the calling context only."""
    token = variable.set(value)
    try:
        yield
    finally:
        variable.reset(token)


def _keras_level(on):
    """Set or clear the Keras-level flag for a block: a backend trace inside a Keras-level call (a
    fallback, a backend-only kernel) runs as Keras' own, variables and all."""
    return _context_value(_KERAS_LEVEL, on)


def _trace_environment():
    """A StatelessScope (variables created in the block are initialised when it ends, unless an outer
    scope holds them) and Keras' symbolic scope, as Keras' own trace has. (No scratch graph or meta
    device: a constant made eagerly from static shapes stays a small concrete tensor, which Keras'
    symbolic ops accept beside KerasTensors; a meta tensor they would fail to read.)

    Relies on: ``keras.src.backend.common.symbolic_scope.SymbolicScope``."""
    import keras
    from keras.src.backend.common.symbolic_scope import SymbolicScope

    stack = contextlib.ExitStack()
    stack.enter_context(keras.StatelessScope())
    stack.enter_context(SymbolicScope())
    return stack


def traced_when_symbolic(kernel):
    """For a function written in one backend's own API (a fused kernel): called on KerasTensors
    inside :func:`keras_level_specs`, its output spec comes from Keras' backend trace of this
    function alone, so the layer calling it still infers the rest of its output at the Keras
    level. Elsewhere the function is called as is (one ContextVar read)."""
    @functools.wraps(kernel)
    def wrapper(*args, **kwargs):
        if _KERAS_LEVEL.get():
            import keras

            if any(isinstance(x, keras.KerasTensor) for x in args):
                trace, _, _ = _keras_build_internals()
                with _keras_level(False):
                    return trace(kernel, *_dense_specs(args), **_dense_specs(kwargs))
        return kernel(*args, **kwargs)
    return wrapper


def _dense_specs(structure):
    """``structure`` with each KerasTensor replaced by a dense one of its shape and dtype. Keras'
    symbolic ops mark some dense results sparse (``keras_tensor * 0.5`` under Keras 3.15), and a
    backend trace would then feed the traced function sparse placeholders; the library takes no
    sparse inputs."""
    import keras

    return keras.tree.map_structure(
        lambda x: keras.KerasTensor(x.shape, x.dtype) if isinstance(x, keras.KerasTensor) and x.sparse else x,
        structure)


def _as_spec(x):
    """A KerasTensor for a tensor computed eagerly inside a symbolic call (a constant made from
    static shapes); KerasTensors and other leaves as they are."""
    import keras

    if isinstance(x, keras.KerasTensor):
        return keras.KerasTensor(x.shape, x.dtype) if x.sparse else x
    if not (hasattr(x, "shape") and hasattr(x, "dtype")):
        return x
    if isinstance(x, keras.Variable):
        return keras.KerasTensor(tuple(x.shape), dtype=x.dtype)
    return keras.KerasTensor(tuple(x.shape), dtype=keras.backend.standardize_dtype(x.dtype))


# --- keras.ops' symbolic-tensor check ------------------------------------------------------------
_SHALLOW = contextvars.ContextVar("keras_models_shallow_symbolic_checks", default=False)
_OPS_MODULES = ("keras.src.ops.numpy", "keras.src.ops.math", "keras.src.ops.core", "keras.src.ops.nn",
                "keras.src.ops.linalg", "keras.src.ops.einops", "keras.src.ops.operation")
_install_lock = threading.Lock()
_installed = []


def _keras_symbolic_check():
    """Relies on: ``keras.src.backend.common.keras_tensor.any_symbolic_tensors`` and
    ``KerasTensor``."""
    from keras.src.backend.common import keras_tensor

    return keras_tensor.any_symbolic_tensors, keras_tensor.KerasTensor


@functools.lru_cache(maxsize=None)
def _leaf_types():
    """Types that never contain a KerasTensor (``tree.is_nested`` is False for them)."""
    import keras
    import numpy as np

    types = {int, float, bool, complex, str, bytes, type(None), np.ndarray, slice, type(Ellipsis),
             keras.Variable}
    if keras.backend.backend() == "torch":
        import torch

        types.update({torch.Tensor, torch.nn.Parameter, torch.dtype, torch.device})
    return frozenset(types)


def _checker():
    keras_check, keras_tensor = _keras_symbolic_check()
    leaves = _leaf_types()

    def shallow(args=None, kwargs=None):
        # Same answer as Keras' check: KerasTensors are found directly or one list/tuple level
        # down; anything else that is not a known leaf goes to Keras' own (recursive) check.
        if type(args) not in (tuple, list) and args is not None:
            return keras_check(args, kwargs)
        for items in (args or (), kwargs.values() if kwargs else ()):
            for x in items:
                t = type(x)
                if t in leaves:
                    continue
                if isinstance(x, keras_tensor):
                    return True
                if t is list or t is tuple:
                    for y in x:
                        if type(y) in leaves:
                            continue
                        if isinstance(y, keras_tensor) or keras_check((y,)):
                            return True
                elif keras_check((x,)):
                    return True
        return False

    def symbolic_or_variable(args=None, kwargs=None):
        import keras

        return any(isinstance(x, (keras_tensor, keras.Variable)) for x in keras.tree.flatten((args, kwargs)))

    def any_symbolic_tensors(args=None, kwargs=None):
        if _KERAS_LEVEL.get():
            return symbolic_or_variable(args, kwargs)
        if _SHALLOW.get():
            return shallow(args, kwargs)
        return keras_check(args, kwargs)

    return any_symbolic_tensors, shallow


def _install_symbolic_check():
    """Bind the gated check (Keras' own outside :func:`shallow_symbolic_checks`) in the
    ``keras.src.ops`` modules that imported ``any_symbolic_tensors`` by name; once per process."""
    with _install_lock:
        if _installed:
            return
        keras_check, _ = _keras_symbolic_check()
        gated, _ = _checker()
        for name in _OPS_MODULES:
            try:
                module = importlib.import_module(name)
            except ImportError:
                continue
            if getattr(module, "any_symbolic_tensors", None) is keras_check:
                module.any_symbolic_tensors = gated
                _installed.append(module)
        _installed.append(None)  # installed (even if no module matched)


@contextlib.contextmanager
def shallow_symbolic_checks():
    """Inside this context (calling thread / task only), keras.ops decide between their symbolic
    and eager paths without flattening every argument through the backend's pytree (under torch,
    ``torch.utils._pytree``: 13 of ``ops.reshape``'s 16.5 microseconds).

    Choice: the module-level name ``any_symbolic_tensors`` in ``keras.src.ops.{numpy, math, core,
    nn, linalg, einops, operation}`` is rebound once, permanently, to a function that (a) outside this context
    (ContextVar unset) calls Keras' own ``any_symbolic_tensors`` with the same arguments, and (b)
    inside it gives the same answer by a shallow walk (known leaf types skipped, lists/tuples looked
    into one level, anything else handed to Keras' check). So every caller in the process gets
    Keras' answer; only this context gets it faster. (Inside :func:`keras_level_specs` only, the
    same function also counts a Variable as symbolic.) Restoring the binding on exit instead would
    race with other threads entering the context.

    Relies on: ``keras.src.backend.common.keras_tensor.any_symbolic_tensors`` and those modules
    calling it through their module global ``any_symbolic_tensors``."""
    _install_symbolic_check()
    with _context_value(_SHALLOW, True):
        yield


def jax_backends_initialised():
    """Whether jax has created its backends (clients) yet: settings read at client creation
    (``jax_cpu_enable_async_dispatch``) only take effect before.

    Relies on: ``jax._src.xla_bridge.backends_are_initialized``."""
    from jax._src import xla_bridge

    return xla_bridge.backends_are_initialized()


_RUN_LOCKS = __import__("weakref").WeakKeyDictionary()
_RUN_LOCKS_GUARD = threading.Lock()


@contextlib.contextmanager
def guarded_jax_run(model):
    """Around ``predict`` / ``evaluate`` under JAX: one call at a time per model, and a failure
    leaves the model usable.

    Keras 3.15's JAX trainer moves every variable's value into a local state at the first batch
    (``variable._value = None``, ``model._jax_state``/``_jax_state_synced``) and puts the values
    back only when the loop ends. An exception in between (a bad batch) leaves every variable empty
    and the next call fails with "'NoneType' object is not callable"; two threads predicting on one
    model purge each other's values. So calls are serialised per model (a lock), and on failure the
    values (references, no copy) are re-attached and the trainer state reset.

    Relies on: ``Variable._value``, ``Trainer._jax_state`` and ``Trainer._jax_state_synced``."""
    import keras

    if keras.backend.backend() != "jax":
        yield
        return
    from keras_models.backend_choice import keep_xla_temporaries_in_heap

    keep_xla_temporaries_in_heap()
    with _RUN_LOCKS_GUARD:
        lock = _RUN_LOCKS.setdefault(model, threading.RLock())
    with lock:
        saved = [(v, v._value) for v in model.variables]
        try:
            yield
        except BaseException:
            for v, value in saved:
                if v._value is None:
                    v._value = value
            model._jax_state = None
            model._jax_state_synced = True
            raise


# --- keras.saving.load_model after a plain ``import keras_models`` ------------------------------
# Keras resolves a saved class through its registry of custom objects (``keras_models>Name``), which
# our classes join only when their modules are imported, and ``import keras_models`` imports none of
# them (it stays cheap and imports no backend). So ``import keras_models`` installs a fallback in
# Keras' registry lookup: a miss on a ``keras_models>`` name imports the family that exports the
# name (keras_models/models/_index.py), or every family when that does not register it, and looks
# again; other names and hits go straight through. When Keras is
# not imported yet, a one-shot import hook applies it right after Keras loads that module.
#
# Relies on: ``keras.src.saving.object_registration``'s module-level ``get_registered_object``,
# which ``keras.src.saving.serialization_lib`` calls through the module attribute.
PREFIX = "keras_models>"
_REGISTRY_MODULE = "keras.src.saving.object_registration"
_registry_lock = threading.Lock()


def _register_for(name):
    """Import the family exporting ``keras_models>Name`` (the generated index), or every family."""
    importlib.import_module("keras_models.models.registry").load_name(name[len(PREFIX):])


def _patch(module):
    original = module.get_registered_object
    if getattr(original, "_keras_models_fallback", False):
        return

    def get_registered_object(name, custom_objects=None, module_objects=None):
        obj = original(name, custom_objects, module_objects)
        if obj is None and isinstance(name, str) and name.startswith(PREFIX):
            with _registry_lock:
                _register_for(name)
            obj = original(name, custom_objects, module_objects)
        return obj

    get_registered_object._keras_models_fallback = True
    get_registered_object.__wrapped__ = original
    get_registered_object.__doc__ = original.__doc__
    module.get_registered_object = get_registered_object


class _AfterKerasModule(importlib.abc.MetaPathFinder):
    """Applies ``patch`` to the Keras module ``name`` once Keras has executed it, then leaves."""

    def __init__(self, name, patch):
        self.name, self.patch = name, patch

    def find_spec(self, fullname, path=None, target=None):
        if fullname != self.name:
            return None
        if self in sys.meta_path:
            sys.meta_path.remove(self)
        spec = importlib.util.find_spec(fullname)
        if spec is None or spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return spec
        exec_module = spec.loader.exec_module

        def exec_then_patch(module):
            exec_module(module)
            self.patch(module)

        spec.loader.exec_module = exec_then_patch
        return spec


def _after_import(name, patch):
    module = sys.modules.get(name)
    if module is not None:
        patch(module)
    elif not any(isinstance(f, _AfterKerasModule) and f.name == name for f in sys.meta_path):
        sys.meta_path.insert(0, _AfterKerasModule(name, patch))


# --- Keras serialization without importing TensorFlow -------------------------------------------
# Keras 3.15's ``serialize_keras_object`` asks ``tf.available and isinstance(obj, tf.TensorShape)``
# (and tf.DType, tf.TypeSpec) of every object it serializes, and ``available`` imports TensorFlow
# when it is installed: under jax or torch every ``get_config`` of a layer (a ``.keras`` save)
# imported it (6.5 s and a few hundred MB here). An object can only be one of those types once
# TensorFlow is imported, so the module's ``tf`` answers ``available`` False until then and Keras'
# own answer after; anything else goes to Keras' lazy module unchanged (deserializing a TypeSpec still
# imports TensorFlow, as it must).
#
# Relies on: ``keras.src.saving.serialization_lib`` module attribute ``tf`` (Keras'
# ``module_utils.LazyModule`` for tensorflow, with an ``available`` property).
_SERIALIZATION_MODULE = "keras.src.saving.serialization_lib"


class _TensorFlowIfImported:
    def __init__(self, lazy):
        self._keras_lazy_module = lazy

    @property
    def available(self):
        return "tensorflow" in sys.modules and self._keras_lazy_module.available

    def __getattr__(self, name):
        return getattr(self._keras_lazy_module, name)


def _probe_tensorflow_only_if_imported(module):
    lazy = getattr(module, "tf", None)
    # (``hasattr(lazy, "available")`` would run the property, i.e. the import)
    if isinstance(getattr(type(lazy), "available", None), property) and not isinstance(lazy, _TensorFlowIfImported):
        module.tf = _TensorFlowIfImported(lazy)


def install_registry_fallback():
    """The import-time hooks ``import keras_models`` installs: the ``load_model`` registry
    fallback above, and serialization that does not import TensorFlow."""
    _after_import(_REGISTRY_MODULE, _patch)
    _after_import(_SERIALIZATION_MODULE, _probe_tensorflow_only_if_imported)


# --- torch kernels and inference helpers: keras_models/torch_kernels.py ---------------------------
from keras_models.torch_kernels import (  # noqa: E402,F401 (re-exported: compat.fast_torch_kernels, ...)
    _fast_torch_batch_norm, _fast_torch_conv, fast_torch_kernels, inference_cache, torch_conv1d, torch_conv1d_weight, torch_conv_transpose1d, torch_conv_transpose1d_weight)


def variable_scopes_are_plain():
    """True when reading a Keras variable's raw value is what ``Variable.value`` would give: no
    stateless scope, no autocast scope, not on the meta device (torch). None if Keras' private
    modules moved (callers then use ``variable.value``)."""
    try:
        from keras.src.backend.common.stateless_scope import in_stateless_scope
        from keras.src.backend.common.variables import get_autocast_scope
        from keras.src.backend.torch.core import get_device
    except (ImportError, AttributeError):
        return None
    return not (in_stateless_scope() or get_autocast_scope() is not None or str(get_device()) == "meta")


def torch_adam_classes():
    """Keras' torch Adam and AdamW optimizer classes (private modules), or () if they moved."""
    try:
        from keras.src.backend.torch.optimizers import torch_adam, torch_adamw
    except ImportError:
        return ()
    return (torch_adam.Adam, torch_adamw.AdamW)

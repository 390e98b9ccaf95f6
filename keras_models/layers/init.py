"""Building models fast and lean when their values come from a checkpoint.

``deferred_variables()`` builds a model without materialising its variables (Keras' deferred
initialisation: variables created inside a ``StatelessScope`` hold no value yet). The preset loader
then gives each variable its checkpoint value directly (:func:`materialise`), so no placeholder
copy of the model is ever resident (peak memory stays near one copy of the weights) and no random
initialiser runs (JAX would compile one program per variable shape). Variables the checkpoint does
not fill, such as a new task head, are initialised normally afterwards (:func:`initialise_rest`);
after a failed load they are forgotten instead (:func:`discard_deferred`). Keras' internals used
here live in :mod:`keras_models.compat`.
``build_symbolically`` creates the variables by a symbolic call (no computation).
"""

import contextlib

import keras
import numpy as np

from keras_models import compat


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
        compat.initialise_deferred(variable, value)
    else:
        variable.assign(value)
    # JAX copies host arrays asynchronously: wait, so that this tensor's host buffer is released
    # before the next one is read (otherwise several transient copies can pile up at the peak).
    ready = getattr(variable.value, "block_until_ready", None)
    if ready is not None:
        ready()


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


def build_symbolically(model, example_inputs):
    """Build ``model`` by calling it on KerasTensors shaped like ``example_inputs``."""
    symbolic = keras.tree.map_structure(
        lambda x: keras.KerasTensor(np.shape(x), dtype=keras.backend.standardize_dtype(np.asarray(x).dtype)),
        example_inputs,
    )
    model(symbolic)

"""Building models fast and lean when their values come from a checkpoint.

``deferred_variables()`` builds a model without materialising its variables (Keras' deferred
initialisation: variables created inside a ``StatelessScope`` hold no value yet). The preset loader
then gives each variable its checkpoint value directly (:func:`materialise`), so no placeholder
copy of the model is ever resident (peak memory stays near one copy of the weights) and no random
initialiser runs (JAX would compile one program per variable shape). Variables the checkpoint does
not fill, such as a new task head, are initialised normally afterwards (:func:`initialise_rest`).
``build_symbolically`` creates the variables by a symbolic call (no computation).
"""

import contextlib

import keras
import numpy as np


def _pending():
    from keras.src.backend.common import global_state

    return global_state.get_global_attribute("uninitialized_variables", [], set_to_default=True)


@contextlib.contextmanager
def deferred_variables():
    """Variables created in this block stay unmaterialised until :func:`materialise` gives them a
    value or :func:`initialise_rest` runs their own initialiser. Always pair with
    ``initialise_rest()`` (a ``try/finally``), or the variables stay unusable."""
    with keras.StatelessScope(initialize_variables=False):
        yield


def is_deferred(variable):
    return getattr(variable, "_value", 0) is None and getattr(variable, "_initializer", None) is not None


def materialise(variable, value):
    """Give ``variable`` the value ``value`` (numpy): directly as its first value if it is still
    deferred (no placeholder is ever allocated), else by assignment."""
    if is_deferred(variable):
        variable._initializer = lambda shape, dtype=None: value
        variable._deferred_initialize()
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
    pending[:] = [v for v in pending if is_deferred(v)]
    from keras.src.backend.common.variables import initialize_all_variables

    initialize_all_variables()


def build_symbolically(model, example_inputs):
    """Build ``model`` by calling it on KerasTensors shaped like ``example_inputs``."""
    symbolic = keras.tree.map_structure(
        lambda x: keras.KerasTensor(np.shape(x), dtype=keras.backend.standardize_dtype(np.asarray(x).dtype)),
        example_inputs,
    )
    model(symbolic)

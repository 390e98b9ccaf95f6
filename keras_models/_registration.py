"""``keras.saving.load_model`` finds keras-models classes after a plain ``import keras_models``.

Keras resolves a saved class through its registry of custom objects (``keras_models>Name``), which
our classes join only when their modules are imported, and ``import keras_models`` imports none of
them (it stays cheap and imports no backend). So ``import keras_models`` installs a fallback in
Keras' registry lookup: a miss on a ``keras_models>`` name imports the model families (which
registers every class) and looks again. Nothing else changes: other names and hits go straight
through.

Relies on (checked in tests/test_compat.py): ``keras.src.saving.object_registration``'s
module-level ``get_registered_object``, which ``keras.src.saving.serialization_lib`` calls through
the module attribute. When Keras is not imported yet, a one-shot import hook applies the fallback
right after Keras loads that module; this file imports nothing from Keras itself.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys
import threading

PREFIX = "keras_models>"
_MODULE = "keras.src.saving.object_registration"
_lock = threading.Lock()


def _register_all():
    importlib.import_module("keras_models.models")


def _patch(module):
    original = module.get_registered_object
    if getattr(original, "_keras_models_fallback", False):
        return

    def get_registered_object(name, custom_objects=None, module_objects=None):
        obj = original(name, custom_objects, module_objects)
        if obj is None and isinstance(name, str) and name.startswith(PREFIX):
            with _lock:
                _register_all()
            obj = original(name, custom_objects, module_objects)
        return obj

    get_registered_object._keras_models_fallback = True
    get_registered_object.__wrapped__ = original
    get_registered_object.__doc__ = original.__doc__
    module.get_registered_object = get_registered_object


class _AfterKerasRegistry(importlib.abc.MetaPathFinder):
    """Applies :func:`_patch` once Keras has executed its registry module, then leaves."""

    def find_spec(self, fullname, path=None, target=None):
        if fullname != _MODULE:
            return None
        if self in sys.meta_path:
            sys.meta_path.remove(self)
        spec = importlib.util.find_spec(fullname)
        if spec is None or spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return spec
        exec_module = spec.loader.exec_module

        def exec_then_patch(module):
            exec_module(module)
            _patch(module)

        spec.loader.exec_module = exec_then_patch
        return spec


def install():
    module = sys.modules.get(_MODULE)
    if module is not None:
        _patch(module)
    elif not any(isinstance(f, _AfterKerasRegistry) for f in sys.meta_path):
        sys.meta_path.insert(0, _AfterKerasRegistry())

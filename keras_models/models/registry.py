"""Family registry: config.json ``model_type`` / ``architectures`` -> our classes.

Backbones register the HF ``model_type`` strings they read; tasks register against a backbone
class with a generic task name (``"TextClassifier"``) and the HF architecture names whose
checkpoints carry their head (``"BertForSequenceClassification"``).

Families are imported on demand: a lookup imports the modules that the generated index
(``keras_models/models/_index.py``, from tools/gen_model_index.py) names for a model type or an
architecture, and everything (:func:`load_all`) only for a name the index does not know.
"""

import importlib

from keras_models.errors import ConfigError, UnknownArchitectureError

_BACKBONES = {}


def register_backbone(*model_types):
    def deco(cls):
        cls.model_types = tuple(model_types)
        cls.tasks = {}
        for t in model_types:
            if t in _BACKBONES and _BACKBONES[t] is not cls:
                raise ValueError(f"model_type {t!r} registered twice ({_BACKBONES[t]}, {cls})")
            _BACKBONES[t] = cls
        return cls

    return deco


def register_task(backbone_cls, task_name, hf_architectures=()):
    def deco(cls):
        cls.backbone_cls = backbone_cls
        cls.task_name = task_name
        cls.hf_architectures = tuple(hf_architectures)
        backbone_cls.tasks[task_name] = cls
        return cls

    return deco


def load_all():
    """Import every family in ``keras_models.models.FAMILIES`` (each registers its classes)."""
    from keras_models.models import FAMILIES

    for family in FAMILIES:
        importlib.import_module(f"keras_models.models.{family}")


def _index():
    from keras_models.models import _index

    return _index


def _load_model_type(model_type):
    """Import the modules that register ``model_type``'s backbone and its tasks (generated index);
    False when the index does not know it."""
    modules = _index().MODEL_TYPES.get(model_type) if isinstance(model_type, str) else None
    for module in modules or ():
        importlib.import_module(module)
    return modules is not None


def load_name(name):
    """Import the family that exports ``keras_models.models.<name>``; every family when the index
    does not name one, or when that family turns out not to register ``name`` with Keras (a layer
    class, registered by the module using it)."""
    import keras

    module = _index().NAMES.get(name)
    if module is not None:
        importlib.import_module(module)
        if f"keras_models>{name}" in keras.saving.get_custom_objects():  # (not the patched lookup)
            return
    load_all()


def load_feature_extractor(name):
    """Import the family registering the audio feature extractor ``name`` (everything when the
    index does not know it)."""
    module = _index().FEATURE_EXTRACTORS.get(name) if isinstance(name, str) else None
    if module is None:
        load_all()
    else:
        importlib.import_module(module)


def tasks_of(backbone_cls):
    """``backbone_cls.tasks`` with every task registered for it, including tasks defined in modules
    not imported yet (a task class imported on its own, a family's other heads)."""
    for model_type in getattr(backbone_cls, "model_types", ()):
        _load_model_type(model_type)
    return backbone_cls.tasks


def registered_model_types():
    load_all()
    return dict(_BACKBONES)


def _by_architecture(archs):
    for cls in set(_BACKBONES.values()):
        for task in cls.tasks.values():
            if any(a in task.hf_architectures for a in archs):
                return cls
        if any(a == getattr(cls, "hf_architecture", None) for a in archs):
            return cls
    return None


def backbone_for_config(hf_config, source="config.json"):
    model_type = hf_config.get("model_type")
    if model_type is not None and not isinstance(model_type, str):
        raise ConfigError(f"{source}: model_type must be a string, got {type(model_type).__name__} {model_type!r}")
    if model_type not in _BACKBONES:
        _load_model_type(model_type)
    if model_type in _BACKBONES:
        tasks_of(_BACKBONES[model_type])
        return _BACKBONES[model_type]
    archs = hf_config.get("architectures") or []
    if not isinstance(archs, list) or not all(isinstance(a, str) for a in archs):
        raise ConfigError(f"{source}: architectures must be a list of class names, got {archs!r}")
    for arch in archs:
        _load_model_type(_index().ARCHITECTURES.get(arch))
    found = _by_architecture(archs)
    if found is None:  # not in the index (a family added without regenerating it): look everywhere
        load_all()
        found = _BACKBONES.get(model_type) or _by_architecture(archs)
    if found is not None:
        tasks_of(found)
        return found
    raise UnknownArchitectureError(
        f"{source}: unsupported model_type {model_type!r} (architectures {archs}). "
        f"Supported model types: {', '.join(sorted(_BACKBONES))}"
    )


def task_class_for(backbone_cls, task_name, source="config.json"):
    if task_name not in tasks_of(backbone_cls):
        raise UnknownArchitectureError(
            f"{source}: {backbone_cls.__name__} has no {task_name} task; available: "
            f"{', '.join(sorted(backbone_cls.tasks)) or 'none'}"
        )
    return backbone_cls.tasks[task_name]

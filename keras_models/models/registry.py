"""Family registry: config.json ``model_type`` / ``architectures`` -> our classes.

Backbones register the HF ``model_type`` strings they read; tasks register against a backbone
class with a generic task name (``"TextClassifier"``) and the HF architecture names whose
checkpoints carry their head (``"BertForSequenceClassification"``).
"""

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


def _ensure_loaded():
    import keras_models.models  # noqa: F401  (imports every family, which registers itself)


def registered_model_types():
    _ensure_loaded()
    return dict(_BACKBONES)


def backbone_for_config(hf_config, source="config.json"):
    _ensure_loaded()
    model_type = hf_config.get("model_type")
    if model_type is not None and not isinstance(model_type, str):
        raise ConfigError(f"{source}: model_type must be a string, got {type(model_type).__name__} {model_type!r}")
    if model_type in _BACKBONES:
        return _BACKBONES[model_type]
    archs = hf_config.get("architectures") or []
    if not isinstance(archs, list) or not all(isinstance(a, str) for a in archs):
        raise ConfigError(f"{source}: architectures must be a list of class names, got {archs!r}")
    for cls in set(_BACKBONES.values()):
        for task in cls.tasks.values():
            if any(a in task.hf_architectures for a in archs):
                return cls
        if any(a == getattr(cls, "hf_architecture", None) for a in archs):
            return cls
    raise UnknownArchitectureError(
        f"{source}: unsupported model_type {model_type!r} (architectures {archs}). "
        f"Supported model types: {', '.join(sorted(_BACKBONES))}"
    )


def task_class_for(backbone_cls, task_name, source="config.json"):
    if task_name not in backbone_cls.tasks:
        raise UnknownArchitectureError(
            f"{source}: {backbone_cls.__name__} has no {task_name} task; available: "
            f"{', '.join(sorted(backbone_cls.tasks)) or 'none'}"
        )
    return backbone_cls.tasks[task_name]

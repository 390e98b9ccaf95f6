"""YOSO (``model_type`` "yoso"): its backbone and task heads."""

from keras_models.models.yoso.backbone import *  # noqa: F401,F403
from keras_models.models.yoso.backbone import __all__ as _backbone_all
from keras_models.models.yoso.tasks import *  # noqa: F401,F403
from keras_models.models.yoso.tasks import __all__ as _tasks_all

__all__ = _backbone_all + _tasks_all

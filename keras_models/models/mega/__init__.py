"""MEGA (``model_type`` "mega"): its backbone and task heads."""

from keras_models.models.mega.backbone import *  # noqa: F401,F403
from keras_models.models.mega.backbone import __all__ as _backbone_all
from keras_models.models.mega.tasks import *  # noqa: F401,F403
from keras_models.models.mega.tasks import __all__ as _tasks_all

__all__ = _backbone_all + _tasks_all

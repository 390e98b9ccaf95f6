"""CANINE (``model_type`` "canine"): its backbone and task heads."""

from keras_models.models.canine.backbone import *  # noqa: F401,F403
from keras_models.models.canine.backbone import __all__ as _backbone_all
from keras_models.models.canine.tasks import *  # noqa: F401,F403
from keras_models.models.canine.tasks import __all__ as _tasks_all

__all__ = _backbone_all + _tasks_all

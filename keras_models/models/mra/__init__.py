"""MRA (``model_type`` "mra"): its backbone and task heads."""

from keras_models.models.mra.backbone import *  # noqa: F401,F403
from keras_models.models.mra.backbone import __all__ as _backbone_all
from keras_models.models.mra.tasks import *  # noqa: F401,F403
from keras_models.models.mra.tasks import __all__ as _tasks_all

__all__ = _backbone_all + _tasks_all

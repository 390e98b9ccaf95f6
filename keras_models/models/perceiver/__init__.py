"""Perceiver IO (``model_type`` "perceiver"): its backbone (text or image input preprocessors) and task heads."""

from keras_models.models.perceiver.backbone import *  # noqa: F401,F403
from keras_models.models.perceiver.backbone import __all__ as _backbone_all
from keras_models.models.perceiver.tasks import *  # noqa: F401,F403
from keras_models.models.perceiver.tasks import __all__ as _tasks_all

__all__ = _backbone_all + _tasks_all

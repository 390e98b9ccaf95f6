"""BigBird (``model_type`` "big_bird"): its backbone and task heads."""

from keras_models.models.big_bird.backbone import *  # noqa: F401,F403
from keras_models.models.big_bird.backbone import __all__ as _backbone_all
from keras_models.models.big_bird.tasks import *  # noqa: F401,F403
from keras_models.models.big_bird.tasks import __all__ as _tasks_all

__all__ = _backbone_all + _tasks_all

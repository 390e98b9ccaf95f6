"""GPTSAN-japanese (``model_type`` "gptsan-japanese"): its backbone and CausalLM."""

from keras_models.models.gptsan_japanese.backbone import *  # noqa: F401,F403
from keras_models.models.gptsan_japanese.backbone import __all__ as _backbone_all
from keras_models.models.gptsan_japanese.tasks import *  # noqa: F401,F403
from keras_models.models.gptsan_japanese.tasks import __all__ as _tasks_all

__all__ = _backbone_all + _tasks_all

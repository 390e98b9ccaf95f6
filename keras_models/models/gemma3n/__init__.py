"""Gemma 3n text (``model_type`` "gemma3n_text"): its backbone and CausalLM head."""

from keras_models.models.gemma3n.backbone import *  # noqa: F401,F403
from keras_models.models.gemma3n.backbone import __all__ as _backbone_all
from keras_models.models.gemma3n.tasks import *  # noqa: F401,F403
from keras_models.models.gemma3n.tasks import __all__ as _tasks_all

__all__ = _backbone_all + _tasks_all

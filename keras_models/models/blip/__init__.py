"""BLIP: a ViT-like vision tower and a BERT-like text tower with cross-attention to the image
(towers.py), with Transformers' BlipModel, captioning and retrieval heads (blip.py); BLIP-2 and
InstructBLIP: that vision tower, a Q-Former and a decoder language model (blip2.py)."""

from keras_models.models.blip.blip import *  # noqa: F401,F403
from keras_models.models.blip.blip import __all__ as _blip_all
from keras_models.models.blip.blip2 import *  # noqa: F401,F403
from keras_models.models.blip.blip2 import __all__ as _blip2_all
from keras_models.models.blip.towers import *  # noqa: F401,F403
from keras_models.models.blip.towers import __all__ as _towers_all

__all__ = list(_towers_all) + list(_blip_all) + list(_blip2_all)

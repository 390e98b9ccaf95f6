"""LLaVA and VipLlava (image-text-to-text): a CLIP / SigLIP vision tower, a projector and any
registered decoder family (see backbone.py); LLaVA-NeXT's any-resolution tiling (llava_next.py)."""

from keras_models.models.llava.backbone import *  # noqa: F401,F403
from keras_models.models.llava.backbone import __all__ as _base_all
from keras_models.models.llava.llava_next import *  # noqa: F401,F403
from keras_models.models.llava.llava_next import __all__ as _next_all

__all__ = list(_base_all) + list(_next_all)

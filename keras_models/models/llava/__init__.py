"""LLaVA and VipLlava (image-text-to-text): a CLIP / SigLIP vision tower, a projector and any
registered decoder family (see backbone.py)."""

from keras_models.models.llava.backbone import *  # noqa: F401,F403
from keras_models.models.llava.backbone import __all__  # noqa: F401

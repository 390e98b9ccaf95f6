"""PaliGemma (image-text-to-text): a SigLIP vision tower, a linear projector and a Gemma / Gemma 2
decoder with a prefix-LM mask (see backbone.py), and its processor (processor.py)."""

from keras_models.models.paligemma.backbone import *  # noqa: F401,F403
from keras_models.models.paligemma.backbone import __all__ as _backbone_all
from keras_models.models.paligemma.processor import *  # noqa: F401,F403
from keras_models.models.paligemma.processor import __all__ as _processor_all

__all__ = [*_backbone_all, *_processor_all]

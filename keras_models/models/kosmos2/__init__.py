"""KOSMOS-2 (image-text-to-text): a CLIP-like vision tower, a latent-query projection and a
sub-LN text decoder (see backbone.py)."""

from keras_models.models.kosmos2.backbone import *  # noqa: F401,F403
from keras_models.models.kosmos2.backbone import __all__ as _backbone_all
from keras_models.models.kosmos2.processor import *  # noqa: F401,F403
from keras_models.models.kosmos2.processor import __all__ as _processor_all

__all__ = [*_backbone_all, *_processor_all]

"""KOSMOS-2 (image-text-to-text): a CLIP-like vision tower, a latent-query projection and a
sub-LN text decoder (see backbone.py)."""

from keras_models.models.kosmos2.backbone import *  # noqa: F401,F403
from keras_models.models.kosmos2.backbone import __all__  # noqa: F401

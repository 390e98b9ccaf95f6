"""Fuyu (image-text-to-text): linearly projected image patches in a Persimmon decoder (see backbone.py)."""

from keras_models.models.fuyu.backbone import *  # noqa: F401,F403
from keras_models.models.fuyu.backbone import __all__  # noqa: F401

"""FLAVA (FlavaModel and its image, text and multimodal towers)."""

from keras_models.models.flava.backbone import *  # noqa: F401,F403
from keras_models.models.flava.backbone import __all__  # noqa: F401
from keras_models.models.flava.processing import FlavaImageProcessor  # noqa: F401

__all__ = [*__all__, "FlavaImageProcessor"]

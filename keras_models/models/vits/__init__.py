"""VITS text-to-speech (facebook/mms-tts-*) and its character tokenizer."""

from keras_models.models.vits.backbone import *  # noqa: F401,F403
from keras_models.models.vits.tokenizer import VitsTokenizer

__all__ = ["VitsSpec", "VitsBackbone", "VitsTokenizer", "rational_quadratic_spline_inverse"]

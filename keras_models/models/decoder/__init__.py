"""Decoder-only families: one DecoderBackbone, one module per family shape."""

from keras_models.models.decoder.backbone import DecoderBackbone
from keras_models.models.decoder.llama import *  # noqa: F401,F403
from keras_models.models.decoder.llama import __all__ as _llama_all

__all__ = ["DecoderBackbone", *_llama_all]

"""Decoder-only families: one DecoderBackbone, one module per family shape."""

from keras_models.models.decoder import gemma_phi, gpt, llama, more
from keras_models.models.decoder.backbone import DecoderBackbone
from keras_models.models.decoder.gemma_phi import *  # noqa: F401,F403
from keras_models.models.decoder.gpt import *  # noqa: F401,F403
from keras_models.models.decoder.llama import *  # noqa: F401,F403
from keras_models.models.decoder.more import *  # noqa: F401,F403

__all__ = ["DecoderBackbone", *llama.__all__, *gemma_phi.__all__, *gpt.__all__, *more.__all__]

"""Bark: text to speech with semantic, coarse and fine token models and the EnCodec codec."""

from keras_models.models.bark.backbone import *  # noqa: F401,F403
from keras_models.models.bark.tasks import (BarkCausalLM, BarkCoarseCausalLM, BarkTextToAudio, load_voice_preset,
                                            read_voice_presets)

__all__ = ["BarkCausalSpec", "BarkFineSpec", "BarkSpec", "BarkSemanticBackbone", "BarkCoarseBackbone",
           "BarkFineBackbone", "BarkBackbone", "BARK_NAMES", "BarkCausalLM", "BarkCoarseCausalLM", "BarkTextToAudio",
           "load_voice_preset", "read_voice_presets"]

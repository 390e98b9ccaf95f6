"""MusicGen: text-conditioned music generation (T5 text encoder, codebook decoder, EnCodec)."""

from keras_models.models.musicgen.backbone import *  # noqa: F401,F403
from keras_models.models.musicgen.tasks import MusicgenCausalLM, MusicgenTextToAudio, delay_pattern

__all__ = ["MusicgenDecoderSpec", "MusicgenDecoderBackbone", "MusicgenSpec", "MusicgenBackbone",
           "MusicgenCausalLM", "MusicgenTextToAudio", "delay_pattern"]

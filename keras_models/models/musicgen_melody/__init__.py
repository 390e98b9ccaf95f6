"""MusicGen Melody: MusicGen conditioned on text and a melody's chroma, both prepended to the codes."""

from keras_models.models.musicgen_melody.backbone import *  # noqa: F401,F403
from keras_models.models.musicgen_melody.features import MusicgenMelodyFeatureExtractor
from keras_models.models.musicgen_melody.tasks import MusicgenMelodyCausalLM, MusicgenMelodyTextToAudio

__all__ = ["MusicgenMelodyDecoderSpec", "MusicgenMelodyDecoderBackbone", "MusicgenMelodySpec",
           "MusicgenMelodyBackbone", "MusicgenMelodyFeatureExtractor", "MusicgenMelodyCausalLM", "MusicgenMelodyTextToAudio"]

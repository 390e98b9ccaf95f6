"""FastSpeech2-Conformer text to speech: the acoustic model and its HiFi-GAN vocoder."""

from keras_models.models.fastspeech2_conformer.hifigan import (FastSpeech2ConformerHifiGanBackbone,
                                                               FastSpeech2ConformerHifiGanSpec)
from keras_models.models.fastspeech2_conformer.model import FastSpeech2ConformerBackbone, FastSpeech2ConformerSpec

__all__ = ["FastSpeech2ConformerBackbone", "FastSpeech2ConformerSpec", "FastSpeech2ConformerHifiGanBackbone",
           "FastSpeech2ConformerHifiGanSpec"]

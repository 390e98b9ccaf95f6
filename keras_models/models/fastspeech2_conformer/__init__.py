"""FastSpeech2-Conformer text to speech: the acoustic model, its HiFi-GAN vocoder and
the two in one checkpoint."""

from keras_models.models.fastspeech2_conformer.hifigan import (FastSpeech2ConformerHifiGanBackbone,
                                                               FastSpeech2ConformerHifiGanSpec)
from keras_models.models.fastspeech2_conformer.model import FastSpeech2ConformerBackbone, FastSpeech2ConformerSpec
from keras_models.models.fastspeech2_conformer.with_hifigan import (FastSpeech2ConformerWithHifiGanBackbone,
                                                                    FastSpeech2ConformerWithHifiGanSpec)

__all__ = ["FastSpeech2ConformerWithHifiGanBackbone", "FastSpeech2ConformerWithHifiGanSpec", "FastSpeech2ConformerBackbone", "FastSpeech2ConformerSpec", "FastSpeech2ConformerHifiGanBackbone",
           "FastSpeech2ConformerHifiGanSpec"]

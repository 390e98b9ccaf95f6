"""FastSpeech2-Conformer text to speech: so far its HiFi-GAN vocoder (the acoustic model,
``fastspeech2_conformer``, is not implemented yet)."""

from keras_models.models.fastspeech2_conformer.hifigan import (FastSpeech2ConformerHifiGanBackbone,
                                                               FastSpeech2ConformerHifiGanSpec)

__all__ = ["FastSpeech2ConformerHifiGanBackbone", "FastSpeech2ConformerHifiGanSpec"]

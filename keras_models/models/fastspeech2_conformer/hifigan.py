"""FastSpeech2ConformerHifiGan: the HiFi-GAN vocoder of the FastSpeech2-Conformer text-to-speech
checkpoints (Transformers' ``FastSpeech2ConformerHifiGan``, model_type
``fastspeech2_conformer_hifigan``).

The network and its tensor names are SpeechT5's HiFi-GAN (``keras_models.models.speecht5.hifigan``);
only the defaults differ (upsample rates 8, 8, 2, 2 with kernels 16, 16, 4, 4) and the config has
no ``sampling_rate`` key (the checkpoints are 22.05 kHz).
"""

from dataclasses import dataclass

import keras

from keras_models.models.registry import register_backbone
from keras_models.models.speecht5.hifigan import SpeechT5HifiGanBackbone, SpeechT5HifiGanSpec, _ints
from keras_models.spec import const, hf


@dataclass(frozen=True, kw_only=True)
class FastSpeech2ConformerHifiGanSpec(SpeechT5HifiGanSpec):
    sampling_rate: int = const(22050, doc="not in config.json: the checkpoints' 22.05 kHz")
    upsample_rates: tuple = hf("upsample_rates", (8, 8, 2, 2), read=_ints)
    upsample_kernel_sizes: tuple = hf("upsample_kernel_sizes", (16, 16, 4, 4), read=_ints)


@keras.saving.register_keras_serializable(package="keras_models")
@register_backbone("fastspeech2_conformer_hifigan")
class FastSpeech2ConformerHifiGanBackbone(SpeechT5HifiGanBackbone):
    """HiFi-GAN vocoder: ``{"spectrogram": (batch, frames, model_in_dim)}`` (or the array) ->
    the waveform (batch, frames * prod(upsample_rates))."""

    spec_cls = FastSpeech2ConformerHifiGanSpec
    hf_architecture = "FastSpeech2ConformerHifiGan"
    hf_model_type = "fastspeech2_conformer_hifigan"
    verified_backends = ("jax", "torch", "tensorflow")


__all__ = ["FastSpeech2ConformerHifiGanSpec", "FastSpeech2ConformerHifiGanBackbone"]

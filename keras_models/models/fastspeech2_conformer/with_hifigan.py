"""FastSpeech2ConformerWithHifiGan (model_type ``fastspeech2_conformer_with_hifigan``): the
acoustic model (``model.``, config ``model_config``) and its HiFi-GAN vocoder (``vocoder.``, config
``vocoder_config``) in one checkpoint. Returns the acoustic model's outputs plus ``"waveform"``
(batch, samples), the vocoder's output on the spectrogram (padded frames included, as Transformers)."""

from dataclasses import dataclass

import keras

from keras_models.models.backbone import SpecBackbone
from keras_models.models.registry import register_backbone
from keras_models.presets.weight_map import mount
from keras_models.spec import Spec, build_tower, tower


@dataclass(frozen=True, kw_only=True)
class FastSpeech2ConformerWithHifiGanSpec(Spec):
    model_config: dict = tower("model_config", "fastspeech2_conformer")
    vocoder_config: dict = tower("vocoder_config", "fastspeech2_conformer_hifigan")


@keras.saving.register_keras_serializable(package="keras_models")
@register_backbone("fastspeech2_conformer_with_hifigan")
class FastSpeech2ConformerWithHifiGanBackbone(SpecBackbone):
    """``{"input_ids", "attention_mask"}`` -> the acoustic outputs and ``"waveform"``; eager."""

    spec_cls = FastSpeech2ConformerWithHifiGanSpec
    hf_architecture = "FastSpeech2ConformerWithHifiGan"
    hf_ignore = ("*num_batches_tracked",)
    verified_backends = ("jax", "torch", "tensorflow")
    not_covered = 'the tokenizer (needs g2p_en)'  # shown beside the row in docs/models.md

    def __init__(self, spec=None, **kwargs):
        super().__init__(spec=spec, **kwargs)
        self.model = build_tower(self.spec.model_config, "model", self.dtype_policy)
        self.vocoder = build_tower(self.spec.vocoder_config, "vocoder", self.dtype_policy)

    def build(self, input_shape=None):
        self.model.build(None)
        self.vocoder.build(None)
        self.built = True

    def build_from_dummy(self):
        if not self.built:
            self.build(None)
        return self

    def call(self, inputs, training=False):
        out = dict(self.model(inputs, training=training))
        out["waveform"] = self.vocoder(out["spectrogram"])
        return out

    def weight_rules(self):
        return mount(self.model.weight_rules(), "model.") + mount(self.vocoder.weight_rules(), "vocoder.")


__all__ = ["FastSpeech2ConformerWithHifiGanSpec", "FastSpeech2ConformerWithHifiGanBackbone"]

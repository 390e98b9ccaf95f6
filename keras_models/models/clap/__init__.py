"""CLAP: an audio-text dual encoder (HTSAT audio tower, RoBERTa text tower, two-layer projections).

* :class:`ClapBackbone` (``clap``): both towers from ``text_config`` / ``audio_config``; the text
  tower is pooled by Transformers' pooler (dense + tanh on the first token), the audio tower by the
  mean over its last map; each is projected by ``linear1 -> projection_hidden_act -> linear2``.
  ``encode_text`` / ``encode_audio`` give the projected features (``get_text_features`` /
  ``get_audio_features`` before their normalisation); calling it returns both.
* :class:`ClapZeroShotAudioClassifier` (``km.ZeroShotAudioClassifier``, ``ClapModel``): adds the two
  learned temperatures and returns ``logits_per_audio`` / ``logits_per_text`` and the unit-norm
  embeddings.
* :class:`ClapTextBackbone` (``clap_text_model``, RoBERTa) and
  :class:`~keras_models.models.clap.audio.ClapAudioBackbone` (``clap_audio_model``) load the
  standalone towers; :class:`ClapTextEmbedder` / :class:`ClapAudioEmbedder` load
  ``ClapTextModelWithProjection`` / ``ClapAudioModelWithProjection`` (``{"text_embeds" |
  "audio_embeds", "last_hidden_state"}``, unnormalised, as Transformers returns them).
"""

from dataclasses import dataclass

import keras

from keras_models.errors import ConfigError
from keras_models.layers.activations import get_activation
from keras_models.layers.vision_embeddings import dense_rules
from keras_models.models.backbone import SpecBackbone
from keras_models.models.clap.audio import ClapAudioBackbone, ClapAudioSpec, ClapProjection
from keras_models.models.clap.features import ClapFeatureExtractor
from keras_models.models.registry import register_backbone, register_task
from keras_models.models.roberta import RobertaBackbone, RobertaSpec
from keras_models.presets.weight_map import mount
from keras_models.spec import Spec, build_tower, dim, hf, tower
from keras_models.tasks.task import Task
from keras_models.tasks.zero_shot_audio_classifier import ZeroShotAudioClassifier

_ser = keras.saving.register_keras_serializable(package="keras_models")
_VERIFIED = ("jax", "torch", "tensorflow")


def _check_activation(name, key, source):
    try:
        get_activation(name)
    except ValueError as e:
        raise ConfigError(f"{source}: {key}={name!r} is not a known activation") from e


@dataclass(frozen=True, kw_only=True)
class ClapTextSpec(RobertaSpec):
    """ClapTextConfig: RoBERTa's keys with CLAP's defaults, plus the projection it may carry."""

    max_position_embeddings: int = dim("max_position_embeddings", 514)
    type_vocab_size: int = hf("type_vocab_size", 1)
    projection_dim: int = dim("projection_dim", 512, doc="read by ClapTextModelWithProjection")
    projection_hidden_act: str = hf("projection_hidden_act", "relu")

    hf_constants = {"bos_token_id": 0, "eos_token_id": 2}

    def validate(self, source="config.json"):
        super().validate(source)
        _check_activation(self.hidden_act, "hidden_act", source)
        _check_activation(self.projection_hidden_act, "projection_hidden_act", source)


@_ser
@register_backbone("clap_text_model")
class ClapTextBackbone(RobertaBackbone):
    spec_cls = ClapTextSpec
    base_model_prefix = "text_model"
    hf_architecture = "ClapTextModel"
    hf_model_type = "clap_text_model"
    verified_backends = _VERIFIED
    checkpoint_families = ()


@dataclass(frozen=True, kw_only=True)
class ClapSpec(Spec):
    text_config: dict = tower("text_config", "clap_text_model")
    audio_config: dict = tower("audio_config", "clap_audio_model")
    projection_dim: int = dim("projection_dim", 512)
    projection_hidden_act: str = hf("projection_hidden_act", "relu")
    logit_scale_init_value: float = hf("logit_scale_init_value", 1 / 0.07)
    initializer_factor: float = hf("initializer_factor", 1.0)

    def validate(self, source="config.json"):
        _check_activation(self.projection_hidden_act, "projection_hidden_act", source)
        if not self.logit_scale_init_value > 0:
            raise ConfigError(f"{source}: logit_scale_init_value must be > 0 (its log is the initial "
                              f"temperature), got {self.logit_scale_init_value!r}")
        for key, cfg in (("text_config", self.text_config), ("audio_config", self.audio_config)):
            if cfg is not None and cfg.get("model_type") not in (f"clap_{key[:-7]}_model",):
                raise ConfigError(f"{source}: {key}.model_type={cfg.get('model_type')!r}: CLAP's towers are "
                                  f"clap_{key[:-7]}_model")

    def dummy_inputs(self):
        return {}


@_ser
@register_backbone("clap")
class ClapBackbone(SpecBackbone):
    """``encode_text(inputs)`` / ``encode_audio(inputs)``: projected features; calling it returns
    ``{"text_embeds", "audio_embeds"}`` (projected, not normalised)."""

    spec_cls = ClapSpec
    base_model_prefix = ""
    hf_architecture = "ClapModel"
    hf_ignore = ("*position_ids", "*token_type_ids", "*relative_position_index", "*num_batches_tracked")
    verified_backends = _VERIFIED

    def __init__(self, spec=None, **kwargs):
        super().__init__(spec, **kwargs)
        s = self.spec
        d = dict(dtype=self.dtype_policy)
        self.text_model = build_tower(s.text_config, "text_model", self.dtype_policy)
        self.audio_model = build_tower(s.audio_config, "audio_model", self.dtype_policy)
        self.text_pooler = keras.layers.Dense(self.text_model.hidden_size, activation="tanh", name="text_pooler", **d)
        self.text_projection = ClapProjection(s.projection_dim, s.projection_hidden_act, name="text_projection", **d)
        self.audio_projection = ClapProjection(s.projection_dim, s.projection_hidden_act, name="audio_projection", **d)

    def dummy_inputs(self):
        return {**self.text_model.dummy_inputs(), **self.audio_model.dummy_inputs()}

    def build(self, input_shape=None):
        self.text_model.build_from_dummy()
        self.audio_model.build_from_dummy()
        self.text_pooler.build((None, self.text_model.hidden_size))
        self.text_projection.build((None, self.text_model.hidden_size))
        self.audio_projection.build((None, self.audio_model.hidden_size))
        self.built = True

    def encode_text(self, inputs, training=False):
        text = {k: v for k, v in inputs.items() if k in ("input_ids", "attention_mask", "position_ids")}
        hidden = self.text_model(text, training=training)
        return self.text_projection(self.text_pooler(hidden[:, 0]))

    def encode_audio(self, inputs, training=False):
        if not isinstance(inputs, dict):
            inputs = {"input_features": inputs}
        audio = {k: v for k, v in inputs.items() if k in ("input_features", "is_longer")}
        hidden = self.audio_model(audio, training=training)
        return self.audio_projection(self.audio_model.pooled(hidden))

    def call(self, inputs, training=False):
        return {"text_embeds": self.encode_text(inputs, training), "audio_embeds": self.encode_audio(inputs, training)}

    def weight_rules(self):
        r = mount(self.text_model.weight_rules(), "text_model.")
        r += mount(self.audio_model.weight_rules(), "audio_model.")
        r += dense_rules("text_model.pooler.dense", self.text_pooler, base=False)
        return r + self.text_projection.rules("text_projection") + self.audio_projection.rules("audio_projection")


@_ser
@register_task(ClapBackbone, "ZeroShotAudioClassifier", ("ClapModel",))
class ClapZeroShotAudioClassifier(ZeroShotAudioClassifier):
    pass


@_ser
@register_task(ClapAudioBackbone, "AudioEmbedder", ("ClapAudioModelWithProjection",))
class ClapAudioEmbedder(Task):
    """``ClapAudioModelWithProjection``: ``{"audio_embeds" (batch, projection_dim), "last_hidden_state"}``."""

    hf_head_patterns = ("audio_projection.*",)

    def __init__(self, backbone, preprocessor=None, **kwargs):
        super().__init__(backbone, preprocessor=preprocessor, **kwargs)
        s = backbone.spec
        self.audio_projection = ClapProjection(s.projection_dim, s.projection_hidden_act, name="audio_projection",
                                               dtype=self.dtype_policy)
        self.audio_projection.build((None, s.hidden_size))

    def call(self, inputs, training=False):
        hidden = self.backbone(inputs, training=training)
        return {"audio_embeds": self.audio_projection(self.backbone.pooled(hidden)), "last_hidden_state": hidden}

    def head_rules(self):
        return self.audio_projection.rules("audio_projection")

    @classmethod
    def preprocessor_from_preset(cls, folder, hf, **kw):
        from keras_models.preprocessing.audio import CONFIG_NAME, AudioFeatureExtractor

        return AudioFeatureExtractor.from_preset(folder) if (folder / CONFIG_NAME).is_file() else None

    def save_extra_files(self, folder):
        if self.preprocessor is not None:
            self.preprocessor.save_pretrained(folder)


@_ser
@register_task(ClapTextBackbone, "ProjectedTextEmbedder", ("ClapTextModelWithProjection",))
class ClapTextEmbedder(Task):
    """``ClapTextModelWithProjection``: ``{"text_embeds" (batch, projection_dim), "last_hidden_state"}``
    (the pooler, dense + tanh on the first token, then the projection)."""

    hf_head_patterns = ("text_projection.*",)

    def __init__(self, backbone, preprocessor=None, **kwargs):
        super().__init__(backbone, preprocessor=preprocessor, **kwargs)
        s = backbone.spec
        d = dict(dtype=self.dtype_policy)
        self.pooler = keras.layers.Dense(s.hidden_size, activation="tanh", name="pooler", **d)
        self.pooler.build((None, s.hidden_size))
        self.text_projection = ClapProjection(s.projection_dim, s.projection_hidden_act, name="text_projection", **d)
        self.text_projection.build((None, s.hidden_size))

    def call(self, inputs, training=False):
        hidden = self.backbone(inputs, training=training)
        return {"text_embeds": self.text_projection(self.pooler(hidden[:, 0])), "last_hidden_state": hidden}

    def head_rules(self):
        return dense_rules("pooler.dense", self.pooler) + self.text_projection.rules("text_projection")

    @classmethod
    def preprocessor_from_preset(cls, folder, hf, **kw):
        from keras_models.tasks.text import TOKENIZER_FILES

        if any((folder / f).is_file() for f in TOKENIZER_FILES):
            from keras_models.tokenizers import Tokenizer

            return Tokenizer.from_preset(folder)
        return None


__all__ = ["ClapTextSpec", "ClapTextBackbone", "ClapAudioSpec", "ClapAudioBackbone", "ClapSpec", "ClapBackbone",
           "ClapZeroShotAudioClassifier", "ClapAudioEmbedder", "ClapTextEmbedder", "ClapFeatureExtractor"]

"""CLIP-like dual encoders (CLIP, SigLIP, Chinese-CLIP, VisionTextDualEncoder) and their towers.

Chinese-CLIP's towers are existing ones under their own model types: its text tower is the BERT
encoder, its vision tower CLIP's (only the config defaults differ)."""

from dataclasses import dataclass

import keras

from keras_models.models.clip.dual import *  # noqa: F401,F403
from keras_models.models.clip.dual import __all__ as _dual
from keras_models.models.clip.text import *  # noqa: F401,F403
from keras_models.models.clip.text import __all__ as _text
from keras_models.models.clip.vision import *  # noqa: F401,F403
from keras_models.models.clip.vision import CLIPVisionSpec, VisionTower
from keras_models.models.clip.vision import __all__ as _vision
from keras_models.models.encoder.backbone import EncoderBackbone, EncoderSpec
from keras_models.models.registry import register_backbone

_ser = keras.saving.register_keras_serializable(package="keras_models")


@dataclass(frozen=True, kw_only=True)
class ChineseCLIPTextSpec(EncoderSpec):
    """ChineseCLIPTextConfig: BertConfig's keys and defaults."""


@_ser
@register_backbone("chinese_clip_text_model")
class ChineseCLIPTextBackbone(EncoderBackbone):
    """BERT with ChineseCLIPTextConfig's defaults (no pooler inside the dual encoder)."""

    spec_cls = ChineseCLIPTextSpec
    base_model_prefix = "text_model"
    hf_architecture = "ChineseCLIPTextModel"
    hf_model_type = "chinese_clip_text_model"
    verified_backends = ("jax", "torch", "tensorflow")


@dataclass(frozen=True, kw_only=True)
class ChineseCLIPVisionSpec(CLIPVisionSpec):
    """ChineseCLIPVisionConfig: CLIP's vision defaults."""


@_ser
@register_backbone("chinese_clip_vision_model")
class ChineseCLIPVisionBackbone(VisionTower):
    spec_cls = ChineseCLIPVisionSpec
    hf_architecture = "ChineseCLIPVisionModel"
    verified_backends = ("jax", "torch", "tensorflow")


__all__ = [*_dual, *_text, *_vision, "ChineseCLIPTextBackbone", "ChineseCLIPVisionBackbone"]

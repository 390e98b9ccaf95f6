"""ALIGN: an EfficientNet image tower and a BERT text tower.

* Image tower (:class:`AlignVisionBackbone`, ``align_vision_model``): EfficientNet's stem and
  MBConv blocks without the top 1x1 conv; its output is the last block's map (channels_last) and
  its pooled feature the global mean or max of it (``pooling_type``; Transformers' pooling window
  of ``hidden_dim`` covers the whole map). That feature is the image embedding (no projection).
* Text tower (:class:`AlignTextBackbone`, ``align_text_model``): the BERT encoder; the first
  token is projected by ``text_projection`` (with a bias) to ``projection_dim`` (which must equal
  the image tower's width).
* Scores: cosine similarity divided by the learned ``temperature`` (not multiplied by
  ``exp(logit_scale)`` as in CLIP): :class:`AlignZeroShotImageClassifier`.
"""

from dataclasses import dataclass

import keras
from keras import ops

from keras_models.errors import ConfigError
from keras_models.models.backbone import Backbone
from keras_models.models.clip.dual import CLIPSpec, DualEncoderBackbone
from keras_models.models.efficientnet.backbone import EfficientNetBackbone, EfficientNetSpec
from keras_models.models.encoder.backbone import EncoderBackbone, EncoderSpec
from keras_models.models.registry import register_backbone, register_task
from keras_models.models.vit.backbone import pixel_values_of
from keras_models.presets.weight_map import Rule
from keras_models.spec import const, dim, hf, tower
from keras_models.tasks.task import Task
from keras_models.tasks.zero_shot_image_classifier import ZeroShotImageClassifier, _unit

_ser = keras.saving.register_keras_serializable(package="keras_models")
_ALL = ("jax", "torch", "tensorflow")


@dataclass(frozen=True, kw_only=True)
class AlignTextSpec(EncoderSpec):
    """AlignTextConfig: BertConfig's keys and defaults."""


@_ser
@register_backbone("align_text_model")
class AlignTextBackbone(EncoderBackbone):
    spec_cls = AlignTextSpec
    base_model_prefix = ""
    hf_architecture = "AlignTextModel"
    hf_model_type = "align_text_model"
    verified_backends = _ALL


@dataclass(frozen=True, kw_only=True)
class AlignVisionSpec(EfficientNetSpec):
    """AlignVisionConfig: EfficientNet-B7's keys and defaults; ``hidden_dim`` only sizes
    Transformers' pooling window (the tower has no top conv)."""


@_ser
@register_backbone("align_vision_model")
class AlignVisionBackbone(EfficientNetBackbone):
    """EfficientNet without its top conv: (batch, h, w, last block's channels)."""

    spec_cls = AlignVisionSpec
    base_model_prefix = ""
    hf_architecture = "AlignVisionModel"
    verified_backends = _ALL

    top_conv = False
    config_source = "config.json [vision_config]"

    def pooled(self, hidden, inputs=None):
        return super().pooled(hidden)


@dataclass(frozen=True, kw_only=True)
class AlignSpec(CLIPSpec):
    text_config: dict = tower("text_config", "align_text_model")
    vision_config: dict = tower("vision_config", "align_vision_model")
    text_projection_dim: int = dim("projection_dim", 640, doc="the text projection's width (= the image width)")
    temperature_init_value: float = hf("temperature_init_value", 1.0)
    projection_dim: int | None = const(None, doc="no shared projections: see text_projection_dim")
    logit_scale_init_value: float = const(0.0)
    text_pooling: str = const("first")


@_ser
@register_backbone("align")
class AlignBackbone(DualEncoderBackbone):
    """``encode_text``: the projected first token; ``encode_image``: the pooled image map."""

    spec_cls = AlignSpec
    hf_architecture = "AlignModel"
    hf_ignore = ("*position_ids", "*token_type_ids", "*num_batches_tracked")
    hf_known_unused = ("text_model.pooler.*",)
    verified_backends = _ALL

    def __init__(self, spec=None, **kwargs):
        super().__init__(spec, **kwargs)
        self.text_projection = keras.layers.Dense(self.spec.text_projection_dim, name="text_projection",
                                                  dtype=self.dtype_policy)
        width = self.vision_model.hidden_size
        if width != self.spec.text_projection_dim:
            raise ConfigError(f"config.json: projection_dim={self.spec.text_projection_dim} must equal the image "
                              f"tower's width {width} (ALIGN compares them directly)")


@_ser
@register_task(AlignBackbone, "ZeroShotImageClassifier", ("AlignModel",))
class AlignZeroShotImageClassifier(ZeroShotImageClassifier):
    """Logits are cosine similarities divided by the checkpoint's ``temperature``."""

    hf_head_patterns = ("temperature",)

    def __init__(self, backbone, preprocessor=None, **kwargs):
        Task.__init__(self, backbone, preprocessor=preprocessor, **kwargs)
        init = keras.initializers.Constant(backbone.spec.temperature_init_value)
        self.temperature = self.add_weight(name="temperature", shape=(), initializer=init)
        self.logit_scale = self.logit_bias = None

    def call(self, inputs, training=False):
        text = _unit(self.backbone.encode_text(inputs, training=training))
        image = _unit(self.backbone.encode_image(inputs, training=training))
        logits_per_text = ops.matmul(text, ops.transpose(image)) / ops.cast(self.temperature, text.dtype)
        return {"logits_per_image": ops.transpose(logits_per_text), "logits_per_text": logits_per_text,
                "image_embeds": image, "text_embeds": text}

    def head_rules(self):
        return [Rule("temperature", self.temperature, base=False)]


__all__ = ["AlignTextSpec", "AlignTextBackbone", "AlignVisionSpec", "AlignVisionBackbone", "AlignSpec",
           "AlignBackbone", "AlignZeroShotImageClassifier"]

"""Dual encoders: a text tower and a vision tower, each pooled and projected into one space.

One implementation (:class:`DualEncoderBackbone`) for CLIP, SigLIP, Chinese-CLIP and
VisionTextDualEncoder. The towers are whatever registered backbones the nested ``text_config``
and ``vision_config`` name (their weight maps mounted under ``text_model.`` / ``vision_model.``);
a family only sets its spec's defaults and how each tower is pooled:

* ``"tower"``: the tower's own ``pooled()`` (CLIP's end-of-text token / post-normed class token,
  SigLIP's last token + head / attention-pooling head);
* ``"first"``: the first token of the last hidden state (Chinese-CLIP's text tower);
* ``"pooler"``: Transformers' ``pooler`` (dense + tanh on the first token, BERT / ViT towers);
* ``"auto"``: ``"tower"`` when the tower has ``pooled()``, else ``"pooler"`` (VisionTextDualEncoder).
"""

from dataclasses import dataclass

import keras

from keras_models.layers.vision_embeddings import dense_rules
from keras_models.models.backbone import SpecBackbone
from keras_models.models.registry import register_backbone, register_task
from keras_models.presets.weight_map import mount
from keras_models.spec import Spec, build_tower, const, hf, tower
from keras_models.tasks.zero_shot_image_classifier import ZeroShotImageClassifier

_ser = keras.saving.register_keras_serializable(package="keras_models")
_ALL = ("jax", "torch", "tensorflow")


@dataclass(frozen=True, kw_only=True)
class CLIPSpec(Spec):
    text_config: dict = tower("text_config", "clip_text_model")
    vision_config: dict = tower("vision_config", "clip_vision_model")
    projection_dim: int | None = hf("projection_dim", 512)
    logit_scale_init_value: float = hf("logit_scale_init_value", 2.6592)
    text_pooling: str = const("tower")
    vision_pooling: str = const("tower")


@dataclass(frozen=True, kw_only=True)
class SiglipSpec(CLIPSpec):
    text_config: dict = tower("text_config", "siglip_text_model")
    vision_config: dict = tower("vision_config", "siglip_vision_model")
    projection_dim: int | None = const(None, doc="no projections: the towers' heads are the projections")
    logit_scale_init_value: float = const(0.0)


@dataclass(frozen=True, kw_only=True)
class ChineseCLIPSpec(CLIPSpec):
    text_config: dict = tower("text_config", "chinese_clip_text_model")
    vision_config: dict = tower("vision_config", "chinese_clip_vision_model")
    text_pooling: str = const("first")


@dataclass(frozen=True, kw_only=True)
class VisionTextDualEncoderSpec(CLIPSpec):
    text_config: dict = tower("text_config", "bert")
    vision_config: dict = tower("vision_config", "vit")
    text_pooling: str = const("auto")
    vision_pooling: str = const("auto")


class DualEncoderBackbone(SpecBackbone):
    """``encode_text(inputs)`` / ``encode_image(inputs)``: projected features; calling it returns
    ``{"text_embeds", "image_embeds"}`` (projected, not normalised)."""

    base_model_prefix = ""
    hf_ignore = ("*position_ids", "*token_type_ids")
    hf_known_unused = ()

    def __init__(self, spec=None, **kwargs):
        super().__init__(spec, **kwargs)
        s = self.spec
        self.text_model = build_tower(s.text_config, "text_model", self.dtype_policy)
        self.vision_model = build_tower(s.vision_config, "vision_model", self.dtype_policy)
        common = dict(dtype=self.dtype_policy)
        self.text_pooling = self._pooling(s.text_pooling, self.text_model)
        self.vision_pooling = self._pooling(s.vision_pooling, self.vision_model)
        self.text_pooler = self._pooler(self.text_pooling, self.text_model, "text_pooler")
        self.vision_pooler = self._pooler(self.vision_pooling, self.vision_model, "vision_pooler")
        p = s.projection_dim
        self.text_projection = keras.layers.Dense(p, use_bias=False, name="text_projection", **common) if p else None
        self.visual_projection = keras.layers.Dense(p, use_bias=False, name="visual_projection", **common) if p else None

    @staticmethod
    def _pooling(kind, tower_model):
        if kind == "auto":
            return "tower" if hasattr(tower_model, "pooled") else "pooler"
        return kind

    def _pooler(self, kind, tower_model, name):
        if kind != "pooler":
            return None
        return keras.layers.Dense(tower_model.hidden_size, activation="tanh", name=name, dtype=self.dtype_policy)

    def dummy_inputs(self):
        return {**self.text_model.dummy_inputs(), **self.vision_model.dummy_inputs()}

    def build(self, input_shape=None):
        self.text_model.build_from_dummy()
        self.vision_model.build_from_dummy()
        for pooler, projection, tower_model in ((self.text_pooler, self.text_projection, self.text_model),
                                                (self.vision_pooler, self.visual_projection, self.vision_model)):
            if pooler is not None:
                pooler.build((None, tower_model.hidden_size))
            if projection is not None:  # built here, not on first call, so that .keras loading fills it
                projection.build((None, self.pooled_width(tower_model)))
        self.built = True

    @staticmethod
    def pooled_width(tower_model):
        head = getattr(tower_model, "head", None)
        return head.units if isinstance(head, keras.layers.Dense) else tower_model.hidden_size

    def _pool(self, kind, tower_model, pooler, hidden, inputs):
        if kind == "tower":
            return tower_model.pooled(hidden, inputs)
        if kind == "first":
            return hidden[:, 0]
        return pooler(hidden[:, 0])

    def encode_text(self, inputs, training=False):
        text = {k: v for k, v in inputs.items() if k in ("input_ids", "attention_mask", "token_type_ids")}
        hidden = self.text_model(text, training=training)
        x = self._pool(self.text_pooling, self.text_model, self.text_pooler, hidden, text)
        return self.text_projection(x) if self.text_projection is not None else x

    def encode_image(self, inputs, training=False):
        pixels = inputs["pixel_values"] if isinstance(inputs, dict) else inputs
        hidden = self.vision_model({"pixel_values": pixels}, training=training)
        x = self._pool(self.vision_pooling, self.vision_model, self.vision_pooler, hidden, None)
        return self.visual_projection(x) if self.visual_projection is not None else x

    def call(self, inputs, training=False):
        return {"text_embeds": self.encode_text(inputs, training), "image_embeds": self.encode_image(inputs, training)}

    def weight_rules(self):
        r = mount(self.text_model.weight_rules(), "text_model.") + mount(self.vision_model.weight_rules(), "vision_model.")
        for name, layer in (("text_model.pooler.dense", self.text_pooler), ("vision_model.pooler.dense", self.vision_pooler),
                            ("text_projection", self.text_projection), ("visual_projection", self.visual_projection)):
            if layer is not None:
                r += dense_rules(name, layer, base=False)
        return r


@_ser
@register_backbone("clip")
class CLIPBackbone(DualEncoderBackbone):
    spec_cls = CLIPSpec
    hf_architecture = "CLIPModel"
    verified_backends = _ALL


@_ser
@register_task(CLIPBackbone, "ZeroShotImageClassifier", ("CLIPModel",))
class CLIPZeroShotImageClassifier(ZeroShotImageClassifier):
    pass


@_ser
@register_backbone("siglip")
class SiglipBackbone(DualEncoderBackbone):
    spec_cls = SiglipSpec
    hf_architecture = "SiglipModel"
    verified_backends = _ALL


@_ser
@register_task(SiglipBackbone, "ZeroShotImageClassifier", ("SiglipModel",))
class SiglipZeroShotImageClassifier(ZeroShotImageClassifier):
    logit_shape = (1,)
    use_logit_bias = True
    score_activation = "sigmoid"
    text_padding = "max_length"


@_ser
@register_backbone("chinese_clip")
class ChineseCLIPBackbone(DualEncoderBackbone):
    spec_cls = ChineseCLIPSpec
    hf_architecture = "ChineseCLIPModel"
    verified_backends = _ALL


@_ser
@register_task(ChineseCLIPBackbone, "ZeroShotImageClassifier", ("ChineseCLIPModel",))
class ChineseCLIPZeroShotImageClassifier(ZeroShotImageClassifier):
    pass


@_ser
@register_backbone("vision-text-dual-encoder")
class VisionTextDualEncoderBackbone(DualEncoderBackbone):
    spec_cls = VisionTextDualEncoderSpec
    hf_architecture = "VisionTextDualEncoderModel"
    verified_backends = _ALL


@_ser
@register_task(VisionTextDualEncoderBackbone, "ZeroShotImageClassifier", ("VisionTextDualEncoderModel",))
class VisionTextDualEncoderZeroShotImageClassifier(ZeroShotImageClassifier):
    pass


__all__ = ["CLIPSpec", "SiglipSpec", "ChineseCLIPSpec", "VisionTextDualEncoderSpec", "DualEncoderBackbone",
           "CLIPBackbone", "CLIPZeroShotImageClassifier", "SiglipBackbone", "SiglipZeroShotImageClassifier",
           "ChineseCLIPBackbone", "ChineseCLIPZeroShotImageClassifier", "VisionTextDualEncoderBackbone",
           "VisionTextDualEncoderZeroShotImageClassifier"]

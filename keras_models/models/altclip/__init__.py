"""AltCLIP: CLIP's vision tower with an XLM-RoBERTa text tower.

The text tower (:class:`AltCLIPTextBackbone`, model_type ``altclip_text_model``) is the shared
BERT-like encoder in RoBERTa's position mode (positions counted from ``pad_token_id + 1``), its
weights under ``roberta.``, followed by a LayerNorm (``pre_LN``) and a dense ``transformation`` to
``project_dim`` on every token: like Transformers' ``AltCLIPTextModel`` it returns that projected
sequence, and its pooled feature is the first token of it. The vision tower is CLIP's
(``altclip_vision_model``, only the model type differs). The dual encoder projects both pooled
features into ``projection_dim`` and scores them as CLIP does (``km.ZeroShotImageClassifier``).
"""

from dataclasses import dataclass, replace

import keras

from keras_models.layers.vision_embeddings import dense_rules, norm_rules
from keras_models.models.clip.dual import CLIPSpec, DualEncoderBackbone
from keras_models.models.clip.vision import CLIPVisionSpec, VisionTower
from keras_models.models.encoder.backbone import BERT_NAMES, EncoderBackbone
from keras_models.models.registry import register_backbone, register_task
from keras_models.models.roberta import RobertaSpec
from keras_models.spec import const, dim, hf, tower
from keras_models.tasks.zero_shot_image_classifier import ZeroShotImageClassifier

_ser = keras.saving.register_keras_serializable(package="keras_models")
_ALL = ("jax", "torch", "tensorflow")


@dataclass(frozen=True, kw_only=True)
class AltCLIPTextSpec(RobertaSpec):
    """AltCLIPTextConfig: XLM-R large's keys and defaults, plus ``project_dim``."""

    vocab_size: int = dim("vocab_size", 250002)
    hidden_size: int = dim("hidden_size", 1024)
    num_layers: int = dim("num_hidden_layers", 24)
    num_heads: int = dim("num_attention_heads", 16)
    intermediate_size: int = dim("intermediate_size", 4096)
    max_position_embeddings: int = dim("max_position_embeddings", 514)
    type_vocab_size: int = hf("type_vocab_size", 1)
    layer_norm_eps: float = hf("layer_norm_eps", 1e-5)
    attention_dropout: float = hf("attention_probs_dropout_prob", 0.0)
    project_dim: int = dim("project_dim", 768, doc="width of the per-token transformation (the pooled feature)")


@_ser
@register_backbone("altclip_text_model")
class AltCLIPTextBackbone(EncoderBackbone):
    """XLM-R encoder + ``pre_LN`` + ``transformation``: (batch, seq, project_dim)."""

    spec_cls = AltCLIPTextSpec
    base_model_prefix = ""
    hf_architecture = "AltCLIPTextModel"
    hf_model_type = "altclip_text_model"
    hf_names = {**BERT_NAMES, **{k: "roberta." + BERT_NAMES[k] for k in (
        "word", "position", "token_type", "emb_norm", "layer")}}
    verified_backends = _ALL

    def __init__(self, spec=None, **kwargs):
        super().__init__(spec, **kwargs)
        common = dict(dtype=self.dtype_policy)
        self.pre_norm = keras.layers.LayerNormalization(epsilon=self.layer_norm_eps, name="pre_LN", **common)
        self.transformation = keras.layers.Dense(self.project_dim, name="transformation", **common)
        self.pooled_size = self.project_dim

    def call(self, inputs, training=False):
        return self.transformation(self.pre_norm(super().call(inputs, training=training)))

    def pooled(self, hidden, inputs=None):
        """The first token of the projected sequence (Transformers' ``pooler_output``)."""
        return hidden[:, 0]

    def weight_rules(self):
        return super().weight_rules() + norm_rules("pre_LN", self.pre_norm) + dense_rules(
            "transformation", self.transformation)


@dataclass(frozen=True, kw_only=True)
class AltCLIPVisionSpec(CLIPVisionSpec):
    """AltCLIPVisionConfig: CLIP's vision keys and defaults."""


@_ser
@register_backbone("altclip_vision_model")
class AltCLIPVisionBackbone(VisionTower):
    spec_cls = AltCLIPVisionSpec
    hf_architecture = "AltCLIPVisionModel"
    verified_backends = _ALL

    def weight_rules(self):  # CLIP's names, but its blocks are under ``encoder.layer.``
        return [replace(r, hf=r.hf.replace("encoder.layers.", "encoder.layer.", 1)) for r in super().weight_rules()]


@dataclass(frozen=True, kw_only=True)
class AltCLIPSpec(CLIPSpec):
    text_config: dict = tower("text_config", "altclip_text_model")
    vision_config: dict = tower("vision_config", "altclip_vision_model")
    projection_dim: int | None = hf("projection_dim", 768)
    text_pooling: str = const("tower")


class WidthAwareDualEncoder(DualEncoderBackbone):
    """A dual encoder whose towers may declare the width of their pooled feature
    (``pooled_size``), when it is not the tower's hidden size."""

    @staticmethod
    def pooled_width(tower_model):
        return getattr(tower_model, "pooled_size", None) or DualEncoderBackbone.pooled_width(tower_model)


@_ser
@register_backbone("altclip")
class AltCLIPBackbone(WidthAwareDualEncoder):
    spec_cls = AltCLIPSpec
    hf_architecture = "AltCLIPModel"
    verified_backends = _ALL


@_ser
@register_task(AltCLIPBackbone, "ZeroShotImageClassifier", ("AltCLIPModel",))
class AltCLIPZeroShotImageClassifier(ZeroShotImageClassifier):
    pass


__all__ = ["AltCLIPTextSpec", "AltCLIPTextBackbone", "AltCLIPVisionSpec", "AltCLIPVisionBackbone", "AltCLIPSpec",
           "WidthAwareDualEncoder", "AltCLIPBackbone", "AltCLIPZeroShotImageClassifier"]

"""BERT: the generic encoder with its default switches (absolute positions, post-norm)."""

from dataclasses import dataclass

import keras

from keras_models.models.encoder.backbone import EncoderBackbone, EncoderSpec
from keras_models.models.registry import register_backbone


@dataclass(frozen=True, kw_only=True)
class BertSpec(EncoderSpec):
    """BertConfig: the shared encoder's keys and defaults as they are."""

    hf_constants = {"position_embedding_type": "absolute"}


@keras.saving.register_keras_serializable(package="keras_models")
@register_backbone("bert")
class BertBackbone(EncoderBackbone):
    spec_cls = BertSpec
    base_model_prefix = "bert"
    hf_architecture = "BertModel"
    hf_model_type = "bert"
    verified_backends = ("jax", "torch", "tensorflow")
    checkpoint_families = ("HerBERT", "BORT", "BertJapanese")

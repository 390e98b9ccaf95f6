"""BERT: the generic encoder with its default switches (absolute positions, post-norm)."""

import keras

from keras_models.models.encoder.backbone import EncoderBackbone
from keras_models.models.registry import register_backbone


@keras.saving.register_keras_serializable(package="keras_models")
@register_backbone("bert")
class BertBackbone(EncoderBackbone):
    base_model_prefix = "bert"
    hf_architecture = "BertModel"
    hf_model_type = "bert"
    hf_extra = {"position_embedding_type": "absolute"}
    verified_backends = ("jax", "torch", "tensorflow")
    checkpoint_families = ("HerBERT", "BORT")

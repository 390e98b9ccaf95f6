"""RoBERTa: the BERT encoder with pad-aware position ids and RoBERTa's head names."""

import keras

from keras_models.models.encoder.backbone import EncoderBackbone
from keras_models.models.encoder.tasks import ROBERTA_HEADS, define_tasks
from keras_models.models.registry import register_backbone

ROBERTA_KEYS = {
    **EncoderBackbone.hf_keys,
    "pad_token_id": ("pad_token_id", 1),
    "type_vocab_size": ("type_vocab_size", 2),
}


@keras.saving.register_keras_serializable(package="keras_models")
@register_backbone("roberta")
class RobertaBackbone(EncoderBackbone):
    base_model_prefix = "roberta"
    hf_architecture = "RobertaModel"
    hf_model_type = "roberta"
    hf_keys = ROBERTA_KEYS
    hf_extra = {"bos_token_id": 0, "eos_token_id": 2, "position_embedding_type": "absolute"}
    family_defaults = {"position_mode": "padding_offset"}
    verified_backends = ("jax", "torch", "tensorflow")
    checkpoint_families = ("BERTweet", "PhoBERT")

    def __init__(self, *args, pad_token_id=1, **kwargs):
        super().__init__(*args, pad_token_id=pad_token_id, **kwargs)


__all__ = ["RobertaBackbone", "ROBERTA_KEYS"] + define_tasks(globals(), RobertaBackbone, "Roberta", ROBERTA_HEADS)

"""BERT-shaped families with BERT's head names: ERNIE, Megatron-BERT, RemBERT.

ERNIE adds a task-type embedding (``use_task_id``); Megatron-BERT is pre-norm with no embedding
LayerNorm and a final ``encoder.ln``; RemBERT factorises its input embeddings
(``input_embedding_size``) and has an untied, wider output embedding in its MLM head.
"""

import keras

from keras_models.models.encoder.backbone import BERT_KEYS, BERT_NAMES, EncoderBackbone
from keras_models.models.encoder.tasks import BERT_HEADS, define_tasks
from keras_models.models.registry import register_backbone

_ser = keras.saving.register_keras_serializable(package="keras_models")
_ALL = ("jax", "torch", "tensorflow")


@_ser
@register_backbone("ernie")
class ErnieBackbone(EncoderBackbone):
    base_model_prefix = "ernie"
    hf_architecture = "ErnieModel"
    hf_model_type = "ernie"
    verified_backends = _ALL

    @classmethod
    def config_from_hf(cls, hf):
        kwargs = super().config_from_hf(hf)
        kwargs["task_type_vocab_size"] = hf.get("task_type_vocab_size", 3) if hf.get("use_task_id") else 0
        return kwargs

    def config_to_hf(self):
        config = super().config_to_hf()
        config.update(use_task_id=bool(self.task_type_vocab_size),
                      task_type_vocab_size=self.task_type_vocab_size or 3)
        return config


@_ser
@register_backbone("megatron-bert")
class MegatronBertBackbone(EncoderBackbone):
    base_model_prefix = "bert"
    hf_architecture = "MegatronBertModel"
    hf_model_type = "megatron-bert"
    family_defaults = {"norm_first": True, "final_norm": True, "embeddings_norm": False}
    hf_names = {**BERT_NAMES, "attn_norm": "attention.ln", "ffn_norm": "ln", "final_norm": "encoder.ln"}
    verified_backends = _ALL


@_ser
@register_backbone("rembert")
class RemBertBackbone(EncoderBackbone):
    base_model_prefix = "rembert"
    hf_architecture = "RemBertModel"
    hf_model_type = "rembert"
    hf_keys = {
        **BERT_KEYS,
        "embedding_size": ("input_embedding_size", 256),
        "output_embedding_size": ("output_embedding_size", 1664),
        "dropout": ("hidden_dropout_prob", 0.0),
        "attention_dropout": ("attention_probs_dropout_prob", 0.0),
    }
    hf_extra = {"tie_word_embeddings": False}
    family_defaults = {"embedding_projection": True}
    hf_names = {**BERT_NAMES, "emb_proj": "encoder.embedding_hidden_mapping_in"}
    verified_backends = _ALL


REMBERT_HEADS = {
    **BERT_HEADS,
    "MaskedLM": dict(hf_dense="cls.predictions.dense", hf_norm="cls.predictions.LayerNorm",
                     hf_bias="cls.predictions.decoder.bias", hf_decoder="cls.predictions.decoder",
                     head_width_attr="output_embedding_size"),
}

__all__ = ["ErnieBackbone", "MegatronBertBackbone", "RemBertBackbone"]
__all__ += define_tasks(globals(), ErnieBackbone, "Ernie", BERT_HEADS)
__all__ += define_tasks(globals(), MegatronBertBackbone, "MegatronBert", BERT_HEADS)
__all__ += define_tasks(globals(), RemBertBackbone, "RemBert", REMBERT_HEADS)

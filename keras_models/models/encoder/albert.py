"""ALBERT: factorised embeddings always mapped to ``hidden_size``, and shared layers:
``num_hidden_groups`` groups of ``inner_group_num`` blocks, reused across ``num_hidden_layers``."""

from dataclasses import dataclass

import keras

from keras_models.models.encoder.backbone import BERT_NAMES, EncoderBackbone, EncoderSpec
from keras_models.models.encoder.tasks import family_task
from keras_models.models.registry import register_backbone
from keras_models.spec import const, dim, hf
from keras_models.tasks.embedder import TextEmbedder
from keras_models.tasks.text import MaskedLM, QuestionAnswerer, TextClassifier, TokenClassifier


@dataclass(frozen=True, kw_only=True)
class AlbertSpec(EncoderSpec):
    vocab_size: int = dim("vocab_size", 30000)
    hidden_size: int = dim("hidden_size", 4096)
    num_heads: int = dim("num_attention_heads", 64)
    intermediate_size: int = dim("intermediate_size", 16384)
    hidden_act: str = hf("hidden_act", "gelu_new")
    dropout: float = hf("hidden_dropout_prob", 0.0)
    attention_dropout: float = hf("attention_probs_dropout_prob", 0.0)
    embedding_size: int | None = dim("embedding_size", 128)
    num_layer_groups: int | None = dim("num_hidden_groups", 1)
    layers_per_group: int = dim("inner_group_num", 1)
    embedding_projection: bool | None = const(True)


@keras.saving.register_keras_serializable(package="keras_models")
@register_backbone("albert")
class AlbertBackbone(EncoderBackbone):
    spec_cls = AlbertSpec
    base_model_prefix = "albert"
    hf_architecture = "AlbertModel"
    hf_model_type = "albert"
    hf_known_unused = ("*pooler.*",)
    hf_names = {
        **BERT_NAMES,
        "emb_proj": "encoder.embedding_hidden_mapping_in",
        "layer": "encoder.albert_layer_groups.{g}.albert_layers.{l}.",
        "query": "attention.query", "key": "attention.key", "value": "attention.value",
        "attn_out": "attention.dense", "attn_norm": "attention.LayerNorm",
        "ffn_in": "ffn", "ffn_out": "ffn_output", "ffn_norm": "full_layer_layer_norm",
    }
    verified_backends = ("jax", "torch", "tensorflow")


@family_task(AlbertBackbone, "MaskedLM", "AlbertForMaskedLM", "AlbertForPreTraining")
class AlbertMaskedLM(MaskedLM):
    hf_dense = "predictions.dense"
    hf_norm = "predictions.LayerNorm"
    hf_bias = "predictions.bias"
    hf_decoder = "predictions.decoder"
    head_width_attr = "embedding_dim"
    hf_head_patterns = ("predictions.*", "sop_classifier.*")


@family_task(AlbertBackbone, "TextClassifier", "AlbertForSequenceClassification")
class AlbertTextClassifier(TextClassifier):
    hf_inner = ("pooler", True)


@family_task(AlbertBackbone, "TokenClassifier", "AlbertForTokenClassification")
class AlbertTokenClassifier(TokenClassifier):
    pass


@family_task(AlbertBackbone, "QuestionAnswerer", "AlbertForQuestionAnswering")
class AlbertQuestionAnswerer(QuestionAnswerer):
    pass


@family_task(AlbertBackbone, "TextEmbedder", "AlbertModel")
class AlbertTextEmbedder(TextEmbedder):
    pass


__all__ = [
    "AlbertBackbone", "AlbertMaskedLM", "AlbertTextClassifier", "AlbertTokenClassifier",
    "AlbertQuestionAnswerer", "AlbertTextEmbedder",
]

"""DistilBERT: BERT without token types, under its own config keys and tensor names."""

from dataclasses import dataclass

import keras

from keras_models.models.encoder.backbone import BERT_NAMES, EncoderBackbone, EncoderSpec
from keras_models.models.encoder.tasks import family_task
from keras_models.models.registry import register_backbone
from keras_models.spec import const, dim, hf
from keras_models.tasks.embedder import TextEmbedder
from keras_models.tasks.text import MaskedLM, QuestionAnswerer, TextClassifier, TokenClassifier


@dataclass(frozen=True, kw_only=True)
class DistilBertSpec(EncoderSpec):
    hidden_size: int = dim("dim", 768)
    num_layers: int = dim("n_layers", 6)
    num_heads: int = dim("n_heads", 12)
    intermediate_size: int = dim("hidden_dim", 3072)
    hidden_act: str = hf("activation", "gelu")
    dropout: float = hf("dropout", 0.1)
    attention_dropout: float = hf("attention_dropout", 0.1)
    type_vocab_size: int = const(0)
    layer_norm_eps: float = const(1e-12)


@keras.saving.register_keras_serializable(package="keras_models")
@register_backbone("distilbert")
class DistilBertBackbone(EncoderBackbone):
    spec_cls = DistilBertSpec
    base_model_prefix = "distilbert"
    hf_architecture = "DistilBertModel"
    hf_model_type = "distilbert"
    hf_ignore = ("*embeddings.position_ids",)
    hf_names = {
        **BERT_NAMES,
        "layer": "transformer.layer.{i}.",
        "query": "attention.q_lin", "key": "attention.k_lin", "value": "attention.v_lin",
        "attn_out": "attention.out_lin", "attn_norm": "sa_layer_norm",
        "ffn_in": "ffn.lin1", "ffn_out": "ffn.lin2", "ffn_norm": "output_layer_norm",
    }
    verified_backends = ("jax", "torch", "tensorflow")


@family_task(DistilBertBackbone, "MaskedLM", "DistilBertForMaskedLM")
class DistilBertMaskedLM(MaskedLM):
    hf_dense = "vocab_transform"
    hf_norm = "vocab_layer_norm"
    hf_bias = "vocab_projector.bias"
    hf_decoder = "vocab_projector"
    hf_head_patterns = ("vocab_*",)


@family_task(DistilBertBackbone, "TextClassifier", "DistilBertForSequenceClassification")
class DistilBertTextClassifier(TextClassifier):
    hf_inner = ("pre_classifier", False)
    inner_activation = "relu"
    hf_head_patterns = ("pre_classifier.*", "classifier.*")


@family_task(DistilBertBackbone, "TokenClassifier", "DistilBertForTokenClassification")
class DistilBertTokenClassifier(TokenClassifier):
    pass


@family_task(DistilBertBackbone, "QuestionAnswerer", "DistilBertForQuestionAnswering")
class DistilBertQuestionAnswerer(QuestionAnswerer):
    pass


@family_task(DistilBertBackbone, "TextEmbedder", "DistilBertModel")
class DistilBertTextEmbedder(TextEmbedder):
    pass


__all__ = [
    "DistilBertBackbone", "DistilBertMaskedLM", "DistilBertTextClassifier", "DistilBertTokenClassifier",
    "DistilBertQuestionAnswerer", "DistilBertTextEmbedder",
]

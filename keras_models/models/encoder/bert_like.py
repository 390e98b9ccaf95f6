"""BERT-shaped families with BERT's head names: ERNIE, Megatron-BERT, RemBERT.

ERNIE adds a task-type embedding (``use_task_id``); Megatron-BERT is pre-norm with no embedding
LayerNorm and a final ``encoder.ln``; RemBERT factorises its input embeddings
(``input_embedding_size``) and has an untied, wider output embedding in its MLM head.
"""

from dataclasses import dataclass

import keras

from keras_models.models.encoder.backbone import BERT_NAMES, EncoderBackbone, EncoderSpec
from keras_models.models.encoder.tasks import family_task
from keras_models.models.registry import register_backbone
from keras_models.spec import const, dim, hf
from keras_models.tasks.embedder import TextEmbedder
from keras_models.tasks.text import MaskedLM, QuestionAnswerer, TextClassifier, TokenClassifier

_ser = keras.saving.register_keras_serializable(package="keras_models")
_ALL = ("jax", "torch", "tensorflow")


@dataclass(frozen=True, kw_only=True)
class ErnieSpec(EncoderSpec):
    """ErnieConfig: BERT's, plus a task-type embedding when ``use_task_id``."""

    @classmethod
    def adjust_from_hf(cls, config, values, source):
        if config.get("use_task_id"):
            values["task_type_vocab_size"] = config.get("task_type_vocab_size") or 3
        return values

    def adjust_to_hf(self, out):
        out.update(use_task_id=bool(self.task_type_vocab_size), task_type_vocab_size=self.task_type_vocab_size or 3)
        return super().adjust_to_hf(out)


@dataclass(frozen=True, kw_only=True)
class MegatronBertSpec(EncoderSpec):
    vocab_size: int = dim("vocab_size", 29056)
    hidden_size: int = dim("hidden_size", 1024)
    num_layers: int = dim("num_hidden_layers", 24)
    num_heads: int = dim("num_attention_heads", 16)
    intermediate_size: int = dim("intermediate_size", 4096)
    norm_first: bool = const(True)
    final_norm: bool = const(True)
    embeddings_norm: bool = const(False)


@dataclass(frozen=True, kw_only=True)
class RemBertSpec(EncoderSpec):
    vocab_size: int = dim("vocab_size", 250300)
    hidden_size: int = dim("hidden_size", 1152)
    num_layers: int = dim("num_hidden_layers", 32)
    num_heads: int = dim("num_attention_heads", 18)
    intermediate_size: int = dim("intermediate_size", 4608)
    dropout: float = hf("hidden_dropout_prob", 0.0)
    attention_dropout: float = hf("attention_probs_dropout_prob", 0.0)
    embedding_size: int | None = dim("input_embedding_size", 256)
    output_embedding_size: int | None = dim("output_embedding_size", 1664)
    embedding_projection: bool | None = const(True)

    hf_constants = {"tie_word_embeddings": False}


@_ser
@register_backbone("ernie")
class ErnieBackbone(EncoderBackbone):
    spec_cls = ErnieSpec
    base_model_prefix = "ernie"
    hf_architecture = "ErnieModel"
    hf_model_type = "ernie"
    verified_backends = _ALL


@_ser
@register_backbone("megatron-bert")
class MegatronBertBackbone(EncoderBackbone):
    spec_cls = MegatronBertSpec
    base_model_prefix = "bert"
    hf_architecture = "MegatronBertModel"
    hf_model_type = "megatron-bert"
    hf_names = {**BERT_NAMES, "attn_norm": "attention.ln", "ffn_norm": "ln", "final_norm": "encoder.ln"}
    verified_backends = _ALL


@_ser
@register_backbone("rembert")
class RemBertBackbone(EncoderBackbone):
    spec_cls = RemBertSpec
    base_model_prefix = "rembert"
    hf_architecture = "RemBertModel"
    hf_model_type = "rembert"
    hf_names = {**BERT_NAMES, "emb_proj": "encoder.embedding_hidden_mapping_in"}
    verified_backends = _ALL


class RemBertMaskedLMBase(MaskedLM):
    """RemBERT's MLM head: untied, as wide as ``output_embedding_size``."""

    hf_dense = "cls.predictions.dense"
    hf_norm = "cls.predictions.LayerNorm"
    hf_bias = "cls.predictions.decoder.bias"
    hf_decoder = "cls.predictions.decoder"
    head_width_attr = "output_embedding_size"


@family_task(ErnieBackbone, "MaskedLM", "ErnieForMaskedLM", "ErnieForPreTraining")
class ErnieMaskedLM(MaskedLM):
    pass


@family_task(ErnieBackbone, "TextClassifier", "ErnieForSequenceClassification")
class ErnieTextClassifier(TextClassifier):
    pass


@family_task(ErnieBackbone, "TokenClassifier", "ErnieForTokenClassification")
class ErnieTokenClassifier(TokenClassifier):
    pass


@family_task(ErnieBackbone, "QuestionAnswerer", "ErnieForQuestionAnswering")
class ErnieQuestionAnswerer(QuestionAnswerer):
    pass


@family_task(ErnieBackbone, "TextEmbedder", "ErnieModel")
class ErnieTextEmbedder(TextEmbedder):
    pass



@family_task(MegatronBertBackbone, "MaskedLM", "MegatronBertForMaskedLM", "MegatronBertForPreTraining")
class MegatronBertMaskedLM(MaskedLM):
    pass


@family_task(MegatronBertBackbone, "TextClassifier", "MegatronBertForSequenceClassification")
class MegatronBertTextClassifier(TextClassifier):
    pass


@family_task(MegatronBertBackbone, "TokenClassifier", "MegatronBertForTokenClassification")
class MegatronBertTokenClassifier(TokenClassifier):
    pass


@family_task(MegatronBertBackbone, "QuestionAnswerer", "MegatronBertForQuestionAnswering")
class MegatronBertQuestionAnswerer(QuestionAnswerer):
    pass


@family_task(MegatronBertBackbone, "TextEmbedder", "MegatronBertModel")
class MegatronBertTextEmbedder(TextEmbedder):
    pass



@family_task(RemBertBackbone, "MaskedLM", "RemBertForMaskedLM")
class RemBertMaskedLM(RemBertMaskedLMBase):
    pass


@family_task(RemBertBackbone, "TextClassifier", "RemBertForSequenceClassification")
class RemBertTextClassifier(TextClassifier):
    pass


@family_task(RemBertBackbone, "TokenClassifier", "RemBertForTokenClassification")
class RemBertTokenClassifier(TokenClassifier):
    pass


@family_task(RemBertBackbone, "QuestionAnswerer", "RemBertForQuestionAnswering")
class RemBertQuestionAnswerer(QuestionAnswerer):
    pass


@family_task(RemBertBackbone, "TextEmbedder", "RemBertModel")
class RemBertTextEmbedder(TextEmbedder):
    pass


__all__ = [
    "ErnieBackbone", "MegatronBertBackbone", "RemBertBackbone", "ErnieMaskedLM", "ErnieTextClassifier",
    "ErnieTokenClassifier", "ErnieQuestionAnswerer", "ErnieTextEmbedder", "MegatronBertMaskedLM",
    "MegatronBertTextClassifier", "MegatronBertTokenClassifier", "MegatronBertQuestionAnswerer",
    "MegatronBertTextEmbedder", "RemBertMaskedLM", "RemBertTextClassifier", "RemBertTokenClassifier",
    "RemBertQuestionAnswerer", "RemBertTextEmbedder"
]


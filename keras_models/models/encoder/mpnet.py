"""MPNet: RoBERTa-style embeddings (no token types) and a bucketed relative-position attention
bias shared by all layers (``encoder.relative_attention_bias``)."""

from dataclasses import dataclass

import keras

from keras_models.models.encoder.backbone import BERT_NAMES, EncoderBackbone, EncoderSpec
from keras_models.models.encoder.tasks import RobertaShapedMaskedLM, RobertaShapedTextClassifier, family_task
from keras_models.models.registry import register_backbone
from keras_models.spec import const, dim
from keras_models.tasks.embedder import TextEmbedder
from keras_models.tasks.text import QuestionAnswerer, TokenClassifier


@dataclass(frozen=True, kw_only=True)
class MPNetSpec(EncoderSpec):
    vocab_size: int = dim("vocab_size", 30527)
    relative_attention_buckets: int = dim("relative_attention_num_buckets", 32)
    type_vocab_size: int = const(0)
    pad_token_id: int = const(1, doc="MPNet's embeddings hard-code padding index 1, whatever config.json says")
    position_mode: str = const("padding_offset")

    hf_constants = {"pad_token_id": 1, "bos_token_id": 0, "eos_token_id": 2}


@keras.saving.register_keras_serializable(package="keras_models")
@register_backbone("mpnet")
class MPNetBackbone(EncoderBackbone):
    spec_cls = MPNetSpec
    base_model_prefix = "mpnet"
    hf_architecture = "MPNetModel"
    hf_model_type = "mpnet"
    hf_names = {**BERT_NAMES, "query": "attention.attn.q", "key": "attention.attn.k", "value": "attention.attn.v",
                "attn_out": "attention.attn.o", "attn_norm": "attention.LayerNorm"}
    verified_backends = ("jax", "torch", "tensorflow")


@family_task(MPNetBackbone, "MaskedLM", "MPNetForMaskedLM")
class MPNetMaskedLM(RobertaShapedMaskedLM):
    pass


@family_task(MPNetBackbone, "TextClassifier", "MPNetForSequenceClassification")
class MPNetTextClassifier(RobertaShapedTextClassifier):
    pass


@family_task(MPNetBackbone, "TokenClassifier", "MPNetForTokenClassification")
class MPNetTokenClassifier(TokenClassifier):
    pass


@family_task(MPNetBackbone, "QuestionAnswerer", "MPNetForQuestionAnswering")
class MPNetQuestionAnswerer(QuestionAnswerer):
    pass


@family_task(MPNetBackbone, "TextEmbedder", "MPNetModel")
class MPNetTextEmbedder(TextEmbedder):
    pass


__all__ = [
    "MPNetBackbone", "MPNetMaskedLM", "MPNetTextClassifier", "MPNetTokenClassifier", "MPNetQuestionAnswerer",
    "MPNetTextEmbedder",
]

"""RoBERTa: the BERT encoder with pad-aware position ids and RoBERTa's head names."""

from dataclasses import dataclass

import keras

from keras_models.models.encoder.backbone import EncoderBackbone, EncoderSpec
from keras_models.models.encoder.tasks import RobertaShapedMaskedLM, RobertaShapedTextClassifier, family_task
from keras_models.models.registry import register_backbone
from keras_models.spec import const, dim, hf
from keras_models.tasks.embedder import TextEmbedder
from keras_models.tasks.multiple_choice import MultipleChoice
from keras_models.tasks.text import QuestionAnswerer, TokenClassifier


@dataclass(frozen=True, kw_only=True)
class RobertaSpec(EncoderSpec):
    """RobertaConfig: BERT's keys, padding index 1, positions counted from ``pad_token_id + 1``."""

    vocab_size: int = dim("vocab_size", 50265)
    pad_token_id: int = hf("pad_token_id", 1)
    position_mode: str = const("padding_offset")

    hf_constants = {"bos_token_id": 0, "eos_token_id": 2, "position_embedding_type": "absolute"}


@keras.saving.register_keras_serializable(package="keras_models")
@register_backbone("roberta")
class RobertaBackbone(EncoderBackbone):
    spec_cls = RobertaSpec
    base_model_prefix = "roberta"
    hf_architecture = "RobertaModel"
    hf_model_type = "roberta"
    verified_backends = ("jax", "torch", "tensorflow")
    checkpoint_families = ("BERTweet", "PhoBERT")


@family_task(RobertaBackbone, "MaskedLM", "RobertaForMaskedLM")
class RobertaMaskedLM(RobertaShapedMaskedLM):
    pass


@family_task(RobertaBackbone, "TextClassifier", "RobertaForSequenceClassification")
class RobertaTextClassifier(RobertaShapedTextClassifier):
    pass


@family_task(RobertaBackbone, "TokenClassifier", "RobertaForTokenClassification")
class RobertaTokenClassifier(TokenClassifier):
    pass


@family_task(RobertaBackbone, "QuestionAnswerer", "RobertaForQuestionAnswering")
class RobertaQuestionAnswerer(QuestionAnswerer):
    pass


@family_task(RobertaBackbone, "MultipleChoice", "RobertaForMultipleChoice")
class RobertaMultipleChoice(MultipleChoice):
    """RobertaForMultipleChoice: the pooler (``roberta.pooler.dense``, tanh) and ``classifier``, as
    BERT's, not RoBERTa's sequence-classification head."""


@family_task(RobertaBackbone, "TextEmbedder", "RobertaModel")
class RobertaTextEmbedder(TextEmbedder):
    pass


__all__ = ["RobertaBackbone", "RobertaMaskedLM", "RobertaTextClassifier", "RobertaTokenClassifier",
           "RobertaQuestionAnswerer", "RobertaTextEmbedder", "RobertaMultipleChoice"]

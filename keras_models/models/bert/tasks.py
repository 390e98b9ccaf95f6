"""BERT task classes: the generic tasks with BERT's HF head names."""

import keras

from keras_models.models.bert.backbone import BertBackbone
from keras_models.models.registry import register_task
from keras_models.tasks.embedder import TextEmbedder
from keras_models.tasks.text import MaskedLM, QuestionAnswerer, TextClassifier, TokenClassifier

_ser = keras.saving.register_keras_serializable(package="keras_models")


@_ser
@register_task(BertBackbone, "MaskedLM", ("BertForMaskedLM", "BertForPreTraining"))
class BertMaskedLM(MaskedLM):
    pass


@_ser
@register_task(BertBackbone, "TextClassifier", ("BertForSequenceClassification",))
class BertTextClassifier(TextClassifier):
    pass


@_ser
@register_task(BertBackbone, "TokenClassifier", ("BertForTokenClassification",))
class BertTokenClassifier(TokenClassifier):
    pass


@_ser
@register_task(BertBackbone, "QuestionAnswerer", ("BertForQuestionAnswering",))
class BertQuestionAnswerer(QuestionAnswerer):
    pass


@_ser
@register_task(BertBackbone, "TextEmbedder", ("BertModel",))
class BertTextEmbedder(TextEmbedder):
    pass

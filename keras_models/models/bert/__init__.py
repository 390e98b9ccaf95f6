from keras_models.models.bert.backbone import BertBackbone
from keras_models.models.bert.tasks import (
    BertMaskedLM,
    BertQuestionAnswerer,
    BertTextClassifier,
    BertTextEmbedder,
    BertTokenClassifier,
)

__all__ = [
    "BertBackbone",
    "BertMaskedLM",
    "BertQuestionAnswerer",
    "BertTextClassifier",
    "BertTextEmbedder",
    "BertTokenClassifier",
]

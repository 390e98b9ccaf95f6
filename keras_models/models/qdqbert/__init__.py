from keras_models.models.qdqbert.backbone import QDQBertBackbone
from keras_models.models.qdqbert.tasks import (
    QDQBertMaskedLM,
    QDQBertQuestionAnswerer,
    QDQBertTextClassifier,
    QDQBertTextEmbedder,
    QDQBertTokenClassifier,
)

__all__ = ["QDQBertBackbone", "QDQBertMaskedLM", "QDQBertQuestionAnswerer", "QDQBertTextClassifier",
           "QDQBertTextEmbedder", "QDQBertTokenClassifier"]

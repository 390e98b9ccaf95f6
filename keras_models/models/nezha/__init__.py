from keras_models.models.nezha.backbone import NezhaBackbone
from keras_models.models.nezha.tasks import (
    NezhaMaskedLM,
    NezhaQuestionAnswerer,
    NezhaTextClassifier,
    NezhaTextEmbedder,
    NezhaTokenClassifier,
)

__all__ = ["NezhaBackbone", "NezhaMaskedLM", "NezhaQuestionAnswerer", "NezhaTextClassifier",
           "NezhaTextEmbedder", "NezhaTokenClassifier"]

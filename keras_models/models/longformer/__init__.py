"""Longformer: RoBERTa with sliding-window local + global attention."""

from keras_models.models.longformer.backbone import LongformerBackbone, LongformerBlock, LongformerSpec
from keras_models.models.longformer.tasks import (LongformerMaskedLM, LongformerQuestionAnswerer,
                                                  LongformerTextClassifier, LongformerTextEmbedder,
                                                  LongformerTokenClassifier)

__all__ = ["LongformerBackbone", "LongformerBlock", "LongformerSpec", "LongformerMaskedLM", "LongformerTextClassifier",
           "LongformerTokenClassifier", "LongformerQuestionAnswerer", "LongformerTextEmbedder"]

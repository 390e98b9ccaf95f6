"""XLNet: relative-position attention with segment encodings (content stream, no memory)."""

from keras_models.models.xlnet.backbone import XLNetBackbone, XLNetLayer, XLNetSpec
from keras_models.models.xlnet.tasks import (XLNetLMHead, XLNetQuestionAnswerer, XLNetTextClassifier,
                                             XLNetTokenClassifier)

__all__ = ["XLNetBackbone", "XLNetLayer", "XLNetSpec", "XLNetLMHead", "XLNetTextClassifier", "XLNetTokenClassifier",
           "XLNetQuestionAnswerer"]

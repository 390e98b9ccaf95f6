"""VisualBERT: BERT over text tokens followed by projected visual region features."""

from keras_models.models.visual_bert.visual_bert import *  # noqa: F401,F403
from keras_models.models.visual_bert.visual_bert import __all__  # noqa: F401

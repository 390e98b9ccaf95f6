"""EnCodec neural audio codec (encode audio to codes, decode codes to audio) and its feature extractor."""

from keras_models.models.encodec.backbone import *  # noqa: F401,F403
from keras_models.models.encodec.features import EncodecFeatureExtractor

__all__ = ["EncodecSpec", "EncodecBackbone", "EncodecFeatureExtractor", "overlap_add"]

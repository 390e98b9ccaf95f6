"""TVLT: a ViT encoder over video patches and audio-spectrogram patches (removed from Transformers 5)."""

from keras_models.models.tvlt.backbone import TvltAudioVisualClassifier, TvltBackbone, TvltSpec
from keras_models.models.tvlt.processing import TvltFeatureExtractor, TvltImageProcessor, TvltProcessor

__all__ = ["TvltSpec", "TvltBackbone", "TvltAudioVisualClassifier", "TvltFeatureExtractor", "TvltImageProcessor",
           "TvltProcessor"]

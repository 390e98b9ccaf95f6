"""UnivNet GAN vocoder (log-mel spectrogram + noise -> waveform) and its feature extractor."""

from keras_models.models.univnet.backbone import *  # noqa: F401,F403
from keras_models.models.univnet.features import UnivNetFeatureExtractor

__all__ = ["UnivNetSpec", "UnivNetBackbone", "UnivNetFeatureExtractor", "location_variable_conv"]

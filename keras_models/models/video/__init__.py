"""Video transformers: VideoMAE, TimeSformer, ViViT (inputs (batch, frames, H, W, C))."""

from keras_models.models.video.common import TubeletEmbedding, VideoBackbone
from keras_models.models.video.timesformer import TimesformerBackbone
from keras_models.models.video.videomae import VideoMAEBackbone
from keras_models.models.video.vivit import VivitBackbone
from keras_models.models.video.tasks import (
    TimesformerVideoClassifier,
    VideoMAEVideoClassifier,
    VivitVideoClassifier,
)

__all__ = ["VideoBackbone", "TubeletEmbedding", "VideoMAEBackbone", "TimesformerBackbone", "VivitBackbone",
           "VideoMAEVideoClassifier", "TimesformerVideoClassifier", "VivitVideoClassifier"]

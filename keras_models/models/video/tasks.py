"""The video families' classifiers (checkpoint head names; pooling comes from the backbone)."""

import keras

from keras_models.models.registry import register_task
from keras_models.models.video.timesformer import TimesformerBackbone
from keras_models.models.video.videomae import VideoMAEBackbone
from keras_models.models.video.vivit import VivitBackbone
from keras_models.tasks.video_classifier import VideoClassifier

_ser = keras.saving.register_keras_serializable(package="keras_models")


@_ser
@register_task(VideoMAEBackbone, "VideoClassifier", ("VideoMAEForVideoClassification",))
class VideoMAEVideoClassifier(VideoClassifier):
    """Mean pooling + ``fc_norm`` when ``use_mean_pooling`` (the default), else the first token."""


@_ser
@register_task(TimesformerBackbone, "VideoClassifier", ("TimesformerForVideoClassification",))
class TimesformerVideoClassifier(VideoClassifier):
    """[CLS] (after the final norm) -> classifier."""


@_ser
@register_task(VivitBackbone, "VideoClassifier", ("VivitForVideoClassification",))
class VivitVideoClassifier(VideoClassifier):
    """[CLS] (after the final norm) -> classifier."""


__all__ = ["VideoMAEVideoClassifier", "TimesformerVideoClassifier", "VivitVideoClassifier"]

import keras

from keras_models.models.efficientnet.backbone import EfficientNetBackbone
from keras_models.models.registry import register_task
from keras_models.tasks.image_classifier import ImageClassifier


@keras.saving.register_keras_serializable(package="keras_models")
@register_task(EfficientNetBackbone, "ImageClassifier", ("EfficientNetForImageClassification",))
class EfficientNetImageClassifier(ImageClassifier):
    pooling = "backbone"


__all__ = ["EfficientNetBackbone", "EfficientNetImageClassifier"]

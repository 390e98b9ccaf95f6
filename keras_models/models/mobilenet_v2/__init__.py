import keras

from keras_models.models.mobilenet_v2.backbone import MobileNetV2Backbone
from keras_models.models.registry import register_task
from keras_models.tasks.image_classifier import ImageClassifier


@keras.saving.register_keras_serializable(package="keras_models")
@register_task(MobileNetV2Backbone, "ImageClassifier", ("MobileNetV2ForImageClassification",))
class MobileNetV2ImageClassifier(ImageClassifier):
    pooling = "backbone"


__all__ = ["MobileNetV2Backbone", "MobileNetV2ImageClassifier"]

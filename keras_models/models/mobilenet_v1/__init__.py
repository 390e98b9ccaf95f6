import keras

from keras_models.models.mobilenet_v1.backbone import MobileNetV1Backbone
from keras_models.models.registry import register_task
from keras_models.tasks.image_classifier import ImageClassifier


@keras.saving.register_keras_serializable(package="keras_models")
@register_task(MobileNetV1Backbone, "ImageClassifier", ("MobileNetV1ForImageClassification",))
class MobileNetV1ImageClassifier(ImageClassifier):
    pooling = "backbone"


__all__ = ["MobileNetV1Backbone", "MobileNetV1ImageClassifier"]

import keras

from keras_models.models.registry import register_task
from keras_models.models.swin.backbone import SwinBackbone
from keras_models.models.swin.v2 import Swinv2Backbone
from keras_models.tasks.image_classifier import ImageClassifier


@keras.saving.register_keras_serializable(package="keras_models")
@register_task(SwinBackbone, "ImageClassifier", ("SwinForImageClassification",))
class SwinImageClassifier(ImageClassifier):
    pooling = "backbone"


@keras.saving.register_keras_serializable(package="keras_models")
@register_task(Swinv2Backbone, "ImageClassifier", ("Swinv2ForImageClassification",))
class Swinv2ImageClassifier(ImageClassifier):
    pooling = "backbone"


__all__ = ["SwinBackbone", "SwinImageClassifier", "Swinv2Backbone", "Swinv2ImageClassifier"]

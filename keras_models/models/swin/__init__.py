import keras

from keras_models.models.registry import register_task
from keras_models.models.swin.backbone import SwinBackbone
from keras_models.tasks.image_classifier import ImageClassifier


@keras.saving.register_keras_serializable(package="keras_models")
@register_task(SwinBackbone, "ImageClassifier", ("SwinForImageClassification",))
class SwinImageClassifier(ImageClassifier):
    pooling = "backbone"


__all__ = ["SwinBackbone", "SwinImageClassifier"]

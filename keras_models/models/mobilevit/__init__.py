import keras

from keras_models.models.mobilevit.backbone import MobileViTBackbone
from keras_models.models.registry import register_task
from keras_models.tasks.image_classifier import ImageClassifier


@keras.saving.register_keras_serializable(package="keras_models")
@register_task(MobileViTBackbone, "ImageClassifier", ("MobileViTForImageClassification",))
class MobileViTImageClassifier(ImageClassifier):
    pooling = "backbone"


__all__ = ["MobileViTBackbone", "MobileViTImageClassifier"]

import keras

from keras_models.models.convnext.backbone import ConvNextBackbone, ConvNextV2Backbone
from keras_models.models.registry import register_task
from keras_models.tasks.image_classifier import ImageClassifier

_ser = keras.saving.register_keras_serializable(package="keras_models")


@_ser
@register_task(ConvNextBackbone, "ImageClassifier", ("ConvNextForImageClassification",))
class ConvNextImageClassifier(ImageClassifier):
    pooling = "backbone"


@_ser
@register_task(ConvNextV2Backbone, "ImageClassifier", ("ConvNextV2ForImageClassification",))
class ConvNextV2ImageClassifier(ImageClassifier):
    pooling = "backbone"


__all__ = ["ConvNextBackbone", "ConvNextV2Backbone", "ConvNextImageClassifier", "ConvNextV2ImageClassifier"]

import keras

from keras_models.models.beit.backbone import BeitBackbone, Data2VecVisionBackbone
from keras_models.models.registry import register_task
from keras_models.tasks.image_classifier import ImageClassifier

_ser = keras.saving.register_keras_serializable(package="keras_models")


@_ser
@register_task(BeitBackbone, "ImageClassifier", ("BeitForImageClassification",))
class BeitImageClassifier(ImageClassifier):
    pooling = "backbone"


@_ser
@register_task(Data2VecVisionBackbone, "ImageClassifier", ("Data2VecVisionForImageClassification",))
class Data2VecVisionImageClassifier(ImageClassifier):
    pooling = "backbone"


__all__ = ["BeitBackbone", "Data2VecVisionBackbone", "BeitImageClassifier", "Data2VecVisionImageClassifier"]

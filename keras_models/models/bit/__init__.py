import keras

from keras_models.models.bit.backbone import BitBackbone
from keras_models.models.registry import register_task
from keras_models.tasks.image_classifier import ImageClassifier


@keras.saving.register_keras_serializable(package="keras_models")
@register_task(BitBackbone, "ImageClassifier", ("BitForImageClassification",))
class BitImageClassifier(ImageClassifier):
    pooling = "backbone"
    hf_out = "classifier.1"


__all__ = ["BitBackbone", "BitImageClassifier"]

import keras

from keras_models.models.regnet.backbone import RegNetBackbone
from keras_models.models.registry import register_task
from keras_models.tasks.image_classifier import ImageClassifier


@keras.saving.register_keras_serializable(package="keras_models")
@register_task(RegNetBackbone, "ImageClassifier", ("RegNetForImageClassification",))
class RegNetImageClassifier(ImageClassifier):
    pooling = "backbone"
    hf_out = "classifier.1"


__all__ = ["RegNetBackbone", "RegNetImageClassifier"]

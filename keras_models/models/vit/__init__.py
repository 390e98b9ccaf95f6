from keras_models.models.vit.backbone import ViTBackbone
from keras_models.models.vit.mae import ViTMAEBackbone
from keras_models.models.vit.tasks import (
    DeiTImageClassifier,
    Dinov2ImageClassifier,
    Dinov2WithRegistersImageClassifier,
    ViTImageClassifier,
)
from keras_models.models.vit.variants import DeiTBackbone, Dinov2Backbone, Dinov2WithRegistersBackbone

__all__ = ["ViTBackbone", "ViTMAEBackbone", "DeiTBackbone", "Dinov2Backbone", "Dinov2WithRegistersBackbone",
           "ViTImageClassifier", "DeiTImageClassifier", "Dinov2ImageClassifier",
           "Dinov2WithRegistersImageClassifier"]

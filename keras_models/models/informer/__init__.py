from keras_models.models.informer.backbone import InformerBackbone
from keras_models.models.informer.tasks import InformerForecaster

__all__ = ["InformerBackbone", "InformerForecaster"]

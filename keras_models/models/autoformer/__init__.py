from keras_models.models.autoformer.backbone import AutoformerBackbone
from keras_models.models.autoformer.tasks import AutoformerForecaster

__all__ = ["AutoformerBackbone", "AutoformerForecaster"]

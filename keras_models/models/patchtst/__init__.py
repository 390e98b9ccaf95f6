from keras_models.models.patchtst.backbone import PatchTSTBackbone
from keras_models.models.patchtst.tasks import PatchTSTForecaster

__all__ = ["PatchTSTBackbone", "PatchTSTForecaster"]

from keras_models.models.patchtsmixer.backbone import PatchTSMixerBackbone
from keras_models.models.patchtsmixer.tasks import PatchTSMixerForecaster

__all__ = ["PatchTSMixerBackbone", "PatchTSMixerForecaster"]

"""BridgeTower: CLIP-ViT and RoBERTa towers bridged into a two-stream cross-modal encoder."""

from keras_models.models.bridgetower.bridgetower import *  # noqa: F401,F403
from keras_models.models.bridgetower.bridgetower import __all__  # noqa: F401

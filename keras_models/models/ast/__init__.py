"""Audio Spectrogram Transformer (a ViT over Kaldi filter banks) and its classifier."""

from keras_models.models.ast.backbone import *  # noqa: F401,F403
from keras_models.models.ast.backbone import __all__  # noqa: F401

"""UnivNet GAN vocoder (log-mel spectrogram + noise -> waveform)."""

from keras_models.models.univnet.backbone import *  # noqa: F401,F403
from keras_models.models.univnet.backbone import __all__  # noqa: F401

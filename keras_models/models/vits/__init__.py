"""VITS text-to-speech (facebook/mms-tts-*)."""

from keras_models.models.vits.backbone import *  # noqa: F401,F403
from keras_models.models.vits.backbone import __all__  # noqa: F401

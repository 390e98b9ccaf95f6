"""SpeechT5: a shared post-norm encoder-decoder with speech / text pre-nets (ASR and TTS heads)."""

from keras_models.models.speecht5.backbone import SpeechT5Backbone, SpeechT5Spec
from keras_models.models.speecht5.tasks import SpeechT5SpeechToText, SpeechT5TextToSpeech

__all__ = ["SpeechT5Backbone", "SpeechT5Spec", "SpeechT5SpeechToText", "SpeechT5TextToSpeech"]

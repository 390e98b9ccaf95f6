"""SpeechT5: a shared post-norm encoder-decoder with speech / text pre-nets (speech-to-text,
text-to-speech and speech-to-speech heads), and its HiFi-GAN vocoder."""

from keras_models.models.speecht5.backbone import SpeechT5Backbone, SpeechT5Spec
from keras_models.models.speecht5.features import SpeechT5FeatureExtractor
from keras_models.models.speecht5.hifigan import SpeechT5HifiGanBackbone, SpeechT5HifiGanSpec
from keras_models.models.speecht5.tasks import SpeechT5SpeechToSpeech, SpeechT5SpeechToText, SpeechT5TextToSpeech

__all__ = ["SpeechT5Backbone", "SpeechT5Spec", "SpeechT5SpeechToText", "SpeechT5TextToSpeech", "SpeechT5SpeechToSpeech",
           "SpeechT5HifiGanBackbone", "SpeechT5HifiGanSpec", "SpeechT5FeatureExtractor"]

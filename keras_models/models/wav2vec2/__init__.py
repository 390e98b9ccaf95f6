"""Wav2Vec2-like speech encoders (Wav2Vec2, HuBERT, UniSpeech, UniSpeech-SAT) and their CTC /
classification heads."""

from keras_models.models.wav2vec2.backbone import *  # noqa: F401,F403
from keras_models.models.wav2vec2.tasks import *  # noqa: F401,F403
from keras_models.models.wav2vec2.backbone import __all__ as _backbone_all

__all__ = list(_backbone_all) + [
    "Wav2Vec2SpeechRecognizer", "Wav2Vec2AudioClassifier", "HubertSpeechRecognizer", "HubertAudioClassifier",
    "UniSpeechSpeechRecognizer", "UniSpeechAudioClassifier", "UniSpeechSatSpeechRecognizer",
    "UniSpeechSatAudioClassifier",
]

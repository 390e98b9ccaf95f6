"""Wav2Vec2-like speech encoders (Wav2Vec2, HuBERT, UniSpeech, UniSpeech-SAT) and their CTC /
classification heads."""

from keras_models.models.wav2vec2.backbone import *  # noqa: F401,F403
from keras_models.models.wav2vec2.tasks import *  # noqa: F401,F403
from keras_models.models.wav2vec2.backbone import __all__ as _backbone_all
from keras_models.models.wav2vec2.wavlm import *  # noqa: F401,F403
from keras_models.models.wav2vec2.data2vec_audio import *  # noqa: F401,F403
from keras_models.models.wav2vec2.conformer import *  # noqa: F401,F403
from keras_models.models.wav2vec2.sew import *  # noqa: F401,F403
from keras_models.models.wav2vec2.sew_d import *  # noqa: F401,F403
from keras_models.models.wav2vec2 import sew as _sew, sew_d as _sew_d
from keras_models.models.wav2vec2 import conformer as _conformer, data2vec_audio as _d2v, wavlm as _wavlm

__all__ = list(_backbone_all) + [
    "Wav2Vec2SpeechRecognizer", "Wav2Vec2AudioClassifier", "HubertSpeechRecognizer", "HubertAudioClassifier",
    "UniSpeechSpeechRecognizer", "UniSpeechAudioClassifier", "UniSpeechSatSpeechRecognizer",
    "UniSpeechSatAudioClassifier",
]
__all__ += list(_wavlm.__all__) + list(_d2v.__all__) + list(_conformer.__all__) + list(_sew.__all__) + list(_sew_d.__all__)

"""Wav2Vec2-BERT (Conformer over SeamlessM4T filter banks), its CTC / classification heads and the
SeamlessM4T feature extractor."""

import keras

from keras_models.models.registry import register_task
from keras_models.models.wav2vec2_bert.backbone import *  # noqa: F401,F403
from keras_models.models.wav2vec2_bert.backbone import Wav2Vec2BertBackbone
from keras_models.models.wav2vec2_bert.features import SeamlessM4TFeatureExtractor
from keras_models.tasks.audio import AudioClassifier, SpeechRecognizer

_ser = keras.saving.register_keras_serializable(package="keras_models")


@_ser
@register_task(Wav2Vec2BertBackbone, "SpeechRecognizer", ("Wav2Vec2BertForCTC",))
class Wav2Vec2BertSpeechRecognizer(SpeechRecognizer):
    pass


@_ser
@register_task(Wav2Vec2BertBackbone, "AudioClassifier", ("Wav2Vec2BertForSequenceClassification",))
class Wav2Vec2BertAudioClassifier(AudioClassifier):
    pass


__all__ = ["Wav2Vec2BertSpec", "Wav2Vec2BertBackbone", "Wav2Vec2BertSpeechRecognizer", "Wav2Vec2BertAudioClassifier",
           "SeamlessM4TFeatureExtractor"]

"""CTC and sequence-classification heads of the Wav2Vec2-like families (Transformers' names)."""

import keras

from keras_models.models.registry import register_task
from keras_models.models.wav2vec2.backbone import (HubertBackbone, UniSpeechBackbone, UniSpeechSatBackbone,
                                                   Wav2Vec2Backbone)
from keras_models.tasks.audio import AudioClassifier, SpeechRecognizer

_ser = keras.saving.register_keras_serializable(package="keras_models")


@_ser
@register_task(Wav2Vec2Backbone, "SpeechRecognizer", ("Wav2Vec2ForCTC",))
class Wav2Vec2SpeechRecognizer(SpeechRecognizer):
    target_lang = None  # the MMS language whose adapter is loaded (from_preset(..., target_lang=...))

    def load_adapter(self, target_lang, folder):
        """Swap in ``target_lang``'s MMS adapter weights and CTC head from ``folder``."""
        from keras_models.models.wav2vec2.adapters import load_adapter

        return load_adapter(self, folder, target_lang)


@_ser
@register_task(Wav2Vec2Backbone, "AudioClassifier", ("Wav2Vec2ForSequenceClassification",))
class Wav2Vec2AudioClassifier(AudioClassifier):
    pass


@_ser
@register_task(HubertBackbone, "SpeechRecognizer", ("HubertForCTC",))
class HubertSpeechRecognizer(SpeechRecognizer):
    pass


@_ser
@register_task(HubertBackbone, "AudioClassifier", ("HubertForSequenceClassification",))
class HubertAudioClassifier(AudioClassifier):
    pass


@_ser
@register_task(UniSpeechBackbone, "SpeechRecognizer", ("UniSpeechForCTC",))
class UniSpeechSpeechRecognizer(SpeechRecognizer):
    pass


@_ser
@register_task(UniSpeechBackbone, "AudioClassifier", ("UniSpeechForSequenceClassification",))
class UniSpeechAudioClassifier(AudioClassifier):
    pass


@_ser
@register_task(UniSpeechSatBackbone, "SpeechRecognizer", ("UniSpeechSatForCTC",))
class UniSpeechSatSpeechRecognizer(SpeechRecognizer):
    pass


@_ser
@register_task(UniSpeechSatBackbone, "AudioClassifier", ("UniSpeechSatForSequenceClassification",))
class UniSpeechSatAudioClassifier(AudioClassifier):
    pass

"""CLVP (``clvp``): Tortoise TTS's conditioning encoder, speech decoder and text / speech encoders.

* :class:`~keras_models.models.clvp.backbone.ClvpBackbone` (``clvp``) holds every part;
  :class:`ClvpSpeechTextScorer` (``km.SpeechTextScorer``, ``ClvpModelForConditionalGeneration``)
  adds the learned temperature, Transformers' forward scoring and greedy ``generate``.
* :class:`~keras_models.models.clvp.encoder.ClvpEncoderBackbone` (``clvp_encoder``) loads a
  standalone ``ClvpEncoder``.
* :class:`~keras_models.models.clvp.features.ClvpFeatureExtractor` (``km.AudioFeatureExtractor``):
  the reference voice's log-mel features.
"""

import keras

from keras_models.models.clvp.backbone import ClvpBackbone, ClvpDecoderSpec, ClvpSpec
from keras_models.models.clvp.encoder import ClvpEncoderBackbone, ClvpEncoderSpec
from keras_models.models.clvp.features import ClvpFeatureExtractor
from keras_models.models.registry import register_task
from keras_models.tasks.speech_text_scorer import SpeechTextScorer


@keras.saving.register_keras_serializable(package="keras_models")
@register_task(ClvpBackbone, "SpeechTextScorer", ("ClvpModelForConditionalGeneration",))
class ClvpSpeechTextScorer(SpeechTextScorer):
    pass


__all__ = ["ClvpSpec", "ClvpDecoderSpec", "ClvpEncoderSpec", "ClvpBackbone", "ClvpEncoderBackbone",
           "ClvpSpeechTextScorer", "ClvpFeatureExtractor"]

"""ZeroShotAudioClassifier: score audio clips against free-text labels with an audio-text dual encoder.

Calling the model on ``{"input_ids", "attention_mask", "input_features"}`` (+ ``"is_longer"`` for
fused CLAP checkpoints) returns, as Transformers' ``ClapModel`` does, ``{"logits_per_audio":
(clips, texts), "logits_per_text": (texts, clips), "audio_embeds", "text_embeds"}`` (unit-normalised
projected features). ``encode_audio`` / ``encode_text`` give the projected features before
normalisation (the backbone's). The learned temperatures are this task's head: one per direction
(``logit_scale_a`` scales ``logits_per_audio``, ``logit_scale_t`` ``logits_per_text``), stored as
logarithms.
"""

import math

import keras
from keras import ops

from keras_models.presets.weight_map import Rule
from keras_models.tasks.task import Task


def _unit(x):
    return x / ops.sqrt(ops.sum(ops.square(x), axis=-1, keepdims=True))


@keras.saving.register_keras_serializable(package="keras_models")
class ZeroShotAudioClassifier(Task):
    task_name = "ZeroShotAudioClassifier"
    hf_head_patterns = ("logit_scale_a", "logit_scale_t")

    def __init__(self, backbone, preprocessor=None, **kwargs):
        super().__init__(backbone, preprocessor=preprocessor, **kwargs)
        init = keras.initializers.Constant(math.log(backbone.spec.logit_scale_init_value))
        self.logit_scale_a = self.add_weight(name="logit_scale_a", shape=(), initializer=init)
        self.logit_scale_t = self.add_weight(name="logit_scale_t", shape=(), initializer=init)

    def encode_text(self, inputs):
        return self.backbone.encode_text(inputs)

    def encode_audio(self, inputs):
        return self.backbone.encode_audio(inputs)

    def call(self, inputs, training=False):
        text = _unit(self.backbone.encode_text(inputs, training=training))
        audio = _unit(self.backbone.encode_audio(inputs, training=training))
        sims = ops.matmul(audio, ops.transpose(text))
        return {"logits_per_audio": sims * ops.exp(ops.cast(self.logit_scale_a, sims.dtype)),
                "logits_per_text": ops.transpose(sims) * ops.exp(ops.cast(self.logit_scale_t, sims.dtype)),
                "audio_embeds": audio, "text_embeds": text}

    def head_rules(self):
        return [Rule("logit_scale_a", self.logit_scale_a, base=False),
                Rule("logit_scale_t", self.logit_scale_t, base=False)]

    @classmethod
    def preprocessor_from_preset(cls, folder, hf, **kw):
        from keras_models.preprocessing.audio_text import AudioTextProcessor

        return AudioTextProcessor.from_preset(folder)

    def save_extra_files(self, folder):
        if self.preprocessor is not None:
            self.preprocessor.save_pretrained(folder)


__all__ = ["ZeroShotAudioClassifier"]

"""ProphetNet's Seq2SeqLM: Transformers' ``logits`` are the vocabulary projection of the first
predict stream (the main stream's states are not projected)."""

import keras
from keras import ops

from keras_models.models.prophetnet.backbone import ProphetNetBackbone
from keras_models.models.registry import register_task
from keras_models.tasks.seq2seq_lm import Seq2SeqLM


@keras.saving.register_keras_serializable(package="keras_models")
@register_task(ProphetNetBackbone, "Seq2SeqLM", ("ProphetNetForConditionalGeneration",))
class ProphetNetSeq2SeqLM(Seq2SeqLM):
    hf_final_logits_bias = None
    hf_head_patterns = ("lm_head.*",)

    def call(self, inputs, training=False):
        out = self.backbone(inputs, training=training)
        t = ops.shape(out["last_hidden_state"])[1]
        return self.project(out["last_hidden_state_ngram"][:, :t])

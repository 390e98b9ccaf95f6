"""T5 task classes: the generic Seq2SeqLM with T5's head conventions."""

import keras

from keras_models.models.registry import register_task
from keras_models.models.t5.backbone import T5Backbone
from keras_models.tasks.seq2seq_lm import Seq2SeqLM


@keras.saving.register_keras_serializable(package="keras_models")
@register_task(T5Backbone, "Seq2SeqLM", ("T5ForConditionalGeneration", "MT5ForConditionalGeneration",
                                         "UMT5ForConditionalGeneration"))
class T5Seq2SeqLM(Seq2SeqLM):
    hf_final_logits_bias = None
    hf_head_patterns = ("lm_head.*",)
    scales_decoder_outputs = True

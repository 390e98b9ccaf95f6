"""SpeechEncoderDecoderModel's task: Seq2SeqLM over raw ``input_values`` with the decoder's LM
head; ``generate(input_values, attention_mask=...)`` as Transformers' generate."""

import keras

from keras_models.models.registry import register_task
from keras_models.models.speech_encoder_decoder.backbone import SpeechEncoderDecoderBackbone
from keras_models.models.speech_to_text.tasks import generate_from_waveforms
from keras_models.tasks.seq2seq_lm import Seq2SeqLM


@keras.saving.register_keras_serializable(package="keras_models")
@register_task(SpeechEncoderDecoderBackbone, "Seq2SeqLM", ("SpeechEncoderDecoderModel",))
class SpeechEncoderDecoderSeq2SeqLM(Seq2SeqLM):
    hf_final_logits_bias = None
    hf_head_patterns = ("decoder.output_projection.*", "decoder.lm_head.*")

    @property
    def hf_lm_head(self):
        return self.backbone.hf_lm_head

    @classmethod
    def task_config_from_hf(cls, hf, head_from_checkpoint, **kwargs):
        kwargs.setdefault("tie_word_embeddings", cls.backbone_cls.tied_head(hf))
        kwargs.setdefault("final_logits_bias", False)
        return kwargs

    def task_config_to_hf(self):
        return {}  # the head's tying lives in the decoder's own config

    def generate(self, input_values=None, generation_config=None, *, attention_mask=None, decoder_input_ids=None,
                 tokenizer=None, **kwargs):
        """Text ids for raw audio ``input_values`` (batch, samples) (or a dict holding them and
        ``attention_mask``), with Transformers' keyword names: the decoder start token (or
        ``decoder_input_ids``) followed by the new ids."""
        return generate_from_waveforms(self, "SpeechEncoderDecoder", input_values, generation_config, attention_mask,
                                       decoder_input_ids, tokenizer, kwargs)


__all__ = ["SpeechEncoderDecoderSeq2SeqLM"]

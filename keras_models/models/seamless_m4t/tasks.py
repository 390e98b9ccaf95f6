"""SeamlessM4T's text outputs: one Seq2SeqLM for text-to-text (``input_ids``) and speech-to-text
(``input_features``) with the LM head tied to the shared token table (``lm_head.weight``).

``generate`` takes ``input_ids`` (or strings, through the tokenizer) like every Seq2SeqLM, or
``input_features`` (batch, frames, features) with their frame ``attention_mask``; ``tgt_lang``
("fra", "__fra__") starts the decoder with the start token then that language's token, read from
generation_config.json's ``text_decoder_lang_to_code_id`` as Transformers does.
"""

import keras
import numpy as np
from keras import ops

from keras_models.generation.config import GenerationError
from keras_models.models.registry import register_task
from keras_models.models.seamless_m4t.backbone import SeamlessM4TBackbone, SeamlessM4Tv2Backbone
from keras_models.models.speech_to_text.tasks import speech_generate
from keras_models.tasks.seq2seq_lm import Seq2SeqLM

_ser = keras.saving.register_keras_serializable(package="keras_models")


@_ser
@register_task(SeamlessM4TBackbone, "Seq2SeqLM",
               ("SeamlessM4TForTextToText", "SeamlessM4TForSpeechToText", "SeamlessM4TModel",
                "SeamlessM4TForTextToSpeech", "SeamlessM4TForSpeechToSpeech"))
class SeamlessM4TSeq2SeqLM(Seq2SeqLM):
    hf_final_logits_bias = None
    hf_head_patterns = ("lm_head.*",)

    def config_to_hf(self):
        config = super().config_to_hf()
        config["architectures"] = [self.backbone.hf_architecture]  # which encoders the weights hold
        return config

    def _language_prompt(self, tgt_lang, batch):
        gen = self.generation_config
        codes = (getattr(gen, "ignored", None) or {}).get("text_decoder_lang_to_code_id") or {}
        if not codes:
            raise GenerationError("generate: tgt_lang needs text_decoder_lang_to_code_id in generation_config.json")
        lang = str(tgt_lang).replace("__", "")
        if lang not in codes:
            raise GenerationError(f"generate: tgt_lang={tgt_lang!r} is not one of this checkpoint's languages "
                                  f"({', '.join(sorted(codes)[:12])}...)")
        return np.array([[self.decoder_start_token_id, codes[lang]]] * batch, "int32")

    def generate(self, inputs=None, generation_config=None, *, input_features=None, attention_mask=None,
                 decoder_input_ids=None, tgt_lang=None, tokenizer=None, **kwargs):
        """Text ids of ``inputs`` (``input_ids``, strings or a dict) or of ``input_features``
        (with ``attention_mask``): the decoder prompt followed by the new ids."""
        if isinstance(inputs, dict) and "input_features" in inputs:
            input_features = inputs["input_features"]
            attention_mask = inputs.get("attention_mask", attention_mask)
            inputs = None
        if input_features is not None:
            feats = np.asarray(ops.convert_to_numpy(input_features), "float32")
            feats = feats[None] if feats.ndim == 2 else feats
            if tgt_lang is not None and decoder_input_ids is None:
                decoder_input_ids = self._language_prompt(tgt_lang, feats.shape[0])
            return speech_generate(self, feats, attention_mask, generation_config, decoder_input_ids, tokenizer,
                                   kwargs, encode=self.backbone.encode_speech)
        if tgt_lang is not None and decoder_input_ids is None:
            rows = len(inputs) if isinstance(inputs, (list, tuple)) else None
            if rows is None:
                ids = inputs.get("input_ids") if isinstance(inputs, dict) else inputs
                rows = 1 if isinstance(ids, str) else np.asarray(ids).reshape(-1, np.shape(ids)[-1]).shape[0]
            decoder_input_ids = self._language_prompt(tgt_lang, rows)
        if attention_mask is not None:
            if isinstance(inputs, dict):
                inputs = {**inputs, "attention_mask": attention_mask}
            else:
                inputs = {"input_ids": inputs, "attention_mask": attention_mask}
        return super().generate(inputs, generation_config, decoder_input_ids=decoder_input_ids, tokenizer=tokenizer,
                                **kwargs)




@_ser
@register_task(SeamlessM4Tv2Backbone, "Seq2SeqLM",
               ("SeamlessM4Tv2ForTextToText", "SeamlessM4Tv2ForSpeechToText", "SeamlessM4Tv2Model",
                "SeamlessM4Tv2ForTextToSpeech", "SeamlessM4Tv2ForSpeechToSpeech"))
class SeamlessM4Tv2Seq2SeqLM(SeamlessM4TSeq2SeqLM):
    pass


__all__ = ["SeamlessM4TSeq2SeqLM", "SeamlessM4Tv2Seq2SeqLM"]

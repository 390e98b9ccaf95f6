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

from keras_models.errors import InputError
from keras_models.generation.config import GenerationError
from keras_models.models.registry import register_task
from keras_models.models.seamless_m4t.backbone import SeamlessM4TBackbone, SeamlessM4Tv2Backbone
from keras_models.models.speech_to_text.tasks import speech_generate
from keras_models.tasks.seq2seq_lm import Seq2SeqLM
from keras_models.tasks.text_to_audio import text_inputs

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
                 decoder_input_ids=None, tgt_lang=None, tokenizer=None, generate_speech=False, speaker_id=0,
                 return_intermediate_token_ids=False, **kwargs):
        """Text ids of ``inputs`` (``input_ids``, strings or a dict) or of ``input_features``
        (with ``attention_mask``): the decoder prompt followed by the new ids.

        ``generate_speech=True`` (checkpoints with the t2u model and vocoder: SeamlessM4TModel,
        ForTextToSpeech, ForSpeechToSpeech) translates into speech as Transformers'
        ``generate(..., generate_speech=True)``: needs ``tgt_lang``; ``speaker_id`` picks the
        vocoder speaker; returns ``(waveform (batch, samples), waveform_lengths (batch,))`` as numpy,
        or with ``return_intermediate_token_ids`` a dict adding ``sequences`` (text ids) and
        ``unit_sequences``. Keyword arguments go to both generations; ``text_*`` / ``speech_*``
        prefixed ones to one (v1 units are greedy, ``speech_max_new_tokens`` defaults to
        ``t2u_max_new_tokens``; v2 units are the argmax of one pass)."""
        if generate_speech:
            return self._generate_speech(inputs, generation_config, input_features, attention_mask, tgt_lang,
                                         tokenizer, speaker_id, return_intermediate_token_ids, kwargs)
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

    # --- speech output --------------------------------------------------------------------------
    def _generation_table(self, key):
        return (getattr(self.generation_config, "ignored", None) or {}).get(key)

    def _generate_speech(self, inputs, generation_config, input_features, attention_mask, tgt_lang, tokenizer,
                         speaker_id, return_intermediate, kwargs):
        b = self.backbone
        if b.t2u_model is None:
            raise InputError(f"generate_speech: this {b.hf_architecture} checkpoint has no text-to-unit model and "
                             "vocoder (use a SeamlessM4TModel / ForTextToSpeech / ForSpeechToSpeech checkpoint)")
        if tgt_lang is None:
            raise InputError("generate_speech needs tgt_lang (the language of the speech)")
        lang = str(tgt_lang).replace("__", "")
        tables = {}
        for key in ("text_decoder_lang_to_code_id", "t2u_lang_code_to_id", "vocoder_lang_code_to_id"):
            table = self._generation_table(key)
            if not table:
                raise GenerationError(f"generate_speech: generation_config.json has no {key}")
            if lang not in table:
                raise GenerationError(f"generate_speech: tgt_lang={tgt_lang!r} is not in {key} "
                                      f"({', '.join(sorted(table)[:12])}...)")
            tables[key] = table
        cfg = b.speech_out_fields
        if not 0 <= int(speaker_id) < cfg["vocoder_num_spkrs"]:
            raise InputError(f"speaker_id must be in 0..{cfg['vocoder_num_spkrs'] - 1} (vocoder_num_spkrs), "
                             f"got {speaker_id}")
        text_kw, speech_kw = {}, {}
        for key, value in kwargs.items():
            if key.startswith("text_"):
                text_kw[key[5:]] = value
            elif key.startswith("speech_"):
                speech_kw[key[7:]] = value
        for key, value in kwargs.items():
            if not key.startswith(("text_", "speech_")):
                text_kw.setdefault(key, value)
                speech_kw.setdefault(key, value)
        if speech_kw.get("do_sample") or speech_kw.get("num_beams", 1) != 1:
            raise GenerationError("generate_speech: the units are greedy here (speech_do_sample / speech_num_beams "
                                  "are not supported)")
        # 1. text
        if isinstance(inputs, dict) and "input_features" in inputs:
            input_features = inputs["input_features"]
            attention_mask = inputs.get("attention_mask", attention_mask)
        if input_features is not None:
            feats = np.asarray(ops.convert_to_numpy(input_features), "float32")
            feats = feats[None] if feats.ndim == 2 else feats
            sequences = self.generate(generation_config=generation_config, input_features=feats,
                                      attention_mask=attention_mask, tgt_lang=lang, **text_kw)
            enc = b.encode_speech(feats, attention_mask)
            enc_mask = None if attention_mask is None else b.encoder_mask(attention_mask, ops.shape(enc)[1])
        else:
            if inputs is None:
                raise InputError("generate: give input_ids (text) or input_features (speech)")
            ids, mask = text_inputs(inputs, tokenizer if tokenizer is not None else self.preprocessor,
                                    attention_mask)
            sequences = self.generate({"input_ids": ids, "attention_mask": mask}, generation_config, tgt_lang=lang,
                                      **text_kw)
            enc = b.encode(ops.convert_to_tensor(ids.astype("int32")), ops.convert_to_tensor(mask.astype("int32")))
            enc_mask = ops.convert_to_tensor(mask.astype("int32"))
        sequences = np.asarray(ops.convert_to_numpy(sequences)).astype("int32")
        rows, pad = sequences.shape[0], b.pad_token_id
        v2 = b.hf_model_type == "seamless_m4t_v2"
        # 2. units from the text decoder's last hidden states (v2: without the final column)
        text = sequences[:, :-1] if v2 else sequences
        hidden = b.decode(ops.convert_to_tensor(text), enc, enc_mask)
        t2u_mask = (np.arange(text.shape[1])[None] < (text != pad).sum(1)[:, None]).astype("int32")
        t2u_lang = tables["t2u_lang_code_to_id"][lang]
        unit_pad, unit_eos = cfg["t2u_pad_token_id"], cfg["t2u_eos_token_id"]
        if v2:
            id_to_text, char_to_id = self._generation_table("id_to_text"), self._generation_table("char_to_id")
            if not id_to_text or not char_to_id:
                raise GenerationError("generate_speech: SeamlessM4Tv2 needs id_to_text and char_to_id in "
                                      "generation_config.json")
            from keras_models.models.seamless_m4t.speech_output import char_inputs

            words = sequences[:, 2:-1]
            words = np.where(words == b.eos_token_id, pad, words)
            chars, counts = char_inputs(words, id_to_text, char_to_id, pad)
            logits, frames = b.t2u_model.units(hidden, t2u_mask, chars, counts)
            units = np.asarray(ops.convert_to_numpy(ops.argmax(logits, axis=-1))).astype("int64")
            unit_sequences = units.copy()
            units = np.where((units == unit_eos) | ~frames, unit_pad, units)
        else:
            prompt = np.array([[unit_eos, t2u_lang]] * rows, "int32")
            steps = int(speech_kw.get("max_new_tokens") or cfg["t2u_max_new_tokens"])
            unit_sequences = b.t2u_model.generate_units(hidden, t2u_mask, prompt, steps)
            units = unit_sequences[:, prompt.shape[1]:].astype("int64")
            units = np.where(units == unit_eos, unit_pad, units)
        units = np.where(units == unit_pad, units, units - cfg["vocoder_offset"])
        # 3. waveform
        voc_lang = tables["vocoder_lang_code_to_id"][lang]
        wave, lengths = b.vocoder.synthesize(units, [int(speaker_id)] * rows, [voc_lang] * rows)
        wave = np.asarray(ops.convert_to_numpy(wave))
        if return_intermediate:
            return {"waveform": wave, "waveform_lengths": lengths, "sequences": sequences,
                    "unit_sequences": unit_sequences}
        return wave, lengths




@_ser
@register_task(SeamlessM4Tv2Backbone, "Seq2SeqLM",
               ("SeamlessM4Tv2ForTextToText", "SeamlessM4Tv2ForSpeechToText", "SeamlessM4Tv2Model",
                "SeamlessM4Tv2ForTextToSpeech", "SeamlessM4Tv2ForSpeechToSpeech"))
class SeamlessM4Tv2Seq2SeqLM(SeamlessM4TSeq2SeqLM):
    pass


__all__ = ["SeamlessM4TSeq2SeqLM", "SeamlessM4Tv2Seq2SeqLM"]

"""WhisperForConditionalGeneration: Seq2SeqLM on ``input_features`` with a tied ``proj_out``.

``generate(input_features, ...)`` runs the shared generation engine (greedy, sampling, beam
search with the cross-attention cache) after Transformers' Whisper short-form preparation:

* the decoder prompt is ``decoder_start_token_id``, then the language token, the task token and
  ``<|notimestamps|>`` (``language=`` / ``task=`` arguments, else the legacy ``forced_decoder_ids``
  of generation_config.json; a multilingual checkpoint without either detects the language from
  the first decoder step, as Transformers does); ``prompt_ids`` go before it; explicit
  ``decoder_input_ids`` replace it;
* ``suppress_tokens`` / ``begin_suppress_tokens`` (first generated position) are the engine's
  logits processors;
* the result is what Transformers returns: the generated ids after the decoder prompt, each row
  cut at its end-of-text token (dropped) and right-padded with ``pad_token_id``.

``return_timestamps=True`` and long-form features (more than one 30-s window) follow Transformers'
sequential transcription: the timestamp rules are a logits processor of the engine
(``generation.processors.whisper_timestamps``, compiled in the decode loop), each window's ids are
cut into segments at their timestamp pairs and the next window starts at the last pair
(``return_segments=True`` returns them with their start / end seconds). Without timestamps the
same loop runs (timestamp tokens a model emits after <|notimestamps|> still cut segments, as in
Transformers 5); only explicit ``decoder_input_ids`` decode one window directly.

Not yet: temperature fallback (a temperature list, logprob / compression-ratio / no-speech
thresholds), ``condition_on_prev_tokens``, token-level (DTW) timestamps.
"""

import keras
import numpy as np
from keras import ops

from keras_models.generation import backend
from keras_models.generation.config import GenerationConfig, GenerationError
from keras_models.generation.mixin import GenerationMixin
from keras_models.models.registry import register_task
from keras_models.models.whisper.backbone import WhisperBackbone
from keras_models.tasks.seq2seq_lm import Seq2SeqLM

_ser = keras.saving.register_keras_serializable(package="keras_models")

# generation_config.json keys of Whisper checkpoints that our GenerationConfig keeps aside
WHISPER_GENERATION_KEYS = ("lang_to_id", "task_to_id", "no_timestamps_token_id", "forced_decoder_ids",
                           "is_multilingual", "return_timestamps", "language", "task",
                           "max_initial_timestamp_index", "condition_on_prev_tokens")
TASKS = ("transcribe", "translate")


# Whisper's language names (and the aliases Transformers accepts) -> language code
_LANGUAGES = (
    "en english",
    "zh chinese",
    "de german",
    "es spanish",
    "ru russian",
    "ko korean",
    "fr french",
    "ja japanese",
    "pt portuguese",
    "tr turkish",
    "pl polish",
    "ca catalan",
    "nl dutch",
    "ar arabic",
    "sv swedish",
    "it italian",
    "id indonesian",
    "hi hindi",
    "fi finnish",
    "vi vietnamese",
    "he hebrew",
    "uk ukrainian",
    "el greek",
    "ms malay",
    "cs czech",
    "ro romanian",
    "da danish",
    "hu hungarian",
    "ta tamil",
    "no norwegian",
    "th thai",
    "ur urdu",
    "hr croatian",
    "bg bulgarian",
    "lt lithuanian",
    "la latin",
    "mi maori",
    "ml malayalam",
    "cy welsh",
    "sk slovak",
    "te telugu",
    "fa persian",
    "lv latvian",
    "bn bengali",
    "sr serbian",
    "az azerbaijani",
    "sl slovenian",
    "kn kannada",
    "et estonian",
    "mk macedonian",
    "br breton",
    "eu basque",
    "is icelandic",
    "hy armenian",
    "ne nepali",
    "mn mongolian",
    "bs bosnian",
    "kk kazakh",
    "sq albanian",
    "sw swahili",
    "gl galician",
    "mr marathi",
    "pa punjabi",
    "si sinhala",
    "km khmer",
    "sn shona",
    "yo yoruba",
    "so somali",
    "af afrikaans",
    "oc occitan",
    "ka georgian",
    "be belarusian",
    "tg tajik",
    "sd sindhi",
    "gu gujarati",
    "am amharic",
    "yi yiddish",
    "lo lao",
    "uz uzbek",
    "fo faroese",
    "ht haitian creole",
    "ps pashto",
    "tk turkmen",
    "nn nynorsk",
    "mt maltese",
    "sa sanskrit",
    "lb luxembourgish",
    "my myanmar",
    "bo tibetan",
    "tl tagalog",
    "mg malagasy",
    "as assamese",
    "tt tatar",
    "haw hawaiian",
    "ln lingala",
    "ha hausa",
    "ba bashkir",
    "jw javanese",
    "su sundanese",
    "yue cantonese",
    "my burmese",
    "ca valencian",
    "nl flemish",
    "ht haitian",
    "lb letzeburgesch",
    "ps pushto",
    "pa panjabi",
    "ro moldavian",
    "ro moldovan",
    "si sinhalese",
    "es castilian",
    "zh mandarin"
)
LANGUAGE_CODES = {item.split(" ", 1)[1]: item.split(" ", 1)[0] for item in _LANGUAGES}


def _language_token(language, lang_to_id):
    """``"fr"``, ``"<|fr|>"`` or a full name Transformers knows (``"french"``) -> token id."""
    name = language.lower()
    if name in lang_to_id:
        return lang_to_id[name]
    token = f"<|{name}|>"
    if token not in lang_to_id:
        if name in LANGUAGE_CODES:
            token = f"<|{LANGUAGE_CODES[name]}|>"
    if token not in lang_to_id:
        raise GenerationError(f"generate: language {language!r} is not in this checkpoint's lang_to_id "
                              f"({sorted(lang_to_id)[:8]}...)")
    return lang_to_id[token]


@_ser
@register_task(WhisperBackbone, "Seq2SeqLM", ("WhisperForConditionalGeneration",))
class WhisperSeq2SeqLM(Seq2SeqLM):
    hf_lm_head = "proj_out.weight"
    hf_final_logits_bias = None
    hf_head_patterns = ("proj_out.*",)

    # --- inputs ---------------------------------------------------------------------------------
    @staticmethod
    def _features(input_features, kwargs):
        if input_features is None:
            input_features = kwargs.pop("input_features", None)
        if isinstance(input_features, dict):
            input_features = input_features.get("input_features")
        if input_features is None:
            raise GenerationError("generate: Whisper needs input_features (batch, num_mel_bins, frames)")
        feats = np.asarray(ops.convert_to_numpy(input_features), "float32")
        if feats.ndim == 2:
            feats = feats[None]
        return feats

    def whisper_settings(self, generation_config=None):
        """The Whisper keys of ``generation_config`` (or of the checkpoint's generation_config.json)."""
        gen = generation_config if generation_config is not None else self.generation_config
        if gen is None:
            return {}
        if isinstance(gen, dict):
            return {k: gen[k] for k in WHISPER_GENERATION_KEYS if k in gen}
        return {k: v for k, v in getattr(gen, "ignored", {}).items() if k in WHISPER_GENERATION_KEYS}

    def detect_language(self, encoder_states, start, lang_to_id):
        """Per row the language token with the highest logit after the start token."""
        b = ops.shape(encoder_states)[0]
        ids = ops.full((b, 1), start, "int32")
        logits = ops.convert_to_numpy(self.project(self.backbone.decode(ids, encoder_states)))[:, -1]
        lang_ids = np.array(sorted(lang_to_id.values()))
        return lang_ids[np.argmax(logits[:, lang_ids], axis=-1)].tolist()

    def decoder_prompt(self, batch, settings, start, language=None, task=None, encoder_states=None,
                       timestamps=False, features=None):
        """Transformers' Whisper init tokens per row: start, language, task, <|notimestamps|> (not
        with ``timestamps``). Language detection reads ``encoder_states`` (or encodes ``features``)."""
        language = settings.get("language") if language is None else language
        task = settings.get("task") if task is None else task
        lang_to_id = settings.get("lang_to_id")
        task_to_id = settings.get("task_to_id")
        multilingual = settings.get("is_multilingual")
        if multilingual is False and (language is not None or task is not None):
            raise GenerationError("generate: language / task given for an English-only checkpoint")
        if language is not None and not lang_to_id:
            raise GenerationError("generate: language= needs lang_to_id in generation_config.json")
        if task is not None and not task_to_id:
            raise GenerationError("generate: task= needs task_to_id in generation_config.json")
        tokens = [start]
        if language is None and task is None and settings.get("forced_decoder_ids"):
            forced = [list(p) for p in settings["forced_decoder_ids"]]
            position = 1
            while forced and forced[0][0] == position:
                tokens.append(forced.pop(0)[1])
                position += 1
            if forced:
                raise GenerationError(f"generate: forced_decoder_ids {settings['forced_decoder_ids']} do not "
                                      "follow Whisper's prompt pattern (positions 1, 2, ...)")
        undefined = len(tokens) <= 1 or tokens[1] is None
        if isinstance(language, (list, tuple)):
            if len(language) != batch:
                raise GenerationError(f"generate: {len(language)} languages for a batch of {batch}")
            lang_ids = [_language_token(x, lang_to_id) for x in language]
        elif language is not None:
            lang_ids = [_language_token(language, lang_to_id)] * batch
        elif lang_to_id and undefined:
            if encoder_states is None:
                encoder_states = self.backbone.encode(features)
            lang_ids = self.detect_language(encoder_states, start, lang_to_id)
        else:
            lang_ids = None
        rows = []
        for i in range(batch):
            row = list(tokens)
            if lang_ids is not None:
                if len(row) > 1:
                    row[1] = lang_ids[i]
                else:
                    row.append(lang_ids[i])
            if task is not None:
                if task not in TASKS or task not in task_to_id:
                    raise GenerationError(f"generate: task {task!r} is not one of {TASKS}")
                task_ids = set(task_to_id.values())
                if any(t in task_ids for t in row):
                    row = [task_to_id[task] if t in task_ids else t for t in row]
                else:
                    row.append(task_to_id[task])
            elif language is not None and task_to_id and not any(t in task_to_id.values() for t in row):
                row.append(task_to_id["transcribe"])
            no_ts = settings.get("no_timestamps_token_id")
            if timestamps:
                if no_ts is not None and row[-1] == no_ts:
                    row = row[:-1]
            elif no_ts is not None and row[-1] != no_ts:
                row.append(no_ts)
            rows.append([t for t in row if t is not None])
        return np.asarray(rows, "int32")

    # --- generation -----------------------------------------------------------------------------
    def generate(self, input_features=None, generation_config=None, *, decoder_input_ids=None, language=None,
                 task=None, return_timestamps=None, prompt_ids=None, tokenizer=None, attention_mask=None,
                 return_segments=False, condition_on_prev_tokens=None, **kwargs):
        """Transcribe / translate log-mel ``input_features`` (batch, num_mel_bins, frames) with
        Transformers' Whisper keywords. Returns the generated ids (numpy, right-padded); with
        ``return_segments=True`` a dict with ``sequences`` and per row the ``segments`` (``start``,
        ``end`` in seconds, ``tokens``).

        ``return_timestamps=True``, or features longer than one 30-s window (``frames`` >
        2 * max_source_positions; a batch needs the extractor's ``attention_mask``), run
        Transformers' sequential transcription: each window is decoded under the timestamp rules,
        cut into segments at its timestamp pairs, and the next window starts at the last closed
        segment's end timestamp (or after the window when it ends with a single timestamp)."""
        feats = self._features(input_features, kwargs)
        settings = self.whisper_settings(generation_config)
        if return_timestamps is None:
            return_timestamps = settings.get("return_timestamps")
        window = self.backbone.num_frames
        longform = feats.shape[-1] > window
        if longform and return_timestamps is False:
            raise GenerationError(f"generate: features of {feats.shape[-1]} frames (more than one {window}-frame "
                                  "window) need return_timestamps=True (sequential long-form transcription)")
        return_timestamps = bool(return_timestamps) or longform
        if condition_on_prev_tokens is None:
            condition_on_prev_tokens = settings.get("condition_on_prev_tokens")
        if condition_on_prev_tokens:
            raise GenerationError("generate: condition_on_prev_tokens=True is not supported for Whisper")
        for key in ("logprob_threshold", "compression_ratio_threshold", "no_speech_threshold"):
            if kwargs.get(key) is not None:
                raise GenerationError(f"generate: {key} (temperature fallback) is not supported for Whisper")
            kwargs.pop(key, None)
        if isinstance(kwargs.get("temperature"), (list, tuple)):
            raise GenerationError("generate: a temperature list (temperature fallback) is not supported for Whisper")
        base = generation_config if generation_config is not None else self.generation_config
        if base is None:
            base = GenerationConfig()
        elif isinstance(base, dict):
            base = GenerationConfig().update(_source="generation_config", _lenient=True, **base)
        base = base.copy()
        start = kwargs.pop("decoder_start_token_id", None)
        if start is None:
            start = base.decoder_start_token_id if "decoder_start_token_id" in base.explicit else None
        if start is None:
            start = self.decoder_start_token_id
        batch = feats.shape[0]
        if decoder_input_ids is None:
            # as Transformers 5: even without return_timestamps, the timestamp tokens a model emits
            # cut the window into segments and may start another window
            return self._generate_sequential(feats, attention_mask, base, settings, start, language, task,
                                             prompt_ids, return_segments, tokenizer, kwargs, return_timestamps)
        if return_timestamps:
            raise GenerationError("generate: decoder_input_ids cannot be combined with return_timestamps / "
                                  "long-form transcription (use language=, task=, prompt_ids=)")
        states = self.backbone.encode(feats)
        prompt = np.asarray(ops.convert_to_numpy(decoder_input_ids), "int32")
        if prompt.ndim == 1:
            prompt = np.repeat(prompt[None], batch, axis=0)
        out = self._strip(self._decode(states, prompt, base, kwargs, tokenizer), base, kwargs)
        if return_segments:
            return {"sequences": out, "segments": [[{"start": 0.0, "end": window * 0.01, "tokens": row}]
                                                   for row in self._rows(out, base, kwargs)]}
        return out

    @staticmethod
    def _with_prompt_ids(prompt, prompt_ids):
        if prompt_ids is None:
            return prompt
        prev = np.asarray(ops.convert_to_numpy(prompt_ids), "int32").reshape(1, -1)
        return np.concatenate([np.repeat(prev, prompt.shape[0], axis=0), prompt], axis=1)

    def _decode(self, states, prompt, base, kwargs, tokenizer, timestamps=None, max_length=None):
        """One engine run on encoder ``states`` from the decoder ``prompt``: the new ids (raw,
        finished rows padded), under Transformers' Whisper length rules."""
        kwargs = dict(kwargs)
        batch = prompt.shape[0]
        limit = self.backbone.decoder_max_position_embeddings
        max_new = kwargs.get("max_new_tokens", base.max_new_tokens)
        if max_new is None:  # Transformers: max_length counts from the initial tokens, capped
            initial = min(limit // 2 - 1, prompt.shape[1])
            if max_length is None:
                max_length = kwargs.pop("max_length", base.max_length)
            kwargs.pop("max_length", None)
            max_length = min(max_length + initial, limit)
            kwargs["max_new_tokens"] = max(max_length - prompt.shape[1], 0)
        elif max_new + prompt.shape[1] > limit:
            raise GenerationError(f"generate: the decoder prompt ({prompt.shape[1]} tokens) + max_new_tokens "
                                  f"({max_new}) exceeds max_target_positions ({limit})")
        mask = np.ones((batch, ops.shape(states)[1]), "int32")
        self._gen_encoder = (states, ops.convert_to_tensor(mask), np.zeros((batch, 1), "int32"))
        self._gen_timestamps = timestamps
        try:
            out = GenerationMixin.generate(self, {"input_ids": prompt}, base, tokenizer=tokenizer, **kwargs)
        finally:
            self._gen_encoder = None
            self._gen_timestamps = None
        self._last_max_length = max_length
        return np.asarray(out)[:, prompt.shape[1]:]

    def _rows(self, out, config, kwargs):
        """Per row the ids of a right-padded result without the padding."""
        pad = kwargs.get("pad_token_id", config.pad_token_id)
        rows = []
        for row in np.asarray(out).tolist():
            while row and pad is not None and row[-1] == pad:
                row = row[:-1]
            rows.append(np.asarray(row, "int32"))
        return rows

    def _generate_sequential(self, feats, attention_mask, base, settings, start, language, task, prompt_ids,
                             return_segments, tokenizer, kwargs, timestamps=True):
        """Transformers' sequential (timestamp-seeking) Whisper transcription, greedy / beam; the
        timestamp rules apply with ``timestamps``."""
        no_ts = settings.get("no_timestamps_token_id")
        if no_ts is None and timestamps:
            raise GenerationError("generate: return_timestamps / long-form transcription needs "
                                  "no_timestamps_token_id in generation_config.json")
        eos = kwargs.get("eos_token_id", base.eos_token_id)
        eos = np.atleast_1d(eos if eos is not None else kwargs.get("bos_token_id", base.bos_token_id)).tolist()
        pad = kwargs.get("pad_token_id", base.pad_token_id)
        if pad is None:
            pad = eos[0]
        begin = no_ts + 1 if no_ts is not None else self.backbone.vocab_size + 1
        max_initial = settings.get("max_initial_timestamp_index")
        rule = (int(no_ts), int(eos[0]), None if max_initial is None else int(max_initial)) if timestamps else None
        window, stride, precision = self.backbone.num_frames, 2, 0.02
        batch, total = feats.shape[0], feats.shape[-1]
        if batch > 1 and total > window:
            if attention_mask is None:
                raise GenerationError("generate: batched long-form transcription needs attention_mask (the "
                                      "feature extractor's, return_attention_mask=True)")
            frames = np.asarray(ops.convert_to_numpy(attention_mask)).reshape(batch, -1).sum(-1).astype("int64")
        else:
            frames = np.full((batch,), total, "int64")
        first = feats[:, :, :window]
        if first.shape[-1] < window:
            first = np.pad(first, ((0, 0), (0, 0), (0, window - first.shape[-1])))
        init = self.decoder_prompt(batch, settings, start, language, task, None, timestamps=timestamps,
                                   features=first)
        init = self._with_prompt_ids(init, prompt_ids)
        seek = np.zeros((batch,), "int64")
        segments = [[] for _ in range(batch)]
        eos_set = set(eos)
        max_length = None
        while (seek < frames).any():
            rows = [i for i in range(batch) if seek[i] < frames[i]]
            sizes = {i: int(min(frames[i] - seek[i], window)) for i in rows}
            pieces = []
            for i in rows:
                piece = feats[i, :, seek[i]: seek[i] + sizes[i]]
                pieces.append(np.pad(piece, ((0, 0), (0, window - piece.shape[-1]))))
            # compiled backends: finished rows are replaced by copies of a running one (rows decode
            # independently) so that every window reuses one compiled loop
            run = rows if backend.EAGER_LOOP else rows + [rows[0]] * (batch - len(rows))
            pieces += pieces[:1] * (len(run) - len(rows))
            states = self.backbone.encode(np.stack(pieces))
            new = self._decode(states, init[run], base, kwargs, tokenizer, timestamps=rule, max_length=max_length)
            new = new[: len(rows)]
            max_length = self._last_max_length
            for i, seq in zip(rows, new.tolist()):
                if seq and seq[-1] == pad:
                    n = seq.count(pad) - (1 if pad in eos_set else 0)
                    if n:
                        seq = seq[:-n]
                if seq and seq[-1] in eos_set:
                    seq = seq[:-1]
                found, offset = _segments(seq, begin, seek[i] * precision / stride, sizes[i], precision, stride)
                seek[i] += offset
                segments[i] += found
        width = max((sum(len(s["tokens"]) for s in row) for row in segments), default=0)
        out = np.full((batch, width), pad, "int32")
        for i, row in enumerate(segments):
            ids = [t for s in row for t in s["tokens"]]
            out[i, : len(ids)] = ids
        for row in segments:
            for s in row:
                s["tokens"] = np.asarray(s["tokens"], "int32")
        if return_segments:
            return {"sequences": out, "segments": segments}
        return out

    def _strip(self, new, config, kwargs):
        """Transformers' short-form post-processing: per row, drop the padding after the end of
        text and the end-of-text token itself, then right-pad to the longest row."""
        eos = kwargs.get("eos_token_id", config.eos_token_id)
        eos = set(np.atleast_1d(eos).tolist()) if eos is not None else set()
        pad = kwargs.get("pad_token_id", config.pad_token_id)
        if pad is None:
            pad = min(eos) if eos else 0
        rows = []
        for row in new.tolist():
            if row and row[-1] == pad:
                n = row.count(pad) - (1 if pad in eos else 0)
                if n:
                    row = row[:-n]
            if row and row[-1] in eos:
                row = row[:-1]
            rows.append(row)
        width = max((len(r) for r in rows), default=0)
        return np.asarray([r + [pad] * (width - len(r)) for r in rows], "int32").reshape(len(rows), width)

    # --- presets --------------------------------------------------------------------------------
    def save_extra_files(self, folder):
        super().save_extra_files(folder)
        settings = self.whisper_settings()
        if settings:  # keep the Whisper keys our GenerationConfig does not model
            import json
            from pathlib import Path

            path = Path(folder) / "generation_config.json"
            data = json.loads(path.read_text()) if path.exists() else {}
            data.update(settings)
            path.write_text(json.dumps(data, indent=2) + "\n")


def _segments(seq, begin, time_offset, size, precision, stride):
    """Transformers' ``_retrieve_segment``: one window's ids (without prompt and end of text) ->
    (segments, frames to seek). A pair of timestamps closes a segment; a window ending with a
    single timestamp is consumed whole, otherwise the next one starts at the last pair."""
    is_ts = [t >= begin for t in seq]
    single_ending = is_ts[-2:] == [False, True]
    cuts = [i + 1 for i in range(len(is_ts) - 1) if is_ts[i] and is_ts[i + 1]]
    if cuts:
        if single_ending:
            cuts.append(len(seq))
        else:
            cuts[-1] += 1
        found, last = [], 0
        for k, cut in enumerate(cuts):
            piece = seq[last:cut]
            end_at = -1 if k < len(cuts) - 1 or single_ending else -2
            found.append({"start": time_offset + (piece[0] - begin) * precision,
                          "end": time_offset + (piece[end_at] - begin) * precision, "tokens": piece})
            last = cut
        offset = size if single_ending else (seq[last - 2] - begin) * stride
        return found, offset
    stamps = [i for i, t in enumerate(is_ts) if t]
    end = float(int(size * 0.01 / precision))
    if stamps and seq[stamps[-1]] != begin:
        end = float(seq[stamps[-1]] - begin)
    return [{"start": time_offset, "end": time_offset + end * precision, "tokens": seq}], size


__all__ = ["WhisperSeq2SeqLM"]

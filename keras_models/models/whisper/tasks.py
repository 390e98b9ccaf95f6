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

Long-form options, as Transformers 5's ``generate_with_fallback``:

* ``condition_on_prev_tokens=True``: each window's prompt is the previous-text token
  (``prev_sot_token_id``, else the second-to-last ``suppress_tokens``) and the tokens of the
  segments so far (a segment ending with two timestamps gives one), the last
  max_target_positions // 2 - 1 of them, before the start tokens; ``prompt_ids`` are the first
  segment. Rows with prompts of different lengths decode apart (Transformers left-pads them and
  reads positions from the mask: the same numbers);
* ``temperature=(0.0, 0.2, ...)`` with ``compression_ratio_threshold`` (zlib ratio of the ids as
  bytes), ``logprob_threshold`` (mean log-probability of the ids, end of text included, under the
  processed scores with the temperature undone: recomputed teacher-forced) and
  ``no_speech_threshold`` (probability of the id before <|notimestamps|> after the start of
  transcript, from the raw logits): a window that fails is decoded again by sampling at the next
  temperature (``seed=``), the last one is kept; a window whose log-prob is low and whose
  no-speech probability is high is skipped. Transformers' by-position quirks of a shrinking batch
  (which row's flags and no-speech probability a fallback row reads) are kept;
* ``return_token_timestamps=True`` (needs ``alignment_heads`` in generation_config.json): the
  cross-attention of those heads over the fed tokens (a teacher-forced pass,
  ``WhisperBackbone.decoder_cross_attentions``; the cached decode loop is unchanged), cropped to
  the ``attention_mask``'s frames // 2, standardised, median-filtered (``median_filter_width``, 7)
  and averaged; DTW gives each token's time. The result is a dict with ``token_timestamps`` (each
  window's own times, as Transformers concatenates them); segments carry theirs shifted to the
  window's start.

Not covered: ``prompt_condition_type="all-segments"``, ``logprob_threshold`` with beam search
(Transformers reads the beam score there), token timestamps with beam search.
"""

import keras
import numpy as np
from keras import ops

from keras_models.generation import backend
from keras_models.generation.config import GenerationConfig, GenerationError
from keras_models.generation.mixin import GenerationMixin
from keras_models.models.registry import register_task
from keras_models.models.whisper.alignment import (  # noqa: F401 (compression_ratio: public helper)
    _one_frame_count, _segments, compression_ratio)
from keras_models.models.whisper.backbone import WhisperBackbone
from keras_models.models.whisper.languages import LANGUAGE_CODES, _language_token  # noqa: F401
from keras_models.models.whisper.scoring import WindowScoring
from keras_models.tasks.seq2seq_lm import Seq2SeqLM

_ser = keras.saving.register_keras_serializable(package="keras_models")

# generation_config.json keys of Whisper checkpoints that our GenerationConfig keeps aside
WHISPER_GENERATION_KEYS = ("lang_to_id", "task_to_id", "no_timestamps_token_id", "forced_decoder_ids",
                           "is_multilingual", "return_timestamps", "language", "task",
                           "max_initial_timestamp_index", "condition_on_prev_tokens", "prev_sot_token_id",
                           "compression_ratio_threshold", "logprob_threshold", "no_speech_threshold",
                           "alignment_heads")
TASKS = ("transcribe", "translate")


@_ser
@register_task(WhisperBackbone, "Seq2SeqLM", ("WhisperForConditionalGeneration",))
class WhisperSeq2SeqLM(WindowScoring, Seq2SeqLM):
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
                encoder_states = self.backbone.encode_features(features)
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
                 return_segments=False, condition_on_prev_tokens=None, return_token_timestamps=False,
                 **kwargs):
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
        thresholds = []
        for key in ("compression_ratio_threshold", "logprob_threshold", "no_speech_threshold"):
            value = kwargs.pop(key, None)
            thresholds.append(settings.get(key) if value is None else float(value))
        temperature = kwargs.get("temperature")
        fallback = None
        if isinstance(temperature, (list, tuple)) or any(t is not None for t in thresholds):
            # Transformers' generate_with_fallback: each temperature in turn (0 = greedy)
            kwargs.pop("temperature", None)
            temps = list(temperature) if isinstance(temperature, (list, tuple)) else [temperature]
            if not temps:
                raise GenerationError("generate: temperature=() (give at least one temperature)")
            fallback = (temps, *thresholds)
            if thresholds[2] is not None and thresholds[1] is None:
                raise GenerationError("generate: no_speech_threshold needs logprob_threshold (a window is "
                                      "skipped when both its log-prob is low and its no-speech probability high)")
            if thresholds[1] is not None and int(kwargs.get("num_beams", 1) or 1) > 1:
                raise GenerationError("generate: logprob_threshold with num_beams > 1 is not supported for "
                                      "Whisper (Transformers reads the beam score there)")
            if thresholds[2] is not None and settings.get("no_timestamps_token_id") is None:
                raise GenerationError("generate: no_speech_threshold needs no_timestamps_token_id in "
                                      "generation_config.json (the no-speech token is the id before it)")
        token_timestamps = None
        median_width = kwargs.pop("median_filter_width", None)
        if return_token_timestamps:
            if not settings.get("alignment_heads"):
                raise GenerationError("generate: return_token_timestamps=True needs alignment_heads in "
                                      "generation_config.json")
            heads = [tuple(int(v) for v in h) for h in settings["alignment_heads"]]
            bad = [h for h in heads if not (0 <= h[0] < self.backbone.num_decoder_layers
                                            and 0 <= h[1] < self.backbone.decoder_heads)]
            if bad:
                raise GenerationError(f"generate: alignment_heads {bad} are not (decoder layer, head) pairs of "
                                      "this model")
            frames = None
            if attention_mask is not None:
                frames = np.asarray(ops.convert_to_numpy(attention_mask)).reshape(feats.shape[0], -1).sum(-1)
            if median_width is None:
                median_width = getattr(self.backbone, "median_filter_width", None) or 7
            token_timestamps = (frames, heads, int(median_width))
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
                                             prompt_ids, return_segments, tokenizer, kwargs, return_timestamps,
                                             condition=bool(condition_on_prev_tokens), fallback=fallback,
                                             token_timestamps=token_timestamps)
        if condition_on_prev_tokens or fallback is not None or return_token_timestamps:
            raise GenerationError("generate: decoder_input_ids cannot be combined with condition_on_prev_tokens, "
                                  "temperature fallback or return_token_timestamps")
        if return_timestamps:
            raise GenerationError("generate: decoder_input_ids cannot be combined with return_timestamps / "
                                  "long-form transcription (use language=, task=, prompt_ids=)")
        states = self.backbone.encode_features(feats)
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

    def _decode(self, states, prompt, base, kwargs, tokenizer, timestamps=None, max_length=None, width=None):
        """One engine run on encoder ``states`` from the decoder ``prompt``: the new ids (raw,
        finished rows padded), under Transformers' Whisper length rules (for a prompt of ``width``
        tokens: Transformers' left-padded batch width, when rows of other lengths run apart)."""
        kwargs = dict(kwargs)
        batch = prompt.shape[0]
        width = prompt.shape[1] if width is None else width
        limit = self.backbone.decoder_max_position_embeddings
        max_new = kwargs.get("max_new_tokens", base.max_new_tokens)
        if max_new is None:  # Transformers: max_length counts from the initial tokens, capped
            initial = min(limit // 2 - 1, width)
            if max_length is None:
                max_length = kwargs.pop("max_length", base.max_length)
            kwargs.pop("max_length", None)
            max_length = min(max_length + initial, limit)
            kwargs["max_new_tokens"] = max(max_length - width, 0)
        elif max_new + width > limit:
            raise GenerationError(f"generate: the decoder prompt ({width} tokens) + max_new_tokens "
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
                             return_segments, tokenizer, kwargs, timestamps=True, condition=False, fallback=None,
                             token_timestamps=False):
        """Transformers' sequential (timestamp-seeking) Whisper transcription, greedy / beam; the
        timestamp rules apply with ``timestamps``. ``condition``: the previous windows' tokens
        prompt the next one; ``fallback``: (temperatures, compression-ratio, log-prob, no-speech
        thresholds) or None; ``token_timestamps``: per token a time from the alignment heads."""
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
        prompt = None if prompt_ids is None else np.asarray(ops.convert_to_numpy(prompt_ids), "int32").reshape(-1)
        # Transformers' previous-text token: generation_config.prev_sot_token_id, else the
        # second-to-last suppressed token
        prev_sot = settings.get("prev_sot_token_id")
        suppress = list(kwargs.get("suppress_tokens", base.suppress_tokens) or ())
        if prev_sot is None and len(suppress) >= 2:
            prev_sot = suppress[-2]
        history = [[] for _ in range(batch)]  # what conditions the next window (the prompt segment first)
        if prompt is not None and condition:
            first_prompt = prompt[1:] if prev_sot is not None and len(prompt) and prompt[0] == prev_sot else prompt
            history = [[{"tokens": first_prompt.tolist()}] for _ in range(batch)]
        do_cond = [bool(condition)] * batch
        cut_off = self.backbone.decoder_max_position_embeddings // 2 - 1
        seek = np.zeros((batch,), "int64")
        segments = [[] for _ in range(batch)]
        eos_set = set(eos)
        state = {"max_length": None}
        while (seek < frames).any():
            rows = [i for i in range(batch) if seek[i] < frames[i]]
            sizes = {i: int(min(frames[i] - seek[i], window)) for i in rows}
            pieces = []
            for i in rows:
                piece = feats[i, :, seek[i]: seek[i] + sizes[i]]
                pieces.append(np.pad(piece, ((0, 0), (0, window - piece.shape[-1]))))
            # compiled backends: finished rows are replaced by copies of a running one (rows decode
            # independently) so that every window reuses one compiled loop
            states = self.backbone.encode_features(np.stack(pieces + pieces[:1] * (batch - len(rows))))
            if condition and any(do_cond) and len(history[0]) > 0:
                prompts = []
                for i in rows:
                    prev = [] if prev_sot is None else [int(prev_sot)]
                    if do_cond[i] and history[i]:
                        ids = []
                        for s in history[i]:
                            t = list(s["tokens"])
                            # a segment that ends with two timestamps conditions with one
                            ids += t[:-1] if len(t) > 2 and t[-2] >= begin else t
                        prev += ids[-cut_off:]
                    prompts.append(prev + init[i].tolist())
            elif prompt is not None:
                prompts = [prompt.tolist() + init[i].tolist() for i in rows]
            else:
                prompts = [init[i].tolist() for i in rows]
            window_tt = None
            if token_timestamps:  # (frames left per row or None, alignment heads, median filter width)
                left = None if token_timestamps[0] is None else token_timestamps[0] - seek
                window_tt = (left, token_timestamps[1], token_timestamps[2])
            results, skip, raw, temps_used = self._decode_window(
                states, rows, prompts, base, kwargs, tokenizer, rule, state, pad, eos, eos_set, no_ts, fallback,
                do_cond, condition, window_tt, init.shape[1])
            for k, i in enumerate(rows):
                if skip[k]:
                    seek[i] += sizes[i]
                    continue
                seq = results[k]
                found, offset = _segments(seq, begin, seek[i] * precision / stride, sizes[i], precision, stride)
                if token_timestamps:
                    stamps, n_prompt = raw[k]
                    at = 0
                    for s in found:
                        n = len(s["tokens"])
                        # (the returned token_timestamps are the window's own, as Transformers
                        # concatenates them; the segments' are shifted to the window's start)
                        s["raw_token_timestamps"] = stamps[n_prompt + at: n_prompt + at + n]
                        s["token_timestamps"] = s["raw_token_timestamps"] + seek[i] * precision / stride
                        at += n
                seek[i] += offset
                segments[i] += found
                history[i] += found
        width = max((sum(len(s["tokens"]) for s in row) for row in segments), default=0)
        out = np.full((batch, width), pad, "int32")
        times = np.zeros((batch, width), "float64") if token_timestamps else None
        for i, row in enumerate(segments):
            ids = [t for s in row for t in s["tokens"]]
            out[i, : len(ids)] = ids
            if token_timestamps:
                got = np.concatenate([s.pop("raw_token_timestamps") for s in row]) if row else np.zeros((0,))
                times[i, : len(got)] = got
                times[i, len(got):] = got[-1] if len(got) else 0.0
        for row in segments:
            for s in row:
                s["tokens"] = np.asarray(s["tokens"], "int32")
        if token_timestamps:
            result = {"sequences": out, "token_timestamps": times}
            if return_segments:
                result["segments"] = segments
            return result
        if return_segments:
            return {"sequences": out, "segments": segments}
        return out

    def _decode_window(self, states, rows, prompts, base, kwargs, tokenizer, rule, state, pad, eos, eos_set, no_ts,
                       fallback, do_cond, condition, token_timestamps, init_len):
        """Transformers' ``generate_with_fallback`` for one window: per running row its new ids
        (end of text dropped), whether the window is skipped as silence, and (token timestamps)
        (times, prompt length) per row."""
        temperatures = [None] if fallback is None else list(fallback[0])
        crt, lpt, nst = (None, None, None) if fallback is None else fallback[1:]
        count = len(rows)
        width = max(len(p) for p in prompts)
        results, raw = [None] * count, [None] * count
        skip, need = [False] * count, [False] * count
        no_speech = None
        if nst is not None:  # P(no speech token) after the start of transcript, once per window
            # (Transformers reads the window's probabilities by position in the fallback batch when
            # the start tokens are more than one, else those of the rows it runs)
            no_speech = self._no_speech_probs(states, prompts, no_ts - 1, init_len)
        pending = list(range(count))  # positions in ``rows`` still to decode
        for fallback_index, temperature in enumerate(temperatures):
            kw = dict(kwargs)
            if fallback is not None:
                for key in ("do_sample", "temperature"):
                    kw.pop(key, None)
                sampling = temperature is not None and temperature > 0.0
                kw["do_sample"] = sampling
                if sampling:
                    kw["temperature"] = float(temperature)
                    kw["num_beams"] = 1
            new = {}
            groups = {}
            for k in pending:
                groups.setdefault(len(prompts[k]), []).append(k)
            for members in groups.values():
                run = members if backend.EAGER_LOOP else members + [members[0]] * (int(states.shape[0]) - len(members))
                out = self._decode(ops.take(states, np.asarray(run, "int32"), axis=0),
                                   np.asarray([prompts[k] for k in run], "int32"), base, kw, tokenizer,
                                   timestamps=rule, max_length=state["max_length"], width=width)
                state["next_max_length"] = self._last_max_length
                for k, seq in zip(members, out[: len(members)].tolist()):
                    new[k] = seq
            state["max_length"] = state.pop("next_max_length", state["max_length"])
            still = []
            for j, k in enumerate(pending):
                seq = new[k]
                if seq and seq[-1] == pad:
                    n = seq.count(pad) - (1 if pad in eos_set else 0)
                    if n:
                        seq = seq[:-n]
                if fallback is not None:
                    need[j], skip[j] = self._need_fallback(
                        seq, states[k: k + 1], prompts[k], base, kw, rule, temperature, crt, lpt, nst,
                        None if no_speech is None else no_speech[j if init_len > 1 else k])
                if seq and seq[-1] in eos_set:
                    seq = seq[:-1]
                results[k] = seq
                if token_timestamps:
                    raw[k] = (self._token_timestamps(states[k: k + 1], prompts[k], new[k], token_timestamps[0][rows[k]]
                                                     if token_timestamps[0] is not None else None,
                                                     token_timestamps[1], token_timestamps[2],
                                                     crop_twice=_one_frame_count(token_timestamps[0], rows)),
                              len(prompts[k]))
                # (Transformers writes this flag by position in the fallback batch)
                do_cond[k] = bool(condition) and (temperature is None or temperature < 0.5)
                if need[j]:
                    still.append(k)
            pending = still
            if not pending:
                break
        return results, skip, raw, temperatures

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


__all__ = ["WhisperSeq2SeqLM"]

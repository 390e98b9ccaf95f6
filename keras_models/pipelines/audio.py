"""Audio pipelines: automatic-speech-recognition (CTC models and Whisper-like encoder-decoders),
audio-classification and zero-shot-audio-classification (CLAP), with Transformers' arguments and
output formats.

Inputs: a mono waveform (1-D numpy array) sampled at the feature extractor's rate, a dict
``{"raw" or "array": waveform, "sampling_rate": hz}`` (resampled to the extractor's rate), an audio
file path (decoded with the optional ``soundfile``), or a list of those (one result each). Each
input goes through the model alone (batch of one, as Transformers' pipelines do), so padding never
changes a result.
"""

from __future__ import annotations

import numpy as np

from keras_models.pipelines.base import Pipeline, PipelineError, sigmoid, softmax, to_numpy
from keras_models.pipelines.speech_text import (_NO_SPACE_LANGUAGES, _merge_overlaps, _tokenizer_language,
                                                _whisper_words)


def _extractor_of(model):
    pre = getattr(model, "preprocessor", None)
    if pre is None:
        return None
    if hasattr(pre, "feature_extractor"):  # an audio-text processor
        return pre.feature_extractor
    return pre if hasattr(pre, "sampling_rate") else None


class _AudioPipeline(Pipeline):
    def __init__(self, model, tokenizer=None, feature_extractor=None, **kwargs):
        super().__init__(model, tokenizer=tokenizer, **kwargs)
        self.feature_extractor = feature_extractor or _extractor_of(model)
        if self.feature_extractor is None:
            raise PipelineError(f"{self.task}: the model has no audio feature extractor (preprocessor_config.json "
                                "in its preset); pass feature_extractor=")

    def __call__(self, inputs=None, **kwargs):
        if inputs is None:
            inputs = kwargs.pop("audio", kwargs.pop("inputs", None))
        if inputs is None:
            raise PipelineError(f"{self.task}: give audio (a 1-D waveform array, a {{'raw', 'sampling_rate'}} "
                                "dict or a file path), or a list of them")
        return super().__call__(inputs, **kwargs)

    def normalize_inputs(self, inputs, params):
        if isinstance(inputs, (list, tuple)) and inputs and all(
                isinstance(x, (int, float, np.floating, np.integer)) for x in inputs):
            inputs = np.asarray(inputs, dtype=np.float32)  # a plain list of samples is one waveform
        return super().normalize_inputs(inputs, params)

    def waveform(self, item):
        """``item`` as a mono float32 waveform at the feature extractor's sampling rate."""
        from keras_models.errors import InputError
        from keras_models.preprocessing.audio import _load_file, _one_waveform, resample

        rate = self.feature_extractor.sampling_rate
        try:
            if isinstance(item, dict):
                if "sampling_rate" not in item or not ("raw" in item or "array" in item):
                    raise PipelineError(f"{self.task}: an input dict needs a 'raw' (or 'array') waveform and its "
                                        f"'sampling_rate', got keys {sorted(item)}")
                wave = item["raw"] if item.get("raw") is not None else item.get("array")
                wave = _one_waveform(to_numpy(wave) if not isinstance(wave, (list, np.ndarray)) else wave,
                                     f"{self.task} input")
                source = item["sampling_rate"]
            elif isinstance(item, (str, bytes)) or hasattr(item, "__fspath__"):
                if isinstance(item, bytes):
                    raise PipelineError(f"{self.task}: encoded audio bytes are not decoded here; pass a file path "
                                        "or the waveform array")
                wave, source = _load_file(item, f"{self.task} input")
                wave = _one_waveform(wave, f"{self.task} input")
            else:
                wave, source = _one_waveform(item, f"{self.task} input"), rate
        except InputError as e:
            raise PipelineError(str(e)) from e
        if isinstance(source, bool) or not isinstance(source, (int, float, np.integer, np.floating)) or source <= 0:
            raise PipelineError(f"{self.task}: sampling_rate must be a positive number of Hz, got {source!r}")
        if int(source) != int(rate):
            wave = resample(wave, int(source), int(rate), f"{self.task} input")
        return wave

    def features(self, item):
        wave = self.waveform(item)
        return dict(self.feature_extractor(wave, sampling_rate=self.feature_extractor.sampling_rate))

    def forward(self, chunks, **params):
        return [self.run_model(c["features"]) for c in chunks]


class AutomaticSpeechRecognitionPipeline(_AudioPipeline):
    """``{"text": ...}`` per input, as Transformers' pipeline computes it (Whisper: also with
    ``chunk_length_s`` windows, merged at their best token overlap).

    CTC models (``km.SpeechRecognizer``): the best id per frame, decoded by the CTC tokenizer
    (repeats merged, blanks dropped). ``return_timestamps="char"`` / ``"word"`` adds ``"chunks"``:
    ``{"text", "timestamp": (start, end)}`` in seconds, from the frames each character (word) spans
    (frame = ``prod(conv_stride)`` samples). ``chunk_length_s`` (+ ``stride_length_s``, default a
    sixth of it on each side) cuts long audio into overlapping windows; each window's frames inside
    its strides are kept and joined before decoding.

    Encoder-decoder models (Whisper, ``km.Seq2SeqLM``): ``generate`` on the log-mel features with
    the pipeline's defaults (``num_beams=5``; ``max_new_tokens=256`` unless the checkpoint's
    generation config sets a length), ``generate_kwargs`` (``language``, ``task``, ...) and
    ``max_new_tokens`` on top; the text is every non-special, non-timestamp token decoded.
    Whisper ``return_timestamps=True`` adds segment ``chunks``, ``return_timestamps="word"`` word
    ``chunks`` timed by the DTW token timestamps (the checkpoint needs ``alignment_heads``); audio
    longer than one window without ``chunk_length_s`` runs Whisper's sequential long-form
    ``generate``.
    """

    task = "automatic-speech-recognition"
    call_params = ("generate_kwargs", "max_new_tokens", "return_timestamps", "chunk_length_s", "stride_length_s")
    _GENERATION_DEFAULTS = {"max_new_tokens": 256, "num_beams": 5}  # Transformers' ASR pipeline defaults

    def __init__(self, model, tokenizer=None, feature_extractor=None, **kwargs):
        if tokenizer is None:
            tokenizer = getattr(model, "tokenizer", None)
        super().__init__(model, tokenizer=tokenizer, feature_extractor=feature_extractor, **kwargs)
        from keras_models.tasks.audio import SpeechRecognizer

        self.seq2seq = not isinstance(model, SpeechRecognizer)
        if self.seq2seq and not hasattr(model, "generate"):
            raise PipelineError(f"{self.task}: {type(model).__name__} is neither a CTC SpeechRecognizer nor an "
                                "encoder-decoder with generate (Whisper)")
        self._require_tokenizer()

    # --- parameters -----------------------------------------------------------------------------
    @property
    def align_to(self):
        """Waveform samples per CTC output frame (Transformers' ``inputs_to_logits_ratio``)."""
        spec = getattr(getattr(self.model, "backbone", None), "spec", None)
        strides = getattr(spec, "conv_stride", None) or self.hf_config.get("conv_stride") or (1,)
        return int(np.prod([int(s) for s in strides]))

    def prepare_params(self, params):
        gen_arg = params.get("generate_kwargs")
        if gen_arg is not None and not isinstance(gen_arg, dict):
            raise PipelineError(f"{self.task}: generate_kwargs must be a dict, got {type(gen_arg).__name__}")
        gen = dict(gen_arg or {})
        if params.get("max_new_tokens") is not None:
            if "max_new_tokens" in gen:
                raise PipelineError(f"{self.task}: max_new_tokens given twice (argument and generate_kwargs)")
            gen["max_new_tokens"] = params["max_new_tokens"]
        stamps = params.get("return_timestamps")
        if gen and not self.seq2seq:
            raise PipelineError(f"{self.task}: generate_kwargs / max_new_tokens apply to encoder-decoder models "
                                f"only; {type(self.model).__name__} decodes CTC frames")
        if self.seq2seq:
            settings = getattr(self.model, "whisper_settings", None)
            settings = (settings() if settings is not None else None)
            if not stamps and settings and settings.get("return_timestamps"):
                stamps = True  # as Transformers: the checkpoint's generation config asks for them
            if stamps not in (None, False, True, "word"):
                raise PipelineError(f"{self.task}: return_timestamps={stamps!r} is not supported for "
                                    f"{type(self.model).__name__}; Whisper returns segment timestamps "
                                    "(return_timestamps=True) or word timestamps (return_timestamps='word')")
            if stamps and settings is None:
                raise PipelineError(f"{self.task}: return_timestamps is only supported for Whisper among "
                                    f"encoder-decoder models, not {type(self.model).__name__}")
            if stamps == "word":
                if not settings.get("alignment_heads"):
                    raise PipelineError(f"{self.task}: return_timestamps='word' needs alignment_heads in the "
                                        "checkpoint's generation_config.json (the cross-attention heads whose "
                                        "DTW alignment times each token)")
                for key in ("return_token_timestamps", "return_segments"):
                    if key in gen:
                        raise PipelineError(f"{self.task}: generate_kwargs {key} is set by "
                                            "return_timestamps='word'")
            if stamps:
                gen["return_timestamps"] = True
            return {"generate_kwargs": self._generation_defaults(gen), "chunking": self._chunking(params),
                    "return_timestamps": ("word" if stamps == "word" else bool(stamps) or None)}
        if stamps not in (None, False) and stamps not in ("char", "word"):
            raise PipelineError(f"{self.task}: return_timestamps must be 'char' or 'word' for a CTC model, got "
                                f"{stamps!r}")
        return {"generate_kwargs": {}, "chunking": self._chunking(params), "return_timestamps": stamps or None}

    def _generation_defaults(self, gen):
        """Transformers' pipeline defaults for what neither the call nor the checkpoint sets."""
        config = getattr(self.model, "generation_config", None)
        explicit = set(getattr(config, "explicit", ()) or ())
        if isinstance(config, dict):
            explicit = set(config)
        set_params = explicit | set(gen)
        for key, value in self._GENERATION_DEFAULTS.items():
            if key in set_params or (key == "max_new_tokens" and "max_length" in set_params):
                continue
            gen[key] = value
        return gen

    def _chunking(self, params):
        length = params.get("chunk_length_s")
        stride = params.get("stride_length_s")
        if not length:
            if stride:
                raise PipelineError(f"{self.task}: stride_length_s needs chunk_length_s")
            return None
        if isinstance(length, bool) or not isinstance(length, (int, float, np.integer, np.floating)) or length < 0:
            raise PipelineError(f"{self.task}: chunk_length_s must be a positive number of seconds, got {length!r}")
        if stride is None:
            stride = length / 6
        if isinstance(stride, (int, float, np.integer, np.floating)) and not isinstance(stride, bool):
            stride = [stride, stride]
        if (not isinstance(stride, (list, tuple)) or len(stride) != 2
                or not all(isinstance(x, (int, float, np.integer, np.floating)) and x >= 0 for x in stride)):
            raise PipelineError(f"{self.task}: stride_length_s must be a number of seconds or a (left, right) "
                                f"pair, got {stride!r}")
        rate, align = self.feature_extractor.sampling_rate, (1 if self.seq2seq else self.align_to)
        chunk_len = int(round(length * rate / align) * align)
        left = int(round(stride[0] * rate / align) * align)
        right = int(round(stride[1] * rate / align) * align)
        if chunk_len < left + right:
            raise PipelineError(f"{self.task}: chunk_length_s ({length}) must be longer than the two strides "
                                f"stride_length_s ({stride[0]} + {stride[1]})")
        if chunk_len - left - right <= 0:
            raise PipelineError(f"{self.task}: chunk_length_s ({length}) leaves no audio between the strides (stride_length_s) "
                                f"{tuple(stride)}")
        return chunk_len, left, right

    # --- steps ----------------------------------------------------------------------------------
    def preprocess(self, item, chunking=None, return_timestamps=None, **_):
        wave = self.waveform(item)
        rate = self.feature_extractor.sampling_rate
        # word timestamps: the frames of real audio (the extractor's attention_mask) bound the DTW
        extra = {"return_attention_mask": True} if return_timestamps == "word" else {}
        if chunking is None:
            if self.seq2seq:
                limit = getattr(self.feature_extractor, "n_samples", None)
                if limit is not None and len(wave) > int(limit):  # Whisper's sequential long-form input
                    feats = self.feature_extractor(wave, sampling_rate=rate, truncation=False, padding="longest",
                                                   return_attention_mask=True)
                    return [{"features": dict(feats), "stride": None, "long": True}]
            return [{"features": dict(self.feature_extractor(wave, sampling_rate=rate, **extra)), "stride": None}]
        chunk_len, left, right = chunking
        chunks = []
        for start in range(0, len(wave), chunk_len - left - right):  # Transformers' chunk_iter
            piece = wave[start : start + chunk_len]
            last = start + chunk_len >= len(wave)
            stride = (len(piece), 0 if start == 0 else left, 0 if last else right)
            if len(piece) > stride[1]:
                chunks.append({"features": dict(self.feature_extractor(piece, sampling_rate=rate, **extra)),
                               "stride": stride})
            if last:
                break
        return chunks

    def run_model(self, feats):
        return self.call_model(self.model, feats)

    def forward(self, chunks, generate_kwargs=None, return_timestamps=None, **params):
        if not self.seq2seq:
            return [self.run_model(c["features"]) for c in chunks]
        feats = [c["features"] for c in chunks]
        name = "input_features" if "input_features" in feats[0] else "input_values"
        if name not in feats[0]:
            raise PipelineError(f"{self.task}: the feature extractor gave {sorted(feats[0])}, no input_features")
        kwargs = dict(generate_kwargs or {})
        kwargs.setdefault("do_sample", False)
        if return_timestamps == "word":
            kwargs.update(return_token_timestamps=True, return_segments=True)
        if any(c.get("long") for c in chunks):  # long-form features: one generate call each
            if return_timestamps == "word":
                return [self._word_output(self.model.generate(np.asarray(f[name]), attention_mask=f.get("attention_mask"),
                                                              **kwargs), 0) for f in feats]
            return [np.asarray(to_numpy(self.model.generate(np.asarray(f[name]), **kwargs)))[0] for f in feats]
        batch = np.concatenate([np.asarray(f[name]) for f in feats], axis=0)
        if return_timestamps == "word":
            mask = None
            if all("attention_mask" in f for f in feats):
                mask = np.concatenate([np.asarray(f["attention_mask"]) for f in feats], axis=0)
            out = self.model.generate(batch, attention_mask=mask, **kwargs)
            return [self._word_output(out, i) for i in range(len(feats))]
        ids = np.asarray(to_numpy(self.model.generate(batch, **kwargs)))
        return list(ids)

    @staticmethod
    def _word_output(out, row):
        """Row ``row`` of a ``generate(..., return_token_timestamps=True, return_segments=True)``
        result as Transformers' pipeline reads it: the ids, and per id a time from the row's
        segments' token timestamps (shifted to their window's start) put end to end."""
        ids = np.asarray(to_numpy(out["sequences"]))[row]
        segments = out["segments"][row]
        times = [np.asarray(to_numpy(s["token_timestamps"]), np.float64).reshape(-1) for s in segments]
        times = np.concatenate(times) if times else np.zeros((0,), np.float64)
        return {"tokens": ids, "token_timestamps": times}

    def postprocess(self, item, chunks, outputs, return_timestamps=None, **_):
        if self.seq2seq:
            rate = self.feature_extractor.sampling_rate
            strides = [None if c["stride"] is None else tuple(x / rate for x in c["stride"]) for c in chunks]
            if return_timestamps == "word":
                text, pieces = self._whisper_decode([[int(i) for i in out["tokens"]] for out in outputs], strides,
                                                    "word", [[float(t) for t in out["token_timestamps"]]
                                                             for out in outputs])
            else:
                text, pieces = self._whisper_decode([[int(i) for i in out] for out in outputs], strides,
                                                    bool(return_timestamps))
            if return_timestamps:
                return {"text": text, "chunks": pieces}
            return {"text": text}
        align = self.align_to
        pieces = []
        for chunk, logits in zip(chunks, outputs):
            ids = np.argmax(np.asarray(logits, dtype=np.float32), axis=-1)[0]
            if chunk["stride"] is not None:  # Transformers' rescale_stride, then the frames inside the strides
                n, left, right = chunk["stride"]
                frames = int(round(n / align))
                left, right = int(round(left / n * frames)), int(round(right / n * frames))
                ids = ids[left : frames - right]
            pieces.append(ids)
        ids = [int(i) for i in np.concatenate(pieces)]
        out = {"text": self.tokenizer.decode(ids, skip_special_tokens=False)}
        if return_timestamps:
            rate = self.feature_extractor.sampling_rate
            offsets = self._ctc_offsets(ids, return_timestamps)
            out["chunks"] = [{"text": text, "timestamp": (start * align / rate, end * align / rate)}
                             for text, start, end in offsets]
        return out

    # --- decoding -------------------------------------------------------------------------------
    def _ctc_offsets(self, ids, level):
        """``(text, first frame, end frame)`` per character (``level="char"``) or word, as
        Transformers' Wav2Vec2CTCTokenizer computes char / word offsets."""
        import itertools

        decoder = getattr(self.tokenizer, "python_decoder", None)
        if decoder is None or not hasattr(decoder, "pad"):
            raise PipelineError(f"{self.task}: return_timestamps needs a CTC tokenizer (Wav2Vec2CTCTokenizer)")
        tokens = self.tokenizer.convert_ids_to_tokens(ids)
        chars, end = [], 0
        for token, run in itertools.groupby(tokens):
            start, end = end, end + len(list(run))
            if token != decoder.pad:
                chars.append([decoder.replace_char if token == decoder.delimiter else token, start, end])
        if level == "char":
            return [tuple(c) for c in chars]
        words, state, word, start, stop = [], "SPACE", "", 0, 0
        for char, s, e in chars:  # Transformers' _get_word_offsets state machine
            new = "SPACE" if char == decoder.replace_char else "WORD"
            if new == state:
                stop, word = e, word + char
            elif new == "SPACE":
                words.append((word, start, stop))
            else:
                start, stop, word = s, e, char
            state = new
        if state == "WORD":
            words.append((word, start, stop))
        return words

    def _whisper_decode(self, outputs, strides, return_timestamps=False, token_times=None):
        """Transformers' Whisper ASR decoding (``_decode_asr``) -> (text, chunks): per window the
        non-special tokens, cut into chunks where a timestamp closes a segment (or, without
        timestamps, where the language changes); windows of chunked audio merged by their longest
        overlap (``_merge_overlaps``) and shifted by their strides; timestamps in seconds from
        the timestamp tokens (a window that restarts the timestamps continues after the previous
        segments).

        ``return_timestamps="word"`` (``token_times``: per window, per id, the DTW time from
        ``generate(..., return_token_timestamps=True)``): each text token spans from the previous
        id's time to its own (the first id of a window from the window's start), shifted by the
        strides; overlapping windows are merged only where the equal tokens' spans are in order;
        every closed chunk's tokens are grouped into words (``_whisper_words``) and the chunks are
        those words with the span from their first token's start to their last token's end."""
        tok = self.tokenizer
        words_mode = return_timestamps == "word"
        special = set(getattr(tok, "all_special_ids", ()) or ())
        no_ts = tok.convert_tokens_to_ids("<|notimestamps|>")
        begin = no_ts + 1 if isinstance(no_ts, int) and no_ts >= 0 else float("inf")
        prompt_id = tok.convert_tokens_to_ids("<|startofprev|>")
        start_id = tok.convert_tokens_to_ids("<|startoftranscript|>")
        settings = getattr(self.model, "whisper_settings", None)
        lang_to_id = ((settings() if settings is not None else None) or {}).get("lang_to_id") or {}
        languages = {i: str(t).strip("<|>") for t, i in lang_to_id.items()}
        positions = self.hf_config.get("max_source_positions") or 1500
        precision = self.feature_extractor.chunk_length / positions
        segment_size = 1500  # as Transformers' _decode_asr (its default, whatever the model)
        chunks, previous, prev_times, time_offset, skip, last_language = [], [], [], 0.0, False, None
        chunk = {"timestamp": [None, None], "text": ""}

        def close(chunk, previous, prev_times):
            if words_mode:
                ids, times = _merge_overlaps(previous, prev_times)
                chunk["words"] = self._whisper_word_chunks(ids, times, last_language)
            else:
                ids = _merge_overlaps(previous)
            chunk["text"] = tok.decode(ids, skip_special_tokens=False)
            chunks.append(chunk)

        for w, (ids, stride) in enumerate(zip(outputs, strides)):
            if ids and ids[0] == prompt_id:  # a prompt (<|startofprev|> ...) is not transcribed
                ids = ids[ids.index(start_id):] if start_id in ids else []
            times = token_times[w] if words_mode else None
            last_ts, first_ts, cur_max, prev_len, penult = None, begin, 0.0, 0.0, 0.0
            if stride is not None:
                length, left, right = stride
                time_offset -= left
                right_start = length - right
                if left:
                    first_ts = left / precision + begin
                if right:
                    for t in reversed(ids):
                        if t >= begin:
                            if last_ts is not None and (t - begin) * precision < right_start:
                                break
                            last_ts = t
            current, current_times = [], []
            for i, t in enumerate(ids):
                if t in special:
                    if t in languages:
                        if last_language is not None and t != last_language and not return_timestamps:
                            previous.append(current)
                            close(chunk, previous, prev_times)
                            previous, current, chunk = [], [], {"timestamp": [None, None], "text": ""}
                        last_language = t
                elif t >= begin:
                    stamp = float((t - begin) * precision)
                    if stamp < cur_max:  # the timestamps restart: a new window
                        if i >= 2 and not (ids[i - 1] >= begin and ids[i - 2] >= begin):
                            prev_len += precision * segment_size
                        else:
                            cur_max = penult
                            prev_len += penult
                    penult, cur_max = cur_max, stamp
                    time = round((t - begin) * precision + time_offset + prev_len, 2)
                    if last_ts and t >= last_ts:
                        skip = True
                    elif skip or (previous and t < first_ts):
                        skip = False
                    elif chunk["timestamp"][0] is None:
                        chunk["timestamp"][0] = time
                    elif time != chunk["timestamp"][0]:  # a segment closed
                        chunk["timestamp"][1] = time
                        previous.append(current)
                        if words_mode:
                            prev_times.append(current_times)
                        close(chunk, previous, prev_times)
                        previous, current, chunk = [], [], {"timestamp": [None, None], "text": ""}
                        prev_times, current_times = [], []
                else:
                    current.append(t)
                    if words_mode:
                        if i >= len(times):
                            raise PipelineError(f"{self.task}: generate gave {len(times)} token timestamps for "
                                                f"{len(ids)} ids")
                        start = round((times[i - 1] if i else 0.0) + time_offset, 2)
                        current_times.append((start, round(times[i] + time_offset, 2)))
            if stride is not None:
                time_offset += length - right
            if current:
                previous.append(current)
                if words_mode:
                    prev_times.append(current_times)
            elif not any(previous):
                previous, chunk, prev_times = [], {"timestamp": [None, None], "text": ""}, []
        if previous:
            close(chunk, previous, prev_times)
        for c in chunks:
            c["timestamp"] = tuple(c["timestamp"])
        text = "".join(c["text"] for c in chunks)
        if words_mode:
            return text, [word for c in chunks for word in c["words"]]
        return text, chunks

    def _whisper_word_chunks(self, ids, times, language_id):
        """``{"text": word, "timestamp": (start, end)}`` per word of ``ids`` (``times``: per id its
        (start, end)); the language (token id, else the tokenizer's ``language``) picks how the
        words are found (``_whisper_words``)."""
        language = None
        if language_id is not None:
            code = self.tokenizer.convert_ids_to_tokens([language_id])[0].strip("<|>")
            language = _NO_SPACE_LANGUAGES.get(code, code)
        else:
            language = getattr(self.tokenizer, "language", None) or _tokenizer_language(self.tokenizer)
        eos = getattr(self.tokenizer, "eos_token_id", None)
        words = _whisper_words(self.tokenizer.decode, ids, language, eos)
        return [{"text": word, "timestamp": (times[idx[0]][0], times[idx[-1]][1])} for word, idx in words]


class AudioClassificationPipeline(_AudioPipeline):
    """``[{"score", "label"}]`` best first: ``top_k`` of them (default: every label), scores by
    ``function_to_apply`` (default from the config's problem_type: softmax, sigmoid for multi-label,
    none for regression)."""

    task = "audio-classification"
    call_params = ("top_k", "function_to_apply")

    @property
    def id2label(self):
        from keras_models.pipelines.image import _labels

        return _labels(self)

    def prepare_params(self, params):
        n = len(self.id2label)
        top_k = params.get("top_k")
        if top_k is not None and (isinstance(top_k, bool) or not isinstance(top_k, (int, np.integer)) or top_k < 1):
            raise PipelineError(f"{self.task}: top_k must be a positive integer, got {top_k!r}")
        fn = params.get("function_to_apply")
        if fn is None:
            problem = self.hf_config.get("problem_type")
            fn = {"regression": "none", "multi_label_classification": "sigmoid"}.get(problem, "softmax")
        fn = str(getattr(fn, "value", fn)).lower()
        if fn not in ("softmax", "sigmoid", "none"):
            raise PipelineError(f"{self.task}: function_to_apply must be 'softmax', 'sigmoid' or 'none', got {fn!r}")
        return {"top_k": n if top_k is None else min(int(top_k), n), "function_to_apply": fn}

    def preprocess(self, item, **_):
        return [{"features": self.features(item)}]

    def postprocess(self, item, chunks, outputs, top_k=5, function_to_apply="softmax", **_):
        logits = np.asarray(outputs[0], dtype=np.float32).reshape(-1)
        scores = {"softmax": softmax, "sigmoid": sigmoid, "none": np.asarray}[function_to_apply](logits)
        labels = self.id2label
        order = sorted(range(len(scores)), key=lambda i: -float(scores[i]))[:top_k]
        return [{"score": float(scores[i]), "label": labels[i]} for i in order]


class ZeroShotAudioClassificationPipeline(_AudioPipeline):
    """``pipe(audio, candidate_labels=[...])`` -> ``[{"score", "label"}]`` best first: each label in
    ``hypothesis_template`` (default ``"This is a sound of {}."``), scores the softmax of
    ``logits_per_audio`` over the labels."""

    task = "zero-shot-audio-classification"
    call_params = ("candidate_labels", "hypothesis_template")

    def __init__(self, model, tokenizer=None, **kwargs):
        super().__init__(model, tokenizer=tokenizer, **kwargs)
        self._require_tokenizer()

    def prepare_params(self, params):
        labels = params.get("candidate_labels")
        if isinstance(labels, str):
            labels = [labels]
        if not labels or not all(isinstance(x, str) for x in labels):
            raise PipelineError(f"{self.task}: pass candidate_labels=[...] (at least one label, strings)")
        template = params.get("hypothesis_template") or "This is a sound of {}."
        if not isinstance(template, str) or "{}" not in template:
            raise PipelineError(f"{self.task}: hypothesis_template must be a str with a '{{}}' slot, got {template!r}")
        return {"candidate_labels": list(labels), "hypothesis_template": template}

    def preprocess(self, item, candidate_labels, hypothesis_template, **_):
        texts = [hypothesis_template.format(label) for label in candidate_labels]
        feats = self.features(item)
        enc = self.tokenizer(texts, padding="longest")
        feats.update({k: np.asarray(enc[k]) for k in ("input_ids", "attention_mask") if k in enc})
        return [{"features": feats}]

    def run_model(self, feats):
        return to_numpy(self.model(feats))["logits_per_audio"][0]

    def postprocess(self, item, chunks, outputs, candidate_labels, **_):
        scores = softmax(np.asarray(outputs[0], dtype=np.float32))
        ranked = sorted(zip(scores.tolist(), candidate_labels), key=lambda x: -x[0])
        return [{"score": s, "label": label} for s, label in ranked]


__all__ = ["AutomaticSpeechRecognitionPipeline", "AudioClassificationPipeline", "ZeroShotAudioClassificationPipeline"]

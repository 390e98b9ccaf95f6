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
    """``{"text": ...}`` per input. CTC models (``km.SpeechRecognizer``): the best id per frame,
    decoded by the CTC tokenizer (repeats merged, blanks dropped), as Transformers' pipeline does.
    Encoder-decoder models (Whisper, ``km.Seq2SeqLM``): greedy ``generate`` on the log-mel
    features (``generate_kwargs`` / ``max_new_tokens`` passed on), special tokens skipped."""

    task = "automatic-speech-recognition"
    call_params = ("generate_kwargs", "max_new_tokens", "return_timestamps", "chunk_length_s", "stride_length_s")

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

    def prepare_params(self, params):
        for name in ("chunk_length_s", "stride_length_s"):
            if params.get(name):
                raise PipelineError(f"{self.task}: {name} (chunked long-form audio) is not supported; split the "
                                    "audio into clips")
        if params.get("return_timestamps"):
            raise PipelineError(f"{self.task}: return_timestamps is not supported (only the text is returned)")
        gen = dict(params.get("generate_kwargs") or {})
        if not isinstance(params.get("generate_kwargs") or {}, dict):
            raise PipelineError(f"{self.task}: generate_kwargs must be a dict")
        if params.get("max_new_tokens") is not None:
            if "max_new_tokens" in gen:
                raise PipelineError(f"{self.task}: max_new_tokens given twice (argument and generate_kwargs)")
            gen["max_new_tokens"] = params["max_new_tokens"]
        if gen and not self.seq2seq:
            raise PipelineError(f"{self.task}: generate_kwargs / max_new_tokens apply to encoder-decoder models "
                                f"only; {type(self.model).__name__} decodes CTC frames")
        return {"generate_kwargs": gen}

    def preprocess(self, item, **_):
        return [{"features": self.features(item)}]

    def run_model(self, feats):
        if self.seq2seq:
            return None
        return self.call_model(self.model, feats)

    def forward(self, chunks, generate_kwargs=None, **params):
        if not self.seq2seq:
            return super().forward(chunks)
        out = []
        for c in chunks:
            feats = c["features"]
            name = "input_features" if "input_features" in feats else "input_values"
            if name not in feats:
                raise PipelineError(f"{self.task}: the feature extractor gave {sorted(feats)}, no input_features")
            kwargs = dict(generate_kwargs or {})
            kwargs.setdefault("do_sample", False)
            ids = self.model.generate(np.asarray(feats[name]), **kwargs)
            out.append(np.asarray(to_numpy(ids))[0])
        return out

    def postprocess(self, item, chunks, outputs, **_):
        if self.seq2seq:
            ids = [int(i) for i in outputs[0]]
            return {"text": self.tokenizer.decode(ids, skip_special_tokens=True)}
        ids = np.argmax(np.asarray(outputs[0], dtype=np.float32), axis=-1)[0]
        return {"text": self.tokenizer.decode([int(i) for i in ids], skip_special_tokens=False)}


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

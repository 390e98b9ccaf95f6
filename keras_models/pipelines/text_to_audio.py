"""text-to-audio / text-to-speech: text -> ``{"audio", "sampling_rate"}``, with Transformers 5's
arguments and output format.

* VITS / MMS-TTS (loaded as the VITS backbone: a forward-only model): the tokenized text goes
  through ``synthesize``; ``forward_params`` are its keyword arguments (``speaking_rate``,
  ``noise_scale``, ``noise_scale_duration``, ``seed``, ...). ``generate_kwargs`` are refused (as
  Transformers does for forward-only models).
* km.TextToAudio (MusicGen, Bark ...): ``generate`` with ``{**forward_params, **generate_kwargs}``;
  ``max_new_tokens`` defaults to 256 when neither the call nor generation_config.json sets a length
  (Transformers' pipeline default).

``audio`` is the waveform as float32 numpy with the batch (and a single channel) axis squeezed, as
Transformers' ``.squeeze()``; ``sampling_rate`` is the ``sampling_rate=`` given to ``pipeline()``,
else the checkpoint's (config.json ``sampling_rate``, or its audio codec's). A list of texts gives
a list of outputs, one model call per text.
"""

from __future__ import annotations

import numpy as np

from keras_models.pipelines.base import Pipeline, PipelineError, to_numpy


class TextToAudioPipeline(Pipeline):
    task = "text-to-audio"
    call_params = ("forward_params", "generate_kwargs", "preprocess_params")

    def __init__(self, model, tokenizer=None, sampling_rate=None, vocoder=None, **kwargs):
        if vocoder is not None:
            raise PipelineError(f"{self.task}: vocoder= (spectrogram models such as SpeechT5) is not supported by "
                                "this pipeline yet; use a waveform model (VITS / MMS-TTS, MusicGen, Bark)")
        super().__init__(model, tokenizer=tokenizer, **kwargs)
        if self.tokenizer is None and hasattr(getattr(model, "preprocessor", None), "encode"):
            self.tokenizer = model.preprocessor  # km.TextToAudio keeps its tokenizer as the preprocessor
        if self.tokenizer is None:
            raise PipelineError(f"{self.task}: the model has no tokenizer; load a preset folder with tokenizer files "
                                "or pass tokenizer=")
        self.forward_only = not hasattr(model, "generate")
        if self.forward_only and not hasattr(model, "synthesize"):
            raise PipelineError(f"{self.task}: {type(model).__name__} neither generates nor synthesizes audio "
                                "(load a VITS / MMS-TTS, MusicGen or Bark checkpoint)")
        self.sampling_rate = sampling_rate if sampling_rate is not None else _sampling_rate(self.hf_config, model)

    def normalize_inputs(self, inputs, params):
        if isinstance(inputs, str):
            return True, [inputs]
        if isinstance(inputs, (list, tuple)) and inputs and all(isinstance(t, str) for t in inputs):
            return False, list(inputs)
        raise PipelineError(f"{self.task}: inputs must be a str or a non-empty list of str, got "
                            f"{type(inputs).__name__}")

    def prepare_params(self, params):
        out = {}
        for name in ("forward_params", "generate_kwargs", "preprocess_params"):
            value = params.get(name) or {}
            if not isinstance(value, dict):
                raise PipelineError(f"{self.task}: {name} must be a dict, got {type(value).__name__}")
            out[name] = dict(value)
        if self.forward_only and out["generate_kwargs"]:
            raise PipelineError(f"{self.task}: generate_kwargs {sorted(out['generate_kwargs'])} are given, but this "
                                "model is forward-only (VITS); pass its arguments as forward_params")
        return out

    def preprocess(self, item, preprocess_params=None, **_):
        enc = self.tokenizer([item], **(preprocess_params or {}))
        features = {k: np.asarray(enc[k], np.int32) for k in ("input_ids", "attention_mask") if k in enc}
        return [{"features": features}]

    def forward(self, chunks, forward_params=None, generate_kwargs=None, **_):
        outputs = []
        for chunk in chunks:  # one text per call: each waveform keeps its own length
            if self.forward_only:
                audio = self.model.synthesize(chunk["features"], **(forward_params or {}))["waveform"]
            else:
                kwargs = {**(forward_params or {}), **(generate_kwargs or {})}
                config = getattr(self.model, "generation_config", None) or {}
                if not any(k in kwargs or k in config for k in ("max_new_tokens", "max_length")):
                    kwargs["max_new_tokens"] = 256
                audio = self.model.generate(chunk["features"], **kwargs)
            outputs.append(to_numpy(audio))
        return outputs

    def postprocess(self, item, chunks, outputs, **_):
        return {"audio": np.asarray(outputs[0], np.float32).squeeze(), "sampling_rate": self.sampling_rate}


def _sampling_rate(hf_config, model):
    for key in ("sampling_rate", "sample_rate"):
        if hf_config.get(key) is not None:
            return hf_config[key]
    for sub in ("codec_config", "audio_encoder"):
        inner = hf_config.get(sub) or {}
        for key in ("sampling_rate", "sample_rate"):
            if isinstance(inner, dict) and inner.get(key) is not None:
                return inner[key]
    backbone = getattr(model, "backbone", model)
    return getattr(backbone, "sampling_rate", None)


__all__ = ["TextToAudioPipeline"]

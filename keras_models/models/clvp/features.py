"""CLVP feature extractor (Transformers' ``ClvpFeatureExtractor``): mono waveforms -> the reference
voice's log-mel ``input_features`` (batch, frames, feature_size) float32, channels last as
:class:`~keras_models.models.clvp.backbone.ClvpBackbone` reads them (Transformers' are (batch,
feature_size, frames)).

Each waveform is padded with ``padding_value`` or cut to ``default_audio_length`` seconds (or
``max_length`` samples); a centred, reflect-padded STFT (periodic Hann window of ``n_fft``, hop
``hop_length``, the bins rounded to complex64 as Transformers stores them) gives power spectra, HTK
mel filters with Slaney normalisation over 0-8000 Hz project them, and the log of the values
clipped at 1e-5 is divided by ``mel_norms`` when the config has them. ``attention_mask`` (batch,
samples) marks the real samples, as Transformers returns it.
"""

from __future__ import annotations

import numpy as np

from keras_models.errors import ConfigError
from keras_models.preprocessing.audio import (AudioFeatureExtractor, _frames, _register, _truncate_and_pad, hann_window,
                                              mel_filter_bank)


@_register("ClvpFeatureExtractor")
class ClvpFeatureExtractor(AudioFeatureExtractor):
    feature_extractor_type = "ClvpFeatureExtractor"
    model_input_names = ("input_features", "attention_mask")
    defaults = {"feature_size": 80, "sampling_rate": 22050, "default_audio_length": 6, "hop_length": 256,
                "chunk_length": 30, "n_fft": 1024, "padding_value": 0.0, "mel_norms": None,
                "return_attention_mask": False, "padding_side": "right"}

    def __init__(self, **config):
        super().__init__(**config)
        c = self.config
        for key in ("hop_length", "n_fft", "feature_size", "default_audio_length"):
            v = c[key]
            if isinstance(v, bool) or not isinstance(v, int) or not 0 < v <= 2**20:
                raise ConfigError(f"preprocessor_config.json: {key} must be a positive integer, got {v!r}")
        norms = c["mel_norms"]
        if norms is not None:
            ok = isinstance(norms, (list, tuple)) and len(norms) == c["feature_size"] and all(
                isinstance(v, (int, float)) and not isinstance(v, bool) and np.isfinite(v) and v != 0 for v in norms)
            if not ok:
                raise ConfigError(f"preprocessor_config.json: mel_norms must be {c['feature_size']} non-zero numbers "
                                  "(one per mel filter) or null")
        if self.sampling_rate < 16000:
            raise ConfigError(f"preprocessor_config.json: sampling_rate {self.sampling_rate} is below 16000 (the mel "
                              "filters reach 8000 Hz)")
        self.mel_filters = mel_filter_bank(1 + self.n_fft // 2, self.feature_size, 0.0, 8000.0, self.sampling_rate,
                                           norm="slaney", mel_scale="htk")
        self.window = hann_window(self.n_fft, periodic=True)

    def log_mel(self, waveform):
        """(samples,) -> (frames, feature_size) float32."""
        half = self.n_fft // 2
        x = np.pad(np.asarray(waveform, np.float32), (half, half), mode="reflect").astype(np.float64)
        frames = _frames(x, self.n_fft, self.hop_length) * self.window
        spec = np.fft.rfft(frames, axis=-1).astype(np.complex64)
        power = np.abs(spec, dtype=np.float64) ** 2
        mel = np.maximum(1e-10, self.mel_filters.T @ power.T).astype(np.float32)
        log_spec = np.log(np.clip(mel, 1e-5, None))
        if self.mel_norms is not None:
            log_spec = log_spec / np.asarray(self.mel_norms)[:, None]
        return log_spec.astype(np.float32).T

    def __call__(self, waveforms, sampling_rate=None, max_length=None, truncation=True, padding="max_length",
                 pad_to_multiple_of=None, return_attention_mask=True, resample=True):
        waves, _ = self.prepare(waveforms, sampling_rate, resample)
        max_length = self.default_audio_length * self.sampling_rate if max_length is None else max_length
        waves, masks = _truncate_and_pad(waves, padding, max_length, pad_to_multiple_of, truncation,
                                         self.padding_value)
        if any(len(w) <= self.n_fft // 2 for w in waves):
            from keras_models.errors import InputError

            raise InputError(f"waveforms: each needs more than n_fft / 2 = {self.n_fft // 2} samples (the STFT "
                             "reflects that many at each end)")
        out = {"input_features": [self.log_mel(w) for w in waves]}
        if return_attention_mask:
            out["attention_mask"] = masks
        return {k: np.stack(v) if len({a.shape for a in v}) == 1 else v for k, v in out.items()}


__all__ = ["ClvpFeatureExtractor"]

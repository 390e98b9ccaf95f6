"""UnivNet feature extractor (Transformers' ``UnivNetFeatureExtractor``): mono waveforms -> log-mel
``input_features`` (batch, frames, num_mel_bins) float32 (a reflect-padded STFT without centring,
magnitude with ``mel_floor`` inside the root, Slaney mel filters, log of the values clipped at
``compression_clip_val`` times ``compression_factor``; optionally Tacotron 2's linear normalisation),
``padding_mask`` (batch, samples) int32 and a standard normal ``noise_sequence`` (batch, frames,
model_in_channels) drawn from ``generator`` (a ``numpy.random.Generator``, as Transformers') or ``seed``."""

from __future__ import annotations

import math

import numpy as np

from keras_models.errors import ConfigError
from keras_models.preprocessing.audio import (AudioFeatureExtractor, _frames, _register, _truncate_and_pad, hann_window,
                                              mel_filter_bank)


@_register("UnivNetFeatureExtractor")
class UnivNetFeatureExtractor(AudioFeatureExtractor):
    feature_extractor_type = "UnivNetFeatureExtractor"
    model_input_names = ("input_features", "noise_sequence", "padding_mask")
    defaults = {"feature_size": 1, "sampling_rate": 24000, "padding_value": 0.0, "do_normalize": False,
                "num_mel_bins": 100, "hop_length": 256, "win_length": 1024, "win_function": "hann_window",
                "filter_length": 1024, "max_length_s": 10, "fmin": 0.0, "fmax": None, "mel_floor": 1e-9,
                "center": False, "compression_factor": 1.0, "compression_clip_val": 1e-5,
                "normalize_min": -11.512925148010254, "normalize_max": 2.3143386840820312, "model_in_channels": 64,
                "pad_end_length": 10, "return_attention_mask": True, "padding_side": "right"}

    def __init__(self, **config):
        super().__init__(**config)
        c = self.config
        if "filter_length" in config and config["filter_length"] is None:  # null: the next power of 2
            c["filter_length"] = self.filter_length = None
        for key in ("fmin", "mel_floor", "compression_factor", "compression_clip_val", "normalize_min",
                    "normalize_max", "max_length_s"):
            v = c[key]
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not np.isfinite(v):
                raise ConfigError(f"preprocessor_config.json: {key} must be a finite number, got {v!r}")
        for key in ("model_in_channels", "pad_end_length", "filter_length"):
            v = c[key]
            if v is not None and (isinstance(v, bool) or not isinstance(v, int) or not 0 <= v <= 2**16):
                raise ConfigError(f"preprocessor_config.json: {key} must be an integer in 0..65536, got {v!r}")
        if c["win_function"] not in ("hann", "hann_window"):
            raise ConfigError(f"preprocessor_config.json: win_function {c['win_function']!r} is not supported "
                              "(hann_window)")
        if c["center"] is not False:
            raise ConfigError("preprocessor_config.json: center must be false (Transformers frames from the start)")
        if c["normalize_max"] == c["normalize_min"]:
            raise ConfigError("preprocessor_config.json: normalize_max must differ from normalize_min")
        self.n_fft = c["filter_length"] or 2 ** math.ceil(math.log2(c["win_length"]))
        if self.n_fft != c["win_length"]:
            raise ConfigError(f"preprocessor_config.json: win_length ({c['win_length']}) must equal filter_length "
                              f"({self.n_fft}), as Transformers' spectrogram requires")
        self.fmax = float(self.sampling_rate) / 2 if c["fmax"] is None else c["fmax"]
        if isinstance(self.fmax, bool) or not isinstance(self.fmax, (int, float)) or not 0 <= c["fmin"] < self.fmax:
            raise ConfigError(f"preprocessor_config.json: fmax must be a number above fmin, got {c['fmax']!r}")
        self.window = hann_window(c["win_length"], periodic=True)
        self.mel_filters = mel_filter_bank(self.n_fft // 2 + 1, c["num_mel_bins"], c["fmin"], self.fmax,
                                           self.sampling_rate, norm="slaney", mel_scale="slaney")

    @property
    def num_max_samples(self):
        return int(self.max_length_s * self.sampling_rate)

    def normalize(self, spectrogram):
        return 2 * ((spectrogram - self.normalize_min) / (self.normalize_max - self.normalize_min)) - 1

    def denormalize(self, spectrogram):
        return self.normalize_min + (self.normalize_max - self.normalize_min) * ((spectrogram + 1) / 2)

    def mel_spectrogram(self, waveform):
        """(samples,) -> (frames, num_mel_bins) log-mel, float64."""
        pad = int((self.n_fft - self.hop_length) / 2)
        x = np.pad(np.asarray(waveform, np.float32), (pad, pad), mode="reflect").astype(np.float64)
        frames = _frames(x, self.n_fft, self.hop_length) * self.window
        spec = np.fft.rfft(frames, n=self.n_fft).astype(np.complex64)
        amplitude = np.sqrt(np.real(spec) ** 2 + np.imag(spec) ** 2 + self.mel_floor)
        mel = self.mel_filters.T @ amplitude.T
        return np.log(np.clip(mel, self.compression_clip_val, None) * self.compression_factor).T

    def generate_noise(self, noise_length, generator=None):
        generator = np.random.default_rng() if generator is None else generator
        return generator.standard_normal((noise_length, int(self.model_in_channels)), dtype=np.float32)

    def batch_decode(self, waveforms, waveform_lengths=None):
        """The generated waveforms, each cut to its unpadded length: a list of 1-D arrays."""
        waves = [np.asarray(w) for w in np.asarray(waveforms)]
        if waveform_lengths is not None:
            waves = [w[:int(n)] for w, n in zip(waves, np.asarray(waveform_lengths))]
        return waves

    def __call__(self, waveforms, sampling_rate=None, padding=True, max_length=None, truncation=True,
                 pad_to_multiple_of=None, return_noise=True, generator=None, seed=None, pad_end=False,
                 pad_length=None, do_normalize=None, return_attention_mask=None, resample=True):
        waves, _ = self.prepare(waveforms, sampling_rate, resample)
        if pad_end:
            extra = (self.pad_end_length if pad_length is None else pad_length) * self.hop_length
            waves = [np.pad(w, (0, extra), constant_values=self.padding_value) for w in waves]
        max_length = self.num_max_samples if max_length is None else max_length
        waves, masks = _truncate_and_pad(waves, padding, max_length, pad_to_multiple_of, truncation,
                                         self.padding_value)
        mels = [self.mel_spectrogram(w).astype(np.float32) for w in waves]
        out = {"input_features": mels}
        if self.return_attention_mask if return_attention_mask is None else return_attention_mask:
            out["padding_mask"] = masks
        if return_noise:
            if generator is None and seed is not None:
                generator = np.random.default_rng(seed)
            out["noise_sequence"] = [self.generate_noise(m.shape[0], generator) for m in mels]
        if self.do_normalize if do_normalize is None else do_normalize:
            out["input_features"] = [self.normalize(m) for m in mels]
        return {k: np.stack(v) if len({a.shape for a in v}) == 1 else v for k, v in out.items()}


__all__ = ["UnivNetFeatureExtractor"]

"""ClapFeatureExtractor: CLAP's log-mel spectrograms in numpy, equal to Transformers'.

``extractor(waveforms, sampling_rate=48000)`` -> ``{"input_features": (batch, channels, frames,
feature_size) float32, "is_longer": (batch, 1) bool}``, frames = ``max_length // hop_length + 1``.

* A clip no longer than ``max_length`` samples (``max_length_s * sampling_rate``) is padded by
  ``padding``: ``"repeatpad"`` (repeated whole, then zero-padded), ``"repeat"`` (repeated and cut)
  or ``"pad"`` (zeros).
* A longer clip is cut by ``truncation``: ``"rand_trunc"`` takes a random window of the waveform;
  ``"fusion"`` stacks the whole clip's mel spectrogram shrunk to the window (bilinear) with three
  random crops of it (front, middle, back thirds) and flags the row ``is_longer``.
* ``"fusion"`` returns 4 channels (a short clip's spectrogram repeated) and the HTK mel filters
  without normalisation; ``"rand_trunc"`` one channel and Slaney-normalised Slaney filters. As in
  Transformers, a ``"fusion"`` batch with no long clip gets one random row flagged ``is_longer``.

Random choices use numpy's global generator with the same calls, in the same order, as
Transformers, so after ``np.random.seed(s)`` both give the same features.
"""

from __future__ import annotations

import numpy as np

from keras_models.errors import ConfigError, InputError
from keras_models.preprocessing.audio import (CONFIG_NAME, AudioFeatureExtractor, _frames, _register, hann_window,
                                              mel_filter_bank)

TRUNCATIONS = ("fusion", "rand_trunc")
PADDINGS = ("repeatpad", "repeat", "pad")
MAX_SAMPLES = 2**25  # the window every clip is padded to (10 min at 48 kHz is 28.8M)


def _bilinear_axis(n_out, n_in):
    """(index0, index1, weight1) of torch's linear resize, align_corners=False, in float32."""
    scale = np.float32(n_in / n_out)
    src = np.maximum((np.arange(n_out, dtype=np.float32) + np.float32(0.5)) * scale - np.float32(0.5), 0)
    i0 = np.minimum(np.floor(src).astype(np.int64), n_in - 1)
    i1 = np.minimum(i0 + 1, n_in - 1)
    return i0, i1, (src - i0).astype(np.float32)


def bilinear_resize(x, rows, cols):
    """torch ``interpolate(mode="bilinear", align_corners=False)`` of a 2-D float32 map."""
    x = np.asarray(x, np.float32)
    r0, r1, rw = _bilinear_axis(rows, x.shape[0])
    x = x[r0] * (1 - rw)[:, None] + x[r1] * rw[:, None]
    c0, c1, cw = _bilinear_axis(cols, x.shape[1])
    return (x[:, c0] * (1 - cw)[None, :] + x[:, c1] * cw[None, :]).astype(np.float32)


@_register("ClapFeatureExtractor")
class ClapFeatureExtractor(AudioFeatureExtractor):
    feature_extractor_type = "ClapFeatureExtractor"
    model_input_names = ("input_features", "is_longer")
    defaults = {"feature_size": 64, "sampling_rate": 48000, "hop_length": 480, "max_length_s": 10,
                "fft_window_size": 1024, "padding_value": 0.0, "return_attention_mask": False,
                "frequency_min": 0, "frequency_max": 14000, "top_db": None, "truncation": "fusion",
                "padding": "repeatpad", "padding_side": "right"}

    def __init__(self, **config):
        for derived in ("nb_max_samples", "nb_frequency_bins", "mel_filters", "mel_filters_slaney"):
            config.pop(derived, None)  # recomputed, as Transformers does
        super().__init__(**config)
        for key in ("fft_window_size",):
            v = self.config[key]
            if isinstance(v, bool) or not isinstance(v, int) or not 0 < v <= 2**16:
                raise ConfigError(f"{CONFIG_NAME}: {key} must be an integer in 1..65536, got {v!r}")
        for key in ("max_length_s", "frequency_min", "frequency_max"):
            v = self.config[key]
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not np.isfinite(v) or v < 0:
                raise ConfigError(f"{CONFIG_NAME}: {key} must be a non-negative number, got {v!r}")
        if not self.frequency_min < self.frequency_max <= self.sampling_rate / 2:
            raise ConfigError(f"{CONFIG_NAME}: frequency_min={self.frequency_min} and frequency_max="
                              f"{self.frequency_max} must satisfy min < max <= sampling_rate / 2")
        self._check_modes(self.truncation, self.padding, CONFIG_NAME)
        self.nb_max_samples = int(self.max_length_s * self.sampling_rate)
        if not 1 <= self.nb_max_samples <= MAX_SAMPLES:
            raise ConfigError(f"{CONFIG_NAME}: max_length_s={self.max_length_s} gives {self.nb_max_samples} samples "
                              f"at {self.sampling_rate} Hz; expected 1..{MAX_SAMPLES}")
        bins = (int(self.fft_window_size) >> 1) + 1
        args = (bins, int(self.feature_size), self.frequency_min, self.frequency_max, self.sampling_rate)
        self.mel_filters = mel_filter_bank(*args, norm=None, mel_scale="htk")
        self.mel_filters_slaney = mel_filter_bank(*args, norm="slaney", mel_scale="slaney")
        self.window = hann_window(int(self.fft_window_size))

    @staticmethod
    def _check_modes(truncation, padding, where):
        if truncation not in TRUNCATIONS:
            raise ConfigError(f"{where}: truncation={truncation!r} is not one of {list(TRUNCATIONS)}")
        if padding not in PADDINGS:
            raise ConfigError(f"{where}: padding={padding!r} is not one of {list(PADDINGS)}")

    def log_mel(self, waveform, filters):
        """(frames, feature_size) float32 power spectrogram in dB of one waveform."""
        n_fft, hop = int(self.fft_window_size), int(self.hop_length)
        x = np.asarray(waveform, np.float64)
        if x.shape[0] <= n_fft // 2:
            raise InputError(f"waveforms: a clip of {x.shape[0]} samples is too short for a {n_fft}-sample "
                             "window (reflect padding needs more than half a window)")
        x = np.pad(x, (n_fft // 2, n_fft // 2), mode="reflect")
        spec = np.fft.rfft(_frames(x, n_fft, hop) * self.window, axis=-1).astype(np.complex64)
        power = np.abs(spec, dtype=np.float64) ** 2
        mel = np.maximum(1e-10, filters.T @ power.T)
        return (10.0 * np.log10(np.maximum(mel, 1e-10))).astype(np.float32).T

    def _fusion_crops(self, mel, total, chunk):
        ranges = np.array_split(list(range(0, total - chunk + 1)), 3)
        if len(ranges[1]) == 0:
            ranges[1] = [0]
        if len(ranges[2]) == 0:
            ranges[2] = [0]
        starts = [np.random.choice(r) for r in ranges]
        if mel.shape[1] != 64:  # Transformers shrinks to 64 bins whatever feature_size is
            raise InputError(f"waveforms: 'fusion' truncation of a long clip needs feature_size=64, "
                             f"the extractor has {mel.shape[1]}")
        crops = [mel[s:s + chunk] for s in starts]
        return np.stack([bilinear_resize(mel, chunk, 64)] + crops, axis=0)

    def one(self, waveform, max_length, truncation, padding):
        if waveform.shape[0] > max_length:
            if truncation == "rand_trunc":
                start = np.random.randint(0, len(waveform) - max_length + 1)
                return self.log_mel(waveform[start:start + max_length], self.mel_filters_slaney)[None], True
            mel = self.log_mel(waveform, self.mel_filters)
            chunk = max_length // int(self.hop_length) + 1
            if chunk == mel.shape[0]:
                return np.stack([mel] * 4, axis=0), False
            return self._fusion_crops(mel, mel.shape[0], chunk), True
        if waveform.shape[0] < max_length:
            if padding == "repeat":
                waveform = np.tile(waveform, int(max_length / len(waveform)) + 1)[:max_length]
            elif padding == "repeatpad":
                waveform = np.tile(waveform, int(max_length / len(waveform)))
            waveform = np.pad(waveform, (0, max_length - waveform.shape[0]))
        if truncation == "fusion":
            return np.stack([self.log_mel(waveform, self.mel_filters)] * 4, axis=0), False
        return self.log_mel(waveform, self.mel_filters_slaney)[None], False

    def __call__(self, waveforms, sampling_rate=None, truncation=None, padding=None, max_length=None,
                 resample=True, **kwargs):
        waves, _ = self.prepare(waveforms, sampling_rate, resample, kwargs.pop("name", "waveforms"))
        if kwargs:
            raise TypeError(f"{type(self).__name__}: unexpected arguments {sorted(kwargs)}")
        truncation = self.truncation if truncation is None else truncation
        padding = self.padding if padding is None or padding is True else padding
        self._check_modes(truncation, padding, "ClapFeatureExtractor()")
        if max_length is not None and (isinstance(max_length, bool) or not isinstance(max_length, int)
                                       or max_length < 1):
            raise InputError(f"max_length must be a positive number of samples, got {max_length!r}")
        max_length = max_length or self.nb_max_samples
        mels, longer = zip(*(self.one(w, max_length, truncation, padding) for w in waves))
        longer = list(longer)
        if truncation == "fusion" and not any(longer):
            longer[np.random.randint(0, len(mels))] = True
        if len({m.shape for m in mels}) > 1:  # an odd fft_window_size: fused crops and padded clips differ
            shapes = sorted({m.shape for m in mels})
            raise InputError(f"waveforms: the clips' spectrograms have different shapes {shapes} "
                             f"(fft_window_size={self.fft_window_size}, hop_length={self.hop_length}); "
                             "they cannot be batched")
        return {"input_features": np.stack(mels).astype(np.float32),
                "is_longer": np.asarray(longer, bool)[:, None]}


__all__ = ["ClapFeatureExtractor", "bilinear_resize"]

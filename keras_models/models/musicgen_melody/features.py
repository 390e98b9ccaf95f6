"""MusicGen Melody's feature extractor: the melody as a one-hot chroma, in numpy.

``input_features`` (batch, frames, num_chroma) float32: each waveform (stereo ones averaged to mono)
cut to ``chunk_length`` seconds and the batch padded to its longest (``padding_value``); a waveform
shorter than ``n_fft`` is zero-padded on both sides to ``n_fft``; a power spectrogram (periodic Hann
window of ``n_fft``, reflect-padded centred frames every ``hop_length`` samples, divided by the
window's energy); the chroma filter bank (librosa's: Gaussian bumps per pitch class, L2-normalised
columns, octave weighting centred at 5 with half-width 2, starting at C); per frame the strongest
pitch class set to 1, the rest 0. ``return_attention_mask`` adds the sample mask taken every
``hop_length`` samples. Transformers computes the same with torchaudio's spectrogram.
"""

from __future__ import annotations

import numpy as np

from keras_models.errors import ConfigError, InputError
from keras_models.preprocessing.audio import AudioFeatureExtractor, _register


def chroma_filters(sampling_rate, n_fft, num_chroma, tuning=0.0):
    """(num_chroma, 1 + n_fft // 2) float64: librosa's chroma filter bank (as Transformers builds it
    with ``num_frequency_bins=n_fft``)."""
    freqs = np.linspace(0, sampling_rate, n_fft, endpoint=False)[1:]
    a440 = 440.0 * 2.0 ** (tuning / num_chroma)
    bins = num_chroma * np.log2(freqs / (a440 / 16))
    bins = np.concatenate(([bins[0] - 1.5 * num_chroma], bins))  # the 0 Hz bin, 1.5 octaves below bin 1
    widths = np.concatenate((np.maximum(np.diff(bins), 1.0), [1.0]))
    half = np.round(num_chroma / 2.0)
    d = bins[None, :] - np.arange(num_chroma, dtype="float64")[:, None]
    d = np.remainder(d + half + 10 * num_chroma, num_chroma) - half
    f = np.exp(-0.5 * (2 * d / widths[None, :]) ** 2)
    f = f / np.sqrt(np.sum(f ** 2, axis=0, keepdims=True))
    f = f * np.exp(-0.5 * ((bins / num_chroma - 5.0) / 2.0) ** 2)[None, :]
    f = np.roll(f, -3 * (num_chroma // 12), axis=0)
    return f[:, :int(1 + n_fft / 2)]


def power_spectrogram(waves, n_fft, hop_length):
    """(batch, samples) -> (batch, 1 + n_fft // 2, frames): |STFT|^2 / sum(window^2), periodic Hann
    window, reflect-padded centred frames."""
    window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n_fft) / n_fft)
    half = n_fft // 2
    if waves.shape[1] <= half:
        raise InputError(f"waveforms: {waves.shape[1]} samples is too short for a reflect-padded STFT of "
                         f"n_fft={n_fft}")
    x = np.pad(waves.astype("float64"), ((0, 0), (half, half)), mode="reflect")
    frames = 1 + (x.shape[1] - n_fft) // hop_length
    idx = np.arange(n_fft)[None, :] + hop_length * np.arange(frames)[:, None]
    spec = np.fft.rfft(x[:, idx] * window, axis=-1)  # (batch, frames, bins)
    power = (spec.real ** 2 + spec.imag ** 2) / np.sum(window ** 2)
    return power.transpose(0, 2, 1)


@_register("MusicgenMelodyFeatureExtractor")
class MusicgenMelodyFeatureExtractor(AudioFeatureExtractor):
    feature_extractor_type = "MusicgenMelodyFeatureExtractor"
    model_input_names = ("input_features",)
    defaults = {"feature_size": 12, "sampling_rate": 32000, "hop_length": 4096, "chunk_length": 30, "n_fft": 16384,
                "num_chroma": 12, "padding_value": 0.0, "return_attention_mask": False, "stem_indices": [3, 2],
                "padding_side": "right"}

    def __init__(self, **config):
        super().__init__(**config)
        nc = self.config.get("num_chroma")
        if isinstance(nc, bool) or not isinstance(nc, int) or not 0 < nc <= 4096:
            raise ConfigError(f"preprocessor_config.json: num_chroma must be a positive integer, got {nc!r}")
        self.config.pop("n_samples", None)  # derived (chunk_length * sampling_rate), as Transformers does
        self.n_samples = int(self.chunk_length) * self.sampling_rate
        self.filters = chroma_filters(self.sampling_rate, int(self.n_fft), nc)

    def _waves(self, waveforms, sampling_rate, resample):
        """Mono float32 waveforms; a (channels, samples) item is averaged over its channels."""
        if isinstance(waveforms, (list, tuple)) and waveforms and all(np.ndim(w) == 2 for w in waveforms):
            waveforms = [np.asarray(w, "float32").mean(axis=0) for w in waveforms]
        elif isinstance(waveforms, np.ndarray) and waveforms.ndim == 3:
            waveforms = [np.asarray(w, "float32").mean(axis=0) for w in waveforms]
        return self.prepare(waveforms, sampling_rate, resample)[0]

    def __call__(self, waveforms, sampling_rate=None, padding=True, truncation=True, max_length=None,
                 return_attention_mask=None, resample=True, return_tensors=None, **kwargs):
        if kwargs:
            raise TypeError(f"{type(self).__name__}: unexpected arguments {sorted(kwargs)}")
        waves = self._waves(waveforms, sampling_rate, resample)
        limit = max_length or self.n_samples
        if truncation:
            waves = [w[:limit] for w in waves]
        lengths = [len(w) for w in waves]
        target = max(lengths) if padding in (True, "longest") else limit if padding == "max_length" else None
        if target is None and len(set(lengths)) > 1:
            raise InputError("waveforms: of different lengths; pass padding=True")
        target = target or lengths[0]
        batch = np.full((len(waves), target), float(self.padding_value), "float32")
        mask = np.zeros((len(waves), target), "int32")
        for i, w in enumerate(waves):
            if self.padding_side == "left":
                batch[i, target - len(w):], mask[i, target - len(w):] = w, 1
            else:
                batch[i, :len(w)], mask[i, :len(w)] = w, 1
        n_fft = int(self.n_fft)
        if target < n_fft:
            pad = n_fft - target
            batch = np.pad(batch, ((0, 0), (pad // 2, pad // 2 + pad % 2)))
        spec = power_spectrogram(batch.astype("float32"), n_fft, int(self.hop_length))
        chroma = np.einsum("cf,bft->btc", self.filters, spec)
        idx = chroma.argmax(-1)
        out = {"input_features": np.eye(self.filters.shape[0], dtype="float32")[idx]}
        if return_attention_mask if return_attention_mask is not None else self.return_attention_mask:
            out["attention_mask"] = mask[:, ::int(self.hop_length)]
        return out


__all__ = ["MusicgenMelodyFeatureExtractor", "chroma_filters", "power_spectrogram"]

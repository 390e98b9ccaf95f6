"""EnCodec feature extractor: raw audio as ``input_values`` (batch, channels, samples) float32 and
``padding_mask`` (batch, samples) int32, padded to the longest waveform (or, for a chunked model, up to
a whole number of chunk strides plus one chunk), or cut (``truncation``)."""

from __future__ import annotations

import numpy as np

from keras_models.errors import ConfigError, InputError
from keras_models.preprocessing.audio import AudioFeatureExtractor, _check_rate, _register


@_register("EncodecFeatureExtractor")
class EncodecFeatureExtractor(AudioFeatureExtractor):
    feature_extractor_type = "EncodecFeatureExtractor"
    model_input_names = ("input_values", "padding_mask")
    defaults = {"feature_size": 1, "sampling_rate": 24000, "padding_value": 0.0, "chunk_length_s": None,
                "overlap": None, "return_attention_mask": True, "padding_side": "right"}

    def __init__(self, **config):
        super().__init__(**config)
        for key, low, high in (("chunk_length_s", 0.0, 3600.0), ("overlap", 0.0, 1.0)):
            v = self.config.get(key)
            if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float)) or not low <= v < high
                                  or (key == "chunk_length_s" and v == 0)):
                raise ConfigError(f"preprocessor_config.json: {key} must be null or a number in [{low}, {high}), "
                                  f"got {v!r}")
        if int(self.feature_size) not in (1, 2):
            raise ConfigError(f"preprocessor_config.json: feature_size must be 1 (mono) or 2 (stereo), got "
                              f"{self.feature_size!r}")

    @property
    def chunk_length(self):
        return None if self.chunk_length_s is None else int(self.chunk_length_s * self.sampling_rate)

    @property
    def chunk_stride(self):
        if self.chunk_length_s is None or self.overlap is None:
            return None
        return max(1, int((1.0 - self.overlap) * self.chunk_length))

    def _waves(self, waveforms, sampling_rate, resample):
        if int(self.feature_size) == 1:
            return self.prepare(waveforms, sampling_rate, resample)[0]
        # stereo: (2, samples) per example (or a (batch, 2, samples) array); no resampling
        if sampling_rate is not None and _check_rate(sampling_rate, "sampling_rate") != self.sampling_rate:
            raise InputError(f"waveforms: stereo audio at {sampling_rate} Hz; {self.sampling_rate} Hz expected")
        items = list(waveforms) if isinstance(waveforms, (list, tuple)) or np.ndim(waveforms) == 3 else [waveforms]
        out = []
        for i, w in enumerate(items):
            w = np.asarray(w, np.float32)
            if w.ndim != 2 or w.shape[0] != int(self.feature_size):
                raise InputError(f"waveforms[{i}]: expected ({self.feature_size}, samples), got shape {w.shape}")
            if not np.isfinite(w).all():
                raise InputError(f"waveforms[{i}]: NaN or infinite samples")
            out.append(w.T)
        return out

    def __call__(self, waveforms, sampling_rate=None, padding=None, truncation=False, max_length=None, resample=True,
                 **kwargs):
        if kwargs:
            raise TypeError(f"{type(self).__name__}: unexpected arguments {sorted(kwargs)}")
        if padding and truncation:
            raise ValueError("padding and truncation cannot both be set")
        if padding is None:
            padding = True
        waves = self._waves(waveforms, sampling_rate, resample)  # each (samples,) or (samples, channels)
        lengths = [len(w) for w in waves]
        if self.chunk_stride is not None and self.chunk_length is not None and max_length is None:
            if truncation:
                steps = int(np.floor(min(lengths) / self.chunk_stride))
                max_length = (steps - 1) * self.chunk_stride + self.chunk_length
            elif padding:
                steps = int(np.ceil(max(lengths) / self.chunk_stride))
                max_length = (steps - 1) * self.chunk_stride + self.chunk_length
                padding = "max_length"
            else:
                padding = False
        if truncation:
            if max_length is None:
                raise ValueError("truncation=True needs max_length=")
            waves = [w[:max_length] for w in waves]
        out = {}
        if padding:
            target = max_length if padding == "max_length" and max_length is not None else max(len(w) for w in waves)
            shape = (len(waves), target) + waves[0].shape[1:]
            values = np.full(shape, self.padding_value, np.float32)
            mask = np.zeros((len(waves), target), np.int32)
            for i, w in enumerate(waves):
                n = min(len(w), target)
                if self.padding_side == "left":
                    values[i, target - n:], mask[i, target - n:] = w[len(w) - n:], 1
                else:
                    values[i, :n], mask[i, :n] = w[:n], 1
            out["padding_mask"] = mask
            values = values[..., None] if values.ndim == 2 else values
            out["input_values"] = np.ascontiguousarray(np.transpose(values, (0, 2, 1)))
        else:
            vals = [(w[:, None] if w.ndim == 1 else w).T.astype(np.float32) for w in waves]
            out["input_values"] = np.stack(vals) if len({v.shape for v in vals}) == 1 else vals
        return dict(sorted(out.items(), key=lambda kv: kv[0] != "input_values"))


__all__ = ["EncodecFeatureExtractor"]

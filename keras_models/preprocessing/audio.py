"""Audio feature extractors in numpy, reading a checkpoint's ``preprocessor_config.json``.

``AudioFeatureExtractor.from_preset(preset)`` returns the class that the file's
``feature_extractor_type`` names; calling it on waveforms returns Transformers' names, shapes and
values (numpy arrays):

* :class:`Wav2Vec2FeatureExtractor` -> ``input_values`` (batch, samples) float32 (+ ``attention_mask``
  (batch, samples) int32 when ``return_attention_mask``): per-utterance zero-mean / unit-variance
  normalisation (``do_normalize``) and padding with ``padding_value``.
* :class:`WhisperFeatureExtractor` -> ``input_features`` (batch, n_mels, frames) float32: each
  waveform padded / cut to ``chunk_length`` seconds, a Hann-window STFT, a Slaney mel filter bank,
  ``log10`` (floored at 1e-10), clamped to (max - 8) and mapped by (x + 4) / 4 (+ a frame-level
  ``attention_mask`` when ``return_attention_mask``).
* :class:`ASTFeatureExtractor` -> ``input_values`` (batch, max_length, num_mel_bins): Kaldi-compatible
  log mel filter banks (povey window, pre-emphasis, DC removal), padded / cut to ``max_length``
  frames and normalised with the checkpoint's mean and std.

Waveforms are a 1-D array (one utterance), a 2-D array (batch, samples), a list of 1-D arrays /
lists, or file paths (decoded with the optional ``soundfile`` package). Bad audio raises
:class:`~keras_models.errors.InputError` naming the input: an empty batch or waveform, a wrong rank,
NaN / infinite samples, a sampling rate below 8 kHz. A sampling rate other than the extractor's is
resampled with ``scipy.signal.resample_poly`` (the optional ``scipy`` package; without it the error
names the package), unless ``resample=False`` which raises instead.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from keras_models.errors import ConfigError, InputError

CONFIG_NAME = "preprocessor_config.json"
MIN_SAMPLING_RATE = 8000

_EXTRACTORS: dict[str, type] = {}


def _register(*names):
    def deco(cls):
        for n in names:
            _EXTRACTORS[n] = cls
        return cls

    return deco


# --- input checks -------------------------------------------------------------------------------
def _load_file(path, name):
    try:
        import soundfile
    except ImportError as e:
        raise InputError(
            f"{name}: decoding the audio file {str(path)!r} needs the optional 'soundfile' package "
            "(pip install soundfile, or keras-models[audio]); or pass the waveform as a numpy array"
        ) from e
    try:
        data, rate = soundfile.read(str(path), dtype="float32", always_2d=False)
    except Exception as e:  # soundfile raises its own error types
        raise InputError(f"{name}: cannot decode the audio file {str(path)!r}: {e}") from e
    if data.ndim == 2:  # (samples, channels): mono by averaging the channels
        data = data.mean(axis=1)
    return data, int(rate)


def _one_waveform(w, name):
    if isinstance(w, (str, Path)):
        raise InputError(f"{name}: a file path here needs sampling_rate from the file; pass paths as the whole input")
    try:
        a = np.asarray(w)
    except Exception as e:
        raise InputError(f"{name}: not an array of audio samples ({type(w).__name__}): {e}") from e
    if a.dtype == object or not (np.issubdtype(a.dtype, np.floating) or np.issubdtype(a.dtype, np.integer)):
        raise InputError(f"{name}: audio samples must be real numbers, got dtype {a.dtype}")
    if a.ndim != 1:
        raise InputError(
            f"{name}: expected a mono waveform (1-D array of samples), got shape {a.shape}; "
            "average or pick the channels of multi-channel audio first"
        )
    if a.size == 0:
        raise InputError(f"{name}: the waveform is empty (0 samples)")
    a = a.astype(np.float32)
    if not np.all(np.isfinite(a)):
        bad = int(np.size(a) - np.count_nonzero(np.isfinite(a)))
        raise InputError(f"{name}: the waveform has {bad} NaN or infinite sample(s)")
    return a


def as_waveform_list(waveforms, name="waveforms"):
    """(list of 1-D float32 arrays, batched?, file sampling rates or None) from any accepted input."""
    if waveforms is None:
        raise InputError(f"{name}: no audio given (None)")
    if isinstance(waveforms, (str, Path)):
        data, rate = _load_file(waveforms, name)
        return [_one_waveform(data, name)], False, [rate]
    if isinstance(waveforms, dict):  # Transformers' pipeline form {"raw"/"array": ..., "sampling_rate": ...}
        raise InputError(f"{name}: pass the array and sampling_rate= separately, not a dict")
    if isinstance(waveforms, (list, tuple)):
        if len(waveforms) == 0:
            raise InputError(f"{name}: the batch is empty (no waveform)")
        first = waveforms[0]
        if isinstance(first, (str, Path)):
            loaded = [_load_file(p, f"{name}[{i}]") for i, p in enumerate(waveforms)]
            return [_one_waveform(d, f"{name}[{i}]") for i, (d, _) in enumerate(loaded)], True, [r for _, r in loaded]
        if isinstance(first, (list, tuple, np.ndarray)) or hasattr(first, "__array__") and np.ndim(first) > 0:
            return [_one_waveform(w, f"{name}[{i}]") for i, w in enumerate(waveforms)], True, None
        return [_one_waveform(waveforms, name)], False, None
    a = np.asarray(waveforms) if not isinstance(waveforms, np.ndarray) else waveforms
    if a.ndim == 2:
        if a.shape[0] == 0:
            raise InputError(f"{name}: the batch is empty (shape {a.shape})")
        return [_one_waveform(w, f"{name}[{i}]") for i, w in enumerate(a)], True, None
    if a.ndim == 1:
        return [_one_waveform(a, name)], False, None
    raise InputError(
        f"{name}: expected a waveform (samples,) or a batch (batch, samples), got shape {a.shape}"
        + ("; multi-channel audio must be made mono first" if a.ndim == 3 else "")
    )


def resample(waveform, orig_rate, target_rate, name="waveforms"):
    """``waveform`` resampled from ``orig_rate`` to ``target_rate`` (scipy.signal.resample_poly)."""
    try:
        from scipy.signal import resample_poly
    except ImportError as e:
        raise InputError(
            f"{name}: sampled at {orig_rate} Hz but the model expects {target_rate} Hz; resampling needs "
            "the optional 'scipy' package (pip install scipy, or keras-models[audio]), or resample the "
            "audio yourself"
        ) from e
    g = math.gcd(int(orig_rate), int(target_rate))
    return resample_poly(waveform, int(target_rate) // g, int(orig_rate) // g).astype(np.float32)


def _check_rate(rate, name):
    if isinstance(rate, bool) or not isinstance(rate, (int, np.integer, float)) or not rate > 0:
        raise InputError(f"{name}: sampling_rate must be a positive number of Hz, got {rate!r}")
    if rate < MIN_SAMPLING_RATE:
        raise InputError(
            f"{name}: sampling_rate={rate} Hz is below {MIN_SAMPLING_RATE} Hz; speech models need at least "
            "8 kHz audio (was a duration or a wrong value passed?)"
        )
    return int(rate)


# --- shared signal helpers (Transformers' audio_utils conventions) -------------------------------
def hertz_to_mel(freq, mel_scale="htk"):
    freq = np.asarray(freq, dtype=np.float64)
    if mel_scale == "htk":
        return 2595.0 * np.log10(1.0 + freq / 700.0)
    if mel_scale == "kaldi":
        return 1127.0 * np.log(1.0 + freq / 700.0)
    if mel_scale != "slaney":
        raise ValueError(f"mel_scale must be 'htk', 'kaldi' or 'slaney', got {mel_scale!r}")
    # Slaney: linear below 1 kHz (3 mels per 200 Hz), logarithmic above
    logstep = 27.0 / np.log(6.4)
    lin = 3.0 * freq / 200.0
    return np.where(freq >= 1000.0, 15.0 + np.log(np.maximum(freq, 1e-30) / 1000.0) * logstep, lin)


def mel_to_hertz(mels, mel_scale="htk"):
    mels = np.asarray(mels, dtype=np.float64)
    if mel_scale == "htk":
        return 700.0 * (np.power(10.0, mels / 2595.0) - 1.0)
    if mel_scale == "kaldi":
        return 700.0 * (np.exp(mels / 1127.0) - 1.0)
    if mel_scale != "slaney":
        raise ValueError(f"mel_scale must be 'htk', 'kaldi' or 'slaney', got {mel_scale!r}")
    logstep = np.log(6.4) / 27.0
    return np.where(mels >= 15.0, 1000.0 * np.exp(logstep * (mels - 15.0)), 200.0 * mels / 3.0)


def mel_filter_bank(num_frequency_bins, num_mel_filters, min_frequency, max_frequency, sampling_rate,
                    norm=None, mel_scale="htk", triangularize_in_mel_space=False):
    """Triangular mel filters, (num_frequency_bins, num_mel_filters) float64."""
    mel_freqs = np.linspace(hertz_to_mel(min_frequency, mel_scale), hertz_to_mel(max_frequency, mel_scale),
                            num_mel_filters + 2)
    centers = mel_to_hertz(mel_freqs, mel_scale)
    if triangularize_in_mel_space:
        width = sampling_rate / ((num_frequency_bins - 1) * 2)
        fft_freqs = hertz_to_mel(width * np.arange(num_frequency_bins), mel_scale)
        centers = mel_freqs
    else:
        fft_freqs = np.linspace(0, sampling_rate // 2, num_frequency_bins)
    gaps = np.diff(centers)
    offsets = centers[None, :] - fft_freqs[:, None]
    rising = -offsets[:, :-2] / gaps[:-1]
    falling = offsets[:, 2:] / gaps[1:]
    filters = np.maximum(0.0, np.minimum(rising, falling))
    if norm == "slaney":  # constant energy per filter
        filters = filters * (2.0 / (centers[2:num_mel_filters + 2] - centers[:num_mel_filters]))[None, :]
    elif norm is not None:
        raise ValueError(f"norm must be None or 'slaney', got {norm!r}")
    return filters


def hann_window(length, periodic=True):
    n = length + 1 if periodic else length
    w = np.hanning(n)
    return w[:-1] if periodic else w


def _frames(x, frame_length, hop):
    """(num_frames, frame_length) strided view of a 1-D array."""
    n = 1 + (x.shape[-1] - frame_length) // hop
    return np.lib.stride_tricks.as_strided(
        x, shape=x.shape[:-1] + (n, frame_length), strides=x.strides[:-1] + (x.strides[-1] * hop, x.strides[-1]),
        writeable=False)


def _pad_batch(arrays, target, value, side="right"):
    out = np.full((len(arrays), target), value, dtype=np.float32)
    mask = np.zeros((len(arrays), target), dtype=np.int32)
    for i, a in enumerate(arrays):
        n = min(len(a), target)
        if side == "left":
            out[i, target - n:] = a[:n]
            mask[i, target - n:] = 1
        else:
            out[i, :n] = a[:n]
            mask[i, :n] = 1
    return out, mask


def _normalise(values, mask):
    """Zero mean, unit variance per row over its unmasked samples (Transformers: var + 1e-7)."""
    out = []
    for i, v in enumerate(values):
        if mask is None:
            out.append((v - v.mean()) / np.sqrt(v.var() + 1e-7))
            continue
        n = int(mask[i].sum())
        kept = v[:n]
        row = (v - kept.mean()) / np.sqrt(kept.var() + 1e-7)
        row[n:] = 0.0
        out.append(row)
    return out


# --- the base class ------------------------------------------------------------------------------
# preprocessor_config.json values the extractors read: (kind, upper bound)
_CONFIG_TYPES = {
    "feature_size": ("int", 4096), "sampling_rate": ("int", 384_000), "hop_length": ("int", 2**16),
    "chunk_length": ("int", 3600), "n_fft": ("int", 2**16), "num_mel_bins": ("int", 4096),
    "max_length": ("int", 2**20), "win_length": ("int", 2**16), "frame_length": ("int", 2**16),
    "n_samples": ("int", 384_000 * 3600), "nb_max_frames": ("int", 2**24),
    "padding_value": ("number", None), "dither": ("number", None), "mean": ("number", None), "std": ("number", None),
    "do_normalize": ("bool", None), "return_attention_mask": ("bool", None),
}


def _check_config(config):
    """ConfigError naming the key for a value of the wrong type or out of range."""
    for key, (kind, top) in _CONFIG_TYPES.items():
        v = config.get(key)
        if v is None:
            continue
        if kind == "bool":
            ok = isinstance(v, bool)
            expected = "true or false"
        elif kind == "int":
            ok = isinstance(v, int) and not isinstance(v, bool) and 0 < v <= top
            expected = f"an integer in 1..{top}"
        else:
            ok = isinstance(v, (int, float)) and not isinstance(v, bool) and np.isfinite(v)
            expected = "a finite number"
        if not ok:
            raise ConfigError(f"{CONFIG_NAME}: {key} must be {expected}, got {v!r}")


class AudioFeatureExtractor:
    """Base of the audio feature extractors: ``from_preset`` dispatches on ``feature_extractor_type``."""

    feature_extractor_type = None
    model_input_names = ("input_values",)
    defaults: dict = {"feature_size": 1, "sampling_rate": 16000, "padding_value": 0.0,
                      "return_attention_mask": False, "padding_side": "right"}

    def __init__(self, **config):
        self.config = dict(self.defaults)
        self.config.update({k: v for k, v in config.items() if v is not None or k not in self.defaults})
        self.config["feature_extractor_type"] = type(self).feature_extractor_type
        _check_config(self.config)
        for k, v in self.config.items():
            if not callable(getattr(type(self), k, None)):
                setattr(self, k, v)
        self.sampling_rate = int(self.config["sampling_rate"])
        if self.padding_side not in ("left", "right"):
            raise ConfigError(f"{CONFIG_NAME}: padding_side must be 'left' or 'right', got {self.padding_side!r}")

    # --- loading / saving ---------------------------------------------------------------------
    @classmethod
    def from_preset(cls, preset, **overrides):
        from keras_models.presets.resolve import resolve_preset

        from keras_models.presets.config import read_processor_part

        folder = Path(resolve_preset(preset))
        found = read_processor_part(folder, "feature_extractor")
        if found is None:
            raise ConfigError(f"{folder}: no {CONFIG_NAME} and no feature_extractor in processor_config.json "
                              "(the checkpoint has no audio feature extractor)")
        config, source = found
        config.update(overrides)
        return cls.from_config(config, source=source)

    from_pretrained = from_preset

    @classmethod
    def from_config(cls, config, source=CONFIG_NAME):
        config = dict(config)
        kind = config.pop("feature_extractor_type", None) or config.pop("processor_class", None)
        if kind is not None and not isinstance(kind, str):
            raise ConfigError(f"{source}: feature_extractor_type must be a class name, got {kind!r}")
        target = cls
        if cls.feature_extractor_type is None or (kind and kind != cls.feature_extractor_type):
            if kind not in _EXTRACTORS:  # families register their own extractors
                from keras_models.models.registry import load_feature_extractor

                load_feature_extractor(kind)

            if kind not in _EXTRACTORS:
                raise ConfigError(
                    f"{source}: feature_extractor_type={kind!r} is not supported (supported: "
                    f"{sorted(_EXTRACTORS)})")
            target = _EXTRACTORS[kind]
        config.pop("processor_class", None)
        return target(**config)

    def to_dict(self):
        return {k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in self.config.items()}

    def save_pretrained(self, folder):
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / CONFIG_NAME).write_text(json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n")
        return (str(folder / CONFIG_NAME),)

    save_to_preset = save_pretrained

    # --- calling ------------------------------------------------------------------------------
    def prepare(self, waveforms, sampling_rate=None, resample_audio=True, name="waveforms"):
        """(list of mono float32 waveforms at ``self.sampling_rate``, batched?)."""
        waves, batched, file_rates = as_waveform_list(waveforms, name)
        rates = file_rates or [sampling_rate] * len(waves)
        out = []
        for i, (w, rate) in enumerate(zip(waves, rates)):
            where = f"{name}[{i}]" if batched else name
            if rate is None:
                out.append(w)
                continue
            rate = _check_rate(rate, where)
            if rate != self.sampling_rate:
                if not resample_audio:
                    raise InputError(
                        f"{where}: sampled at {rate} Hz but {type(self).__name__} expects "
                        f"{self.sampling_rate} Hz (resample=False)")
                w = resample(w, rate, self.sampling_rate, where)
                if w.size == 0:
                    raise InputError(f"{where}: the waveform is empty after resampling")
            out.append(w)
        return out, batched

    def __call__(self, waveforms, sampling_rate=None, **kwargs):
        raise NotImplementedError

    def __repr__(self):
        return f"{type(self).__name__}({json.dumps(self.to_dict(), sort_keys=True)})"


def _pad_target(lengths, padding, max_length, pad_to_multiple_of, truncation):
    """Transformers' SequenceFeatureExtractor.pad length rules (None: no padding)."""
    if padding is True:
        padding = "longest"
    elif padding is False or padding is None:
        padding = "do_not_pad"
    if padding not in ("longest", "max_length", "do_not_pad"):
        raise ValueError(f"padding must be True/False, 'longest', 'max_length' or 'do_not_pad', got {padding!r}")
    if padding == "max_length" and max_length is None:
        raise ValueError("padding='max_length' needs max_length=")
    if truncation and max_length is None:
        raise ValueError("truncation=True needs max_length=")
    target = max(lengths) if padding == "longest" else max_length
    if padding == "do_not_pad":
        target = None
    if target is not None and pad_to_multiple_of:
        target = ((target + pad_to_multiple_of - 1) // pad_to_multiple_of) * pad_to_multiple_of
    return padding, target


def _truncate_and_pad(waves, padding, max_length, pad_to_multiple_of, truncation, padding_value):
    """Waveforms cut to ``max_length`` (rounded up to ``pad_to_multiple_of``) when ``truncation``,
    then right-padded with ``padding_value`` by :func:`_pad_target`'s rule; returns (waves, masks),
    each mask 1 on the real samples."""
    if truncation:
        cut = max_length
        if pad_to_multiple_of:
            cut = -(-cut // pad_to_multiple_of) * pad_to_multiple_of
        waves = [w[:cut] for w in waves]
    _, target = _pad_target([len(w) for w in waves], padding, max_length, pad_to_multiple_of, False)
    padded, masks = [], []
    for w in waves:
        n = len(w)
        if target is not None and n < target:
            w = np.concatenate([w, np.full(target - n, padding_value, np.float32)])
        padded.append(w)
        masks.append(np.concatenate([np.ones(n, np.int32), np.zeros(len(w) - n, np.int32)]))
    return padded, masks


@_register("Wav2Vec2FeatureExtractor")
class Wav2Vec2FeatureExtractor(AudioFeatureExtractor):
    """Raw waveforms for Wav2Vec2-like models (``input_values`` (batch, samples) float32)."""

    feature_extractor_type = "Wav2Vec2FeatureExtractor"
    model_input_names = ("input_values", "attention_mask")
    defaults = {"feature_size": 1, "sampling_rate": 16000, "padding_value": 0.0, "do_normalize": True,
                "return_attention_mask": False, "padding_side": "right"}

    def __call__(self, waveforms, sampling_rate=None, padding=True, max_length=None, truncation=False,
                 pad_to_multiple_of=None, return_attention_mask=None, resample=True, **kwargs):
        """``padding``: True / 'longest' (default: a rectangular array), 'max_length' or False
        (a list of arrays, as Transformers' default)."""
        waves, _ = self.prepare(waveforms, sampling_rate, resample, kwargs.pop("name", "waveforms"))
        if kwargs:
            raise TypeError(f"{type(self).__name__}: unexpected arguments {sorted(kwargs)}")
        if truncation and max_length is not None:
            waves = [w[:max_length] if self.padding_side == "right" else w[-max_length:] for w in waves]
        mode, target = _pad_target([len(w) for w in waves], padding, max_length, pad_to_multiple_of,
                                   truncation and max_length is not None)
        want_mask = self.return_attention_mask if return_attention_mask is None else return_attention_mask
        if target is None:
            masks = [np.ones(len(w), np.int32) for w in waves]
            values = [w.copy() for w in waves]
        else:
            values, masks = _pad_batch(waves, max(target, 1), self.padding_value, self.padding_side)
            values, masks = list(values), list(masks)
        if self.do_normalize:
            if want_mask and mode != "do_not_pad":
                lengths = [int(m.sum()) for m in masks]
                if self.padding_side == "left":  # normalise over the kept (right-aligned) samples
                    normed = []
                    for v, n in zip(values, lengths):
                        row = np.zeros_like(v)
                        if n:
                            kept = v[len(v) - n:]
                            row[len(v) - n:] = (kept - kept.mean()) / np.sqrt(kept.var() + 1e-7)
                        row[: len(v) - n] = self.padding_value
                        normed.append(row)
                    values = normed
                else:
                    values = _normalise(values, np.stack(masks) if target is not None else masks)
                    values = [np.where(np.arange(len(v)) < n, v, np.float32(self.padding_value)).astype(np.float32)
                              for v, n in zip(values, lengths)]
            else:  # Transformers normalises the whole (padded) row when it returns no mask
                values = _normalise(values, None)
        values = [np.asarray(v, np.float32) for v in values]
        out = {"input_values": np.stack(values) if target is not None else values}
        if want_mask:
            out["attention_mask"] = np.stack(masks).astype(np.int32) if target is not None else masks
        return out


@_register("WhisperFeatureExtractor")
class WhisperFeatureExtractor(AudioFeatureExtractor):
    """Log-mel spectrograms for Whisper: ``input_features`` (batch, feature_size, frames) float32,
    frames = ``chunk_length * sampling_rate // hop_length`` (3000 for 30 s at 16 kHz)."""

    feature_extractor_type = "WhisperFeatureExtractor"
    model_input_names = ("input_features",)
    defaults = {"feature_size": 80, "sampling_rate": 16000, "hop_length": 160, "chunk_length": 30, "n_fft": 400,
                "padding_value": 0.0, "dither": 0.0, "return_attention_mask": False, "padding_side": "right"}

    def __init__(self, **config):
        config.pop("mel_filters", None)  # older files store the filters themselves: recomputed
        super().__init__(**config)
        self.n_samples = int(self.chunk_length) * self.sampling_rate
        self.nb_max_frames = self.n_samples // int(self.hop_length)
        self.mel_filters = mel_filter_bank(1 + int(self.n_fft) // 2, int(self.feature_size), 0.0, 8000.0,
                                           self.sampling_rate, norm="slaney", mel_scale="slaney")
        self.window = hann_window(int(self.n_fft))

    def log_mel(self, batch):
        """(batch, samples) float32 -> (batch, feature_size, frames) log-mel features."""
        n_fft, hop = int(self.n_fft), int(self.hop_length)
        x = np.asarray(batch, np.float32)
        if self.dither:
            x = x + np.float32(self.dither) * np.random.standard_normal(x.shape).astype(np.float32)
        x = np.pad(x.astype(np.float64), ((0, 0), (n_fft // 2, n_fft // 2)), mode="reflect")
        out = []
        for row in x:  # one utterance at a time keeps the frame buffer small
            frames = _frames(row, n_fft, hop) * self.window
            power = np.abs(np.fft.rfft(frames, axis=-1)) ** 2  # (frames, bins)
            mel = self.mel_filters.T @ power[:-1].T  # the last frame is dropped
            log_spec = np.log10(np.maximum(mel, 1e-10))
            log_spec = np.maximum(log_spec, log_spec.max() - 8.0)
            out.append(((log_spec + 4.0) / 4.0).astype(np.float32))
        return np.stack(out)

    def __call__(self, waveforms, sampling_rate=None, padding="max_length", max_length=None, truncation=True,
                 pad_to_multiple_of=None, return_attention_mask=None, do_normalize=None, resample=True, **kwargs):
        waves, _ = self.prepare(waveforms, sampling_rate, resample, kwargs.pop("name", "waveforms"))
        if kwargs:
            raise TypeError(f"{type(self).__name__}: unexpected arguments {sorted(kwargs)}")
        max_length = max_length or self.n_samples
        if truncation:
            waves = [w[:max_length] for w in waves]
        mode, target = _pad_target([len(w) for w in waves], padding, max_length, pad_to_multiple_of, False)
        if target is None:
            if len({len(w) for w in waves}) > 1:
                raise InputError("waveforms: padding=False needs waveforms of one length for a batch")
            target = len(waves[0])
        values, mask = _pad_batch(waves, target, self.padding_value, self.padding_side)
        # Transformers' rules: the padded sample mask is kept when (return_attention_mask or do_normalize)
        # asks for it (None: the config's flag); only an explicit return_attention_mask makes it per frame
        asked = return_attention_mask or do_normalize
        want_mask = self.return_attention_mask if asked is None else bool(asked)
        if do_normalize:
            values = np.stack(_normalise(list(values), mask)).astype(np.float32)
            values[mask == 0] = self.padding_value
        out = {"input_features": self.log_mel(values)}
        if want_mask and not return_attention_mask:
            # as Transformers: the config's return_attention_mask alone returns the sample-level mask
            out["attention_mask"] = mask.astype(np.int32)
        elif want_mask:
            hop = int(self.hop_length)
            frame_mask = mask[:, ::hop]
            if mask.shape[1] % hop:
                frame_mask = frame_mask[:, :-1]
            out["attention_mask"] = frame_mask.astype(np.int32)
        return out


@_register("ASTFeatureExtractor")
class ASTFeatureExtractor(AudioFeatureExtractor):
    """Kaldi-compatible log mel filter banks for the Audio Spectrogram Transformer:
    ``input_values`` (batch, max_length, num_mel_bins) float32."""

    feature_extractor_type = "ASTFeatureExtractor"
    model_input_names = ("input_values", "attention_mask")
    defaults = {"feature_size": 1, "sampling_rate": 16000, "num_mel_bins": 128, "max_length": 1024,
                "padding_value": 0.0, "do_normalize": True, "mean": -4.2677393, "std": 4.5689974,
                "return_attention_mask": False, "padding_side": "right"}

    def __init__(self, **config):
        super().__init__(**config)
        self.mel_filters = mel_filter_bank(257, int(self.num_mel_bins), 20, self.sampling_rate // 2, self.sampling_rate,
                                           norm=None, mel_scale="kaldi", triangularize_in_mel_space=True)
        self.window = hann_window(400, periodic=False)

    def fbank(self, waveform):
        """Kaldi-style filter banks as Transformers computes them without torchaudio: 400-sample
        frames every 160 samples (no centering), DC removal, pre-emphasis 0.97, a symmetric Hann
        window, a 512-point power spectrum, Kaldi mel filters from 20 Hz to Nyquist (triangular in
        mel space), natural log floored at float32 epsilon. (frames, num_mel_bins) float32."""
        w = np.asarray(waveform, np.float64)
        if len(w) < 400:
            return np.zeros((0, int(self.num_mel_bins)), np.float32)
        frames = np.array(_frames(w, 400, 160), dtype=np.float64)
        frames = frames - frames.mean(axis=1, keepdims=True)
        prev = np.concatenate([frames[:, :1], frames[:, :-1]], axis=1)
        frames = (frames - 0.97 * prev) * self.window
        power = np.abs(np.fft.rfft(frames, n=512, axis=-1)) ** 2  # (frames, 257)
        mel = np.maximum(1.192092955078125e-07, power @ self.mel_filters)
        return np.log(mel).astype(np.float32)

    def __call__(self, waveforms, sampling_rate=None, return_attention_mask=None, resample=True, **kwargs):
        waves, _ = self.prepare(waveforms, sampling_rate, resample, kwargs.pop("name", "waveforms"))
        if kwargs:
            raise TypeError(f"{type(self).__name__}: unexpected arguments {sorted(kwargs)}")
        n, mels = int(self.max_length), int(self.num_mel_bins)
        feats, masks = [], []
        for w in waves:
            f = self.fbank(w)[:n]
            m = np.zeros(n, np.int32)
            m[: len(f)] = 1
            f = np.concatenate([f, np.zeros((n - len(f), mels), np.float32)]) if len(f) < n else f
            if self.do_normalize:
                f = (f - np.float32(self.mean)) / np.float32(self.std * 2)
            feats.append(f.astype(np.float32))
            masks.append(m)
        out = {"input_values": np.stack(feats)}
        want_mask = self.return_attention_mask if return_attention_mask is None else return_attention_mask
        if want_mask:
            out["attention_mask"] = np.stack(masks)
        return out


__all__ = ["AudioFeatureExtractor", "Wav2Vec2FeatureExtractor", "WhisperFeatureExtractor", "ASTFeatureExtractor",
           "mel_filter_bank", "hertz_to_mel", "mel_to_hertz", "as_waveform_list", "resample", "CONFIG_NAME"]

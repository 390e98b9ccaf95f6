"""Pop2Piano's feature extractor (Transformers' ``Pop2PianoFeatureExtractor``): a song -> beat grid
and log-mel chunks of ``num_bars`` bars.

Per song: beats from essentia's ``RhythmExtractor2013(method="multifeature")`` on the waveform as
given (optional package ``essentia``, extra ``keras-models[music]``); ``beatsteps`` = the beat
times linearly interpolated to ``steps_per_beat`` steps per beat plus one extrapolated step. The
waveform is resampled to ``sampling_rate`` with librosa's ``kaiser_best`` (optional ``librosa``,
and ``resampy`` that it calls, same extra) when its rate differs, cut to
[beatsteps[0], beatsteps[-1]) and split at every ``num_bars * 4`` steps of the beat grid
(``extrapolated_beatstep``: beatsteps from 0 extended by ``(num_bars + 1) * 4 + 1`` steps), the
chunks zero-padded to the longest; each chunk's power spectrogram (periodic Hann window of
``window_size``, ``hop_length``, centred with reflect padding) through an HTK mel filter bank of
``feature_size`` filters from ``min_frequency`` to sampling_rate // 2, floored at 1e-10, then
``log(max(x, 1e-6))``.

Output (numpy), as Transformers' ``pad``: ``input_features`` (chunks, frames, feature_size) float32
for one song (without masks: no separator row); for a batch (a list of waveforms with a list of rates) each song's chunks padded to
the longest frame count, followed by one all-zero separator row; ``beatsteps`` and
``extrapolated_beatstep`` (songs, steps) float32, padded with ``padding_value``; with
``return_attention_mask=True`` (needed to decode a batch of songs) ``attention_mask`` (rows, frames) and
``attention_mask_beatsteps`` / ``attention_mask_extrapolated_beatstep`` int64.
"""

from __future__ import annotations

import warnings

import numpy as np

from keras_models.errors import ConfigError, InputError
from keras_models.preprocessing.audio import AudioFeatureExtractor, _frames, _register, hann_window, mel_filter_bank
from keras_models.preprocessing.optional import require


def extend_beats(beat_times, steps_per_beat, n_extend):
    """``beat_times`` linearly interpolated at ``size * steps_per_beat + n_extend`` evenly spaced
    positions from beat 0 to beat ``size + n_extend - 1`` (the last segment's line beyond the end)."""
    y = np.asarray(beat_times, dtype=np.float64)
    n = y.size
    if n < 2:
        raise InputError(f"the beat tracker found {n} beat(s); the song needs at least 2 (is it too short or silent?)")
    x = np.linspace(0, n + n_extend - 1, n * steps_per_beat + n_extend)
    hi = np.clip(np.searchsorted(np.arange(n), x), 1, n - 1)
    lo = hi - 1
    return (y[hi] - y[lo]) / (hi - lo).astype(np.float64) * (x - lo) + y[lo]


@_register("Pop2PianoFeatureExtractor")
class Pop2PianoFeatureExtractor(AudioFeatureExtractor):
    feature_extractor_type = "Pop2PianoFeatureExtractor"
    model_input_names = ("input_features", "beatsteps", "extrapolated_beatstep")
    defaults = {"sampling_rate": 22050, "padding_value": 0, "window_size": 4096, "hop_length": 1024,
                "min_frequency": 10.0, "feature_size": 512, "num_bars": 2, "return_attention_mask": False,
                "padding_side": "right"}

    def __init__(self, **config):
        super().__init__(**config)
        c = self.config
        for key in ("window_size", "num_bars"):
            v = c[key]
            if isinstance(v, bool) or not isinstance(v, int) or not 0 < v <= 2**16:
                raise ConfigError(f"preprocessor_config.json: {key} must be an integer in 1..65536, got {v!r}")
        v = c["min_frequency"]
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 <= v < self.sampling_rate // 2:
            raise ConfigError(f"preprocessor_config.json: min_frequency must be a number in "
                              f"[0, sampling_rate // 2), got {v!r}")
        self.mel_filters = mel_filter_bank(c["window_size"] // 2 + 1, c["feature_size"], c["min_frequency"],
                                           float(self.sampling_rate // 2), self.sampling_rate, norm=None,
                                           mel_scale="htk")
        self.window = hann_window(c["window_size"], periodic=True)

    # --- pieces -------------------------------------------------------------------------------------
    def extract_rhythm(self, audio):
        """essentia's RhythmExtractor2013 (multifeature): (bpm, beat_times, confidence, estimates,
        beat_intervals)."""
        essentia_standard = require("essentia.standard", "essentia", "music", "Pop2PianoFeatureExtractor (beats)")
        tracker = essentia_standard.RhythmExtractor2013(method="multifeature")
        return tracker(np.ascontiguousarray(audio, dtype=np.float32))

    def log_mel(self, chunk):
        """(frames, feature_size) log-mel of one float32 chunk."""
        pad = self.window_size // 2
        if chunk.size < 2:
            raise InputError(f"a beat chunk has {chunk.size} samples; the song is too short for "
                             f"{self.num_bars} bars")
        x = np.pad(chunk, (pad, pad), mode="reflect").astype(np.float64)
        if x.size < self.window_size:
            raise InputError("a beat chunk is shorter than window_size; the song is too short")
        frames = _frames(x, self.window_size, self.hop_length) * self.window
        spec = np.fft.rfft(frames, axis=-1).astype(np.complex64)
        power = np.abs(spec, dtype=np.float64) ** 2
        mel = np.maximum(1e-10, self.mel_filters.T @ power.T).astype(np.float32)
        return np.log(np.clip(mel, 1e-6, None)).T

    def chunks(self, audio, beatstep):
        """The waveform split on the beat grid: (padded chunks (n, samples), extrapolated_beatstep)."""
        if beatstep[0] > 0.0:
            beatstep = beatstep - beatstep[0]
        step = self.num_bars * 4
        n = len(beatstep)
        grid = extend_beats(beatstep, 1, (self.num_bars + 1) * 4 + 1)
        bounds = [(int(grid[i] * self.sampling_rate), int(grid[min(i + step, n)] * self.sampling_rate))
                  for i in range(0, n, step)]
        pieces = [audio[a:b] for a, b in bounds]
        width = max(b - a for a, b in bounds)
        out = np.zeros((len(pieces), width), dtype=audio.dtype)
        for i, p in enumerate(pieces):
            out[i, :len(p)] = p
        return out, grid

    def one_song(self, audio, rate, steps_per_beat, resample_audio):
        _, beat_times, *_ = self.extract_rhythm(audio)
        beatsteps = extend_beats(beat_times, steps_per_beat, 1)
        if rate != self.sampling_rate:
            if resample_audio:
                librosa = require("librosa", "librosa", "music", "Pop2PianoFeatureExtractor (resampling)")
                require("resampy", "resampy", "music", "Pop2PianoFeatureExtractor (kaiser_best resampling)")
                audio = librosa.resample(audio, orig_sr=rate, target_sr=self.sampling_rate, res_type="kaiser_best")
            else:
                warnings.warn(f"the audio is sampled at {rate} Hz but Pop2PianoFeatureExtractor expects "
                              f"{self.sampling_rate} Hz and resample=False: it is used as it is", stacklevel=3)
        start, end = int(beatsteps[0] * self.sampling_rate), int(beatsteps[-1] * self.sampling_rate)
        pieces, grid = self.chunks(audio[start:end], beatsteps - beatsteps[0])
        pieces = pieces.astype(np.float32)
        return np.stack([self.log_mel(p) for p in pieces]), beatsteps, grid

    # --- calling ------------------------------------------------------------------------------------
    def _waveform(self, w, where):
        a = np.asarray(w)
        if a.dtype.kind not in "iuf":
            raise InputError(f"{where}: expected a mono waveform of numbers, got dtype {a.dtype}")
        if a.dtype.kind != "f":
            a = a.astype(np.float32)
        if a.ndim != 1:
            raise InputError(f"{where}: expected a single-channel waveform of shape (samples,), got {a.shape}")
        if a.size == 0:
            raise InputError(f"{where}: empty waveform")
        if not np.all(np.isfinite(a)):
            raise InputError(f"{where}: the waveform holds NaN or infinite samples")
        return a

    def __call__(self, audio, sampling_rate=None, steps_per_beat=2, resample=True, return_attention_mask=False,
                 return_tensors=None, **_):
        if return_tensors not in (None, "np"):
            raise ValueError(f"return_tensors must be None or 'np', got {return_tensors!r}")
        if isinstance(steps_per_beat, bool) or not isinstance(steps_per_beat, int) or steps_per_beat < 1:
            raise InputError(f"steps_per_beat must be a positive integer, got {steps_per_beat!r}")
        batched = isinstance(audio, (list, tuple)) and len(audio) > 0 and isinstance(
            audio[0], (np.ndarray, list, tuple))
        if batched:
            rates = sampling_rate if isinstance(sampling_rate, (list, tuple)) else [sampling_rate] * len(audio)
            if len(rates) != len(audio):
                raise InputError(f"sampling_rate: {len(rates)} rates for {len(audio)} waveforms")
            songs = [self._waveform(w, f"audio[{i}]") for i, w in enumerate(audio)]
            with_masks = True if return_attention_mask is None else bool(return_attention_mask)
        else:
            rates, songs = [sampling_rate], [self._waveform(audio, "audio")]
            with_masks = bool(return_attention_mask)
        rates = [self.sampling_rate if r is None else r for r in rates]
        for r in rates:
            if isinstance(r, bool) or not isinstance(r, (int, np.integer)) or r <= 0:
                raise InputError(f"sampling_rate must be a positive integer, got {r!r}")
        feats, beats, grids = [], [], []
        for song, rate in zip(songs, rates):
            f, b, g = self.one_song(song, int(rate), steps_per_beat, resample)
            feats.append(f)
            beats.append(b)
            grids.append(g)
        out = {}
        out["input_features"], mask = self._pad_features(feats)
        if with_masks:
            out["attention_mask"] = mask
        for key, values in (("beatsteps", beats), ("extrapolated_beatstep", grids)):
            out[key], mask = self._pad_rows(values)
            if with_masks:
                out[f"attention_mask_{key}"] = mask
        if not batched and not with_masks:
            out["input_features"] = out["input_features"][:-1]
        return out

    def _pad_features(self, feats):
        frames = max(f.shape[1] for f in feats)
        rows, masks = [], []
        for f in feats:
            padded = np.full((f.shape[0] + 1, frames, self.feature_size), self.padding_value, dtype=np.float64)
            padded[:-1, :f.shape[1]] = f
            padded[-1] = 0.0  # the separator row after each song
            mask = np.zeros((f.shape[0] + 1, frames), dtype=np.int64)
            mask[:-1] = np.asarray(self.padding_value).astype(np.int64)  # Transformers pads the mask with it
            mask[:-1, :f.shape[1]] = 1
            rows.append(padded)
            masks.append(mask)
        return np.concatenate(rows).astype(np.float32), np.concatenate(masks)

    def _pad_rows(self, values):
        width = max(len(v) for v in values)
        out = np.full((len(values), width), self.padding_value, dtype=np.float64)
        mask = np.full((len(values), width), np.asarray(self.padding_value).astype(np.int64), dtype=np.int64)
        for i, v in enumerate(values):
            out[i, :len(v)] = v
            mask[i, :len(v)] = 1
        return out.astype(np.float32), mask


__all__ = ["Pop2PianoFeatureExtractor", "extend_beats"]

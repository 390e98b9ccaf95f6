"""TVLT's preprocessing in numpy: ``TvltImageProcessor`` (video frames), ``TvltFeatureExtractor``
(waveform -> log-mel spectrogram) and ``TvltProcessor`` (both), equal to Transformers 4.57.1's
classes of those names (models/deprecated/tvlt) after the layout change: our outputs are
channels_last, ``pixel_values`` (batch, frames, height, width, channels) and ``audio_values``
(batch, time, frequency, 1), where Transformers returns (batch, frames, channels, height, width)
and (batch, 1, time, frequency).

Transformers' quirks are kept: the pixel mask counts ``(size["shortest_edge"] // patch_size[0]) ** 2``
patches per frame (the resize size, not the crop), the mel filters span 0..22050 Hz whatever the
sampling rate, and the hop length is ``sampling_rate // hop_length_to_sampling_rate`` (a saved
``hop_length`` is recomputed, as Transformers does on load). ``TvltProcessor.save_pretrained``
writes one ``preprocessor_config.json`` that both parts read (as Transformers' does).
Videos shorter than the longest in a batch are padded with zero frames (their ``pixel_mask`` is 0
there; Transformers leaves such a batch ragged).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from keras_models.errors import ConfigError, InputError
from keras_models.preprocessing.audio import AudioFeatureExtractor, _frames, _register, hann_window, mel_filter_bank
from keras_models.preprocessing.video import _FIELDS as VIDEO_FIELDS
from keras_models.preprocessing.video import VideoProcessor

CONFIG_NAME = "preprocessor_config.json"


def _patch_pair(value, key):
    if (not isinstance(value, (list, tuple)) or len(value) != 2
            or any(not isinstance(v, int) or isinstance(v, bool) or v <= 0 for v in value)):
        raise ConfigError(f"{CONFIG_NAME}: {key} must be two positive integers, got {value!r}")
    return [int(v) for v in value]


@_register("TvltFeatureExtractor")
class TvltFeatureExtractor(AudioFeatureExtractor):
    """``extractor(waveforms, sampling_rate=...)`` -> {"audio_values": (batch, time, feature_size, 1),
    "audio_mask": (batch, audio patches)} float32. Each waveform: a Hann-window STFT (centred,
    reflect padding), power spectrum through Slaney mel filters, dB (floored at 1e-10, clipped at
    max - 80 dB), the last frame dropped, ``clip((db - 20) / 40, -2, 0) + 1``, cut to
    ``spectrogram_length`` frames; the batch is padded with ``padding_value`` to whole patches of
    the longest."""

    feature_extractor_type = "TvltFeatureExtractor"
    model_input_names = ("audio_values", "audio_mask")
    defaults = {"spectrogram_length": 2048, "num_channels": 1, "patch_size": [16, 16], "feature_size": 128,
                "sampling_rate": 44100, "hop_length_to_sampling_rate": 86, "n_fft": 2048, "padding_value": 0.0,
                "return_attention_mask": True, "padding_side": "right"}

    def __init__(self, **config):
        for derived in ("hop_length", "freq_len", "mel_filters"):  # recomputed, as Transformers does
            config.pop(derived, None)
        super().__init__(**config)
        self.patch_size = _patch_pair(self.patch_size, "patch_size")
        for key in ("spectrogram_length", "hop_length_to_sampling_rate"):
            v = self.config[key]
            if not isinstance(v, int) or isinstance(v, bool) or v <= 0:
                raise ConfigError(f"{CONFIG_NAME}: {key} must be a positive integer, got {v!r}")
        self.hop_length = self.sampling_rate // int(self.hop_length_to_sampling_rate)
        if self.hop_length <= 0:
            raise ConfigError(f"{CONFIG_NAME}: sampling_rate // hop_length_to_sampling_rate must be positive "
                              f"({self.sampling_rate} // {self.hop_length_to_sampling_rate})")
        self.freq_len = int(self.feature_size) // self.patch_size[1]
        self.mel_filters = mel_filter_bank(1 + int(self.n_fft) // 2, int(self.feature_size), 0.0, 22050.0,
                                           self.sampling_rate, norm="slaney", mel_scale="slaney")
        self.window = hann_window(int(self.n_fft))

    def log_mel(self, waveform):
        """(samples,) -> (time, feature_size) float32."""
        n_fft = int(self.n_fft)
        x = np.asarray(waveform, np.float32)
        if x.shape[0] <= n_fft // 2:
            raise InputError(f"waveform of {x.shape[0]} samples is too short for n_fft={n_fft} (reflect padding)")
        x = np.pad(x, (n_fft // 2, n_fft // 2), mode="reflect").astype(np.float64)
        frames = _frames(x, n_fft, self.hop_length) * self.window
        spec = np.fft.rfft(frames, axis=-1).astype(np.complex64)  # Transformers' complex64 buffer
        power = np.abs(spec, dtype=np.float64) ** 2
        mel = np.maximum(1e-10, self.mel_filters.T @ power.T)  # (mels, frames)
        db = 10.0 * np.log10(np.maximum(mel, 1e-10))
        db = np.maximum(db, db.max() - 80.0).astype(np.float32)[:, :-1]
        db = np.clip((db - 20.0) / 40.0, -2.0, 0.0) + 1.0
        return db.T[: int(self.spectrogram_length)]

    def __call__(self, waveforms, sampling_rate=None, return_attention_mask=None, resample=True, **kwargs):
        waves, _ = self.prepare(waveforms, sampling_rate, resample, kwargs.pop("name", "waveforms"))
        if kwargs:
            raise TypeError(f"{type(self).__name__}: unexpected arguments {sorted(kwargs)}")
        feats = [self.log_mel(w) for w in waves]
        pt = self.patch_size[0]
        patches = [math.ceil(f.shape[0] / pt) * self.freq_len for f in feats]
        longest = max(patches)
        values = np.full((len(feats), longest // self.freq_len * pt, int(self.feature_size), 1),
                         self.padding_value, np.float32)
        for i, f in enumerate(feats):
            values[i, : f.shape[0], :, 0] = f
        out = {"audio_values": values}
        want = self.return_attention_mask if return_attention_mask is None else return_attention_mask
        if want:
            out["audio_mask"] = np.array([[1.0] * n + [0.0] * (longest - n) for n in patches], np.float32)
        return out


class TvltImageProcessor:
    """``processor(videos)`` -> {"pixel_values": (batch, frames, height, width, channels),
    "pixel_mask": (batch, frames * patches per frame)}: each frame resized (shortest edge), center
    cropped, rescaled and normalised as Transformers' TvltImageProcessor (Pillow resampling)."""

    image_processor_type = "TvltImageProcessor"

    def __init__(self, patch_size=(16, 16), num_frames=8, **kwargs):
        kwargs = {k: v for k, v in kwargs.items() if k in VIDEO_FIELDS}
        self.frames = VideoProcessor(processor_type="TvltImageProcessor", **kwargs)
        self.patch_size = _patch_pair(list(patch_size), "patch_size")
        if not isinstance(num_frames, int) or isinstance(num_frames, bool) or num_frames <= 0:
            raise ConfigError(f"{CONFIG_NAME}: num_frames must be a positive integer, got {num_frames!r}")
        self.num_frames = num_frames
        if "shortest_edge" not in self.frames.size:
            raise ConfigError(f"{CONFIG_NAME}: TvltImageProcessor needs size['shortest_edge'] (its pixel mask "
                              f"counts patches from it), got size={self.frames.size}")

    @classmethod
    def from_config(cls, config):
        kw = {k: config[k] for k in ("patch_size", "num_frames", *VIDEO_FIELDS) if k in config}
        return cls(**kw)

    def get_config(self):
        c = self.frames.get_config()
        c.update(image_processor_type=self.image_processor_type, patch_size=list(self.patch_size),
                 num_frames=self.num_frames)
        return c

    def __call__(self, videos):
        videos = VideoProcessor._videos(videos)
        for i, v in enumerate(videos):
            if len(v) > self.num_frames:
                raise InputError(f"videos[{i}] has {len(v)} frames; this processor takes at most "
                                 f"num_frames={self.num_frames}")
        arrays = [self.frames.process_video(v, i) for i, v in enumerate(videos)]
        if len({a.shape[1:] for a in arrays}) > 1:
            raise InputError("videos were preprocessed to different frame sizes; use a config with a center crop")
        longest = max(a.shape[0] for a in arrays)
        per_frame = (self.frames.size["shortest_edge"] // self.patch_size[0]) ** 2
        pixels = np.zeros((len(arrays), longest) + arrays[0].shape[1:], np.float32)
        mask = np.zeros((len(arrays), longest * per_frame), np.int64)
        for i, a in enumerate(arrays):
            pixels[i, : a.shape[0]] = a
            mask[i, : a.shape[0] * per_frame] = 1
        return {"pixel_values": pixels, "pixel_mask": mask}


class TvltProcessor:
    """Frames and audio together: ``processor(videos=..., audio=..., sampling_rate=...)`` -> the
    dict TvltBackbone takes (pixel_values, pixel_mask, audio_values, audio_mask)."""

    def __init__(self, image_processor, feature_extractor):
        self.image_processor, self.feature_extractor = image_processor, feature_extractor

    @classmethod
    def from_preset(cls, preset):
        from keras_models.presets.config import read_json
        from keras_models.presets.resolve import resolve_preset

        path = Path(resolve_preset(preset)) / CONFIG_NAME
        if not path.is_file():
            raise ConfigError(f"{preset}: no {CONFIG_NAME} (TVLT's processor settings)")
        config = read_json(path)
        if not isinstance(config, dict):
            raise ConfigError(f"{path}: expected a JSON object")
        audio = {k: v for k, v in config.items() if k in TvltFeatureExtractor.defaults or k == "hop_length"}
        return cls(TvltImageProcessor.from_config(config), TvltFeatureExtractor(**audio))

    from_pretrained = from_preset

    def save_pretrained(self, folder):
        # one file, read by both parts (Transformers 4.57's TvltProcessor keeps only the feature
        # extractor's settings; we write both; a shared key, patch_size, is the feature extractor's,
        # which is what Transformers' image processor reads back from such a file too)
        config = self.image_processor.get_config()
        config.update(self.feature_extractor.to_dict())
        config["processor_class"] = "TvltProcessor"
        Path(folder).mkdir(parents=True, exist_ok=True)
        (Path(folder) / CONFIG_NAME).write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")

    def __call__(self, videos=None, audio=None, sampling_rate=None):
        if videos is None and audio is None:
            raise InputError("TvltProcessor: pass videos=, audio= or both")
        out = {}
        if videos is not None:
            out.update(self.image_processor(videos))
        if audio is not None:
            out.update(self.feature_extractor(audio, sampling_rate=sampling_rate))
        return out


__all__ = ["TvltFeatureExtractor", "TvltImageProcessor", "TvltProcessor"]

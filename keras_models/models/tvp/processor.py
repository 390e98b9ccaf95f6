"""TVP's frame processor (Transformers' ``TvpImageProcessor``; equal to its Pillow backend,
``TvpImageProcessorPil``), in numpy + Pillow, frame by frame in Transformers' order:

resize the longest edge to ``size["longest_edge"]`` (the other edge scaled and truncated; Pillow,
``resample``) -> center crop to ``crop_size`` (zero-padded when smaller) -> rescale -> normalise ->
pad bottom / right to ``pad_size`` with ``constant_values`` -> flip RGB to BGR
(``do_flip_channel_order``). Output ``pixel_values`` (batch, frames, height, width, channels).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from keras_models.errors import ConfigError, InputError
from keras_models.preprocessing.image import ImageProcessor, center_crop
from keras_models.preprocessing.image_io import load_image
from keras_models.preprocessing.video import VideoProcessor

CONFIG_NAME = "preprocessor_config.json"
_STANDARD = [0.5, 0.5, 0.5]
DEFAULTS = dict(do_resize=True, size={"longest_edge": 448}, resample=2, do_center_crop=True,
                crop_size={"height": 448, "width": 448}, do_rescale=True, rescale_factor=1 / 255, do_pad=True,
                pad_size={"height": 448, "width": 448}, constant_values=0, pad_mode="constant",
                do_normalize=True, image_mean=_STANDARD, image_std=_STANDARD, do_flip_channel_order=True)


def _hw(value, key):
    if isinstance(value, int) and not isinstance(value, bool):
        value = {"height": value, "width": value}
    if (not isinstance(value, dict) or not {"height", "width"} <= set(value)
            or any(isinstance(value[k], bool) or not isinstance(value[k], int) or value[k] < 1
                   for k in ("height", "width"))):
        raise ConfigError(f"{CONFIG_NAME}: {key} must be {{'height': int, 'width': int}} (positive), got {value!r}")
    return {"height": value["height"], "width": value["width"]}


class TvpImageProcessor:
    """``processor(videos)`` -> {"pixel_values": (batch, frames, height, width, channels)}; videos
    as :class:`~keras_models.preprocessing.video.VideoProcessor` takes them."""

    def __init__(self, **kwargs):
        unknown = set(kwargs) - set(DEFAULTS)
        if unknown:
            raise TypeError(f"TvpImageProcessor: unknown arguments {sorted(unknown)}")
        values = {**DEFAULTS, **{k: v for k, v in kwargs.items() if v is not None}}
        for k, v in values.items():
            setattr(self, k, v)
        size = self.size
        if not (isinstance(size, dict) and isinstance(size.get("longest_edge"), int) and size["longest_edge"] > 0):
            raise ConfigError(f"{CONFIG_NAME}: size must be {{'longest_edge': int}} for TVP, got {size!r}")
        self.crop_size = _hw(self.crop_size, "crop_size")
        self.pad_size = _hw(self.pad_size, "pad_size")
        if self.pad_mode != "constant":
            raise ConfigError(f"{CONFIG_NAME}: pad_mode {self.pad_mode!r} is not implemented (only 'constant')")
        self._frames = ImageProcessor(image_processor_type="ViTImageProcessor", size={"height": 1, "width": 1},
                                      resample=self.resample)

    @classmethod
    def from_config(cls, config):
        return cls(**{k: config[k] for k in DEFAULTS if k in config})

    @classmethod
    def from_preset(cls, preset):
        from keras_models.presets.config import read_json, read_processor_part
        from keras_models.presets.resolve import resolve_preset

        folder = Path(resolve_preset(preset))
        found = read_processor_part(folder, "image_processor")
        return cls.from_config(found[0] if found is not None else read_json(folder / CONFIG_NAME))

    def get_config(self):
        c = {k: getattr(self, k) for k in DEFAULTS}
        c["image_processor_type"] = "TvpImageProcessor"
        return c

    def save_pretrained(self, folder):
        Path(folder).mkdir(parents=True, exist_ok=True)
        Path(folder, CONFIG_NAME).write_text(json.dumps(self.get_config(), indent=2, sort_keys=True) + "\n")

    def process_frame(self, frame):
        x = load_image(frame, convert_rgb=True)
        if self.do_resize:
            h, w = x.shape[:2]
            edge = self.size["longest_edge"]
            if h >= w:
                nh, nw = edge, int(edge * (w * 1.0 / h))
            else:
                nh, nw = int(edge * (h * 1.0 / w)), edge
            x = self._frames.resize_to(x, nh, nw)
        if self.do_center_crop:
            x = center_crop(x, self.crop_size["height"], self.crop_size["width"])
        if self.do_rescale:
            x = (x.astype(np.float64) * self.rescale_factor).astype(np.float32)
        x = x.astype(np.float32)
        if self.do_normalize:
            x = (x - np.asarray(self.image_mean, np.float32)) / np.asarray(self.image_std, np.float32)
        if self.do_pad:
            h, w = x.shape[:2]
            ph, pw = self.pad_size["height"] - h, self.pad_size["width"] - w
            if ph < 0 or pw < 0:
                raise InputError(f"TvpImageProcessor: a {h}x{w} frame is larger than pad_size {self.pad_size}")
            x = np.pad(x, ((0, ph), (0, pw), (0, 0)), constant_values=self.constant_values)
        if self.do_flip_channel_order:
            x = x[..., ::-1]
        return np.ascontiguousarray(x, dtype=np.float32)

    def features(self, videos):
        batch = VideoProcessor._videos(videos)
        arrays = [np.stack([self.process_frame(f) for f in video]) for video in batch]
        if len({a.shape for a in arrays}) > 1:
            raise InputError(f"videos were preprocessed to different shapes {sorted({a.shape for a in arrays})}")
        return {"pixel_values": np.stack(arrays)}

    def __call__(self, videos, y=None):
        out = self.features(videos)
        return out if y is None else (out, np.asarray(y))


__all__ = ["TvpImageProcessor"]

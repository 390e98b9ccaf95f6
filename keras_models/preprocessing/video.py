"""Video processor: what a video checkpoint's ``preprocessor_config.json`` (Transformers'
``VideoMAEImageProcessor`` / ``VivitImageProcessor``) or ``video_preprocessor_config.json``
(their 5.x video processors) says, in numpy + Pillow, frame by frame.

Steps per frame, in Transformers' order: resize (shortest edge, or an exact size; Pillow and the
config's ``resample`` filter) -> center crop -> rescale (``offset``: then subtract 1, ViViT's
[-1, 1] range) -> normalise. Output ``pixel_values`` (batch, frames, height, width, channels),
float32, equal to Transformers' PIL/numpy processors (``VideoMAEImageProcessorPil``,
``VivitImageProcessor``) after the layout change. The 5.x ``*VideoProcessor`` configs are read
too and processed the same (Pillow) way; those classes themselves resize with torchvision, whose
interpolation is not Pillow's, so they can differ slightly (not compared: no torchvision here).

Input: one video (a (frames, H, W, C) array or a list of frames: arrays, PIL images, paths) or a
batch of them (a (batch, frames, H, W, C) array or a list of videos). The user samples the frames;
when ``num_frames`` is set (a VideoClassifier sets it to its model's), every video must have that
many, else :class:`~keras_models.errors.InputError` names the video.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from keras_models.errors import ConfigError, InputError
from keras_models.preprocessing.image import ImageProcessor

CONFIG_NAMES = ("preprocessor_config.json", "video_preprocessor_config.json")
_HALF = [0.5, 0.5, 0.5]
_IMAGENET_MEAN, _IMAGENET_STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]
_BASE = dict(do_resize=True, size={"shortest_edge": 224}, resample=2, do_center_crop=True,
             crop_size={"height": 224, "width": 224}, do_rescale=True, rescale_factor=1 / 255, offset=False,
             do_normalize=True, image_mean=_HALF, image_std=_HALF, do_convert_rgb=None)
# class defaults of Transformers' processors (config files omit keys equal to them)
_TYPES = {
    "VideoMAEImageProcessor": {},
    "VideoMAEVideoProcessor": dict(do_convert_rgb=True),
    "TimesformerVideoProcessor": dict(image_mean=_IMAGENET_MEAN, image_std=_IMAGENET_STD, do_convert_rgb=True),
    "VivitImageProcessor": dict(size={"shortest_edge": 256}, rescale_factor=1 / 127.5, offset=True),
    "VivitVideoProcessor": dict(size={"shortest_edge": 256}, rescale_factor=1 / 127.5, offset=True,
                                do_convert_rgb=True),
    "TvltImageProcessor": {},  # frames only; keras_models.models.tvlt adds the pixel mask
}
_FIELDS = tuple(_BASE)


def _kind(name):
    name = name or "VideoMAEImageProcessor"
    for suffix in ("Pil", "Fast"):
        if name.endswith(suffix) and name[: -len(suffix)] in _TYPES:
            name = name[: -len(suffix)]
    if name not in _TYPES:
        raise ConfigError(f"{CONFIG_NAMES[0]}: unsupported video processor type {name!r} "
                          f"(supported: {', '.join(sorted(_TYPES))})")
    return name


class VideoProcessor:
    """``processor(videos)`` -> {"pixel_values": (batch, frames, height, width, channels)}."""

    def __init__(self, processor_type="VideoMAEImageProcessor", num_frames=None, **kwargs):
        self.processor_type = _kind(processor_type)
        unknown = set(kwargs) - set(_FIELDS)
        if unknown:
            raise TypeError(f"VideoProcessor: unknown arguments {sorted(unknown)}")
        values = {**_BASE, **_TYPES[self.processor_type], **{k: v for k, v in kwargs.items() if v is not None}}
        for k, v in values.items():
            setattr(self, k, v)
        self.num_frames = num_frames
        if self.offset and not self.do_rescale:
            raise ConfigError(f"{CONFIG_NAMES[0]}: offset needs do_rescale")
        self.frames = ImageProcessor(
            image_processor_type=self.processor_type, size=self.size, do_resize=self.do_resize,
            resample=self.resample, do_center_crop=self.do_center_crop, crop_size=self.crop_size,
            do_rescale=self.do_rescale, rescale_factor=self.rescale_factor, rescale_offset=bool(self.offset),
            do_normalize=self.do_normalize, image_mean=list(self.image_mean), image_std=list(self.image_std),
            do_convert_rgb=self.do_convert_rgb, default_to_square=False)
        self.size, self.crop_size = self.frames.size, self.frames.crop_size

    # --- config -------------------------------------------------------------------------------
    @staticmethod
    def config_path(folder):
        for name in CONFIG_NAMES:
            if (Path(folder) / name).is_file():
                return Path(folder) / name
        return None

    @classmethod
    def from_config(cls, config):
        kind = config.get("video_processor_type") or config.get("image_processor_type")
        kw = {k: config[k] for k in _FIELDS if k in config}
        if kw.get("resample") is not None and not isinstance(kw["resample"], int):
            raise ConfigError(f"{CONFIG_NAMES[0]}: resample must be a PIL filter number, got {kw['resample']!r}")
        return cls(processor_type=kind, **kw)

    @classmethod
    def from_preset(cls, preset):
        from keras_models.presets.config import read_json
        from keras_models.presets.resolve import resolve_preset

        path = cls.config_path(resolve_preset(preset))
        if path is None:
            raise ConfigError(f"{preset}: no {' or '.join(CONFIG_NAMES)}")
        return cls.from_config(read_json(path))

    def get_config(self):
        c = {k: getattr(self, k) for k in _FIELDS}
        c["image_mean"], c["image_std"] = list(self.image_mean), list(self.image_std)
        c["image_processor_type"] = self.processor_type.replace("VideoProcessor", "ImageProcessor") \
            if self.processor_type != "TimesformerVideoProcessor" else "VideoMAEImageProcessor"
        if c["do_convert_rgb"] is None:
            c.pop("do_convert_rgb")
        return c

    def save_pretrained(self, folder):
        Path(folder).mkdir(parents=True, exist_ok=True)
        Path(folder, CONFIG_NAMES[0]).write_text(json.dumps(self.get_config(), indent=2, sort_keys=True) + "\n")

    # --- processing ---------------------------------------------------------------------------
    @staticmethod
    def _videos(videos):
        """The batch as a list of videos, each a list of frames."""
        if isinstance(videos, np.ndarray):
            if videos.ndim == 4:
                return [list(videos)]
            if videos.ndim == 5:
                return [list(v) for v in videos]
            raise InputError(f"videos: expected one video (frames, height, width, channels) or a batch "
                             f"(batch, frames, height, width, channels), got an array of shape {videos.shape}")
        if not isinstance(videos, (list, tuple)) or len(videos) == 0:
            raise InputError(f"videos: expected an array, a list of frames or a list of videos, got "
                             f"{type(videos).__name__}{' (empty)' if isinstance(videos, (list, tuple)) else ''}")
        first = videos[0]
        if isinstance(first, (list, tuple)) or isinstance(first, np.ndarray) and first.ndim == 4:
            return [list(v) for v in videos]  # a batch of videos
        return [list(videos)]  # one video as a list of frames

    def process_video(self, frames, index=0):
        if self.num_frames is not None and len(frames) != self.num_frames:
            raise InputError(f"videos[{index}] has {len(frames)} frames but the model takes num_frames="
                             f"{self.num_frames}; sample that many frames per video")
        out = []
        for j, frame in enumerate(frames):
            if isinstance(frame, np.ndarray) and frame.ndim not in (2, 3):
                raise InputError(f"videos[{index}][{j}]: a frame must be (height, width[, channels]), got "
                                 f"shape {frame.shape}")
            out.append(self.frames.process_one(frame))
        return np.stack(out)

    def features(self, videos):
        arrays = [self.process_video(v, i) for i, v in enumerate(self._videos(videos))]
        shapes = {a.shape for a in arrays}
        if len(shapes) > 1:
            raise InputError(f"videos were preprocessed to different shapes {sorted(shapes)}; use a config with "
                             "a center crop or batch videos of one size")
        return {"pixel_values": np.stack(arrays)}

    def __call__(self, videos, y=None):
        out = self.features(videos)
        return out if y is None else (out, np.asarray(y))


__all__ = ["VideoProcessor", "CONFIG_NAMES"]

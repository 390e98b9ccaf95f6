"""ViTMatte's image processor, equal to Transformers' ``VitMatteImageProcessor`` (PIL backend): no
resize; the image is rescaled (1/255) and normalised (mean 0.5, std 0.5 by default), the trimap
(a (H, W) or (H, W, 1) map, 0-255) rescaled only and appended as a 4th channel, then both are
zero-padded at the bottom / right to a multiple of ``size_divisor`` (32; ``size_divisibility`` in
older configs). ``processor(images, trimaps)`` -> ``{"pixel_values": (batch, H, W, 4)}``."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from keras_models.errors import ConfigError
from keras_models.preprocessing.image import CONFIG_NAME, ImageProcessor
from keras_models.preprocessing.image_io import ImageInputError, load_image


class VitMatteImageProcessor(ImageProcessor):
    def __init__(self, do_pad=True, size_divisor=32, **kwargs):
        if isinstance(size_divisor, bool) or not isinstance(size_divisor, int) or size_divisor <= 0:
            raise ConfigError(f"{CONFIG_NAME}: size_divisor must be a positive integer, got {size_divisor!r}")
        super().__init__(do_resize=False, **kwargs)
        self.image_processor_type = "VitMatteImageProcessor"
        self.do_pad, self.size_divisor = bool(do_pad), size_divisor

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        divisor = config.get("size_divisor", config.get("size_divisibility"))
        kw = {k: config[k] for k in ("do_rescale", "rescale_factor", "do_normalize", "image_mean", "image_std",
                                     "do_pad", "do_convert_rgb") if config.get(k) is not None}
        return cls(size_divisor=32 if divisor is None else divisor, **kw)

    @classmethod
    def from_preset(cls, preset):
        from keras_models.presets.config import read_json
        from keras_models.presets.resolve import resolve_preset

        return cls.from_config(read_json(Path(resolve_preset(preset)) / CONFIG_NAME))

    @property
    def output_size(self):
        return None

    def get_config(self):
        return {"image_processor_type": "VitMatteImageProcessor", "do_rescale": self.do_rescale,
                "rescale_factor": self.rescale_factor, "do_normalize": self.do_normalize,
                "image_mean": list(self.image_mean), "image_std": list(self.image_std), "do_pad": self.do_pad,
                "size_divisor": self.size_divisor}

    def save_pretrained(self, folder):
        Path(folder, CONFIG_NAME).write_text(json.dumps(self.get_config(), indent=2, sort_keys=True) + "\n")

    def process_pair(self, image, trimap):
        x = self.process_one(image)
        t = np.asarray(trimap)
        if t.ndim == 3 and t.shape[-1] == 1:
            t = t[..., 0]
        if t.ndim != 2:
            t = load_image(trimap, convert_rgb=False)
            t = t[..., 0] if t.ndim == 3 else t
        if t.shape != x.shape[:2]:
            raise ImageInputError(f"trimaps: a {t.shape} trimap for a {x.shape[:2]} image")
        t = t.astype(np.float32)
        if self.do_rescale:
            t = (t.astype(np.float64) * self.rescale_factor).astype(np.float32)
        x = np.concatenate([x, t[..., None]], axis=-1)
        if self.do_pad:
            d = self.size_divisor
            h, w = x.shape[:2]
            x = np.pad(x, ((0, (-h) % d), (0, (-w) % d), (0, 0)))
        return np.ascontiguousarray(x, dtype=np.float32)

    def __call__(self, images, trimaps=None, y=None, training=False):
        if trimaps is None:
            raise ImageInputError("VitMatteImageProcessor: trimaps are required (one per image)")
        images = list(images) if isinstance(images, (list, tuple)) or (
            isinstance(images, np.ndarray) and images.ndim == 4) else [images]
        trimaps = list(trimaps) if isinstance(trimaps, (list, tuple)) or (
            isinstance(trimaps, np.ndarray) and trimaps.ndim == 3 and len(images) > 1) else [trimaps]
        if not images or len(images) != len(trimaps):
            raise ImageInputError(f"images / trimaps: {len(images)} images and {len(trimaps)} trimaps")
        arrays = [self.process_pair(i, t) for i, t in zip(images, trimaps)]
        if len({a.shape for a in arrays}) > 1:
            raise ImageInputError(f"images were preprocessed to different shapes {sorted({a.shape for a in arrays})}; "
                                  "batch images of one size")
        out = {"pixel_values": np.stack(arrays)}
        return out if y is None else (out, np.asarray(y))


__all__ = ["VitMatteImageProcessor"]

"""ImageGPT's image processor, equal to Transformers' ``ImageGPTImageProcessor`` (PIL backend):
resize (bilinear by default, ``size``), rescale to [0, 1], normalise to [-1, 1] (mean/std 0.5),
then with ``do_color_quantize`` replace each pixel by the index of its nearest color cluster
(squared Euclidean distance to the checkpoint's ``clusters``, (n_clusters, 3)); the ids are
flattened in raster order. ``processor(images)`` -> ``{"input_ids": (batch, height * width)}``
(or ``{"pixel_values"}``, channels_last, without quantization)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from keras_models.errors import ConfigError
from keras_models.preprocessing.image import CONFIG_NAME, ImageProcessor


def color_quantize(pixels, clusters):
    """(..., 3) values -> (...) index of the nearest cluster (a2 - 2ab + b2, as Transformers)."""
    x = pixels.reshape(-1, 3)
    d = np.sum(np.square(x), axis=1)[:, None] - 2 * np.matmul(x, clusters.T) + np.sum(np.square(clusters), axis=1)[None]
    return np.argmin(d, axis=1).reshape(pixels.shape[:-1])


class ImageGPTImageProcessor(ImageProcessor):
    def __init__(self, clusters=None, do_color_quantize=True, size=None, **kwargs):
        kwargs.setdefault("resample", 2)
        super().__init__(size=size if size is not None else {"height": 256, "width": 256}, **kwargs)
        self.image_processor_type = "ImageGPTImageProcessor"
        self.do_color_quantize = bool(do_color_quantize)
        self.clusters = None if clusters is None else np.asarray(clusters, dtype=np.float64)
        if self.clusters is not None and (self.clusters.ndim != 2 or self.clusters.shape[1] != 3):
            raise ConfigError(f"{CONFIG_NAME}: clusters must be a (n_clusters, 3) list, got shape {self.clusters.shape}")
        if self.do_color_quantize and self.clusters is None:
            raise ConfigError(f"{CONFIG_NAME}: do_color_quantize is set but clusters are missing")

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        kw = {k: config[k] for k in ("do_resize", "resample", "do_rescale", "rescale_factor", "do_normalize",
                                     "image_mean", "image_std", "do_convert_rgb", "size") if config.get(k) is not None}
        return cls(clusters=config.get("clusters"), do_color_quantize=config.get("do_color_quantize", True), **kw)

    @classmethod
    def from_preset(cls, preset):
        from keras_models.presets.config import read_json
        from keras_models.presets.resolve import resolve_preset

        return cls.from_config(read_json(Path(resolve_preset(preset)) / CONFIG_NAME))

    @classmethod
    def from_preset_if_present(cls, folder):
        return cls.from_preset(folder) if (Path(folder) / CONFIG_NAME).is_file() else None

    def get_config(self):
        c = super().get_config()
        c.pop("resize_rule", None)
        c.update(image_processor_type="ImageGPTImageProcessor", do_color_quantize=self.do_color_quantize,
                 clusters=None if self.clusters is None else self.clusters.tolist())
        return c

    def save_pretrained(self, folder):
        Path(folder, CONFIG_NAME).write_text(json.dumps(self.get_config(), indent=2, sort_keys=True) + "\n")

    def __call__(self, images, y=None, training=False):
        out = super().__call__(images, training=training)
        if self.do_color_quantize:
            pixels = out["pixel_values"]
            out = {"input_ids": color_quantize(pixels, self.clusters).reshape(len(pixels), -1).astype("int32")}
        return out if y is None else (out, np.asarray(y))


__all__ = ["ImageGPTImageProcessor", "color_quantize"]

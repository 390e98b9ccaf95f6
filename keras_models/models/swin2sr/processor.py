"""Swin2SR's image processor, equal to Transformers' ``Swin2SRImageProcessor`` (PIL backend): no
resize and no normalisation; rescale (1/255), then pad the bottom and right with numpy's
``symmetric`` mode to the next multiple of ``size_divisor`` (``pad_size`` in older configs) --
always by at least one pixel, as Transformers does (a side that is already a multiple grows by a
whole ``size_divisor``). Output ``{"pixel_values": (batch, H, W, C)}``, channels_last."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from keras_models.errors import ConfigError
from keras_models.preprocessing.image import CONFIG_NAME, ImageProcessor


class Swin2SRImageProcessor(ImageProcessor):
    def __init__(self, do_rescale=True, rescale_factor=1 / 255, do_pad=True, size_divisor=8, **kwargs):
        if isinstance(size_divisor, bool) or not isinstance(size_divisor, int) or size_divisor <= 0:
            raise ConfigError(f"{CONFIG_NAME}: size_divisor must be a positive integer, got {size_divisor!r}")
        super().__init__(do_resize=False, do_normalize=False, do_rescale=do_rescale, rescale_factor=rescale_factor,
                         **kwargs)
        self.image_processor_type = "Swin2SRImageProcessor"
        self.do_pad, self.size_divisor = bool(do_pad), size_divisor

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        divisor = config.get("size_divisor", config.get("pad_size"))
        kw = {k: config[k] for k in ("do_rescale", "rescale_factor", "do_pad", "do_convert_rgb") if
              config.get(k) is not None}
        return cls(size_divisor=8 if divisor is None else divisor, **kw)

    @classmethod
    def from_preset(cls, preset):
        from keras_models.presets.config import read_json
        from keras_models.presets.resolve import resolve_preset

        return cls.from_config(read_json(Path(resolve_preset(preset)) / CONFIG_NAME))

    @property
    def output_size(self):
        return None

    def get_config(self):
        return {"image_processor_type": "Swin2SRImageProcessor", "do_rescale": self.do_rescale,
                "rescale_factor": self.rescale_factor, "do_pad": self.do_pad, "size_divisor": self.size_divisor}

    def save_pretrained(self, folder):
        Path(folder, CONFIG_NAME).write_text(json.dumps(self.get_config(), indent=2, sort_keys=True) + "\n")

    def process_one(self, image, training=False):
        x = super().process_one(image, training=training)
        if self.do_pad:
            d = self.size_divisor
            h, w = x.shape[:2]
            x = np.pad(x, ((0, (h // d + 1) * d - h), (0, (w // d + 1) * d - w), (0, 0)), mode="symmetric")
        return np.ascontiguousarray(x, dtype=np.float32)


__all__ = ["Swin2SRImageProcessor"]

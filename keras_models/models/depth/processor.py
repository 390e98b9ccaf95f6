"""Image processors of the depth families, equal to Transformers' (PIL backend):

* ``DPTImageProcessor`` (DPT, Depth Anything): resize to ``size`` (bicubic by default), or with
  ``keep_aspect_ratio`` scale both sides by the factor closer to 1, each side rounded to a
  multiple of ``ensure_multiple_of`` (down when rounding up would pass the target); then
  rescale, normalise and, with ``do_pad``, zero-pad each side to a multiple of ``size_divisor``
  (split as evenly as possible, the extra pixel after).
* ``GLPNImageProcessor``: resize each side down to a multiple of ``size_divisor`` (bilinear),
  rescale; no normalisation unless asked.

Output: ``{"pixel_values": (batch, height, width, channels)}``, channels_last.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from keras_models.preprocessing.image import _BASE, CONFIG_NAME, ImageProcessor

_DEPTH_TYPES = {
    "DPTImageProcessor": dict(resample=3, size={"height": 384, "width": 384}),
    "GLPNImageProcessor": dict(resample=2, do_normalize=False, size={"height": 384, "width": 384}),
}
_EXTRA = dict(keep_aspect_ratio=False, ensure_multiple_of=1, size_divisor=None, do_pad=False)


def _kind(name):
    name = name or ""
    for suffix in ("Pil", "Fast"):
        if name.endswith(suffix):
            name = name[: -len(suffix)]
    return name if name in _DEPTH_TYPES else None


def constrained(value, multiple):
    x = round(value / multiple) * multiple
    return math.ceil(value / multiple) * multiple if x < 0 else x


class DepthImageProcessor(ImageProcessor):
    def __init__(self, image_processor_type="DPTImageProcessor", keep_aspect_ratio=False, ensure_multiple_of=1,
                 size_divisor=None, do_pad=False, **kwargs):
        kind = _kind(image_processor_type) or "DPTImageProcessor"
        for k, v in _DEPTH_TYPES[kind].items():
            if kwargs.get(k) is None:
                kwargs[k] = v
        super().__init__(image_processor_type="ViTImageProcessor", **kwargs)
        self.image_processor_type = kind
        self.keep_aspect_ratio, self.ensure_multiple_of = bool(keep_aspect_ratio), int(ensure_multiple_of or 1)
        if kind == "GLPNImageProcessor" and size_divisor is None:
            size_divisor = 32
        self.size_divisor, self.do_pad = size_divisor, bool(do_pad)

    @classmethod
    def from_config(cls, config):
        kw = {k: config[k] for k in tuple(_BASE) + tuple(_EXTRA) + ("size",) if k in config}
        return cls(image_processor_type=config.get("image_processor_type") or "DPTImageProcessor", **kw)

    @classmethod
    def from_preset(cls, preset):
        from keras_models.presets.config import read_json
        from keras_models.presets.resolve import resolve_preset

        return cls.from_config(read_json(Path(resolve_preset(preset)) / CONFIG_NAME))

    @property
    def output_size(self):
        if self.image_processor_type == "GLPNImageProcessor" or self.keep_aspect_ratio or self.do_pad:
            return None
        m = self.ensure_multiple_of
        return constrained(self.size["height"], m), constrained(self.size["width"], m)

    def get_config(self):
        c = super().get_config()
        c.update(keep_aspect_ratio=self.keep_aspect_ratio, ensure_multiple_of=self.ensure_multiple_of,
                 size_divisor=self.size_divisor, do_pad=self.do_pad)
        return c

    def save_pretrained(self, folder):
        c = self.get_config()
        c.pop("resize_rule")
        Path(folder, CONFIG_NAME).write_text(json.dumps(c, indent=2, sort_keys=True) + "\n")

    def resize(self, image):
        h, w = image.shape[:2]
        if self.image_processor_type == "GLPNImageProcessor":
            d = self.size_divisor
            return self.resize_to(image, h // d * d, w // d * d)
        th, tw = self.size["height"], self.size["width"]
        sh, sw = th / h, tw / w
        if self.keep_aspect_ratio:
            if abs(1 - sw) < abs(1 - sh):
                sh = sw
            else:
                sw = sh
        m = self.ensure_multiple_of
        return self.resize_to(image, constrained(sh * h, m), constrained(sw * w, m))

    def process_one(self, image, training=False):
        x = super().process_one(image, training=training)
        if self.image_processor_type == "DPTImageProcessor" and self.do_pad and self.size_divisor:
            d = self.size_divisor
            pads = []
            for n in x.shape[:2]:
                extra = math.ceil(n / d) * d - n
                pads.append((extra // 2, extra - extra // 2))
            x = np.pad(x, pads + [(0, 0)])
        return x


def depth_image_processor(folder):
    """The preset's image processor: DepthImageProcessor for DPT / GLPN configs, else the generic one."""
    from keras_models.presets.config import read_json

    path = Path(folder) / CONFIG_NAME
    if not path.is_file():
        return None
    config = read_json(path)
    if _kind(config.get("image_processor_type")):
        return DepthImageProcessor.from_config(config)
    return ImageProcessor.from_config(config)


__all__ = ["DepthImageProcessor", "depth_image_processor"]

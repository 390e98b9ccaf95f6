"""The DETR family's image processor (``DetrImageProcessor``, ``ConditionalDetrImageProcessor``,
``YolosImageProcessor`` and their ``...Pil`` / ``...Fast`` names in preprocessor_config.json), in
numpy + Pillow, equal to Transformers' PIL backend:

  convert to RGB -> resize (Pillow, ``resample``) -> rescale -> normalise -> pad every image of the
  batch at its bottom / right with zeros to the batch's largest height and width (or ``pad_size``)

Sizes: ``{"shortest_edge", "longest_edge"}`` keeps the aspect ratio (the short side to
shortest_edge unless the long side would pass longest_edge; YOLOS then floors both sides to
multiples of 16), ``{"max_height", "max_width"}`` fits inside them, ``{"height", "width"}`` is exact.
``processor(images)`` returns ``{"pixel_values": (batch, H, W, C) float32, "pixel_mask": (batch,
H, W) int32}`` (1 on the image, 0 on the padding), what the detectors take.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from keras_models.errors import ConfigError
from keras_models.preprocessing.image_io import ImageInputError, load_image, pil

CONFIG_NAME = "preprocessor_config.json"
_IMAGENET_MEAN, _IMAGENET_STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]
TYPES = ("DetrImageProcessor", "ConditionalDetrImageProcessor", "YolosImageProcessor",
         "DeformableDetrImageProcessor", "DetaImageProcessor")


def _base_type(kind):
    for suffix in ("Pil", "Fast"):
        if kind.endswith(suffix) and kind[:-len(suffix)] in TYPES:
            return kind[:-len(suffix)]
    return kind


def aspect_size(height, width, short, long=None, multiple=None):
    """Transformers' shortest/longest-edge rule (``get_size_with_aspect_ratio``; ``multiple``: the
    YOLOS variant, both sides floored to a multiple of it)."""
    raw = None
    if long is not None:
        lo, hi = float(min(height, width)), float(max(height, width))
        if hi / lo * short > long:
            raw = long * lo / hi
            short = int(round(raw))
    same = (height <= width and height == short) or (width <= height and width == short)
    scale = raw if raw is not None else short
    if same and (multiple is None or width >= height):  # YOLOS checks a tall image first
        oh, ow = height, width
    elif width < height:
        oh, ow = int(scale * height / width), short
    else:
        oh, ow = short, int(scale * width / height)
    if multiple is not None:
        oh, ow = oh - oh % multiple, ow - ow % multiple
    return oh, ow


def fit_size(height, width, max_height, max_width):
    """``get_image_size_for_max_height_width``: the largest aspect-preserving size inside the box."""
    scale = min(max_height / height, max_width / width)
    return int(height * scale), int(width * scale)


class DetrImageProcessor:
    def __init__(self, size=None, resample=2, do_resize=True, do_rescale=True, rescale_factor=1 / 255,
                 do_normalize=True, image_mean=None, image_std=None, do_pad=True, pad_size=None,
                 image_processor_type="DetrImageProcessor"):
        size = {"shortest_edge": 800, "longest_edge": 1333} if size is None else dict(size)
        if not ({"shortest_edge"} <= set(size) or {"height", "width"} <= set(size)
                or {"max_height", "max_width"} <= set(size)):
            raise ConfigError(f"{CONFIG_NAME}: size={size!r} needs shortest_edge (+ longest_edge), height + width "
                              "or max_height + max_width")
        self.size, self.resample, self.do_resize = size, resample, do_resize
        self.do_rescale, self.rescale_factor, self.do_normalize = do_rescale, rescale_factor, do_normalize
        self.image_mean = list(image_mean if image_mean is not None else _IMAGENET_MEAN)
        self.image_std = list(image_std if image_std is not None else _IMAGENET_STD)
        self.do_pad, self.pad_size = do_pad, pad_size
        self.image_processor_type = _base_type(image_processor_type)

    # --- config -------------------------------------------------------------------------------
    _KEYS = ("size", "resample", "do_resize", "do_rescale", "rescale_factor", "do_normalize", "image_mean",
             "image_std", "do_pad", "pad_size", "image_processor_type")

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        if "pad_and_return_pixel_mask" in config and "do_pad" not in config:
            config["do_pad"] = config["pad_and_return_pixel_mask"]
        size = config.get("size")
        if isinstance(size, int):  # the old form: shortest edge, with max_size as the longest
            config["size"] = {"shortest_edge": size, "longest_edge": config.get("max_size") or 1333}
        return cls(**{k: config[k] for k in cls._KEYS if config.get(k) is not None})

    @classmethod
    def from_preset(cls, preset):
        from keras_models.presets.config import read_json
        from keras_models.presets.resolve import resolve_preset

        return cls.from_config(read_json(Path(resolve_preset(preset)) / CONFIG_NAME))

    def get_config(self):
        return {k: getattr(self, k) for k in self._KEYS}

    def save_pretrained(self, folder):
        Path(folder, CONFIG_NAME).write_text(json.dumps(self.get_config(), indent=2, sort_keys=True) + "\n")

    # --- steps --------------------------------------------------------------------------------
    def output_size(self, height, width):
        s = self.size
        if "shortest_edge" in s:
            multiple = 16 if self.image_processor_type == "YolosImageProcessor" else None
            return aspect_size(height, width, s["shortest_edge"], s.get("longest_edge"), multiple)
        if "max_height" in s:
            return fit_size(height, width, s["max_height"], s["max_width"])
        return s["height"], s["width"]

    def resize(self, image):
        oh, ow = self.output_size(*image.shape[:2])
        x, back = image, None
        if x.dtype != np.uint8:
            if x.min() >= 0 and x.max() <= 1 and not np.allclose(x, x.astype(int)):
                x, back = x.astype(np.float64) * 255, 1 / 255
            elif x.min() < 0 or x.max() > 255:
                raise ImageInputError(f"image values {x.min()}..{x.max()} are outside [0, 255]")
            x = x.astype(np.uint8)
        out = np.array(pil().fromarray(x).resize((ow, oh), resample=self.resample))
        return out if back is None else (out.astype(np.float64) * back).astype(np.float32)

    def process_one(self, image):
        x = load_image(image)
        if self.do_resize:
            x = self.resize(x)
        if self.do_rescale:
            x = (x.astype(np.float64) * self.rescale_factor).astype(np.float32)
        x = x.astype(np.float32)
        if self.do_normalize:
            x = (x - np.asarray(self.image_mean, np.float32)) / np.asarray(self.image_std, np.float32)
        return x

    variable_shapes = True  # the padded size follows each batch's largest image

    def __call__(self, images, y=None):
        if y is not None:
            return self(images), np.asarray(y) if not isinstance(y, (list, tuple)) else y
        if isinstance(images, np.ndarray) and images.ndim == 4:
            images = list(images)
        elif not isinstance(images, (list, tuple)):
            images = [images]
        arrays = [self.process_one(im) for im in images]
        if not self.do_pad:
            if len({a.shape for a in arrays}) > 1:
                raise ImageInputError(f"images were resized to different shapes {sorted({a.shape for a in arrays})}"
                                      " and do_pad is false: batch them one by one")
            return {"pixel_values": np.stack(arrays)}
        if self.pad_size is not None:
            h, w = self.pad_size["height"], self.pad_size["width"]
        else:
            h, w = max(a.shape[0] for a in arrays), max(a.shape[1] for a in arrays)
        pixels = np.zeros((len(arrays), h, w, arrays[0].shape[-1]), np.float32)
        mask = np.zeros((len(arrays), h, w), np.int32)
        for i, a in enumerate(arrays):
            if a.shape[0] > h or a.shape[1] > w:
                raise ImageInputError(f"image {i} is {a.shape[:2]} after resizing, larger than pad_size {(h, w)}")
            pixels[i, :a.shape[0], :a.shape[1]] = a
            mask[i, :a.shape[0], :a.shape[1]] = 1
        return {"pixel_values": pixels, "pixel_mask": mask}


__all__ = ["DetrImageProcessor", "aspect_size", "fit_size"]

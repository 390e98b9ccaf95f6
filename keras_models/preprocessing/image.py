"""Image processor: what a checkpoint's ``preprocessor_config.json`` says, in numpy + Pillow.

Turns file paths, URLs, PIL images or numpy arrays into ``pixel_values`` of shape
(batch, height, width, channels), float32, equal to Transformers' (PIL-backend) image processors
after the layout change. The steps, in Transformers' order:

  convert to RGB -> resize (Pillow, the config's ``resample`` filter, one of the size rules below)
  -> center crop -> rescale -> normalise [-> EfficientNet's ``include_top`` std division]
  [-> flip channel order to BGR (MobileViT)]

Size rules (``resize_rule``), chosen from ``image_processor_type``:
  * ``"size"``: ``{"height", "width"}`` exact, or ``{"shortest_edge"}`` keeping the aspect ratio;
  * ``"shortest_edge_crop_pct"`` (ConvNeXT): for shortest_edge < 384, resize the short side to
    ``int(shortest_edge / crop_pct)`` then center-crop a ``shortest_edge`` square; else warp to a
    square;
  * ``"scale_by_crop_pct"`` (PoolFormer): resize the short side to ``int(size / crop_pct)``;
  * ``"crop_then_resize"`` (Perceiver): first center-crop ``size / crop_size`` of the short side
    (``int(size.height / crop_size.height * min(H, W))`` x the same for the width), then resize to
    ``size``.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from keras_models.errors import ConfigError
from keras_models.preprocessing.image_io import ImageInputError, load_image, pil

CONFIG_NAME = "preprocessor_config.json"
_STD = [0.5, 0.5, 0.5]
_IMAGENET_MEAN, _IMAGENET_STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]
_CLIP_MEAN, _CLIP_STD = [0.48145466, 0.4578275, 0.40821073], [0.26862954, 0.26130258, 0.27577711]

# Class defaults of Transformers' processors (config files omit keys equal to them).
_BASE = dict(do_resize=True, resample=2, do_center_crop=False, do_rescale=True,
             rescale_factor=1 / 255, do_normalize=True, image_mean=_STD, image_std=_STD,
             do_convert_rgb=None, default_to_square=True, crop_size=None,
             resize_rule="size", crop_pct=None, rescale_offset=False, include_top=False,
             do_flip_channel_order=False)
_TYPES = {
    "ViTImageProcessor": dict(size={"height": 224, "width": 224}),
    "DeiTImageProcessor": dict(resample=3, size={"height": 256, "width": 256}, do_center_crop=True,
                               crop_size={"height": 224, "width": 224}),
    "BeitImageProcessor": dict(resample=3, size={"height": 256, "width": 256}, do_center_crop=True,
                               crop_size={"height": 224, "width": 224}),
    "ConvNextImageProcessor": dict(resample=3, size={"shortest_edge": 384}, crop_pct=224 / 256,
                                   default_to_square=False, resize_rule="shortest_edge_crop_pct"),
    "BitImageProcessor": dict(resample=3, size={"shortest_edge": 224}, do_center_crop=True,
                              crop_size={"height": 224, "width": 224}, image_mean=_CLIP_MEAN,
                              image_std=_CLIP_STD, do_convert_rgb=True, default_to_square=False),
    "EfficientNetImageProcessor": dict(resample=3, size={"height": 346, "width": 346},
                                       crop_size={"height": 289, "width": 289}, include_top=True),
    "PoolFormerImageProcessor": dict(resample=3, size={"shortest_edge": 224}, do_center_crop=True,
                                     crop_size={"height": 224, "width": 224}, crop_pct=0.9,
                                     image_mean=_IMAGENET_MEAN, image_std=_IMAGENET_STD,
                                     default_to_square=False, resize_rule="scale_by_crop_pct"),
    "MobileViTImageProcessor": dict(resample=3, size={"shortest_edge": 224}, do_center_crop=True,
                                    crop_size={"height": 256, "width": 256}, do_normalize=False,
                                    default_to_square=False, do_flip_channel_order=True),
    "MobileNetV1ImageProcessor": dict(size={"shortest_edge": 256}, do_center_crop=True,
                                      crop_size={"height": 224, "width": 224}, default_to_square=False),
    "MobileNetV2ImageProcessor": dict(size={"shortest_edge": 256}, do_center_crop=True,
                                      crop_size={"height": 224, "width": 224}, default_to_square=False),
    "SegformerImageProcessor": dict(size={"height": 512, "width": 512}, image_mean=_IMAGENET_MEAN,
                                    image_std=_IMAGENET_STD),
}
_TYPES["PerceiverImageProcessor"] = dict(resample=3, size={"height": 224, "width": 224}, do_center_crop=True,
                                         crop_size={"height": 256, "width": 256}, image_mean=_IMAGENET_MEAN,
                                         image_std=_IMAGENET_STD, resize_rule="crop_then_resize")
_TYPES["DINOv2ImageProcessor"] = _TYPES["BitImageProcessor"]
_TYPES["CLIPImageProcessor"] = _TYPES["BitImageProcessor"]  # the same class defaults
_TYPES["ChineseCLIPImageProcessor"] = _TYPES["BitImageProcessor"]
_TYPES["SiglipImageProcessor"] = dict(resample=3, size={"height": 224, "width": 224})
_TYPES["BlipImageProcessor"] = dict(resample=3, size={"height": 384, "width": 384}, image_mean=_CLIP_MEAN,
                                   image_std=_CLIP_STD, do_convert_rgb=True)
_TYPES["ConvNextImageProcessorFast"] = _TYPES["ConvNextImageProcessor"]
_TYPES["OwlViTImageProcessor"] = dict(resample=3, size={"height": 768, "width": 768}, image_mean=_CLIP_MEAN,
                                     image_std=_CLIP_STD, do_convert_rgb=True)
# LayoutLMv2 / LayoutXLM: resize, BGR, 0..255 (the model normalises; no OCR here: words come with the inputs)
_TYPES["LayoutLMv2ImageProcessor"] = dict(size={"height": 224, "width": 224}, do_rescale=False, do_normalize=False,
                                          do_flip_channel_order=True)
_FIELDS = tuple(_BASE) + ("size", "image_processor_type")


MAX_SIDE = 16384  # the largest image side a config may ask for
_BOOL_KEYS = ("do_resize", "do_center_crop", "do_rescale", "do_normalize", "do_convert_rgb", "default_to_square",
              "rescale_offset", "include_top", "do_flip_channel_order")


def _check_config(kw, kind):
    """Types and ranges of the preprocessor_config.json values this processor reads."""
    def bad(key, expected):
        raise ConfigError(f"{CONFIG_NAME}: {key} must be {expected}, got {kw[key]!r}")

    if not isinstance(kind, str):
        raise ConfigError(f"{CONFIG_NAME}: image_processor_type must be a string, got {kind!r}")
    for key in _BOOL_KEYS:
        if kw.get(key) is not None and not isinstance(kw[key], bool):
            bad(key, "true, false or null")
    for key in ("rescale_factor", "crop_pct"):
        v = kw.get(key)
        if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float)) or not np.isfinite(v)
                              or (key == "crop_pct" and v <= 0)):
            bad(key, "a finite number" + (" > 0" if key == "crop_pct" else ""))
    for key in ("image_mean", "image_std"):
        v = kw.get(key)
        if v is None:
            continue
        values = v if isinstance(v, (list, tuple)) else [v]
        if not values or not all(isinstance(x, (int, float)) and not isinstance(x, bool) and np.isfinite(x)
                                 for x in values):
            bad(key, "a number or a list of finite numbers")
        if key == "image_std" and any(abs(x) < 1e-6 for x in values):
            bad(key, "at least 1e-6 in size")
        kw[key] = list(values) if isinstance(v, (list, tuple)) else [v] * 3
    if kw.get("image_mean") is not None and kw.get("image_std") is not None and len(kw["image_mean"]) != len(kw["image_std"]):
        raise ConfigError(f"{CONFIG_NAME}: image_mean {kw['image_mean']} and image_std {kw['image_std']} "
                          "differ in length")
    if kw.get("resample") is not None and (type(kw["resample"]) is not int or kw["resample"] not in range(6)):
        bad("resample", "a PIL filter number (0-5)")


def _size_dict(size, default_to_square, key="size"):
    """Transformers' size forms (int, [h, w], dict) -> a dict."""
    if size is None:
        return None
    if isinstance(size, bool):
        raise ConfigError(f"{CONFIG_NAME}: invalid {key}={size!r}")
    if isinstance(size, int):
        return {"height": size, "width": size} if default_to_square else {"shortest_edge": size}
    if isinstance(size, int) and not 0 < size <= MAX_SIDE:
        raise ConfigError(f"{CONFIG_NAME}: {key} must be in 1..{MAX_SIDE}, got {size!r}")
    if isinstance(size, (list, tuple)) and len(size) == 2:
        return _size_dict({"height": size[0], "width": size[1]}, default_to_square, key)
    if isinstance(size, dict) and (
        {"height", "width"} <= set(size) or "shortest_edge" in size
    ):
        out = {k: v for k, v in size.items() if v is not None}
        if not ({"height", "width"} <= set(out) or "shortest_edge" in out):
            raise ConfigError(f"{CONFIG_NAME}: {key} needs height and width, or shortest_edge, got {size!r}")
        if not all(isinstance(v, int) and not isinstance(v, bool) and 0 < v <= MAX_SIDE for v in out.values()):
            raise ConfigError(f"{CONFIG_NAME}: {key} values must be integers in 1..{MAX_SIDE}, got {size!r}")
        return out
    raise ConfigError(f"{CONFIG_NAME}: invalid {key}={size!r} (expected an int, [height, width] or a "
                      "dict with height/width or shortest_edge)")


def short_edge_size(height, width, short):
    """(h, w) with the short side ``short`` and the long side scaled and truncated (torchvision)."""
    if width <= height:
        return int(short * height / width), short
    return short, int(short * width / height)


class ImageProcessor:
    """Preprocess images for a vision model. ``processor(images)`` -> {"pixel_values": ...}."""

    def __init__(self, size=None, image_processor_type="ViTImageProcessor", **kwargs):
        base = dict(_BASE)
        base.update(_TYPES.get(image_processor_type, _TYPES["ViTImageProcessor"]))
        unknown = set(kwargs) - set(_BASE)
        if unknown:
            raise TypeError(f"ImageProcessor: unknown arguments {sorted(unknown)}")
        base.update({k: v for k, v in kwargs.items() if v is not None or k == "crop_size"})
        self.image_processor_type = image_processor_type
        for k, v in base.items():
            setattr(self, k, v)
        self.size = _size_dict(size if size is not None else base.get("size"), self.default_to_square)
        self.crop_size = _size_dict(self.crop_size, True, "crop_size")
        if self.do_center_crop and not self.crop_size:
            raise ConfigError(f"{CONFIG_NAME}: do_center_crop is set but crop_size is missing")
        self.augmenter = None

    # --- config -------------------------------------------------------------------------------
    @classmethod
    def from_config(cls, config):
        config = dict(config)
        kind = config.get("image_processor_type") or "ViTImageProcessor"
        if not isinstance(kind, str):
            raise ConfigError(f"{CONFIG_NAME}: image_processor_type must be a string, got {kind!r}")
        kind = kind[:-3] if kind.endswith("Pil") else kind
        kind = kind[:-4] if kind.endswith("Fast") and kind[:-4] in _TYPES else kind
        if kind in ("DonutImageProcessor", "DonutImageProcessorFast") and cls is ImageProcessor:
            from keras_models.preprocessing.donut import DonutImageProcessor

            return DonutImageProcessor.from_config(config)
        if kind in ("Owlv2ImageProcessor", "Owlv2ImageProcessorFast") and cls is ImageProcessor:
            from keras_models.preprocessing.owlv2 import Owlv2ImageProcessor

            return Owlv2ImageProcessor.from_config(config)
        kw = {k: config[k] for k in _BASE if k in config}
        if "size" in config:
            kw["size"] = config["size"]
        _check_config(kw, kind)
        return cls(image_processor_type=kind, **kw)

    @classmethod
    def from_preset(cls, preset):
        from keras_models.presets.config import read_json
        from keras_models.presets.resolve import resolve_preset

        from keras_models.presets.config import read_processor_part

        folder = Path(resolve_preset(preset))
        found = read_processor_part(folder, "image_processor")
        if found is None:  # the error names the expected file
            return cls.from_config(read_json(folder / CONFIG_NAME))
        return cls.from_config(found[0])

    def get_config(self):
        c = {k: getattr(self, k) for k in _FIELDS}
        c["image_mean"], c["image_std"] = list(self.image_mean), list(self.image_std)
        return c

    def save_pretrained(self, folder):
        c = self.get_config()
        c.pop("resize_rule")  # implied by image_processor_type
        Path(folder, CONFIG_NAME).write_text(json.dumps(c, indent=2, sort_keys=True) + "\n")

    @property
    def output_size(self):
        """(height, width) of pixel_values when the output size does not depend on the input."""
        if self.resize_rule == "crop_then_resize":
            return (self.size["height"], self.size["width"]) if self.do_resize else None
        if self.do_center_crop:
            return self.crop_size["height"], self.crop_size["width"]
        if "height" in self.size:
            return self.size["height"], self.size["width"]
        if self.resize_rule == "shortest_edge_crop_pct":
            return self.size["shortest_edge"], self.size["shortest_edge"]
        return None

    # --- steps --------------------------------------------------------------------------------
    def resize_to(self, image, height, width):
        """(H, W, C) -> (height, width, C) with Pillow and the configured filter."""
        if int(height) < 1 or int(width) < 1:
            raise ImageInputError(
                f"resizing a {image.shape[0]}x{image.shape[1]} image with size={self.size}"
                f"{f' and crop_pct={self.crop_pct}' if getattr(self, 'crop_pct', None) else ''} "
                f"(preprocessor_config.json) gives {height}x{width}: nothing to resize to")
        Image = pil()
        x, back = image, None
        if x.dtype != np.uint8:
            if np.allclose(x, x.astype(int)):
                if x.min() < 0 or x.max() > 255:
                    raise ImageInputError(f"image values {x.min()}..{x.max()} are outside [0, 255]")
            elif x.min() >= 0 and x.max() <= 1:
                x, back = (x.astype(np.float64) * 255).astype(np.float32), 1 / 255
            else:
                raise ImageInputError(f"float image values {x.min()}..{x.max()} are outside [0, 1]")
            x = x.astype(np.uint8)
        squeeze = x.shape[-1] == 1
        img = Image.fromarray(x[..., 0] if squeeze else x)
        out = np.array(img.resize((width, height), resample=self.resample))
        out = out[..., None] if out.ndim == 2 else out
        if back is not None:
            out = (out.astype(np.float64) * back).astype(np.float32)
        return out

    def resize(self, image):
        h, w = image.shape[:2]
        s = self.size
        if self.resize_rule == "shortest_edge_crop_pct":
            short = s["shortest_edge"]
            if short < 384:
                image = self.resize_to(image, *short_edge_size(h, w, int(short / self.crop_pct)))
                return center_crop(image, short, short)
            return self.resize_to(image, short, short)
        if self.resize_rule == "scale_by_crop_pct" and self.crop_pct is not None:
            if "shortest_edge" in s:
                return self.resize_to(image, *short_edge_size(h, w, int(s["shortest_edge"] / self.crop_pct)))
            if s["height"] == s["width"]:
                return self.resize_to(image, *short_edge_size(h, w, int(s["height"] / self.crop_pct)))
            return self.resize_to(image, int(s["height"] / self.crop_pct), int(s["width"] / self.crop_pct))
        if "shortest_edge" in s:
            return self.resize_to(image, *short_edge_size(h, w, s["shortest_edge"]))
        return self.resize_to(image, s["height"], s["width"])

    def process_one(self, image, training=False):
        rgb = True if self.do_convert_rgb is None else self.do_convert_rgb
        x = load_image(image, convert_rgb=rgb)
        crop_first = self.resize_rule == "crop_then_resize"
        if crop_first and self.do_center_crop and not (training and self.augmenter is not None):
            if "height" not in self.size:
                raise ConfigError(f"{CONFIG_NAME}: {self.image_processor_type} needs size with height and width, "
                                  f"got {self.size}")
            short = min(x.shape[0], x.shape[1])
            x = center_crop(x, int(self.size["height"] / self.crop_size["height"] * short),
                            int(self.size["width"] / self.crop_size["width"] * short))
        if training and self.augmenter is not None:
            x = self.augmenter(x)
        elif self.do_resize:
            x = self.resize(x)
        if self.do_center_crop and not crop_first and not (training and self.augmenter is not None):
            x = center_crop(x, self.crop_size["height"], self.crop_size["width"])
        if self.do_rescale:
            x = (x.astype(np.float64) * self.rescale_factor).astype(np.float32)
            if self.rescale_offset:
                x -= 1
        x = x.astype(np.float32) if not np.issubdtype(x.dtype, np.floating) else x
        if self.do_normalize:
            mean = np.asarray(self.image_mean, x.dtype)
            std = np.asarray(self.image_std, x.dtype)
            if len(mean) != x.shape[-1] or len(std) != x.shape[-1]:
                raise ImageInputError(f"image has {x.shape[-1]} channels but image_mean has {len(mean)} values "
                                      f"and image_std {len(std)}")
            x = (x - mean) / std
        if self.include_top:
            x = x / np.asarray(self.image_std, x.dtype)
        if self.do_flip_channel_order:
            x = x[..., ::-1]
        return np.ascontiguousarray(x, dtype=np.float32)

    def __call__(self, images, y=None, training=False):
        if isinstance(images, np.ndarray) and images.ndim == 4:
            images = list(images)
        elif not isinstance(images, (list, tuple)):
            images = [images]
        if len(images) == 0:
            raise ImageInputError("images: the batch is empty")
        arrays = [self.process_one(im, training=training) for im in images]
        shapes = {a.shape for a in arrays}
        if len(shapes) > 1:
            raise ImageInputError(
                f"images were preprocessed to different shapes {sorted(shapes)}; this "
                f"{self.image_processor_type} config keeps aspect ratios, so batch images one by one "
                "or use a config with a fixed size or center crop"
            )
        out = {"pixel_values": np.stack(arrays)}
        if y is None:
            return out
        return out, np.asarray(y)


def center_crop(image, height, width):
    """Transformers' center crop on (H, W, C): top-left at ((H-h)//2, (W-w)//2), zero-padded when
    the image is smaller than the crop."""
    h, w = image.shape[:2]
    top, left = (h - height) // 2, (w - width) // 2
    if top >= 0 and left >= 0:
        return image[top:top + height, left:left + width]
    nh, nw = max(height, h), max(width, w)
    canvas = np.zeros((nh, nw) + image.shape[2:], image.dtype)
    tp, lp = -(-(nh - h) // 2), -(-(nw - w) // 2)
    canvas[tp:tp + h, lp:lp + w] = image
    top, left = top + tp, left + lp
    return canvas[max(0, top):min(nh, top + height), max(0, left):min(nw, left + width)]




IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")


def image_folder(folder):
    """A labelled image folder (``folder/<class name>/<image>``) -> (paths, labels, class_names),
    classes in sorted order, for ``fit(paths, labels)``."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ImageInputError(f"image folder not found: {folder}")
    classes = sorted(p.name for p in folder.iterdir() if p.is_dir())
    paths, labels = [], []
    for i, c in enumerate(classes):
        for f in sorted((folder / c).iterdir()):
            if f.suffix.lower() in IMAGE_EXTENSIONS:
                paths.append(str(f))
                labels.append(i)
    if not paths:
        raise ImageInputError(f"{folder}: no images found in class sub-folders")
    return paths, np.asarray(labels, "int32"), classes


__all__ = ["ImageProcessor", "center_crop", "image_folder", "short_edge_size"]

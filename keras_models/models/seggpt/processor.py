"""SegGPT's image processor, equal to Transformers' ``SegGptImageProcessor`` (PIL backend):

* ``images`` and ``prompt_images``: resized to ``size`` (448 x 448, Pillow bicubic), rescaled and
  normalised (ImageNet mean / std);
* ``prompt_masks``: class maps (H, W) are rendered as RGB -- through a palette built for
  ``num_labels`` classes (class 0 black), or the class index repeated over three channels without
  one -- then resized with nearest-neighbour and rescaled / normalised like the images (with
  ``do_convert_rgb`` false the masks are already RGB images);
* :meth:`post_process_semantic_segmentation` takes the model's ``pred_masks`` (batch, 2H, W, 3),
  keeps the lower half (the image's prediction), un-normalises it to 0..255, resizes it (nearest)
  to ``target_sizes`` and maps each pixel to the nearest palette colour (with ``num_labels``) or
  to the mean of its channels.

``processor(images, prompt_images=..., prompt_masks=..., num_labels=...)`` returns numpy arrays
(batch, H, W, 3), channels_last, under Transformers' names.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from keras_models.errors import ConfigError
from keras_models.preprocessing.image import _IMAGENET_MEAN, _IMAGENET_STD, CONFIG_NAME, ImageProcessor, \
    _check_config
from keras_models.preprocessing.image_io import ImageInputError, load_image, pil


def build_palette(num_labels):
    """Transformers' SegGPT palette: (0, 0, 0) for the background, then evenly spaced colours."""
    base = int(num_labels ** (1 / 3)) + 1
    margin = 256 // base
    colours = [(0, 0, 0)]
    for i in range(num_labels):
        colours.append((255 - (i // base**2) * margin, 255 - ((i % base**2) // base) * margin,
                        255 - (i % base) * margin))
    return colours


def _nearest_index(in_size, out_size):
    """PyTorch ``nearest`` source indices (float32 scale, floor, clamped)."""
    scale = np.float32(in_size / out_size)
    return np.minimum(np.floor(np.arange(out_size, dtype=np.float32) * scale).astype(np.int64), in_size - 1)


class SegGptImageProcessor(ImageProcessor):
    def __init__(self, num_labels=None, **kwargs):
        kwargs.setdefault("image_mean", _IMAGENET_MEAN)
        kwargs.setdefault("image_std", _IMAGENET_STD)
        kwargs.setdefault("resample", 3)
        kwargs.setdefault("do_convert_rgb", True)
        kwargs.setdefault("size", {"height": 448, "width": 448})
        super().__init__(image_processor_type="ViTImageProcessor", **kwargs)
        if "height" not in self.size:
            raise ConfigError(f"{CONFIG_NAME}: size must be {{'height', 'width'}} for SegGPT, got {self.size!r}")
        self.image_processor_type = "SegGptImageProcessor"
        if num_labels is not None and (isinstance(num_labels, bool) or not isinstance(num_labels, int)
                                       or num_labels <= 0):
            raise ConfigError(f"{CONFIG_NAME}: num_labels must be a positive integer or null, got {num_labels!r}")
        self.num_labels = num_labels

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        keys = ("do_resize", "resample", "do_rescale", "rescale_factor", "do_normalize", "image_mean", "image_std",
                "do_convert_rgb")
        kw = {k: config[k] for k in keys if config.get(k) is not None}
        _check_config(kw, "SegGptImageProcessor")
        if config.get("size") is not None:
            kw["size"] = config["size"]
        return cls(num_labels=config.get("num_labels"), **kw)

    @classmethod
    def from_preset(cls, preset):
        from keras_models.presets.config import read_json
        from keras_models.presets.resolve import resolve_preset

        return cls.from_config(read_json(Path(resolve_preset(preset)) / CONFIG_NAME))

    def get_config(self):
        return {"image_processor_type": "SegGptImageProcessor", "do_resize": self.do_resize, "resample": self.resample,
                "size": dict(self.size), "do_rescale": self.do_rescale, "rescale_factor": self.rescale_factor,
                "do_normalize": self.do_normalize, "image_mean": list(self.image_mean),
                "image_std": list(self.image_std), "do_convert_rgb": self.do_convert_rgb,
                "num_labels": self.num_labels}

    def save_pretrained(self, folder):
        Path(folder, CONFIG_NAME).write_text(json.dumps(self.get_config(), indent=2, sort_keys=True) + "\n")

    def _finish(self, x):
        if self.do_rescale:
            x = (x.astype(np.float64) * self.rescale_factor).astype(np.float32)
        x = x.astype(np.float32)
        if self.do_normalize:
            x = (x - np.asarray(self.image_mean, np.float32)) / np.asarray(self.image_std, np.float32)
        return np.ascontiguousarray(x, dtype=np.float32)

    def _image(self, image):
        x = load_image(image, convert_rgb=False)
        if self.do_resize:
            x = self.resize_to(x, self.size["height"], self.size["width"])
        return self._finish(x)

    def _mask(self, mask, palette):
        m = np.asarray(mask)
        if self.do_convert_rgb:
            if m.ndim == 3 and m.shape[-1] == 1:
                m = m[..., 0]
            if m.ndim != 2:
                raise ImageInputError(f"prompt_masks: expected (H, W) class maps, got shape {m.shape}")
            if palette is not None:
                if m.min() < 0 or m.max() >= len(palette):
                    raise ImageInputError(f"prompt_masks: class ids {m.min()}..{m.max()} outside the palette of "
                                          f"{len(palette) - 1} labels (num_labels)")
                rgb = np.asarray(palette, np.uint8)[m.astype(np.int64)]
            else:
                rgb = np.repeat(m[..., None], 3, axis=-1)
        else:
            rgb = m
            if rgb.ndim != 3:
                raise ImageInputError(f"prompt_masks: expected (H, W, 3) RGB masks, got shape {rgb.shape}")
        rgb = rgb.astype(np.uint8)
        if self.do_resize:
            h, w = self.size["height"], self.size["width"]
            rgb = np.array(pil().fromarray(rgb).resize((w, h), resample=0))
        return self._finish(rgb)

    def __call__(self, images=None, prompt_images=None, prompt_masks=None, num_labels=None, y=None, training=False):
        if images is None and prompt_images is None and prompt_masks is None:
            raise ImageInputError("SegGptImageProcessor: give images, prompt_images and / or prompt_masks")
        as_list = (lambda v: list(v) if isinstance(v, (list, tuple)) or (isinstance(v, np.ndarray) and v.ndim == 4)
                   else [v])
        num_labels = self.num_labels if num_labels is None else num_labels
        palette = build_palette(num_labels) if num_labels is not None else None
        out = {}
        if images is not None:
            out["pixel_values"] = np.stack([self._image(i) for i in as_list(images)])
        if prompt_images is not None:
            out["prompt_pixel_values"] = np.stack([self._image(i) for i in as_list(prompt_images)])
        if prompt_masks is not None:
            masks = (list(prompt_masks) if isinstance(prompt_masks, (list, tuple)) or (
                isinstance(prompt_masks, np.ndarray) and prompt_masks.ndim == (3 if self.do_convert_rgb else 4))
                else [prompt_masks])
            out["prompt_masks"] = np.stack([self._mask(m, palette) for m in masks])
        return out if y is None else (out, np.asarray(y))

    def post_process_semantic_segmentation(self, pred_masks, target_sizes=None, num_labels=None):
        """Class maps (height, width) per image from ``pred_masks`` (batch, 2H, W, 3)."""
        masks = np.asarray(pred_masks, dtype=np.float32)
        if target_sizes is not None and len(masks) != len(target_sizes):
            raise ImageInputError("post_process_semantic_segmentation: give one target size per image")
        masks = masks[:, masks.shape[1] // 2:]
        masks = masks * np.asarray(self.image_std, np.float32) + np.asarray(self.image_mean, np.float32)
        masks = np.clip(masks * 255, 0, 255)
        palette = np.asarray(build_palette(num_labels), np.float32) if num_labels is not None else None
        out = []
        for i, m in enumerate(masks):
            if target_sizes is not None:
                th, tw = target_sizes[i]
                m = m[_nearest_index(m.shape[0], th)][:, _nearest_index(m.shape[1], tw)]
            if palette is not None:
                dist = ((m[:, :, None, :] - palette[None, None]) ** 2).sum(-1)
                out.append(dist.argmin(-1))
            else:
                out.append(m.mean(-1).astype(np.int32))
        return out


__all__ = ["SegGptImageProcessor", "build_palette"]

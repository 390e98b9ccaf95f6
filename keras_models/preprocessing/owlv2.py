"""OWLv2's image processor (Transformers 5's ``Owlv2ImageProcessor``, the Pillow/scipy backend it
uses without torchvision), in numpy only: rescale to 0-1, pad bottom/right with zeros to a square
(``do_pad``), resize that square to ``size`` the way the original implementation does -- a
Gaussian blur first when shrinking (sigma ``(factor - 1) / 2`` per axis, mirrored edges, kernel
radius ``int(4 * sigma + 0.5)``), then linear interpolation at pixel centres with mirrored edges,
clipped to the padded image's value range -- and normalise with CLIP's mean and std.

As in Transformers 5's Pillow backend, ``resample`` only switches the anti-aliasing blur
(``resample=0``: none); the interpolation is always linear. Detection boxes of a padded image are
relative to the square: ``Owlv2ZeroShotObjectDetector.post_process_object_detection`` scales them
by the longer side of each target size.
"""

from __future__ import annotations

import numpy as np

from keras_models.errors import ConfigError
from keras_models.preprocessing.image import _CLIP_MEAN, _CLIP_STD, ImageProcessor
from keras_models.preprocessing.image_io import load_image

CONFIG_NAME = "preprocessor_config.json"


def _gaussian_1d(x, sigma, axis):
    """scipy.ndimage's 1-D Gaussian (truncate=4, mode='mirror') along ``axis``, in float64."""
    radius = int(4.0 * float(sigma) + 0.5)
    taps = np.arange(-radius, radius + 1, dtype=np.float64)
    kernel = np.exp(-0.5 / (float(sigma) ** 2) * taps ** 2)
    kernel /= kernel.sum()
    n = x.shape[axis]
    # 'mirror': reflected about the edge samples (d c b | a b c d | c b a), periodic beyond
    if n == 1:
        index = np.zeros(n + 2 * radius, dtype=np.int64)
    else:
        period = 2 * (n - 1)
        index = np.mod(np.arange(-radius, n + radius), period)
        index = np.where(index >= n, period - index, index)
    padded = np.take(x.astype(np.float64), index, axis=axis)
    out = np.zeros(x.shape, np.float64)
    for k, weight in enumerate(kernel):
        out += weight * np.take(padded, np.arange(k, k + n), axis=axis)
    return out


def _linear_axis(x, size, axis):
    """scipy.ndimage.zoom(order=1, grid_mode=True, mode='mirror') along one axis, in float64."""
    n = x.shape[axis]
    if n == size:
        return x.astype(np.float64)
    coord = (np.arange(size, dtype=np.float64) + 0.5) * (n / size) - 0.5
    if n == 1:
        coord = np.zeros_like(coord)
    else:  # mirror the coordinate into [0, n - 1]
        period = 2.0 * (n - 1)
        coord = np.mod(coord, period)
        coord = np.where(coord > n - 1, period - coord, coord)
    low = np.clip(np.floor(coord).astype(np.int64), 0, n - 1)
    high = np.minimum(low + 1, n - 1)
    frac = coord - low
    shape = [1] * x.ndim
    shape[axis] = size
    frac = frac.reshape(shape)
    x = x.astype(np.float64)
    return np.take(x, low, axis=axis) * (1.0 - frac) + np.take(x, high, axis=axis) * frac


def owlv2_resize(image, height, width, anti_aliasing=True):
    """(H, W, C) float32 -> (height, width, C) float32, as Transformers' Owlv2 ``resize``."""
    factors = (image.shape[0] / height, image.shape[1] / width)
    x = image
    if anti_aliasing:
        for axis, factor in enumerate(factors):
            sigma = max(0.0, (factor - 1.0) / 2.0)
            if sigma > 1e-15:  # scipy skips an axis without blur; each pass is stored in the input's dtype
                x = _gaussian_1d(x, sigma, axis).astype(image.dtype)
    out = _linear_axis(_linear_axis(x, height, 0), width, 1).astype(image.dtype)
    return np.clip(out, image.min(), image.max())


class Owlv2ImageProcessor(ImageProcessor):
    """``processor(images)`` -> ``{"pixel_values": (batch, height, width, 3)}`` as Transformers'
    Owlv2ImageProcessor (channels last)."""

    def __init__(self, size=None, do_pad=True, image_processor_type="Owlv2ImageProcessor", **kwargs):
        size = {"height": 960, "width": 960} if size is None else size
        if isinstance(size, int) and not isinstance(size, bool):
            size = {"height": size, "width": size}
        if not isinstance(size, dict) or "height" not in size or "width" not in size:
            raise ConfigError(f"{CONFIG_NAME}: Owlv2ImageProcessor's size needs height and width, got {size!r}")
        if not isinstance(do_pad, bool):
            raise ConfigError(f"{CONFIG_NAME}: do_pad must be true or false, got {do_pad!r}")
        kwargs.setdefault("image_mean", _CLIP_MEAN)
        kwargs.setdefault("image_std", _CLIP_STD)
        kwargs.setdefault("do_convert_rgb", True)
        super().__init__(size=size, image_processor_type=image_processor_type, **kwargs)
        if self.do_center_crop:
            raise ConfigError(f"{CONFIG_NAME}: Owlv2ImageProcessor does not center-crop (do_center_crop is set)")
        self.do_pad = do_pad

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        base = ImageProcessor.from_config(dict(config, image_processor_type="OwlViTImageProcessor",
                                               size=config.get("size") or {"height": 960, "width": 960},
                                               do_center_crop=False, crop_size=None))
        keep = {k: getattr(base, k) for k in ("resample", "do_resize", "do_rescale", "rescale_factor",
                                              "do_normalize", "do_convert_rgb")}
        keep["image_mean"] = config.get("image_mean") or _CLIP_MEAN
        keep["image_std"] = config.get("image_std") or _CLIP_STD
        if config.get("do_center_crop"):
            raise ConfigError(f"{CONFIG_NAME}: Owlv2ImageProcessor does not center-crop (do_center_crop is set)")
        do_pad = True if config.get("do_pad") is None else config["do_pad"]
        return cls(size=config.get("size"), do_pad=do_pad, **keep)

    def get_config(self):
        c = super().get_config()
        c["do_pad"] = self.do_pad
        return c

    @property
    def output_size(self):
        return (self.size["height"], self.size["width"]) if self.do_resize else None

    def process_one(self, image, training=False):
        rgb = True if self.do_convert_rgb is None else self.do_convert_rgb
        x = load_image(image, convert_rgb=rgb)
        if self.do_rescale:
            x = (x.astype(np.float64) * self.rescale_factor).astype(np.float32)
        x = x.astype(np.float32) if not np.issubdtype(x.dtype, np.floating) else x
        if self.do_pad:
            h, w = x.shape[:2]
            side = max(h, w)
            x = np.pad(x, ((0, side - h), (0, side - w), (0, 0)))
        if self.do_resize:
            x = owlv2_resize(x, self.size["height"], self.size["width"], anti_aliasing=bool(self.resample))
        do_resize, do_rescale = self.do_resize, self.do_rescale
        self.do_resize = self.do_rescale = False  # done above, in Transformers' order
        try:
            return super().process_one(x, training=training)
        finally:
            self.do_resize, self.do_rescale = do_resize, do_rescale


__all__ = ["Owlv2ImageProcessor", "owlv2_resize"]

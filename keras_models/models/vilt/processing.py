"""ViLT's image processor (Transformers' ``ViltImageProcessor``): the shorter side resized to
``size["shortest_edge"]`` (the longer one capped at 1333/800 of it, aspect ratio kept, rounded),
both sides floored to a multiple of ``size_divisor``, bicubic; rescaled and normalised (mean = std
= 0.5 by default); then, with ``do_pad``, the batch zero-padded at the bottom / right to its
largest image, with ``pixel_mask`` (batch, height, width), 1 = real pixel. ``pixel_values`` are
channels_last."""

import numpy as np

from keras_models.errors import ConfigError
from keras_models.preprocessing.image import ImageProcessor
from keras_models.preprocessing.image_io import ImageInputError

MAX_LONGER, MAX_SHORTER = 1333, 800


def vilt_output_size(height, width, shorter, size_divisor):
    """Transformers' (height, width) after ViLT's resize."""
    longer = int(MAX_LONGER / MAX_SHORTER * shorter)
    scale = shorter / min(height, width)
    h, w = (shorter, scale * width) if height < width else (scale * height, shorter)
    if max(h, w) > longer:
        scale = longer / max(h, w)
        h, w = scale * h, scale * w
    h, w = int(h + 0.5), int(w + 0.5)
    return h // size_divisor * size_divisor, w // size_divisor * size_divisor


class ViltImageProcessor(ImageProcessor):
    def __init__(self, size=None, size_divisor=32, do_pad=True, image_processor_type="ViltImageProcessor",
                 **kwargs):
        kwargs.setdefault("resample", 3)
        kwargs.setdefault("default_to_square", False)
        super().__init__(size={"shortest_edge": 384} if size is None else size,
                         image_processor_type=image_processor_type, **kwargs)
        if "shortest_edge" not in self.size:
            raise ConfigError(f"preprocessor_config.json: size needs shortest_edge for ViLT, got {self.size!r}")
        if isinstance(size_divisor, bool) or not isinstance(size_divisor, int) or size_divisor < 1:
            raise ConfigError(f"preprocessor_config.json: size_divisor must be a positive integer, got {size_divisor!r}")
        self.size_divisor, self.do_pad = size_divisor, bool(do_pad)

    @classmethod
    def from_config(cls, config):
        proc = super().from_config(dict(config, image_processor_type="ViltImageProcessor"))
        sd = config.get("size_divisor")
        pad = config.get("do_pad")
        return cls(size=proc.size, size_divisor=32 if sd is None else sd, do_pad=True if pad is None else pad,
                   **{k: getattr(proc, k) for k in ("resample", "do_resize", "do_rescale", "rescale_factor",
                                                    "do_normalize", "image_mean", "image_std", "do_convert_rgb")})

    def get_config(self):
        c = super().get_config()
        c.update(size_divisor=self.size_divisor, do_pad=self.do_pad)
        return c

    @property
    def output_size(self):
        return None

    def resize(self, image):
        h, w = image.shape[:2]
        return self.resize_to(image, *vilt_output_size(h, w, self.size["shortest_edge"], self.size_divisor))

    def __call__(self, images, y=None, training=False):
        if not self.do_pad:
            return super().__call__(images, y=y, training=training)
        if isinstance(images, np.ndarray) and images.ndim == 4:
            images = list(images)
        elif not isinstance(images, (list, tuple)):
            images = [images]
        if len(images) == 0:
            raise ImageInputError("images: the batch is empty")
        arrays = [self.process_one(im, training=training) for im in images]
        height, width = max(a.shape[0] for a in arrays), max(a.shape[1] for a in arrays)
        pixels = np.zeros((len(arrays), height, width, arrays[0].shape[-1]), np.float32)
        mask = np.zeros((len(arrays), height, width), np.int64)
        for i, a in enumerate(arrays):
            pixels[i, : a.shape[0], : a.shape[1]] = a
            mask[i, : a.shape[0], : a.shape[1]] = 1
        out = {"pixel_values": pixels, "pixel_mask": mask}
        return out if y is None else (out, np.asarray(y))


__all__ = ["ViltImageProcessor", "vilt_output_size"]

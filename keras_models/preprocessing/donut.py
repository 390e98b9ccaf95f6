"""Donut's image processor (Transformers' ``DonutImageProcessor``), in numpy + Pillow: optionally
rotate the image a quarter turn so its long axis lies along the target's (``do_align_long_axis``),
resize the short side to ``min(size)`` (aspect ratio kept), shrink it to fit ``size`` as a
thumbnail (``do_thumbnail``: the long side fitted, the other truncated), zero-pad it centred to
``size`` (``do_pad``), then rescale and normalise as every image processor. ``size`` is
``{"height", "width"}`` (a list is ``[width, height]``, as Transformers reads it)."""

import numpy as np

from keras_models.errors import ConfigError
from keras_models.preprocessing.image import ImageProcessor, short_edge_size
from keras_models.preprocessing.image_io import ImageInputError, load_image

_FLAGS = {"do_thumbnail": True, "do_align_long_axis": False, "do_pad": True}


class DonutImageProcessor(ImageProcessor):
    def __init__(self, size=None, do_thumbnail=True, do_align_long_axis=False, do_pad=True,
                 image_processor_type="DonutImageProcessor", **kwargs):
        if isinstance(size, (list, tuple)):
            if len(size) != 2:
                raise ConfigError(f"preprocessor_config.json: Donut's size list is [width, height], got {size!r}")
            size = {"height": size[1], "width": size[0]}
        size = {"height": 2560, "width": 1920} if size is None else size
        if not isinstance(size, dict) or "height" not in size or "width" not in size:
            raise ConfigError(f"preprocessor_config.json: Donut's size needs height and width, got {size!r}")
        super().__init__(size=size, image_processor_type=image_processor_type, **kwargs)
        for key, value in (("do_thumbnail", do_thumbnail), ("do_align_long_axis", do_align_long_axis),
                           ("do_pad", do_pad)):
            if not isinstance(value, bool):
                raise ConfigError(f"preprocessor_config.json: {key} must be true or false, got {value!r}")
            setattr(self, key, value)

    @classmethod
    def from_config(cls, config):
        proc = ImageProcessor.from_config(dict(config, image_processor_type="ViTImageProcessor",
                                               size=config.get("size") or {"height": 2560, "width": 1920}))
        flags = {k: (v if config.get(k) is None else config[k]) for k, v in _FLAGS.items()}
        return cls(size=config.get("size"), **flags,
                   **{k: getattr(proc, k) for k in ("resample", "do_resize", "do_rescale", "rescale_factor",
                                                    "do_normalize", "image_mean", "image_std", "do_convert_rgb",
                                                    "do_center_crop", "crop_size")})

    def get_config(self):
        c = super().get_config()
        c.update({k: getattr(self, k) for k in _FLAGS})
        return c

    @property
    def output_size(self):
        return (self.size["height"], self.size["width"]) if self.do_pad else None

    def donut_geometry(self, x):
        """Align, resize, thumbnail and pad one (height, width, channels) image."""
        out_h, out_w = self.size["height"], self.size["width"]
        h, w = x.shape[:2]
        if self.do_align_long_axis and ((out_w < out_h and w > h) or (out_w > out_h and w < h)):
            x = np.ascontiguousarray(np.rot90(x, 3, axes=(0, 1)))
        if self.do_resize:
            x = self.resize_to(x, *short_edge_size(x.shape[0], x.shape[1], min(out_h, out_w)))
        if self.do_thumbnail:
            h, w = x.shape[:2]
            th, tw = min(h, out_h), min(w, out_w)
            if (th, tw) != (h, w):
                if h > w:
                    tw = int(w * th / h)
                elif w > h:
                    th = int(h * tw / w)
                x = self.resize_to(x, th, tw)
        if self.do_pad:
            h, w = x.shape[:2]
            if h > out_h or w > out_w:
                raise ImageInputError(f"Donut's image processor pads images to {out_h}x{out_w}, but this one is "
                                      f"{h}x{w} after resizing (do_thumbnail is off)")
            top, left = (out_h - h) // 2, (out_w - w) // 2
            x = np.pad(x, ((top, out_h - h - top), (left, out_w - w - left), (0, 0)))
        return x

    def process_one(self, image, training=False):
        rgb = True if self.do_convert_rgb is None else self.do_convert_rgb
        x = self.donut_geometry(load_image(image, convert_rgb=rgb))
        do_resize, self.do_resize = self.do_resize, False  # the geometry is done
        try:
            return super().process_one(x, training=training)
        finally:
            self.do_resize = do_resize


__all__ = ["DonutImageProcessor"]

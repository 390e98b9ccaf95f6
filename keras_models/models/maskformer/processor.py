"""MaskFormer's and Mask2Former's image processors (``MaskFormerImageProcessor``,
``Mask2FormerImageProcessor`` and their ``...Pil`` / ``...Fast`` names), equal to Transformers' PIL
backend on images: DETR's resize (shortest / longest edge, aspect kept) whose height and width are
then rounded UP to a multiple of ``size_divisor`` (32), rescale, normalise, pad to the batch's
largest image + ``pixel_mask`` (keras_models.models.detr.processor). Segmentation-map inputs
(training labels) are not implemented; ``ignore_index`` / ``do_reduce_labels`` / ``num_labels``
are kept for the round trip.
"""

import math

from keras_models.errors import ConfigError
from keras_models.models.detr.processor import CONFIG_NAME, DetrImageProcessor

TYPES = ("MaskFormerImageProcessor", "Mask2FormerImageProcessor")


def base_type(kind):
    for suffix in ("Pil", "Fast"):
        if kind.endswith(suffix) and kind[:-len(suffix)] in TYPES:
            return kind[:-len(suffix)]
    return kind


class MaskFormerImageProcessor(DetrImageProcessor):
    _KEYS = DetrImageProcessor._KEYS + ("size_divisor", "ignore_index", "do_reduce_labels", "num_labels")

    def __init__(self, size_divisor=32, ignore_index=None, do_reduce_labels=False, num_labels=None,
                 image_processor_type="MaskFormerImageProcessor", **kwargs):
        kind = base_type(str(image_processor_type))
        if kind not in TYPES:
            raise ConfigError(f"{CONFIG_NAME}: image_processor_type {image_processor_type!r} is not one of {TYPES}")
        if isinstance(size_divisor, bool) or not isinstance(size_divisor, int) or size_divisor < 0:
            raise ConfigError(f"{CONFIG_NAME}: size_divisor must be an integer >= 0, got {size_divisor!r}")
        super().__init__(image_processor_type="DetrImageProcessor", **kwargs)
        self.image_processor_type = kind
        self.size_divisor, self.ignore_index = size_divisor, ignore_index
        self.do_reduce_labels, self.num_labels = do_reduce_labels, num_labels

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        size, max_size = config.get("size"), config.pop("max_size", None)
        if isinstance(size, int):
            config["size"] = {"shortest_edge": size, "longest_edge": max_size or 1333}
        elif size is None and max_size is not None:
            config["size"] = {"shortest_edge": 800, "longest_edge": max_size}
        return cls(**{k: config[k] for k in cls._KEYS if config.get(k) is not None})

    def output_size(self, height, width):
        oh, ow = super().output_size(height, width)
        d = self.size_divisor
        if d:
            oh, ow = int(math.ceil(oh / d) * d), int(math.ceil(ow / d) * d)
        return oh, ow


__all__ = ["MaskFormerImageProcessor", "TYPES"]

"""BridgeTower's image processor (Transformers' ``BridgeTowerImageProcessor``): ViLT's resize (the
shorter side to ``size["shortest_edge"]``, the longer one capped at 1333/800 of it, both floored to
a multiple of ``size_divisor``, bicubic), then a center crop to a ``crop_size["shortest_edge"]``
square (zero-padded when the image is smaller), rescale, normalise (CLIP's mean and std by
default) and, with ``do_pad``, the batch padded to its largest image with ``pixel_mask``
(batch, height, width), 1 = real pixel. ``pixel_values`` are channels_last."""

from keras_models.errors import ConfigError
from keras_models.models.vilt.processing import ViltImageProcessor
from keras_models.preprocessing.image import ImageProcessor

_CLIP_MEAN, _CLIP_STD = [0.48145466, 0.4578275, 0.40821073], [0.26862954, 0.26130258, 0.27577711]
DEFAULTS = dict(size={"shortest_edge": 288}, crop_size={"shortest_edge": 288}, do_center_crop=True, resample=3,
                image_mean=_CLIP_MEAN, image_std=_CLIP_STD, size_divisor=32, do_pad=True)
_COPIED = ("resample", "do_resize", "do_rescale", "rescale_factor", "do_normalize", "image_mean", "image_std",
           "do_convert_rgb", "do_center_crop")


def _square_crop(crop):
    if isinstance(crop, dict) and "shortest_edge" in crop:
        return {"height": crop["shortest_edge"], "width": crop["shortest_edge"]}
    return crop


class BridgeTowerImageProcessor(ViltImageProcessor):
    def __init__(self, size=None, size_divisor=32, do_pad=True, crop_size=None, do_center_crop=True,
                 image_processor_type="BridgeTowerImageProcessor", **kwargs):
        kwargs.setdefault("image_mean", _CLIP_MEAN)
        kwargs.setdefault("image_std", _CLIP_STD)
        crop = _square_crop(DEFAULTS["crop_size"] if crop_size is None else crop_size)
        super().__init__(size=DEFAULTS["size"] if size is None else size, size_divisor=size_divisor, do_pad=do_pad,
                         image_processor_type=image_processor_type, crop_size=crop, do_center_crop=do_center_crop,
                         **kwargs)
        if self.crop_size and self.crop_size["height"] != self.crop_size["width"]:
            raise ConfigError(f"preprocessor_config.json: BridgeTower crops squares, got crop_size {crop_size!r}")

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        for k, v in DEFAULTS.items():
            if config.get(k) is None:
                config[k] = v
        config["crop_size"] = _square_crop(config["crop_size"])
        proc = ImageProcessor.from_config(dict(config, image_processor_type="ViltImageProcessor"))
        return cls(size=proc.size, size_divisor=config["size_divisor"], do_pad=config["do_pad"],
                   crop_size=proc.crop_size, **{k: getattr(proc, k) for k in _COPIED})

    def get_config(self):
        c = super().get_config()
        c["image_processor_type"] = "BridgeTowerImageProcessor"
        if self.crop_size:
            c["crop_size"] = {"shortest_edge": self.crop_size["height"]}
        return c


__all__ = ["BridgeTowerImageProcessor"]

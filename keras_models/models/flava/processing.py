"""FLAVA's image processor (Transformers' ``FlavaImageProcessor``): ``pixel_values`` only.

Resize to ``size`` (224x224, bicubic), center-crop ``crop_size`` (224x224), rescale, normalise
with CLIP's mean and std; ``pixel_values`` are channels_last. The MIM extras the Transformers class
can add on request (``bool_masked_pos`` from its random masking generator, ``codebook_pixel_values``
for FlavaImageCodebook) are not produced: a config that asks for them by default
(``return_image_mask`` / ``return_codebook_pixels`` true) raises ConfigError."""

from keras_models.errors import ConfigError
from keras_models.preprocessing.image import _BASE, _CLIP_MEAN, _CLIP_STD, ImageProcessor

_DEFAULTS = dict(resample=3, do_center_crop=True, crop_size={"height": 224, "width": 224},
                 image_mean=_CLIP_MEAN, image_std=_CLIP_STD)


class FlavaImageProcessor(ImageProcessor):
    def __init__(self, size=None, image_processor_type="FlavaImageProcessor", **kwargs):
        for k, v in _DEFAULTS.items():
            kwargs.setdefault(k, v)
        super().__init__(size={"height": 224, "width": 224} if size is None else size,
                         image_processor_type=image_processor_type, **kwargs)

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        for key in ("return_image_mask", "return_codebook_pixels"):
            if config.get(key):
                raise ConfigError(f"preprocessor_config.json: {key}={config[key]!r} is not supported "
                                  "(FLAVA's MIM masks and codebook pixels are not produced)")
        ImageProcessor.from_config(dict(config, image_processor_type="ViTImageProcessor"))  # type checks
        return cls(size=config.get("size"), **{k: config[k] for k in _BASE if k in config})


__all__ = ["FlavaImageProcessor"]

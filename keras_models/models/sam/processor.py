"""SAM's image processor, equal to Transformers' ``SamImageProcessor`` (PIL backend) and the
coordinate handling of ``SamProcessor``:

* the image's longest side is resized to ``size["longest_edge"]`` (1024; the other side
  ``int(side * scale + 0.5)``, Pillow bilinear), rescaled, normalised (ImageNet mean / std) and
  zero-padded at the bottom / right to ``pad_size`` (1024 x 1024);
* ``input_points`` (batch, point_batch, points, 2) and ``input_boxes`` (batch, boxes, 4), given
  in the original image's pixel (x, y) coordinates, are scaled to the resized image's;
* :meth:`post_process_masks` upsamples low-resolution masks (bilinear, align_corners=False) to
  ``pad_size``, crops the padding, resizes to the original size and binarises (> threshold).

``processor(images, input_points=..., input_labels=..., input_boxes=...)`` returns numpy arrays:
``pixel_values`` (batch, H, W, 3) channels_last, ``original_sizes`` and ``reshaped_input_sizes``
(batch, 2) as (height, width), and the scaled prompts (float32; labels int64).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from keras_models.errors import ConfigError
from keras_models.layers.vision_embeddings import bilinear_matrix
from keras_models.preprocessing.image import _IMAGENET_MEAN, _IMAGENET_STD, CONFIG_NAME, MAX_SIDE, ImageProcessor, \
    _check_config
from keras_models.preprocessing.image_io import ImageInputError


def _side(value, key):
    if isinstance(value, bool) or not isinstance(value, int) or not 0 < value <= MAX_SIDE:
        raise ConfigError(f"{CONFIG_NAME}: {key} must be an integer in 1..{MAX_SIDE}, got {value!r}")
    return value


def _pad_size(value, key="pad_size"):
    if isinstance(value, int) and not isinstance(value, bool):
        return {"height": _side(value, key), "width": value}
    if not isinstance(value, dict) or not {"height", "width"} <= set(value):
        raise ConfigError(f"{CONFIG_NAME}: {key} must be {{'height', 'width'}}, got {value!r}")
    return {"height": _side(value["height"], key), "width": _side(value["width"], key)}


def preprocess_shape(height, width, longest_edge):
    """(height, width) with the longest side ``longest_edge``, rounded half up (Transformers')."""
    scale = longest_edge * 1.0 / max(height, width)
    return int(height * scale + 0.5), int(width * scale + 0.5)


class SamImageProcessor(ImageProcessor):
    def __init__(self, size=None, pad_size=None, do_pad=True, **kwargs):
        kwargs.setdefault("image_mean", _IMAGENET_MEAN)
        kwargs.setdefault("image_std", _IMAGENET_STD)
        kwargs.setdefault("do_convert_rgb", True)
        size = {"longest_edge": 1024} if size is None else size
        if isinstance(size, int) and not isinstance(size, bool):
            size = {"longest_edge": size}
        if not isinstance(size, dict) or "longest_edge" not in size:
            raise ConfigError(f"{CONFIG_NAME}: size must be {{'longest_edge': int}} for SAM, got {size!r}")
        edge = _side(size["longest_edge"], "size.longest_edge")
        super().__init__(size={"height": edge, "width": edge}, image_processor_type="ViTImageProcessor", **kwargs)
        self.image_processor_type = "SamImageProcessor"
        self.longest_edge = edge
        self.do_pad = bool(do_pad)
        self.pad_size = _pad_size({"height": 1024, "width": 1024} if pad_size is None else pad_size)

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        keys = ("do_resize", "resample", "do_rescale", "rescale_factor", "do_normalize", "image_mean", "image_std",
                "do_convert_rgb")
        kw = {k: config[k] for k in keys if config.get(k) is not None}
        _check_config(kw, "SamImageProcessor")
        if config.get("do_pad") is not None and not isinstance(config["do_pad"], bool):
            raise ConfigError(f"{CONFIG_NAME}: do_pad must be true or false, got {config['do_pad']!r}")
        return cls(size=config.get("size"), pad_size=config.get("pad_size"), do_pad=config.get("do_pad", True), **kw)

    @classmethod
    def from_preset(cls, preset):
        from keras_models.presets.config import read_json
        from keras_models.presets.resolve import resolve_preset

        return cls.from_config(read_json(Path(resolve_preset(preset)) / CONFIG_NAME))

    @property
    def output_size(self):
        return (self.pad_size["height"], self.pad_size["width"]) if self.do_pad else None

    def get_config(self):
        return {"image_processor_type": "SamImageProcessor", "do_resize": self.do_resize, "resample": self.resample,
                "size": {"longest_edge": self.longest_edge}, "do_rescale": self.do_rescale,
                "rescale_factor": self.rescale_factor, "do_normalize": self.do_normalize,
                "image_mean": list(self.image_mean), "image_std": list(self.image_std),
                "do_convert_rgb": self.do_convert_rgb, "do_pad": self.do_pad, "pad_size": dict(self.pad_size)}

    def save_pretrained(self, folder):
        Path(folder, CONFIG_NAME).write_text(json.dumps(self.get_config(), indent=2, sort_keys=True) + "\n")

    def resize(self, image):
        h, w = image.shape[:2]
        return self.resize_to(image, *preprocess_shape(h, w, self.longest_edge))

    def _scale(self, coords, original, boxes=False):
        coords = np.array(coords, dtype=np.float64)
        if boxes:
            coords = coords.reshape(coords.shape[:-1] + (2, 2))
        new_h, new_w = preprocess_shape(original[0], original[1], self.longest_edge)
        coords[..., 0] *= new_w / original[1]
        coords[..., 1] *= new_h / original[0]
        if boxes:
            coords = coords.reshape(coords.shape[:-2] + (4,))
        return coords.astype(np.float32)

    def __call__(self, images, input_points=None, input_labels=None, input_boxes=None, y=None, training=False):
        from keras_models.preprocessing.image_io import load_image

        if isinstance(images, np.ndarray) and images.ndim == 4:
            images = list(images)
        elif not isinstance(images, (list, tuple)):
            images = [images]
        if not images:
            raise ImageInputError("images: the batch is empty")
        images = [load_image(im, convert_rgb=True if self.do_convert_rgb is None else self.do_convert_rgb)
                  for im in images]
        originals = [im.shape[:2] for im in images]
        arrays = [self.process_one(im, training=training) for im in images]
        reshaped = [a.shape[:2] for a in arrays]
        if self.do_pad:
            ph, pw = self.pad_size["height"], self.pad_size["width"]
            for (h, w) in reshaped:
                if h > ph or w > pw:
                    raise ImageInputError(f"an image resized to {h}x{w} does not fit pad_size {ph}x{pw}")
            arrays = [np.pad(a, ((0, ph - a.shape[0]), (0, pw - a.shape[1]), (0, 0))) for a in arrays]
        if len({a.shape for a in arrays}) > 1:
            raise ImageInputError(f"images were preprocessed to different shapes {sorted({a.shape for a in arrays})}")
        out = {"pixel_values": np.stack(arrays), "original_sizes": np.asarray(originals, "int64"),
               "reshaped_input_sizes": np.asarray(reshaped, "int64")}
        for name, value, boxes, ndim in (("input_points", input_points, False, 4), ("input_boxes", input_boxes, True, 3)):
            if value is None:
                continue
            try:
                arr = np.asarray(value, dtype=np.float64)
            except ValueError as e:
                raise ImageInputError(f"{name}: give the same number of prompts for every image ({e})") from e
            if arr.ndim != ndim or arr.shape[0] != len(images) or arr.shape[-1] != (4 if boxes else 2):
                raise ImageInputError(f"{name} must be {'(batch, boxes, 4)' if boxes else '(batch, point_batch, points, 2)'}"
                                      f" for {len(images)} images, got shape {arr.shape}")
            out[name] = np.stack([self._scale(a, o, boxes) for a, o in zip(arr, originals)])
        if input_labels is not None:
            labels = np.asarray(input_labels, dtype=np.int64)
            if "input_points" not in out or labels.shape != out["input_points"].shape[:3]:
                raise ImageInputError(f"input_labels {labels.shape} must match input_points (batch, point_batch, points)")
            out["input_labels"] = labels
        return out if y is None else (out, np.asarray(y))

    def post_process_masks(self, masks, original_sizes, reshaped_input_sizes, mask_threshold=0.0, binarize=True,
                           pad_size=None):
        """Per image: masks (..., h, w) -> (..., original height, original width), bool (or logits
        with ``binarize=False``). ``masks`` is the model's ``pred_masks`` (batch first) or a list."""
        pad = _pad_size(self.pad_size if pad_size is None else pad_size)
        originals = np.asarray(original_sizes).tolist()
        reshaped = np.asarray(reshaped_input_sizes).tolist()
        out = []
        for i, (oh, ow) in enumerate(originals):
            m = np.asarray(masks[i], dtype=np.float32)
            h, w = m.shape[-2:]
            up = np.einsum("Hh,...hw,Ww->...HW", bilinear_matrix(h, pad["height"]).astype(np.float32), m,
                           bilinear_matrix(w, pad["width"]).astype(np.float32))
            up = up[..., : reshaped[i][0], : reshaped[i][1]]
            up = np.einsum("Hh,...hw,Ww->...HW", bilinear_matrix(up.shape[-2], oh).astype(np.float32), up,
                           bilinear_matrix(up.shape[-1], ow).astype(np.float32))
            out.append(up > mask_threshold if binarize else up)
        return out


__all__ = ["SamImageProcessor", "preprocess_shape"]

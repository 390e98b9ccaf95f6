"""Pix2Struct's image processor in numpy (Transformers' ``Pix2StructImageProcessor``).

Per image: RGB (``do_convert_rgb``), then, for VQA checkpoints (``is_vqa``: DePlot, MatCha), the
question rendered as a header above the image (:func:`render_header`), then normalisation by the
image's own mean and standard deviation (population std, floored at 1/sqrt(pixels)), a resize to
the largest patch grid of at most ``max_patches`` patches keeping the aspect ratio (PyTorch's
anti-aliased bilinear resize, written as two matrices), and the patches flattened row by row,
each prefixed by its 1-based row and column index and padded with zero rows to ``max_patches``.
Returns ``{"flattened_patches" (batch, max_patches, 2 + ph * pw * 3), "attention_mask" (batch,
max_patches)}`` (float32; the mask is 1 on real patches).

Rendering needs a TrueType font: Transformers downloads Arial from the hub; here the font is a
path the user gives (``font_path=`` to the constructor or the call, or ``font_bytes=``), since
nothing is downloaded. Without one, a VQA call raises an InputError naming the missing font.
"""

import io
import json
import math
import textwrap
from pathlib import Path

import numpy as np

from keras_models.errors import ConfigError, InputError
from keras_models.preprocessing.image_io import load_image, pil

CONFIG_NAME = "preprocessor_config.json"
KNOWN = {"image_processor_type", "processor_class", "max_patches", "patch_size", "do_normalize", "do_convert_rgb",
         "is_vqa", "image_processor_class", "rescale_factor", "do_rescale"}


def bilinear_aa_matrix(in_size, out_size):
    """(out_size, in_size) matrix of PyTorch's ``interpolate(mode="bilinear", antialias=True,
    align_corners=False)`` along one axis: a triangle filter widened by the scale when downscaling,
    taps outside the image dropped and the weights renormalised."""
    scale = in_size / out_size
    support = max(scale, 1.0)
    inv = 1.0 / max(scale, 1.0)
    m = np.zeros((out_size, in_size), np.float64)
    for i in range(out_size):
        center = (i + 0.5) * scale
        lo = max(int(center - support + 0.5), 0)
        hi = min(int(center + support + 0.5), in_size)
        js = np.arange(lo, hi)
        w = np.maximum(0.0, 1.0 - np.abs((js - center + 0.5) * inv))
        total = w.sum()
        m[i, lo:hi] = w / total if total != 0 else w
    return m


def render_text(text, font, text_size=36, padding=5):
    """The text (wrapped at 80 characters) in black on white, ``padding`` pixels around it."""
    Image = pil()
    from PIL import ImageDraw, ImageFont

    wrapped = "\n".join(textwrap.TextWrapper(width=80).wrap(text=text))
    font = ImageFont.truetype(font, encoding="UTF-8", size=text_size)
    _, _, w, h = ImageDraw.Draw(Image.new("RGB", (1, 1))).textbbox((0, 0), wrapped, font=font)
    img = Image.new("RGB", (w + 2 * padding, h + 2 * padding), "white")
    ImageDraw.Draw(img).text((padding, padding), wrapped, fill="black", font=font)
    return img


def render_header(image, header, font):
    """uint8 (H, W, 3) ``image`` below the rendered ``header``, both scaled to the wider one's width."""
    Image = pil()
    image = np.asarray(image)
    if image.dtype.kind == "f":  # Transformers' PIL conversion: floats in [0, 1] are scaled by 255
        image = image * 255 if image.min() >= 0 and image.max() <= 1 else image
    picture = Image.fromarray(image.astype(np.uint8))
    text = render_text(header, font)
    width = max(text.width, picture.width)
    height = int(picture.height * (width / picture.width))
    text_height = int(text.height * (width / text.width))
    out = Image.new("RGB", (width, height + text_height), "white")
    out.paste(text.resize((width, text_height)), (0, 0))
    out.paste(picture.resize((width, height)), (0, text_height))
    return np.array(out)


class Pix2StructImageProcessor:
    """``processor(images, header_text=None)`` -> ``{"flattened_patches", "attention_mask"}``."""

    def __init__(self, max_patches=2048, patch_size=None, do_normalize=True, do_convert_rgb=True, is_vqa=False,
                 font_path=None, image_processor_type="Pix2StructImageProcessor", **extra):
        patch_size = patch_size or {"height": 16, "width": 16}
        if not (isinstance(patch_size, dict) and all(isinstance(patch_size.get(k), int) and patch_size[k] > 0
                                                     for k in ("height", "width"))):
            raise ConfigError(f"{CONFIG_NAME}: patch_size must be {{'height': int, 'width': int}}, got {patch_size!r}")
        if isinstance(max_patches, bool) or not isinstance(max_patches, int) or max_patches <= 0:
            raise ConfigError(f"{CONFIG_NAME}: max_patches must be a positive integer, got {max_patches!r}")
        for key, value in (("do_normalize", do_normalize), ("do_convert_rgb", do_convert_rgb), ("is_vqa", is_vqa)):
            if not isinstance(value, bool):
                raise ConfigError(f"{CONFIG_NAME}: {key} must be true or false, got {value!r}")
        if extra.get("do_rescale"):
            raise ConfigError(f"{CONFIG_NAME}: do_rescale=true is not used by Pix2Struct's processor")
        self.max_patches, self.patch_size = max_patches, dict(patch_size)
        self.do_normalize, self.do_convert_rgb, self.is_vqa = do_normalize, do_convert_rgb, is_vqa
        self.font_path = font_path
        self.image_processor_type = image_processor_type

    @classmethod
    def from_preset(cls, folder, **overrides):
        path = Path(folder) / CONFIG_NAME
        try:
            config = json.loads(path.read_text())
        except (OSError, ValueError) as e:
            raise ConfigError(f"{path}: cannot read ({e})") from e
        if not isinstance(config, dict):
            raise ConfigError(f"{path}: expected a JSON object")
        config = {k: v for k, v in config.items() if k in KNOWN}
        config.pop("processor_class", None)
        config.pop("image_processor_class", None)
        config.pop("rescale_factor", None)
        config.update(overrides)
        return cls(**config)

    def get_config(self):
        return {"image_processor_type": self.image_processor_type, "max_patches": self.max_patches,
                "patch_size": dict(self.patch_size), "do_normalize": self.do_normalize,
                "do_convert_rgb": self.do_convert_rgb, "is_vqa": self.is_vqa}

    def save_pretrained(self, folder):
        Path(folder).mkdir(parents=True, exist_ok=True)
        (Path(folder) / CONFIG_NAME).write_text(json.dumps(self.get_config(), indent=2))

    # --- steps ------------------------------------------------------------------------------------
    @staticmethod
    def normalize(image):
        image = np.asarray(image, np.float64)
        std = max(float(np.std(image)), 1.0 / math.sqrt(image.size))
        return (image - float(np.mean(image))) / std

    def flatten_patches(self, image, max_patches):
        """(H, W, C) float image -> (max_patches, 2 + ph * pw * C) float32."""
        ph, pw = self.patch_size["height"], self.patch_size["width"]
        h, w, c = image.shape
        scale = math.sqrt(max_patches * (ph / h) * (pw / w))
        rows = max(min(int(scale * h / ph), max_patches), 1)
        cols = max(min(int(scale * w / pw), max_patches), 1)
        mh, mw = bilinear_aa_matrix(h, rows * ph), bilinear_aa_matrix(w, cols * pw)
        img = np.asarray(image, np.float32).astype(np.float64)
        img = np.einsum("ij,jwc->iwc", mh, img)
        img = np.einsum("kw,iwc->ikc", mw, img).astype(np.float32)
        patches = img.reshape(rows, ph, cols, pw, c).transpose(0, 2, 1, 3, 4).reshape(rows * cols, ph * pw * c)
        ids = np.stack(np.meshgrid(np.arange(rows), np.arange(cols), indexing="ij"), -1).reshape(-1, 2) + 1
        out = np.zeros((max_patches, 2 + ph * pw * c), np.float32)
        out[: rows * cols] = np.concatenate([ids.astype(np.float32), patches], axis=1)
        return out

    def _font(self, font_path, font_bytes):
        if font_bytes is not None:
            return io.BytesIO(font_bytes)
        font = font_path or self.font_path
        if font is None:
            raise InputError("Pix2Struct VQA: rendering the question needs a TrueType font, and none is given (Transformers "
                             "downloads Arial.TTF from ybelkada/fonts; pass font_path='.../Arial.TTF' or font_bytes=)")
        if not Path(font).is_file():
            raise InputError(f"Pix2Struct VQA: font_path {str(font)!r} is not a file")
        return str(font)

    def __call__(self, images, header_text=None, max_patches=None, font_path=None, font_bytes=None, **_):
        single = not isinstance(images, (list, tuple))
        images = [images] if single else list(images)
        if not images:
            raise InputError("Pix2StructImageProcessor: no images given")
        max_patches = self.max_patches if max_patches is None else max_patches
        arrays = [load_image(x, convert_rgb=self.do_convert_rgb, what=f"image {i}") for i, x in enumerate(images)]
        if self.is_vqa:
            if header_text is None:
                raise InputError("Pix2Struct VQA: give the question as header_text (text=) to render on the image")
            headers = [header_text] * len(arrays) if isinstance(header_text, str) else list(header_text)
            if len(headers) != len(arrays):
                raise InputError(f"Pix2Struct VQA: {len(headers)} header texts for {len(arrays)} images")
            font = self._font(font_path, font_bytes)
            arrays = [render_header(a, t, font if isinstance(font, str) else io.BytesIO(font.getvalue()))
                      for a, t in zip(arrays, headers)]
        patches = []
        for a in arrays:
            a = self.normalize(a) if self.do_normalize else np.asarray(a, np.float64)
            patches.append(self.flatten_patches(a, max_patches))
        patches = np.stack(patches)
        mask = (patches.sum(axis=-1) != 0).astype(np.float32)
        return {"flattened_patches": patches, "attention_mask": mask}


__all__ = ["Pix2StructImageProcessor", "bilinear_aa_matrix", "render_header", "render_text"]

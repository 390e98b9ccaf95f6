"""Reading images: file paths, ``file://``/``http(s)://`` URLs, PIL images and numpy arrays.

Pillow is imported lazily: only the image path of the library needs it.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from keras_models.errors import KerasModelsError


class ImageInputError(KerasModelsError, ValueError):
    """An image could not be read or has an unsupported type / layout; the message names it."""


def pil():
    try:
        import PIL.Image
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError("Image preprocessing needs Pillow: pip install pillow") from e
    return PIL.Image


def is_pil(x):
    return type(x).__module__.startswith("PIL")


def open_image(source):
    """A path / URL string or ``pathlib.Path`` -> PIL image (fully loaded)."""
    Image = pil()
    text = str(source)
    try:
        if text.startswith(("http://", "https://")):
            import urllib.request

            with urllib.request.urlopen(text, timeout=30) as r:  # noqa: S310 (user-given URL)
                data = r.read()
            img = Image.open(io.BytesIO(data))
        else:
            if text.startswith("file://"):
                text = text[len("file://"):]
            if not Path(text).is_file():
                raise ImageInputError(f"image file not found: {text}")
            img = Image.open(text)
        img.load()
    except ImageInputError:
        raise
    except Exception as e:  # PIL raises UnidentifiedImageError, OSError, ...
        raise ImageInputError(f"cannot read image {text}: {e}") from e
    return img


def pil_to_rgb_array(img):
    """PIL image -> uint8 (H, W, 3); transparency is composited onto white (as Transformers)."""
    Image = pil()
    has_alpha = "A" in img.getbands() or img.info.get("transparency") is not None
    if has_alpha:
        rgba = img.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return np.array(Image.alpha_composite(white, rgba).convert("RGB"))
    return np.array(img.convert("RGB"))


def array_to_hwc(x, what="image"):
    """A numpy image in (H, W), (H, W, C) or (C, H, W) layout, C in 1/3/4 -> (H, W, C)."""
    x = np.asarray(x)
    if x.size == 0:
        raise ImageInputError(f"{what}: empty image (shape {x.shape})")
    if x.dtype.kind not in "biuf":
        raise ImageInputError(f"{what}: expected numeric pixel values, got dtype {x.dtype}")
    if x.dtype.kind == "f" and not np.isfinite(x).all():
        raise ImageInputError(f"{what}: contains NaN or infinite values")
    if x.ndim == 2:
        return x[..., None]
    if x.ndim != 3:
        raise ImageInputError(f"{what}: expected a (height, width[, channels]) array, got shape {x.shape}")
    if x.shape[-1] in (1, 3, 4):
        return x
    if x.shape[0] in (1, 3, 4):
        return np.moveaxis(x, 0, -1)
    raise ImageInputError(f"{what}: cannot find the channel axis of an array of shape {x.shape}")


def array_to_rgb(x):
    """(H, W, C) with C in 1/3/4 -> (H, W, 3) (alpha composited onto white)."""
    c = x.shape[-1]
    if c == 3:
        return x
    if c == 1:
        return np.repeat(x, 3, axis=-1)
    if c == 4:
        if np.issubdtype(x.dtype, np.floating):
            alpha, white = x[..., 3:], 1.0
        else:
            alpha, white = x[..., 3:].astype(np.float32) / 255.0, 255.0
        rgb = x[..., :3] * alpha + white * (1 - alpha)
        return rgb.astype(x.dtype) if not np.issubdtype(x.dtype, np.floating) else rgb
    raise ImageInputError(f"image has {c} channels; expected 1, 3 or 4")


def load_image(x, convert_rgb=True, what="image"):
    """Any supported input -> numpy (H, W, C) (uint8 for files / PIL, the array's dtype otherwise)."""
    if isinstance(x, (str, Path)):
        x = open_image(x)
    if is_pil(x):
        return pil_to_rgb_array(x) if convert_rgb else array_to_hwc(np.array(x), what)
    if hasattr(x, "numpy") and not isinstance(x, np.ndarray):
        x = x.numpy()
    if not isinstance(x, np.ndarray):
        raise ImageInputError(
            f"{what}: unsupported type {type(x).__name__} (expected a path, URL, PIL image or numpy array)"
        )
    x = array_to_hwc(x, what)
    return array_to_rgb(x) if convert_rgb else x

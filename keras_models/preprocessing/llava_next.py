"""LLaVA-NeXT ("any resolution") image processor and processor, in numpy + Pillow.

Equal to Transformers' ``LlavaNextImageProcessor`` (its PIL backend) and ``LlavaNextProcessor``:

* the image is resized, keeping its aspect ratio, into the best of ``image_grid_pinpoints``
  (:func:`select_best_resolution`: the most effective pixels, then the least waste), zero-padded
  (centred) to that resolution and cut into square tiles of ``crop_size`` (row-major); a copy of the
  whole image resized to ``size`` x ``size`` comes first. Every tile then goes through the CLIP
  steps (resize, center crop, rescale, normalise).
* ``pixel_values`` is (images, tiles, height, width, channels), channels_last, an image with fewer
  tiles than the batch's most padded with zero tiles (``do_pad``); ``image_sizes`` is (images, 2),
  each image's original (height, width).
* the processor expands each ``<image>`` to the number of features the model packs for that
  image (:func:`num_image_features`): the base tile's tokens, plus the tile grid's features with
  the padding removed (back to the image's aspect ratio) and one newline feature per row.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from keras_models.errors import ConfigError, InputError
from keras_models.preprocessing.image import CONFIG_NAME, ImageProcessor
from keras_models.preprocessing.image_io import load_image
from keras_models.preprocessing.image_text import PROCESSOR_CONFIG, ImageTextProcessor, _image_list

DEFAULT_PINPOINTS = ((336, 672), (672, 336), (672, 672), (1008, 336), (336, 1008))


def read_pinpoints(value, key="image_grid_pinpoints"):
    """A list of (height, width) pairs of positive ints, as a tuple of tuples."""
    if not isinstance(value, (list, tuple)) or not value:
        raise ConfigError(f"{key} must be a non-empty list of [height, width] pairs, got {value!r}")
    out = []
    for p in value:
        if (not isinstance(p, (list, tuple)) or len(p) != 2
                or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in p)):
            raise ConfigError(f"{key} must be a list of [height, width] pairs of positive ints, got {p!r} in it")
        out.append((int(p[0]), int(p[1])))
    return tuple(out)


def select_best_resolution(size, pinpoints):
    """The (height, width) of ``pinpoints`` that keeps most of an image of ``size`` (h, w) when
    it is scaled into it (aspect ratio kept), ties broken by the least unused area."""
    h, w = int(size[0]), int(size[1])
    best, best_eff, best_waste = None, 0, float("inf")
    for ph, pw in pinpoints:
        scale = min(pw / w, ph / h)
        eff = min(int(w * scale) * int(h * scale), w * h)
        waste = pw * ph - eff
        if eff > best_eff or (eff == best_eff and waste < best_waste):
            best, best_eff, best_waste = (ph, pw), eff, waste
    return best


def patch_output_size(size, target):
    """(height, width) of an image of ``size`` resized into ``target`` with its aspect ratio."""
    h, w = size
    th, tw = target
    sw, sh = tw / w, th / h
    if sw < sh:
        return min(math.ceil(h * sw), th), tw
    return th, min(math.ceil(w * sh), tw)


def unpadded_grid(size, grid_h, grid_w):
    """The (row, column) ranges of a ``grid_h`` x ``grid_w`` feature grid that hold the image
    of original ``size`` (h, w) once the centred padding is removed."""
    h, w = int(size[0]), int(size[1])
    rows, cols = (0, grid_h), (0, grid_w)
    if w / h > grid_w / grid_h:
        new_h = int(round(h * (grid_w / w), 7))
        pad = (grid_h - new_h) // 2
        rows = (pad, grid_h - pad)
    else:
        new_w = int(round(w * (grid_h / h), 7))
        pad = (grid_w - new_w) // 2
        cols = (pad, grid_w - pad)
    return rows, cols


def num_image_features(size, pinpoints, tile, tokens_grid, base_tokens, newline=True):
    """How many features LLaVA-NeXT packs for an image of ``size`` (h, w): ``base_tokens`` for the
    base tile, then the unpadded (``tokens_grid`` per tile side) grid of the best resolution's
    ``tile`` x ``tile`` tiles with a newline feature closing each row."""
    bh, bw = select_best_resolution(size, pinpoints)
    (r0, r1), (c0, c1) = unpadded_grid(size, (bh // tile) * tokens_grid, (bw // tile) * tokens_grid)
    return base_tokens + (r1 - r0) * (c1 - c0 + int(newline))


def pack_index(image_sizes, tiles_given, pinpoints, tile, grid, tokens_per_tile, strategy="default"):
    """How LLaVA-NeXT packs the features of images of ``image_sizes`` (images, 2), as gathers:
    (tile_index, feature_index, counts). ``tile_index``: the flat indices, in pixel_values reshaped
    to (images * ``tiles_given``, ...), of the tiles each image uses (base tile + its grid);
    ``feature_index``: for every packed feature, image after image, its row in
    [the used tiles' features flattened to (tiles * ``tokens_per_tile``, hidden); the newline
    vector]; ``counts``: the number of features of each image. Tiles are ``tile`` pixels square
    with a ``grid`` x ``grid`` token grid."""
    t, g = int(tokens_per_tile), int(grid)
    tile_index, feature_index, counts = [], [], []
    for i, (h, w) in enumerate(np.asarray(image_sizes).reshape(-1, 2).tolist()):
        if h < 1 or w < 1:
            raise InputError(f"image_sizes[{i}] = {[h, w]}: an image has a positive height and width")
        bh, bw = select_best_resolution((h, w), pinpoints)
        nph, npw = bh // tile, bw // tile
        n = nph * npw + 1
        if n > tiles_given:
            raise InputError(f"image_sizes[{i}] = {[h, w]} is tiled into {n} tiles but pixel_values has "
                             f"{tiles_given} per image; use the model's processor")
        first = len(tile_index)
        tile_index.extend(i * tiles_given + k for k in range(n))
        rows = [first * t + np.arange(t)]  # the base tile, every token
        if n > 1:
            if t != g * g:
                raise ConfigError(f"vision_feature_select_strategy={strategy!r} keeps {t} tokens per tile, not a "
                                  f"{g}x{g} grid: the tiles cannot be laid out spatially (use 'default' with a "
                                  "class-token tower)")
            (r0, r1), (c0, c1) = unpadded_grid((h, w), nph * g, npw * g)
            r, c = np.meshgrid(np.arange(r0, r1), np.arange(c0, c1), indexing="ij")
            which = first + 1 + (r // g) * npw + c // g
            grid_rows = which * t + (r % g) * g + c % g
            rows.append(np.concatenate([grid_rows, np.full((r1 - r0, 1), -1)], axis=1).reshape(-1))
        else:
            rows.append(np.asarray([-1]))
        idx = np.concatenate(rows)
        feature_index.append(idx)
        counts.append(len(idx))
    newline = len(tile_index) * t
    feature_index = np.concatenate(feature_index) if feature_index else np.zeros((0,), "int64")
    feature_index = np.where(feature_index < 0, newline, feature_index)
    return np.asarray(tile_index, "int32"), feature_index.astype("int32"), counts


class LlavaNextImageProcessor:
    """``processor(images)`` -> {"pixel_values": (images, tiles, H, W, C), "image_sizes": (images, 2)}."""

    image_processor_type = "LlavaNextImageProcessor"

    def __init__(self, image_grid_pinpoints=DEFAULT_PINPOINTS, do_pad=True, **kwargs):
        # the per-tile steps are the CLIP processor's, with LlavaNextImageProcessor's class defaults
        self.tile_processor = ImageProcessor(image_processor_type="CLIPImageProcessor", **kwargs)
        self.image_grid_pinpoints = read_pinpoints(image_grid_pinpoints)
        self.do_pad = bool(do_pad)
        tp = self.tile_processor
        size = tp.size
        self.base_size = ((size["height"], size["width"]) if "height" in size
                          else (size["shortest_edge"], size["shortest_edge"]))
        self.tile_size = (tp.crop_size["height"] if tp.crop_size else
                          size["height"] if "height" in size else size["shortest_edge"])

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        kind = config.get("image_processor_type") or cls.image_processor_type
        if not str(kind).startswith("LlavaNextImageProcessor"):
            raise ConfigError(f"{CONFIG_NAME}: image_processor_type {kind!r}: LLaVA-NeXT needs a "
                              "LlavaNextImageProcessor")
        kw = {k: config[k] for k in ("do_resize", "resample", "do_center_crop", "crop_size", "do_rescale",
                                     "rescale_factor", "do_normalize", "image_mean", "image_std", "do_convert_rgb",
                                     "size") if k in config}
        try:
            pinpoints = read_pinpoints(config.get("image_grid_pinpoints", DEFAULT_PINPOINTS))
        except ConfigError as e:
            raise ConfigError(f"{CONFIG_NAME}: {e}") from None
        return cls(image_grid_pinpoints=pinpoints, do_pad=config.get("do_pad", True), **kw)

    def get_config(self):
        c = self.tile_processor.get_config()
        c.pop("resize_rule", None)
        c.update(image_processor_type=self.image_processor_type, do_pad=self.do_pad,
                 image_grid_pinpoints=[list(p) for p in self.image_grid_pinpoints])
        return c

    def save_pretrained(self, folder):
        Path(folder, CONFIG_NAME).write_text(json.dumps(self.get_config(), indent=2, sort_keys=True) + "\n")

    def tiles(self, image):
        """The unnormalised tiles of one (H, W, C) image: the base image, then the grid, row-major."""
        tp = self.tile_processor
        h, w = image.shape[:2]
        best = select_best_resolution((h, w), self.image_grid_pinpoints)
        nh, nw = patch_output_size((h, w), best)
        resized = tp.resize_to(image, nh, nw)
        top, left = (best[0] - nh) // 2, (best[1] - nw) // 2
        canvas = np.zeros((best[0], best[1]) + resized.shape[2:], resized.dtype)
        canvas[top:top + nh, left:left + nw] = resized
        t = self.tile_size
        grid = [canvas[i:i + t, j:j + t] for i in range(0, best[0], t) for j in range(0, best[1], t)]
        return [tp.resize_to(image, *self.base_size)] + grid

    def __call__(self, images):
        tp = self.tile_processor
        rgb = True if tp.do_convert_rgb is None else tp.do_convert_rgb
        images = [load_image(im, convert_rgb=rgb) for im in _image_list(images)]
        if not images:
            raise InputError("LlavaNextImageProcessor: images is empty")
        stacks = [np.stack([tp.process_one(t) for t in self.tiles(im)]) for im in images]
        sizes = np.asarray([im.shape[:2] for im in images], "int64")
        if not self.do_pad and len({s.shape for s in stacks}) > 1:
            return {"pixel_values": stacks, "image_sizes": sizes}
        most = max(len(s) for s in stacks)
        pixels = np.zeros((len(stacks), most) + stacks[0].shape[1:], "float32")
        for i, s in enumerate(stacks):
            pixels[i, :len(s)] = s
        return {"pixel_values": pixels, "image_sizes": sizes}


class LlavaNextProcessor(ImageTextProcessor):
    """Transformers' ``LlavaNextProcessor``: each ``<image>`` becomes as many image tokens as the
    model packs for that image's size (in the order of the images)."""

    processor_class = "LlavaNextProcessor"

    @classmethod
    def image_processor_from_config(cls, config):
        return LlavaNextImageProcessor.from_config(config)

    def tokens_for_size(self, height, width):
        """The image tokens of an image of original ``height`` x ``width`` pixels."""
        ip = self.image_processor
        tile = ip.tile_size
        grid = tile // self.patch_size
        base = grid * grid + self.num_additional_image_tokens
        n = num_image_features((height, width), ip.image_grid_pinpoints, tile, grid, base)
        return n - 1 if self.vision_feature_select_strategy == "default" else n

    def expand_placeholders(self, texts, out):
        sizes = out["image_sizes"]
        counts = iter([self.tokens_for_size(int(h), int(w)) for h, w in sizes])
        result = []
        for t in texts:
            parts = t.split(self.image_token)
            pieces = [parts[0]]
            for p in parts[1:]:
                pieces += [self.image_token * next(counts), p]
            result.append("".join(pieces))
        return result


__all__ = ["LlavaNextImageProcessor", "LlavaNextProcessor", "select_best_resolution", "num_image_features",
           "pack_index", "unpadded_grid", "patch_output_size", "read_pinpoints", "DEFAULT_PINPOINTS", "PROCESSOR_CONFIG"]

"""LLaVA-NeXT (``llava_next``): LLaVA with "any resolution" image tiling.

The processor (keras_models/preprocessing/llava_next.py) gives each image as tiles of the vision
tower's size, ``pixel_values`` (images, tiles, H, W, C), plus ``image_sizes`` (images, 2): tile 0
is the whole image scaled down, the others cut the image resized into the best of
``image_grid_pinpoints`` (row-major). The model runs the tower and projector of LLaVA on each real
tile, then packs each image's features as Transformers' ``pack_image_features`` (strategy
"spatial_unpad"): the base tile's features first; then the grid tiles' features laid out spatially
(tiles side by side), cropped back to the image's aspect ratio (the processor's centred padding
removed) and read row by row, each row closed by the learned ``image_newline`` vector.

The packing depends only on ``image_sizes``: it is computed on the host as one gather index into
[every real tile's features; image_newline], so the image features are a single ``take`` and
rows of a batch may hold different numbers of image tokens. Called eagerly, the model computes it
from a concrete ``image_sizes`` (numpy, or an eager tensor), as Transformers does. Compiled calls
(``predict`` / ``fit`` / ``evaluate`` under JAX and TensorFlow, or a user's own ``jax.jit``) see a
traced ``image_sizes``: for them the task's host entry points add ``image_feature_index``
(:meth:`LlavaNextBackbone.feature_index`: per image, its packed features' rows among its own
tiles' features, -2 for the newline, -1 padding), and the graph turns it into the same gather.
"""

from dataclasses import dataclass

import keras
import numpy as np
from keras import ops

from keras_models.errors import ConfigError, InputError
from keras_models.models.llava.backbone import _ALL, LlavaLikeBackbone, LlavaSpec, _ser
from keras_models.models.registry import register_backbone, register_task
from keras_models.presets.weight_map import Rule
from keras_models.preprocessing.llava_next import (DEFAULT_PINPOINTS, pack_index, read_pinpoints,
                                                   select_best_resolution)
from keras_models.spec import hf
from keras_models.generation.mixin import GenerationMixin, backend_to_numpy
from keras_models.tasks.image_text_to_text import ImageTextToText


def _pinpoints(value):
    try:
        return read_pinpoints(value)
    except ConfigError as e:
        raise ValueError(str(e)) from None


@dataclass(frozen=True, kw_only=True)
class LlavaNextSpec(LlavaSpec):
    image_grid_pinpoints: tuple = hf("image_grid_pinpoints", DEFAULT_PINPOINTS, read=_pinpoints,
                                     doc="(height, width) resolutions an image is tiled at")

    def validate(self, source="config.json"):
        super().validate(source)
        size = self.vision_config.get("image_size", 224)
        size = size[0] if isinstance(size, (list, tuple)) else size
        for p in self.image_grid_pinpoints:
            if p[0] % size or p[1] % size:
                raise ConfigError(f"{source}: image_grid_pinpoints holds {list(p)}, not a multiple of the vision "
                                  f"tower's image_size {size}")

    def dummy_inputs(self):
        x = super().dummy_inputs()
        px = x["pixel_values"]
        size = px.shape[1]
        bh, bw = select_best_resolution((size, size), self.image_grid_pinpoints)
        tiles = (bh // size) * (bw // size) + 1  # the base tile and the grid of a square image
        return {**x, "pixel_values": px[:, None].repeat(tiles, axis=1),
                "image_sizes": np.asarray([[size, size]], "int64")}


def _concrete(value, name):
    try:
        return np.asarray(backend_to_numpy(value))
    except Exception as e:  # a symbolic tensor (jit tracing, a functional model)
        raise InputError(f"{name} must be concrete (numpy or an eager tensor): LLaVA-NeXT packs each image's "
                         "features by its size on the host. Inside a compiled function, also pass "
                         "inputs['image_feature_index'] = model.backbone.feature_index(image_sizes, tiles) (predict, "
                         f"fit and evaluate add it themselves), or run the model eagerly ({type(e).__name__})") from None


@_ser
@register_backbone("llava_next")
class LlavaNextBackbone(LlavaLikeBackbone):
    """LLaVA with any-resolution tiling: ``{"input_ids", "attention_mask", "pixel_values"
    (images, tiles, H, W, C), "image_sizes" (images, 2)}`` -> the language model's last hidden
    state."""

    spec_cls = LlavaNextSpec
    hf_architecture = "LlavaNextModel"
    verified_backends = _ALL

    def __init__(self, spec=None, **kwargs):
        super().__init__(spec, **kwargs)
        v = self.vision_tower
        self.tile = v.grid * v.spec.patch_size
        self.pinpoints = self.spec.image_grid_pinpoints
        self.image_newline = None

    def build(self, input_shape=None):
        if self.image_newline is None:
            d = self.language_model.hidden_size
            self.image_newline = self.add_weight(
                name="image_newline", shape=(d,), dtype=self.variable_dtype,
                initializer=keras.initializers.RandomNormal(stddev=d ** -0.5))
        super().build(input_shape)

    # --- packing (host side) ------------------------------------------------------------------
    def packing(self, image_sizes, tiles_given):
        """(tile_index, feature_index, counts) for ``image_sizes`` (images, 2) and ``tiles_given``
        tiles per image in pixel_values (see :func:`~keras_models.preprocessing.llava_next.pack_index`)."""
        return pack_index(image_sizes, tiles_given, self.pinpoints, self.tile, self.vision_tower.grid,
                          self.tokens_per_image, self.spec.vision_feature_select_strategy)

    def feature_index(self, image_sizes, tiles_given):
        """Host side, for compiled calls: (images, most features) int32, row i = image i's packed
        features as rows of its own ``tiles_given`` tiles' features flattened (tile-major), -2 for
        the newline vector, -1 padding. Depends on nothing but the sizes, so it slices with the
        batch like ``pixel_values``."""
        sizes = np.asarray(image_sizes).reshape(-1, 2)
        rows = []
        for size in sizes:
            tile_index, index, _ = self.packing(size[None], int(tiles_given))
            # a single image's tiles are its first len(tile_index) ones, so its rows are unchanged;
            # the newline is the row after them
            rows.append(np.where(index == len(tile_index) * self.tokens_per_image, -2, index))
        width = max((len(r) for r in rows), default=0)
        out = np.full((len(rows), width), -1, "int32")
        for i, r in enumerate(rows):
            out[i, :len(r)] = r
        return out

    def host_inputs(self, inputs):
        """Called by the task on a host input dict before Keras compiles: adds
        ``image_feature_index`` when ``image_sizes`` is concrete (see :meth:`feature_index`)."""
        pixels, sizes = inputs.get("pixel_values"), inputs.get("image_sizes")
        if "image_feature_index" in inputs or pixels is None or sizes is None or len(pixels.shape) != 5:
            return inputs
        try:
            sizes = np.asarray(backend_to_numpy(sizes))
        except Exception:  # symbolic: left to the model's own error
            return inputs
        return {**inputs, "image_feature_index": self.feature_index(sizes, pixels.shape[1])}

    def _packed_from_index(self, pixels, index, training=False):
        """The graph form of the packing (traced sizes): every tile through the tower, then each
        image's rows of ``index`` (see :meth:`feature_index`) made global and compacted, valid
        rows first in image order (what merge_embeddings reads; the tail repeats row 0)."""
        shape = tuple(pixels.shape)
        images, tiles = ops.shape(pixels)[0], shape[1]
        feats = super().image_features(ops.reshape(pixels, (-1,) + shape[2:]), training)
        d = feats.shape[-1]
        flat = ops.reshape(feats, (-1, d))
        table = ops.concatenate([flat, ops.cast(self.image_newline, feats.dtype)[None]], axis=0)
        per = tiles * self.tokens_per_image
        local = ops.cast(index, "int32")
        width = ops.shape(local)[1]
        offset = ops.arange(images, dtype="int32")[:, None] * per
        newline = ops.shape(flat)[0]
        rows = ops.reshape(ops.where(ops.equal(local, -2), newline, local + offset), (-1,))
        valid = ops.reshape(ops.not_equal(local, -1), (-1,))
        total = images * width
        slot = ops.where(valid, ops.cumsum(ops.cast(valid, "int32")) - 1, total)  # padding -> a spare slot
        packed = ops.scatter(slot[:, None], ops.where(valid, rows, 0), (total + 1,))[:total]
        return ops.take(table, packed, axis=0)

    def image_features(self, pixels, image_sizes=None, training=False, feature_index=None):
        """(total features, text hidden): every image's packed features, image after image."""
        if feature_index is not None:
            if len(tuple(pixels.shape)) != 5:
                raise InputError("pixel_values must be (images, tiles, height, width, channels), got shape "
                                 f"{tuple(pixels.shape)}")
            return self._packed_from_index(pixels, feature_index, training)
        if image_sizes is None:
            raise InputError("LLaVA-NeXT: image_sizes is missing (each image's original (height, width), "
                             "given by the model's processor)")
        shape = tuple(pixels.shape)
        if len(shape) != 5:
            raise InputError(f"pixel_values must be (images, tiles, height, width, channels), got shape {shape}")
        sizes = _concrete(image_sizes, "image_sizes")
        if sizes.reshape(-1, 2).shape[0] != shape[0]:
            raise InputError(f"image_sizes has {sizes.reshape(-1, 2).shape[0]} rows but pixel_values "
                             f"{shape[0]} images")
        tile_index, feature_index, _ = self.packing(sizes, shape[1])
        flat = ops.reshape(pixels, (-1,) + shape[2:])
        tiles = ops.take(flat, ops.convert_to_tensor(tile_index), axis=0)
        feats = super().image_features(tiles, training)
        d = feats.shape[-1]
        table = ops.concatenate([ops.reshape(feats, (-1, d)),
                                 ops.cast(self.image_newline, feats.dtype)[None]], axis=0)
        return ops.take(table, ops.convert_to_tensor(feature_index), axis=0)

    def inputs_image_features(self, inputs, training=False):
        pixels = inputs.get("pixel_values")
        if pixels is None:
            return None
        return self.image_features(pixels, inputs.get("image_sizes"), training,
                                   feature_index=inputs.get("image_feature_index"))

    def check_image_inputs(self, inputs, where):
        ids, pixels = inputs.get("input_ids"), inputs.get("pixel_values")
        if not isinstance(ids, np.ndarray) or pixels is None:
            return
        shape = tuple(pixels.shape)
        if len(shape) != 5:
            raise InputError(f"{where}: pixel_values must be (images, tiles, height, width, channels), got shape "
                             f"{shape}")
        sizes = inputs.get("image_sizes")
        if sizes is None:
            raise InputError(f"{where}: image_sizes is missing (each image's original (height, width), given by "
                             "the model's processor)")
        _, _, counts = self.packing(_concrete(sizes, "image_sizes"), shape[1])
        mask = inputs.get("attention_mask")
        mask = np.ones_like(ids) if mask is None else np.asarray(mask)
        found = int(((ids == self.image_token_index) & (mask != 0)).sum())
        if found != sum(counts):
            raise InputError(f"{where}: input_ids hold {found} image tokens (id {self.image_token_index}) but the "
                             f"{shape[0]} image(s) of image_sizes give {counts} features ({sum(counts)}); use the "
                             "model's processor to expand the image placeholders")

    def weight_rules(self):
        return super().weight_rules() + [Rule("image_newline", self.image_newline, base=False,
                                              aliases=("model.image_newline",))]


@_ser
@register_task(LlavaNextBackbone, "ImageTextToText", ("LlavaNextForConditionalGeneration",))
class LlavaNextImageTextToText(ImageTextToText):
    """``generate`` / calls take ``image_sizes`` next to ``pixel_values`` (the processor gives both)."""

    def generate(self, inputs=None, generation_config=None, *, pixel_values=None, image_sizes=None, **kwargs):
        if isinstance(inputs, dict) and ("pixel_values" in inputs or "image_sizes" in inputs):
            inputs = dict(inputs)
            pixel_values = inputs.pop("pixel_values", pixel_values)
            image_sizes = inputs.pop("image_sizes", image_sizes)
        if inputs is None and "input_ids" in kwargs:
            inputs = {k: kwargs.pop(k) for k in ("input_ids", "attention_mask") if k in kwargs}
        if pixel_values is None:
            return GenerationMixin.generate(self, inputs, generation_config, **kwargs)
        ids = np.asarray(backend_to_numpy(inputs["input_ids"] if isinstance(inputs, dict) else inputs))
        ids = ids[None] if ids.ndim == 1 else ids
        mask = inputs.get("attention_mask") if isinstance(inputs, dict) else None
        mask = np.ones_like(ids) if mask is None else np.asarray(backend_to_numpy(mask)).reshape(ids.shape)
        pixels = np.asarray(backend_to_numpy(pixel_values))
        self.backbone.check_image_inputs({"input_ids": ids, "attention_mask": mask, "pixel_values": pixels,
                                          "image_sizes": image_sizes}, "generate")
        self._gen_images = self.backbone.image_features(ops.convert_to_tensor(pixels), image_sizes)
        try:
            return GenerationMixin.generate(self, inputs, generation_config, **kwargs)
        finally:
            self._gen_images = None
            self._gen_extra = None

    @classmethod
    def preprocessor_from_preset(cls, folder, hf, **kw):
        from keras_models.preprocessing.llava_next import LlavaNextProcessor

        return LlavaNextProcessor.from_preset(folder, hf)


__all__ = ["LlavaNextSpec", "LlavaNextBackbone", "LlavaNextImageTextToText"]

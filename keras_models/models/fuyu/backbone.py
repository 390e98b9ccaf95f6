"""Fuyu: a Persimmon decoder whose image-placeholder tokens take linearly projected image patches.

* image patches: ``pixel_values`` of shape (images, patches, patch_size * patch_size *
  num_channels), or (all patches, ...) as ``FuyuProcessor`` (processor.py) and Transformers' give
  them (also under their older name ``image_patches``), already cut and flattened by the processor;
  ``vision_embed_tokens`` (one Dense to the text hidden size) projects each patch, there is no
  vision tower;
* language model: any registered decoder family (``text_config``, Persimmon for Fuyu-8B); the
  projected patches replace the token embeddings at the ``image_token_id`` positions, in row-major
  order over the batch (Transformers' ``masked_scatter``), as LLaVA's image features do, so the
  merge, the forward pass and generation are LLaVA's (``keras_models/models/llava``).

Weight names are those Transformers 5 writes with ``save_pretrained`` (``language_model.model.``,
``language_model.lm_head``, ``vision_embed_tokens``); its in-memory names (``model.language_model.``,
``model.vision_embed_tokens``, ``lm_head``) load too.
"""

from dataclasses import dataclass, replace

import keras
import numpy as np

from keras_models.errors import ConfigError, InputError
from keras_models.layers.vision_embeddings import dense_rules
from keras_models.models.backbone import SpecBackbone
from keras_models.models.llava.backbone import LlavaLikeBackbone
from keras_models.models.registry import register_backbone, register_task
from keras_models.spec import Spec, _tower_config, build_tower, dim, hf, tower
from keras_models.tasks.image_text_to_text import ImageTextToText

_ser = keras.saving.register_keras_serializable(package="keras_models")

# hub Fuyu configs (adept/fuyu-8b) are flat: without ``text_config``, these top-level keys make
# the Persimmon text config (with partial_rotary_factor 0.5 unless given), as Transformers reads them
_FLAT_TEXT_KEYS = ("vocab_size", "max_position_embeddings", "hidden_size", "intermediate_size", "num_hidden_layers",
                   "num_attention_heads", "hidden_act", "initializer_range", "layer_norm_eps", "use_cache",
                   "qk_layernorm", "hidden_dropout", "attention_dropout", "eos_token_id", "rope_scaling",
                   "rope_theta")


@dataclass(frozen=True, kw_only=True)
class FuyuSpec(Spec):
    text_config: dict = tower("text_config", "persimmon", required=False)
    image_size: int = dim("image_size", 300)
    patch_size: int = dim("patch_size", 30)
    num_channels: int = dim("num_channels", 3)
    image_token_index: int = hf(("image_token_id", "image_token_index"), 71011)
    tie_word_embeddings: bool = hf("tie_word_embeddings", False)

    @property
    def patch_dim(self):
        return self.patch_size * self.patch_size * self.num_channels

    @classmethod
    def adjust_from_hf(cls, config, values, source):
        if config.get("text_config") is None:
            flat = {k: config[k] for k in _FLAT_TEXT_KEYS if k in config}
            flat.setdefault("partial_rotary_factor", 0.5)
            values["text_config"] = _tower_config({**flat, "model_type": "persimmon"}, "persimmon",
                                                  f"{source} (top-level text keys)")
        return values

    def validate(self, source="config.json"):
        if self.patch_dim > 2 ** 24:
            raise ConfigError(f"{source}: patch_size={self.patch_size} x num_channels={self.num_channels}: "
                              "a patch of more than 2**24 values")

    def dummy_inputs(self):
        return {"input_ids": np.ones((1, 2), "int32"), "attention_mask": np.ones((1, 2), "int32"),
                "pixel_values": np.zeros((1, 1, self.patch_dim), "float32")}


@_ser
@register_backbone("fuyu")
class FuyuBackbone(SpecBackbone):
    """Returns the language model's last hidden state (batch, seq, text hidden)."""

    spec_cls = FuyuSpec
    hf_architecture = "FuyuModel"
    verified_backends = ("jax", "torch", "tensorflow")
    base_model_prefix = ""
    hf_ignore = ("*position_ids", "*rotary_emb.inv_freq")

    def __init__(self, spec=None, **kwargs):
        super().__init__(spec, **kwargs)
        s = self.spec
        self.language_model = build_tower(s.text_config, "language_model", self.dtype_policy)
        if not hasattr(self.language_model, "call_with_cache"):
            raise ConfigError(f"text_config: model_type {s.text_config.get('model_type')!r} is not a decoder")
        text = self.language_model
        self.vocab_size = text.vocab_size
        self.hidden_size = text.hidden_size
        self.max_position_embeddings = text.options["max_position_embeddings"]
        self.image_token_index = s.image_token_index
        if not 0 <= s.image_token_index < text.vocab_size:  # Transformers embeds the placeholder ids first
            raise ConfigError(f"config.json: image_token_id={s.image_token_index} is outside the text "
                              f"vocabulary (text_config vocab_size {text.vocab_size})")
        self.tie_word_embeddings = bool(s.tie_word_embeddings or text.options["tie_word_embeddings"])
        self.vision_embed_tokens = keras.layers.Dense(text.hidden_size, name="vision_embed_tokens",
                                                      dtype=self.dtype_policy)

    # LLaVA's merge of image features into the token embeddings and its forward pass (the
    # language model on the merged embeddings), shared, not copied
    merge_embeddings = LlavaLikeBackbone.merge_embeddings

    def call(self, inputs, training=False):
        return LlavaLikeBackbone.call(self, patch_inputs(inputs), training=training)

    def inputs_image_features(self, inputs, training=False):
        """The projected patches of a model-input dict (None without ``pixel_values``)."""
        pixels = inputs.get("pixel_values")
        return None if pixels is None else self.image_features(pixels, training)

    def dummy_inputs(self):
        return self.spec.dummy_inputs()

    def build(self, input_shape=None):
        self.language_model.build_from_dummy()
        self.vision_embed_tokens.build((None, None, self.spec.patch_dim))
        self.built = True

    def build_from_dummy(self):
        if not self.built:
            self.build()
        return self

    def image_features(self, pixels, training=False):
        """(images, patches, text hidden): the projected patches of ``pixel_values``."""
        width = pixels.shape[-1]
        if len(pixels.shape) == 2:  # (all patches, values), as the processor gives them
            pixels = keras.ops.expand_dims(pixels, 0)
        if len(pixels.shape) != 3 or (width is not None and width != self.spec.patch_dim):
            raise InputError(f"pixel_values of shape {tuple(pixels.shape)}: this model takes image patches of shape "
                             f"(images, patches, {self.spec.patch_dim}) (patch_size**2 * num_channels)")
        return self.vision_embed_tokens(keras.ops.cast(pixels, self.compute_dtype))

    def check_image_inputs(self, inputs, where):
        """Host-side check: as many image tokens in ``input_ids`` as ``pixel_values`` has patches."""
        ids, pixels = inputs.get("input_ids"), inputs.get("pixel_values")
        if not isinstance(ids, np.ndarray) or pixels is None:
            return
        shape = tuple(pixels.shape)
        shape = (1,) + shape if len(shape) == 2 else shape
        if len(shape) != 3 or shape[-1] != self.spec.patch_dim:
            raise InputError(f"{where}: pixel_values must be image patches (images, patches, {self.spec.patch_dim}) "
                             f"or (all patches, {self.spec.patch_dim}), "
                             f"got shape {shape}")
        mask = inputs.get("attention_mask")
        mask = np.ones_like(ids) if mask is None else np.asarray(mask)
        found = int(((ids == self.image_token_index) & (mask != 0)).sum())
        need = int(shape[0]) * int(shape[1])
        if found != need:
            raise InputError(f"{where}: input_ids hold {found} image tokens (id {self.image_token_index}) but "
                             f"pixel_values has {shape[0]} x {shape[1]} patches ({need})")

    def weight_rules(self):
        def under(rules, new, old):
            return [replace(r, hf=new + r.hf, base=False, aliases=tuple(a + r.hf for a in old)) for r in rules]

        t = self.language_model
        tp = f"{t.base_model_prefix}." if t.base_model_prefix else ""
        return (under(t.weight_rules(), f"language_model.{tp}", ("model.language_model.",))
                + under(dense_rules("vision_embed_tokens", self.vision_embed_tokens, base=False), "",
                        ("model.",)))


@_ser
@register_task(FuyuBackbone, "ImageTextToText", ("FuyuForCausalLM",))
class FuyuImageTextToText(ImageTextToText):
    """Takes the patches as ``pixel_values`` or ``image_patches`` (``FuyuProcessor``'s default name)."""

    @classmethod
    def preprocessor_from_preset(cls, folder, hf, **kw):
        from keras_models.models.fuyu.processor import FuyuProcessor

        return FuyuProcessor.from_preset(folder, hf)

    def call(self, inputs, training=False):
        return super().call(patch_inputs(inputs), training=training)

    def predict(self, x, batch_size=None, **kwargs):
        return super().predict(patch_inputs(x), batch_size=batch_size, **kwargs)

    def generate(self, inputs=None, generation_config=None, *, pixel_values=None, image_patches=None, **kwargs):
        inputs = patch_inputs(inputs)
        return super().generate(inputs, generation_config,
                                pixel_values=image_patches if pixel_values is None else pixel_values, **kwargs)


def patch_inputs(inputs):
    """``image_patches`` (Transformers' older name, FuyuProcessor's default output) as ``pixel_values``."""
    if isinstance(inputs, dict) and "image_patches" in inputs:
        inputs = dict(inputs)
        patches = inputs.pop("image_patches")
        if inputs.get("pixel_values") is not None:
            raise InputError("give the image patches as pixel_values or image_patches, not both")
        inputs["pixel_values"] = patches
    return inputs


__all__ = ["FuyuSpec", "FuyuBackbone", "FuyuImageTextToText"]

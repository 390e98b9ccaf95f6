"""PaliGemma 1 and 2: a SigLIP vision tower, a linear projector and a Gemma / Gemma 2 decoder.

* vision tower: SigLIP's (``vision_config``), its last hidden state (after ``post_layernorm``,
  every patch token); the attention-pooling head, when a checkpoint has one, is unused;
* projector: one ``linear`` (vision hidden -> ``projection_dim``, the text hidden size);
* language model: the shared decoder (``text_config``: Gemma, Gemma 2); the projected features
  replace the token embeddings at the ``image_token_index`` positions *after* Gemma's embedding
  scaling (sqrt(hidden) multiplies the text tokens only: the features are divided by it before
  the decoder scales the merged embeddings, as Transformers 4.x did);
* attention: a prefix-LM. Tokens whose ``token_type_ids`` are 0 (the image tokens, BOS, the
  prompt and its "\\n") attend to each other in both directions; the others (a training suffix,
  generated tokens) are causal. Without ``token_type_ids`` every token is causal (Transformers'
  eager attention; its SDPA path without a padding mask turns bidirectional everywhere, a quirk
  not reproduced). During ``generate`` the prompt's block stays bidirectional in the KV cache
  and each new token is causal.

Weight names: Transformers 5's saved layout (``vision_tower.``, ``multi_modal_projector.linear``,
``language_model.model.``; the head is tied to the token table), its in-memory names
(``model.vision_tower.vision_model.``, ``model.language_model.``, ``lm_head``) and the original
checkpoints' (``vision_tower.vision_model.``) load.
"""

from dataclasses import dataclass

import keras
import numpy as np
from keras import ops

from keras_models.errors import ConfigError, InputError
from keras_models.layers.vision_embeddings import dense_rules
from keras_models.models.backbone import SpecBackbone
from keras_models.models.llava.backbone import LlavaLikeBackbone, LlavaSpec
from keras_models.models.registry import register_backbone, register_task
from keras_models.spec import build_tower, const, hf, tower
from keras_models.tasks.image_text_to_text import ImageTextDecoder, ImageTextToText

_ser = keras.saving.register_keras_serializable(package="keras_models")
_ALL = ("jax", "torch", "tensorflow")


@dataclass(frozen=True, kw_only=True)
class PaliGemmaSpec(LlavaSpec):
    vision_config: dict = tower("vision_config", "siglip_vision_model")
    text_config: dict = tower("text_config", "gemma")
    image_token_index: int = hf(("image_token_index", "image_token_id"), 256000)
    projection_dim: int = hf("projection_dim", 2048, doc="the projector's output width (= the text hidden size)")
    hidden_size: int = hf("hidden_size", 2048, doc="written back for Transformers; the text hidden size rules")
    vocab_size: int = hf("vocab_size", 257152, doc="written back for Transformers; the text vocabulary rules")
    tie_word_embeddings: bool = hf("tie_word_embeddings", True)
    image_seq_length: int = const(0, doc="not a PaliGemma config key: (image_size / patch_size)**2")
    projector_hidden_act: str = const("linear")
    vision_feature_select_strategy: str = const("full")
    vision_feature_layer: int | tuple = const(-1)
    multimodal_projector_bias: bool = const(True)

    def validate(self, source="config.json"):
        text = self.text_config or {}
        width = text.get("hidden_size")
        if width is not None and self.projection_dim != width:
            raise ConfigError(f"{source}: projection_dim={self.projection_dim} must equal text_config's "
                              f"hidden_size={width} (the projected image features are text embeddings)")


class PaliGemmaBackboneBase(LlavaLikeBackbone):
    """Returns the language model's last hidden state (batch, seq, text hidden). Inputs:
    ``input_ids`` (holding the processor's image tokens), ``attention_mask``, ``pixel_values``
    (channels_last) and ``token_type_ids`` (0: the bidirectional prefix)."""

    hf_known_unused = ("*vision_tower.head.*", "*vision_tower.vision_model.head.*")

    def __init__(self, spec=None, **kwargs):
        SpecBackbone.__init__(self, spec, **kwargs)
        s = self.spec
        self.vision_tower = build_tower(s.vision_config, "vision_tower", self.dtype_policy)
        self.language_model = build_tower(s.text_config, "language_model", self.dtype_policy)
        v, text = self.vision_tower, self.language_model
        if not hasattr(v, "blocks") or not hasattr(v, "post_norm"):
            raise ConfigError(f"vision_config: model_type {s.vision_config.get('model_type')!r} is not a "
                              "SigLIP-like vision tower (siglip_vision_model)")
        if not hasattr(text, "call_with_cache"):
            raise ConfigError(f"text_config: model_type {s.text_config.get('model_type')!r} is not a decoder")
        if s.projection_dim != text.hidden_size:
            raise ConfigError(f"projection_dim={s.projection_dim} must equal text_config's hidden_size="
                              f"{text.hidden_size}")
        self.vocab_size = text.vocab_size
        self.hidden_size = text.hidden_size
        self.max_position_embeddings = text.options["max_position_embeddings"]
        self.image_token_index = s.image_token_index
        self.tie_word_embeddings = bool(s.tie_word_embeddings or text.options["tie_word_embeddings"])
        self.embedding_scale = text.options["embedding_scale"]
        if v.head is not None:  # the pooling head: loaded (it is in the checkpoint), never used
            v.head.trainable = False
        self.feature_layers = (-1,)
        self.drop_cls = False
        self.tokens_per_image = v.grid * v.grid + v.num_prefix_tokens
        self.linear = keras.layers.Dense(s.projection_dim, name="linear", dtype=self.dtype_policy)

    def build(self, input_shape=None):
        self.vision_tower.build_from_dummy()
        self.language_model.build_from_dummy()
        self.linear.build((None, None, self.vision_tower.hidden_size))
        self.built = True

    def image_features(self, pixels, training=False):
        """(images, tokens_per_image, text hidden): projected features of ``pixel_values``,
        divided by the decoder's embedding scale (which multiplies the merged embeddings)."""
        v = self.vision_tower
        shape = tuple(pixels.shape)
        size = v.spec.image_size
        if len(shape) != 4 or shape[1] is not None and (shape[1], shape[2]) != (size, size):
            raise InputError(f"pixel_values of shape {shape}: this model's vision tower takes (images, {size}, "
                             f"{size}, channels)")
        x = self.linear(v(ops.cast(pixels, self.compute_dtype), training=training))
        if self.embedding_scale is not None:
            x = x / ops.cast(self.embedding_scale, x.dtype)
        return x

    def embed_hook(self, features, active=True):
        """The decoder's ``embed`` hook: ``features`` at the image-token positions (``active``
        False: plain token embeddings)."""
        return lambda ids, table: self.merge_embeddings(ids, table, features, active)

    def call(self, inputs, training=False):
        from keras_models.layers.decoder_masks import positions_from_mask

        ids = inputs["input_ids"]
        mask = inputs.get("attention_mask")
        if mask is None:
            mask = ops.ones_like(ids)
        pixels = inputs.get("pixel_values")
        types = inputs.get("token_type_ids")
        prefix = None if types is None else ops.cast(ops.equal(types, 0), "int32")
        embed = None if pixels is None else self.embed_hook(self.image_features(pixels, training))
        positions = inputs.get("position_ids")
        positions = positions_from_mask(mask) if positions is None else positions
        return self.language_model._forward(ids, mask, ops.cast(positions, "int32"), training=training, embed=embed,
                                            prefix=prefix)[0]

    def projector_rules(self):
        return dense_rules("linear", self.linear, base=False)


@_ser
@register_backbone("paligemma")
class PaliGemmaBackbone(PaliGemmaBackboneBase):
    spec_cls = PaliGemmaSpec
    hf_architecture = "PaliGemmaModel"
    verified_backends = _ALL


class PaliGemmaDecoder(ImageTextDecoder):
    """The engine's decoder: the image features merged on the prefill, and the prompt's prefix
    block (``extra["prefix"]``, over the buffer slots) bidirectional."""

    def forward(self, ids, cache, index, mask, extra, last_only=False):
        extra = extra or {}
        return self.model.call_with_cache(ids, cache, index, mask, last_only=last_only,
                                          image_features=extra.get("image_features"), prefix=extra.get("prefix"))


@_ser
@register_task(PaliGemmaBackbone, "ImageTextToText", ("PaliGemmaForConditionalGeneration",))
class PaliGemmaImageTextToText(ImageTextToText):
    """PaliGemma's ``ImageTextToText``: inputs as the processor gives them (``input_ids``,
    ``attention_mask``, ``token_type_ids``, ``pixel_values``); ``generate`` keeps the prompt's
    ``token_type_ids == 0`` block bidirectional (the new tokens are causal)."""

    decoder_adapter = PaliGemmaDecoder
    _gen_types = None

    def call_with_cache(self, input_ids, cache, cache_index, attention_mask, last_only=False, image_features=None,
                        prefix=None):
        embed = None
        if image_features is not None:
            first = ops.equal(ops.cast(cache_index, "int32"), 0) if not isinstance(cache_index, int) else cache_index == 0
            embed = self.backbone.embed_hook(image_features, first)
        hidden, cache = self.backbone.language_model.call_with_cache(input_ids, cache, cache_index, attention_mask,
                                                                     embed=embed, prefix=prefix)
        if last_only:
            hidden = hidden[:, -1:, :]
        return self.logits(hidden), cache

    def generate(self, inputs=None, generation_config=None, *, token_type_ids=None, **kwargs):
        """As ImageTextToText's, with ``token_type_ids`` (in ``inputs`` or given apart): the
        prompt tokens of type 0 form the bidirectional prefix. Without them the prompt is causal."""
        if isinstance(inputs, dict) and "token_type_ids" in inputs:
            inputs = dict(inputs)
            token_type_ids = inputs.pop("token_type_ids")
        if isinstance(inputs, dict) and "labels" in inputs:  # the processor's training labels
            inputs = {k: v for k, v in inputs.items() if k != "labels"}
        if token_type_ids is not None:
            from keras_models.generation.mixin import backend_to_numpy

            types = np.asarray(backend_to_numpy(token_type_ids))
            self._gen_types = types[None] if types.ndim == 1 else types
        try:
            return super().generate(inputs, generation_config, **kwargs)
        finally:
            self._gen_types = None

    def _gen_buffers(self, ids, mask, rows_per_prompt, max_length, pad):
        tokens, full_mask = super()._gen_buffers(ids, mask, rows_per_prompt, max_length, pad)
        if self._gen_types is not None:
            if self._gen_types.shape != ids.shape:
                raise InputError(f"generate: token_type_ids has shape {self._gen_types.shape} but input_ids "
                                 f"{ids.shape}")
            prefix = np.zeros(tokens.shape, "int32")
            prefix[:, :ids.shape[1]] = np.repeat(self._gen_types == 0, rows_per_prompt, axis=0)
            self._gen_extra = {**(self._gen_extra or {}), "prefix": ops.convert_to_tensor(prefix)}
        return tokens, full_mask

    @classmethod
    def preprocessor_from_preset(cls, folder, hf, **kw):
        from keras_models.models.paligemma.processor import PaliGemmaProcessor

        return PaliGemmaProcessor.from_preset(folder, hf)


__all__ = ["PaliGemmaSpec", "PaliGemmaBackboneBase", "PaliGemmaBackbone", "PaliGemmaDecoder",
           "PaliGemmaImageTextToText"]

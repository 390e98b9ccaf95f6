"""LLaVA and VipLlava: a vision tower, a multi-modal projector and a language model.

* vision tower: any registered vision backbone with CLIP's layout (CLIP or SigLIP vision, from
  ``vision_config``); its hidden states after the embeddings (index 0) and after each block are
  read at ``vision_feature_layer`` (an index, or a list whose states are concatenated on the
  feature axis); ``vision_feature_select_strategy`` "default" drops the first (class) token,
  "full" keeps every token;
* projector: [LayerNorm (VipLlava)] -> ``linear_1`` -> ``projector_hidden_act`` -> ``linear_2``;
* language model: any registered decoder family (``text_config``); the projected image features
  replace the token embeddings at the ``image_token_index`` positions (row-major over the batch).

Weight names are those Transformers 5 writes with ``save_pretrained`` (its saved layout:
``vision_tower.`` + the tower's names without ``vision_model.``, ``multi_modal_projector.``,
``language_model.model.``, ``language_model.lm_head``); its in-memory names
(``model.vision_tower.``, ``model.multi_modal_projector.``, ``model.language_model.``, ``lm_head``)
and older checkpoints' (``vision_tower.vision_model.``) load too.
"""

from dataclasses import dataclass, replace

import keras
import numpy as np
from keras import ops

from keras_models.errors import ConfigError, InputError
from keras_models.layers.activations import get_activation
from keras_models.layers.vision_embeddings import dense_rules, norm_rules
from keras_models.models.backbone import SpecBackbone
from keras_models.models.registry import register_backbone, register_task
from keras_models.spec import Spec, build_tower, const, hf, tower
from keras_models.tasks.image_text_to_text import ImageTextToText

_ser = keras.saving.register_keras_serializable(package="keras_models")
_ALL = ("jax", "torch", "tensorflow")


def _layers(v):
    if isinstance(v, bool) or not isinstance(v, (int, list, tuple)):
        raise ValueError("expected an int or a list of ints")
    if isinstance(v, (list, tuple)) and not all(isinstance(i, int) and not isinstance(i, bool) for i in v):
        raise ValueError("expected a list of ints")
    return v if isinstance(v, int) else tuple(v)


@dataclass(frozen=True, kw_only=True)
class LlavaSpec(Spec):
    vision_config: dict = tower("vision_config", "clip_vision_model")
    text_config: dict = tower("text_config", "llama")
    image_token_index: int = hf(("image_token_index", "image_token_id"), 32000)
    image_seq_length: int = hf("image_seq_length", 576)
    projector_hidden_act: str = hf("projector_hidden_act", "gelu")
    vision_feature_select_strategy: str = hf("vision_feature_select_strategy", "default")
    vision_feature_layer: int | tuple = hf("vision_feature_layer", -2, read=_layers)
    multimodal_projector_bias: bool = hf("multimodal_projector_bias", True)
    tie_word_embeddings: bool = hf("tie_word_embeddings", False)
    projector_layernorm_eps: float | None = const(None, doc="VipLlava: LayerNorm before the projector")

    def validate(self, source="config.json"):
        if self.vision_feature_select_strategy not in ("default", "full"):
            raise ConfigError(f"{source}: vision_feature_select_strategy="
                              f"{self.vision_feature_select_strategy!r}: expected 'default' or 'full'")
        if isinstance(self.vision_feature_layer, tuple) and not self.vision_feature_layer:
            raise ConfigError(f"{source}: vision_feature_layer is an empty list")

    def dummy_inputs(self):
        v = self.vision_config
        size = v.get("image_size", 224)
        size = size[0] if isinstance(size, (list, tuple)) else size
        return {"input_ids": np.ones((1, 2), "int32"), "attention_mask": np.ones((1, 2), "int32"),
                "pixel_values": np.zeros((1, size, size, v.get("num_channels", 3)), "float32")}


@dataclass(frozen=True, kw_only=True)
class VipLlavaSpec(LlavaSpec):
    vision_feature_layer: int | tuple = hf(("vision_feature_layer", "vision_feature_layers"), (-2, -5, -8, -11, 6),
                                           read=_layers)
    projector_layernorm_eps: float | None = hf("projector_layernorm_eps", 1e-5)
    vision_feature_select_strategy: str = const("default", doc="VipLlava always drops the class token")
    multimodal_projector_bias: bool = const(True)
    image_token_index: int = hf(("image_token_index", "image_token_id"), 32000)


class LlavaLikeBackbone(SpecBackbone):
    """Returns the language model's last hidden state (batch, seq, text hidden)."""

    base_model_prefix = ""
    hf_ignore = ("*position_ids", "*rotary_emb.inv_freq")
    # the SigLIP vision tower's attention-pooling head is saved but unused by LLaVA
    hf_known_unused = ("*vision_tower.vision_model.head.*",)

    def __init__(self, spec=None, **kwargs):
        super().__init__(spec, **kwargs)
        s = self.spec
        self.vision_tower = build_tower(s.vision_config, "vision_tower", self.dtype_policy)
        self.language_model = build_tower(s.text_config, "language_model", self.dtype_policy)
        if not hasattr(self.vision_tower, "blocks") or not hasattr(self.vision_tower, "patch_embedding"):
            raise ConfigError(f"vision_config: model_type {s.vision_config.get('model_type')!r} is not a "
                              "CLIP-like vision tower (clip_vision_model, siglip_vision_model)")
        if not hasattr(self.language_model, "call_with_cache"):
            raise ConfigError(f"text_config: model_type {s.text_config.get('model_type')!r} is not a decoder")
        text = self.language_model
        self.vocab_size = text.vocab_size
        self.hidden_size = text.hidden_size
        self.max_position_embeddings = text.options["max_position_embeddings"]
        self.image_token_index = s.image_token_index
        self.tie_word_embeddings = bool(s.tie_word_embeddings or text.options["tie_word_embeddings"])
        layers = s.vision_feature_layer
        self.feature_layers = (layers,) if isinstance(layers, int) else tuple(layers)
        n_states = len(self.vision_tower.blocks) + 1
        for i in self.feature_layers:
            if not -n_states <= i < n_states:
                raise ConfigError(f"vision_feature_layer={layers!r}: the vision tower has {n_states} hidden "
                                  "states (embeddings + one per layer)")
        self.drop_cls = s.vision_feature_select_strategy == "default"
        v = self.vision_tower
        # what no feature layer reads (later blocks, the final norm, SigLIP's head) gets no
        # gradient: frozen, so that training does not warn about it
        used = max(i % n_states for i in self.feature_layers)
        for layer in [*v.blocks[used:], v.post_norm, v.head]:
            if layer is not None:
                layer.trainable = False
        self.tokens_per_image = v.grid * v.grid + v.num_prefix_tokens - int(self.drop_cls)
        common = dict(dtype=self.dtype_policy)
        bias = s.multimodal_projector_bias
        self.projector_norm = (keras.layers.LayerNormalization(epsilon=s.projector_layernorm_eps,
                                                               name="projector_layernorm", **common)
                               if s.projector_layernorm_eps is not None else None)
        self.linear_1 = keras.layers.Dense(text.hidden_size, use_bias=bias, name="linear_1", **common)
        self.linear_2 = keras.layers.Dense(text.hidden_size, use_bias=bias, name="linear_2", **common)
        self.projector_act = get_activation(s.projector_hidden_act)

    def dummy_inputs(self):
        return self.spec.dummy_inputs()

    def build(self, input_shape=None):
        self.vision_tower.build_from_dummy()
        self.language_model.build_from_dummy()
        width = self.vision_tower.hidden_size * len(self.feature_layers)
        if self.projector_norm is not None:
            self.projector_norm.build((None, None, width))
        self.linear_1.build((None, None, width))
        self.linear_2.build((None, None, self.language_model.hidden_size))
        self.built = True

    def build_from_dummy(self):
        if not self.built:
            self.build()
        return self

    # --- image features -----------------------------------------------------------------------
    def vision_states(self, pixels, training=False):
        """The tower's hidden states at ``feature_layers`` (index 0: after the embeddings and
        the pre-norm; i: after block i), before any final norm."""
        v = self.vision_tower
        x = v.patch_embedding(ops.cast(pixels, self.compute_dtype))
        b, gh, gw = ops.shape(x)[0], x.shape[1], x.shape[2]
        if (gh, gw) != (v.grid, v.grid):
            size = v.spec.image_size
            raise InputError(f"pixel_values of {gh * v.spec.patch_size}x{gw * v.spec.patch_size} pixels: this "
                             f"model's vision tower takes {size}x{size}")
        x = ops.reshape(x, (b, gh * gw, v.hidden_size))
        if v.class_embedding is not None:
            cls = ops.broadcast_to(ops.cast(v.class_embedding, x.dtype)[None, None, :], (b, 1, v.hidden_size))
            x = ops.concatenate([cls, x], axis=1)
        x = x + ops.cast(v.position_embedding, x.dtype)[None]
        if v.pre_norm is not None:
            x = v.pre_norm(x)
        n = len(v.blocks) + 1
        wanted = [i % n for i in self.feature_layers]
        states = {0: x}
        for i, block in enumerate(v.blocks[:max(wanted)]):
            x = block(x, training=training)
            states[i + 1] = x
        return [states[i] for i in wanted]

    def image_features(self, pixels, training=False):
        """(images, tokens_per_image, text hidden): projected features of ``pixel_values``."""
        states = self.vision_states(pixels, training)
        if self.drop_cls:
            states = [s[:, 1:] for s in states]
        x = states[0] if len(states) == 1 else ops.concatenate(states, axis=-1)
        if self.projector_norm is not None:
            x = self.projector_norm(x)
        return self.linear_2(self.projector_act(self.linear_1(x)))

    def merge_embeddings(self, ids, table, features, active=True):
        """Token embeddings of ``ids`` (looked up in ``table``) with the rows of ``features``
        ((n, hidden) or (images, tokens, hidden)) put at the image-token positions, in row-major
        order; ``active`` (bool or bool tensor) False leaves every token embedding as it is."""
        is_image = ops.equal(ids, self.image_token_index)
        if active is False:
            return table(ids)
        if active is not True:
            is_image = ops.logical_and(is_image, active)
        x = table(ops.where(is_image, ops.zeros_like(ids), ids))
        d = int(x.shape[-1])
        flat = ops.reshape(ops.cast(features, x.dtype), (-1, d))
        n = ops.shape(flat)[0]
        order = ops.cumsum(ops.reshape(ops.cast(is_image, "int32"), (-1,))) - 1
        order = ops.clip(order, 0, ops.maximum(n - 1, 0))
        if flat.shape[0] == 0:
            return x
        picked = ops.reshape(ops.take(flat, order, axis=0), ops.shape(x))
        return ops.where(is_image[..., None], picked, x)

    def inputs_image_features(self, inputs, training=False):
        """The image features of a model-input dict (None without ``pixel_values``); LLaVA-NeXT
        also reads ``image_sizes``."""
        pixels = inputs.get("pixel_values")
        return None if pixels is None else self.image_features(pixels, training)

    def call(self, inputs, training=False):
        ids = inputs["input_ids"]
        mask = inputs.get("attention_mask")
        if mask is None:
            mask = ops.ones_like(ids)
        text = self.language_model
        features = self.inputs_image_features(inputs, training)

        def merge(token_ids, table):
            return self.merge_embeddings(token_ids, table, features)

        embed = None if features is None else merge

        from keras_models.layers.decoder_masks import positions_from_mask

        positions = inputs.get("position_ids")
        positions = positions_from_mask(mask) if positions is None else positions
        return text._forward(ids, mask, ops.cast(positions, "int32"), training=training, embed=embed)[0]

    def check_image_inputs(self, inputs, where):
        """Host-side check: as many image tokens in ``input_ids`` as ``pixel_values`` gives
        features, and 4-D channels_last pixels."""
        ids, pixels = inputs.get("input_ids"), inputs.get("pixel_values")
        if not isinstance(ids, np.ndarray) or pixels is None:
            return
        shape = tuple(pixels.shape)
        if len(shape) != 4:
            raise InputError(f"{where}: pixel_values must be (images, height, width, channels), got shape {shape}")
        mask = inputs.get("attention_mask")
        mask = np.ones_like(ids) if mask is None else np.asarray(mask)
        found = int(((ids == self.image_token_index) & (mask != 0)).sum())
        need = int(shape[0]) * self.tokens_per_image
        if found != need:
            raise InputError(f"{where}: input_ids hold {found} image tokens (id {self.image_token_index}) but "
                             f"pixel_values has {shape[0]} image(s) of {self.tokens_per_image} tokens each "
                             f"({need}); use the model's processor to expand the image placeholders")

    # --- weights ------------------------------------------------------------------------------
    def weight_rules(self):
        def under(rules, new, old):
            return [replace(r, hf=new + r.hf, base=False, aliases=tuple(a + r.hf for a in old)) for r in rules]

        v, t = self.vision_tower, self.language_model
        vp = f"{v.base_model_prefix}." if v.base_model_prefix else ""
        tp = f"{t.base_model_prefix}." if t.base_model_prefix else ""
        r = under(v.weight_rules(), "vision_tower.",
                  (f"vision_tower.{vp}", "model.vision_tower.", f"model.vision_tower.{vp}"))
        r += under(t.weight_rules(), f"language_model.{tp}", ("model.language_model.",))
        r += under(self.projector_rules(), "multi_modal_projector.", ("model.multi_modal_projector.",))
        return r

    def projector_rules(self):
        """The projector's rules, named inside ``multi_modal_projector.``."""
        proj = []
        if self.projector_norm is not None:
            proj += norm_rules("projector_layernorm", self.projector_norm, base=False)
        return proj + dense_rules("linear_1", self.linear_1, base=False) + dense_rules("linear_2", self.linear_2,
                                                                                        base=False)


@_ser
@register_backbone("llava")
class LlavaBackbone(LlavaLikeBackbone):
    spec_cls = LlavaSpec
    hf_architecture = "LlavaModel"
    verified_backends = _ALL


@_ser
@register_task(LlavaBackbone, "ImageTextToText", ("LlavaForConditionalGeneration",))
class LlavaImageTextToText(ImageTextToText):
    pass


@_ser
@register_backbone("vipllava")
class VipLlavaBackbone(LlavaLikeBackbone):
    spec_cls = VipLlavaSpec
    hf_architecture = "VipLlavaModel"
    verified_backends = _ALL


@_ser
@register_task(VipLlavaBackbone, "ImageTextToText", ("VipLlavaForConditionalGeneration",))
class VipLlavaImageTextToText(ImageTextToText):
    pass


__all__ = ["LlavaSpec", "VipLlavaSpec", "LlavaLikeBackbone", "LlavaBackbone", "LlavaImageTextToText",
           "VipLlavaBackbone", "VipLlavaImageTextToText"]

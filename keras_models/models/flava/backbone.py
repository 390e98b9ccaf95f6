"""FLAVA: an image tower (ViT with a mask token), a text tower (BERT embeddings, pre-norm blocks)
and a multimodal tower over both towers' projected states, each with a final LayerNorm and a
dense + tanh pooler on its first token.

* :class:`FlavaImageBackbone` (``flava_image_model``), :class:`FlavaTextBackbone`
  (``flava_text_model``), :class:`FlavaMultimodalBackbone` (``flava_multimodal_model``): the
  towers, each loading its standalone checkpoint (FlavaImageModel, FlavaTextModel,
  FlavaMultimodalModel). Calling one returns its final-normed last hidden state; ``outputs()``
  returns Transformers' ``last_hidden_state``, ``pooler_output`` and ``hidden_states``.
* :class:`FlavaBackbone` (``flava``, FlavaModel): the three towers composed as Transformers does.
  Calling it returns ``image_embeddings`` / ``text_embeddings`` / ``multimodal_embeddings``
  (the towers' final-normed sequences, as FlavaModel names them) and the three pooler outputs;
  ``encode_image`` / ``encode_text`` give ``get_image_features`` / ``get_text_features`` (the
  projection applied to every token of the sequence, as Transformers does).

The multimodal tower reads the image and text towers' last hidden states *before* their final
LayerNorm (Transformers' ``hidden_states[-1]``), each through its ``*_to_mm_projection``; its
attention mask is all ones over the [CLS] and image tokens, then the text mask.

FlavaForPreTraining checkpoints load as :class:`FlavaImageTextMatcher` (km.ImageTextMatcher, its
ITM head); its MIM / MLM / MMM heads, contrastive logits and FlavaImageCodebook are not implemented, and ``interpolate_pos_encoding`` (images must have the configured size). FLAVA is not
a zero-shot image classifier in Transformers (no zero-shot mapping), so no such task is offered.
"""

from dataclasses import dataclass, replace

import keras
import numpy as np
from keras import ops

from keras_models.errors import ConfigError, InputError
from keras_models.layers.masks import padding_bias
from keras_models.layers.vision_block import VisionBlock
from keras_models.layers.vision_embeddings import PatchEmbedding, conv_rules, dense_rules, norm_rules
from keras_models.models.backbone import SpecBackbone
from keras_models.models.registry import register_backbone, register_task
from keras_models.presets.weight_map import Rule, mount
from keras_models.spec import Spec, build_tower, dim, hf, tower
from keras_models.tasks.image_text_matching import ImageTextMatcher

_PRETRAINING_HEADS = ("itm_head.*", "mim_head.*", "mlm_head.*", "mmm_image_head.*", "mmm_text_head.*",
                      "image_codebook.*", "global_contrastive_head.*")
_ser = keras.saving.register_keras_serializable(package="keras_models")
_ALL = ("jax", "torch", "tensorflow")
_BLOCK = {"query": "attention.attention.query", "key": "attention.attention.key",
          "value": "attention.attention.value", "output": "attention.output.dense",
          "fc1": "intermediate.dense", "fc2": "output.dense"}


def _pair(v):
    return tuple(v) if isinstance(v, (list, tuple)) else (v, v)


def _one_or_pair(v):
    h, w = _pair(v)
    return h if h == w else [h, w]


@dataclass(frozen=True, kw_only=True)
class FlavaTowerSpec(Spec):
    hidden_size: int = dim("hidden_size", 768)
    num_layers: int = dim("num_hidden_layers", 12)
    num_heads: int = dim("num_attention_heads", 12)
    intermediate_size: int = dim("intermediate_size", 3072)
    hidden_act: str = hf("hidden_act", "gelu")
    layer_norm_eps: float = hf("layer_norm_eps", 1e-12)
    qkv_bias: bool = hf("qkv_bias", True)
    dropout: float = hf("hidden_dropout_prob", 0.0)
    attention_dropout: float = hf("attention_probs_dropout_prob", 0.0)
    initializer_range: float = hf("initializer_range", 0.02)

    def validate(self, source="config.json"):
        super().validate(source)
        if self.hidden_size % self.num_heads:
            raise ConfigError(f"{source}: hidden_size ({self.hidden_size}) must be a multiple of "
                              f"num_attention_heads ({self.num_heads})")
        if self.layer_norm_eps <= 0:
            raise ConfigError(f"{source}: layer_norm_eps must be positive, got {self.layer_norm_eps}")


def _size_pair(v):
    h, w = _pair(v)
    for x in (h, w):
        if isinstance(x, bool) or not isinstance(x, int) or x <= 0 or x >= 2**31:
            raise ConfigError(f"a size must be a positive integer or a pair of them, got {v!r}")
    return (h, w)


@dataclass(frozen=True, kw_only=True)
class FlavaImageSpec(FlavaTowerSpec):
    image_size: tuple = hf("image_size", (224, 224), read=_size_pair, write=_one_or_pair)
    patch_size: tuple = hf("patch_size", (16, 16), read=_size_pair, write=_one_or_pair)
    num_channels: int = dim("num_channels", 3)
    mask_token: bool = hf("mask_token", True)
    vocab_size: int = dim("vocab_size", 8192, doc="the MIM head's codebook size (kept for the config)")

    def validate(self, source="config.json"):
        super().validate(source)
        if any(i < p for i, p in zip(self.image_size, self.patch_size)):
            raise ConfigError(f"{source}: patch_size {self.patch_size} is larger than image_size {self.image_size}")

    def dummy_inputs(self):
        return {"pixel_values": np.zeros((1, *self.image_size, self.num_channels), "float32")}


@dataclass(frozen=True, kw_only=True)
class FlavaTextSpec(FlavaTowerSpec):
    vocab_size: int = dim("vocab_size", 30522)
    type_vocab_size: int = dim("type_vocab_size", 2)
    max_position_embeddings: int = dim("max_position_embeddings", 512)
    pad_token_id: int | None = hf("pad_token_id", 0)


@dataclass(frozen=True, kw_only=True)
class FlavaMultimodalSpec(FlavaTowerSpec):
    num_layers: int = dim("num_hidden_layers", 6)
    use_cls_token: bool = hf("use_cls_token", True)

    def dummy_inputs(self):
        return {"hidden_states": np.zeros((1, 2, self.hidden_size), "float32"),
                "attention_mask": np.ones((1, 2 + int(self.use_cls_token)), "int32")}


class FlavaTower(SpecBackbone):
    """Pre-norm blocks + final LayerNorm + pooler; subclasses embed their inputs."""

    hf_ignore = ("*position_ids", "*token_type_ids")

    def __init__(self, spec=None, **kwargs):
        super().__init__(spec, **kwargs)
        s = self.spec
        self.hidden_size = s.hidden_size
        init = keras.initializers.TruncatedNormal(stddev=s.initializer_range)
        self._init = init
        common = dict(dtype=self.dtype_policy)
        self.blocks = [VisionBlock(s.hidden_size, s.num_heads, s.intermediate_size, hidden_act=s.hidden_act,
                                   layer_norm_eps=s.layer_norm_eps, qkv_bias=s.qkv_bias, dropout=s.dropout,
                                   attention_dropout=s.attention_dropout, kernel_initializer=init,
                                   name=f"block_{i}", **common) for i in range(s.num_layers)]
        self.final_norm = keras.layers.LayerNormalization(epsilon=s.layer_norm_eps, name="final_norm", **common)
        self.pooler = keras.layers.Dense(s.hidden_size, activation="tanh", kernel_initializer=init,
                                         name="pooler", **common)
        self.embed_dropout = keras.layers.Dropout(s.dropout, **common)

    def build_tower(self):
        d = self.hidden_size
        for b in self.blocks:
            b.build((None, None, d))
        self.final_norm.build((None, None, d))
        self.pooler.build((None, d))

    def encode(self, x, bias, training=False):
        """(last hidden state before the final norm, after it, every layer's input + that last)."""
        states = [x]
        for block in self.blocks:
            x = block(x, bias, training=training)
            states.append(x)
        return x, self.final_norm(x), states

    def outputs(self, inputs, training=False):
        x, bias = self.embed(inputs, training=training)
        _, last, states = self.encode(x, bias, training=training)
        return {"last_hidden_state": last, "pooler_output": self.pooler(last[:, 0]), "hidden_states": states}

    def call(self, inputs, training=False):
        x, bias = self.embed(inputs, training=training)
        return self.encode(x, bias, training=training)[1]

    def tower_rules(self):
        r = []
        for i, b in enumerate(self.blocks):
            p = f"encoder.layer.{i}."
            a = b.attention
            for ours, dense in (("query", a.query), ("key", a.key), ("value", a.value), ("output", a.output_dense),
                                ("fc1", b.fc1), ("fc2", b.fc2)):
                r += dense_rules(p + _BLOCK[ours], dense)
            r += norm_rules(p + "layernorm_before", b.norm1) + norm_rules(p + "layernorm_after", b.norm2)
        return r + norm_rules("layernorm", self.final_norm) + dense_rules("pooler.dense", self.pooler)


@_ser
@register_backbone("flava_image_model")
class FlavaImageBackbone(FlavaTower):
    """Inputs: ``pixel_values`` (batch, H, W, C) and optionally ``bool_masked_pos`` (batch,
    patches) with 1 where a patch is replaced by the mask token."""

    spec_cls = FlavaImageSpec
    hf_architecture = "FlavaImageModel"
    base_model_prefix = "flava.image_model"
    verified_backends = _ALL

    def __init__(self, spec=None, **kwargs):
        super().__init__(spec, **kwargs)
        s = self.spec
        self.grid = (s.image_size[0] // s.patch_size[0], s.image_size[1] // s.patch_size[1])
        self.patch_embedding = PatchEmbedding(s.hidden_size, s.patch_size, s.num_channels,
                                              kernel_initializer=self._init, name="patch_embedding",
                                              dtype=self.dtype_policy)

    def build(self, input_shape=None):
        d, s = self.hidden_size, self.spec
        self.cls_token = self.add_weight(name="cls_token", shape=(1, 1, d), initializer="zeros")
        self.mask_embedding = (self.add_weight(name="mask_token", shape=(1, 1, d), initializer="zeros")
                               if s.mask_token else None)
        n = self.grid[0] * self.grid[1] + 1
        self.position_embedding = self.add_weight(name="position_embedding", shape=(1, n, d), initializer="zeros")
        self.patch_embedding.build((None, None, None, s.num_channels))
        self.build_tower()
        self.built = True

    def embed(self, inputs, training=False):
        pixels = inputs["pixel_values"] if isinstance(inputs, dict) else inputs
        if len(pixels.shape) != 4 or tuple(pixels.shape[1:3]) != self.spec.image_size:
            raise InputError(f"pixel_values must be (batch, {self.spec.image_size[0]}, {self.spec.image_size[1]}, "
                             f"{self.spec.num_channels}) (channels_last, the configured image_size), "
                             f"got {tuple(pixels.shape)}")
        x = self.patch_embedding(pixels)
        b = ops.shape(x)[0]
        x = ops.reshape(x, (b, self.grid[0] * self.grid[1], self.hidden_size))
        masked = inputs.get("bool_masked_pos") if isinstance(inputs, dict) else None
        if masked is not None:
            if self.mask_embedding is None:
                raise InputError("bool_masked_pos given but the image config has mask_token false")
            m = ops.cast(ops.reshape(masked, (b, -1)), x.dtype)[..., None]
            x = x * (1.0 - m) + ops.cast(self.mask_embedding, x.dtype) * m
        cls = ops.broadcast_to(ops.cast(self.cls_token, x.dtype), (b, 1, self.hidden_size))
        x = ops.concatenate([cls, x], axis=1) + ops.cast(self.position_embedding, x.dtype)
        return self.embed_dropout(x, training=training), None

    def weight_rules(self):
        r = [Rule("embeddings.cls_token", self.cls_token),
             Rule("embeddings.position_embeddings", self.position_embedding),
             *conv_rules("embeddings.patch_embeddings.projection", self.patch_embedding.projection)]
        if self.mask_embedding is not None:
            r.append(Rule("embeddings.mask_token", self.mask_embedding))
        return r + self.tower_rules()


@_ser
@register_backbone("flava_text_model")
class FlavaTextBackbone(FlavaTower):
    """Inputs: ``input_ids``, ``attention_mask``, optional ``token_type_ids``."""

    spec_cls = FlavaTextSpec
    hf_architecture = "FlavaTextModel"
    base_model_prefix = "flava.text_model"
    verified_backends = _ALL

    def __init__(self, spec=None, **kwargs):
        super().__init__(spec, **kwargs)
        s, common = self.spec, dict(dtype=self.dtype_policy)
        table = dict(embeddings_initializer=self._init, **common)
        self.word_embeddings = keras.layers.Embedding(s.vocab_size, s.hidden_size, name="word_embeddings", **table)
        self.position_embeddings = keras.layers.Embedding(s.max_position_embeddings, s.hidden_size,
                                                          name="position_embeddings", **table)
        self.token_type_embeddings = keras.layers.Embedding(s.type_vocab_size, s.hidden_size,
                                                            name="token_type_embeddings", **table)
        self.embed_norm = keras.layers.LayerNormalization(epsilon=s.layer_norm_eps, name="embed_norm", **common)

    def build(self, input_shape=None):
        for e in (self.word_embeddings, self.position_embeddings, self.token_type_embeddings):
            e.build((None, None))
        self.embed_norm.build((None, None, self.hidden_size))
        self.build_tower()
        self.built = True

    def embed(self, inputs, training=False):
        ids = inputs["input_ids"]
        t = ids.shape[1]
        if t is not None and t > self.spec.max_position_embeddings:
            raise InputError(f"input_ids has {t} tokens; max_position_embeddings is "
                             f"{self.spec.max_position_embeddings}")
        types = inputs.get("token_type_ids")
        types = ops.zeros_like(ids) if types is None else types
        x = (self.word_embeddings(ids) + self.token_type_embeddings(types)
             + self.position_embeddings(ops.arange(ops.shape(ids)[1]))[None])
        x = self.embed_dropout(self.embed_norm(x), training=training)
        mask = inputs.get("attention_mask")
        return x, (None if mask is None else padding_bias(mask, x.dtype))

    def weight_rules(self):
        r = [Rule("embeddings.word_embeddings.weight", self.word_embeddings.embeddings),
             Rule("embeddings.position_embeddings.weight", self.position_embeddings.embeddings),
             Rule("embeddings.token_type_embeddings.weight", self.token_type_embeddings.embeddings),
             *norm_rules("embeddings.LayerNorm", self.embed_norm)]
        return r + self.tower_rules()


@_ser
@register_backbone("flava_multimodal_model")
class FlavaMultimodalBackbone(FlavaTower):
    """Inputs: ``hidden_states`` (batch, seq, hidden) and optional ``attention_mask`` over the
    sequence the blocks see (batch, seq + 1 with ``use_cls_token``: the [CLS] position first, as
    Transformers takes it)."""

    spec_cls = FlavaMultimodalSpec
    hf_architecture = "FlavaMultimodalModel"
    base_model_prefix = "flava.multimodal_model"
    verified_backends = _ALL

    def build(self, input_shape=None):
        self.cls_token = (self.add_weight(name="cls_token", shape=(1, 1, self.hidden_size), initializer="zeros")
                          if self.spec.use_cls_token else None)
        self.build_tower()
        self.built = True

    def embed(self, inputs, training=False):
        x = inputs["hidden_states"]
        if self.cls_token is not None:
            cls = ops.broadcast_to(ops.cast(self.cls_token, x.dtype), (ops.shape(x)[0], 1, self.hidden_size))
            x = ops.concatenate([cls, x], axis=1)
        mask = inputs.get("attention_mask")
        return x, (None if mask is None else padding_bias(mask, x.dtype))

    def weight_rules(self):
        r = [Rule("cls_token", self.cls_token)] if self.cls_token is not None else []
        return r + self.tower_rules()


@dataclass(frozen=True, kw_only=True)
class FlavaSpec(Spec):
    image_config: dict = tower("image_config", "flava_image_model")
    text_config: dict = tower("text_config", "flava_text_model")
    multimodal_config: dict = tower("multimodal_config", "flava_multimodal_model")
    projection_dim: int = dim("projection_dim", 768)
    logit_scale_init_value: float = hf("logit_scale_init_value", 2.6592)
    hidden_size: int = dim("hidden_size", 768, doc="not read by the model (kept for the config)")
    layer_norm_eps: float = hf("layer_norm_eps", 1e-12, doc="not read by the model (kept for the config)")
    initializer_range: float = hf("initializer_range", 0.02)

    @classmethod
    def adjust_from_hf(cls, config, values, source):
        for key, kind in (("image_config", "flava_image_model"), ("text_config", "flava_text_model"),
                          ("multimodal_config", "flava_multimodal_model")):
            got = values[key].get("model_type")
            if got != kind:
                raise ConfigError(f"{source}: {key}.model_type must be {kind!r}, got {got!r}")
        return values

    def dummy_inputs(self):
        image = FlavaImageSpec.from_hf(self.image_config)
        return {"input_ids": np.ones((1, 2), "int32"), "attention_mask": np.ones((1, 2), "int32"),
                **image.dummy_inputs()}


@_ser
@register_backbone("flava")
class FlavaBackbone(SpecBackbone):
    """FlavaModel. Inputs: ``input_ids``, ``attention_mask``, optional ``token_type_ids``,
    ``pixel_values`` (batch, H, W, C) and optional ``bool_masked_pos``."""

    spec_cls = FlavaSpec
    hf_architecture = "FlavaModel"
    base_model_prefix = "flava"
    hf_ignore = ("*position_ids", "*token_type_ids")
    hf_known_unused = _PRETRAINING_HEADS
    verified_backends = _ALL

    def __init__(self, spec=None, **kwargs):
        super().__init__(spec, **kwargs)
        s, common = self.spec, dict(dtype=self.dtype_policy)
        self.image_model = build_tower(s.image_config, "image_model", self.dtype_policy)
        self.text_model = build_tower(s.text_config, "text_model", self.dtype_policy)
        self.multimodal_model = build_tower(s.multimodal_config, "multimodal_model", self.dtype_policy)
        init = keras.initializers.TruncatedNormal(stddev=s.initializer_range)
        dense = dict(kernel_initializer=init, **common)
        mm = self.multimodal_model.hidden_size
        self.image_projection = keras.layers.Dense(s.projection_dim, name="image_projection", **dense)
        self.text_projection = keras.layers.Dense(s.projection_dim, name="text_projection", **dense)
        self.image_to_mm_projection = keras.layers.Dense(mm, name="image_to_mm_projection", **dense)
        self.text_to_mm_projection = keras.layers.Dense(mm, name="text_to_mm_projection", **dense)

    def build(self, input_shape=None):
        self.image_model.build_from_dummy()
        self.text_model.build_from_dummy()
        self.multimodal_model.build_from_dummy()
        di, dt = self.image_model.hidden_size, self.text_model.hidden_size
        self.image_projection.build((None, di))
        self.image_to_mm_projection.build((None, di))
        self.text_projection.build((None, dt))
        self.text_to_mm_projection.build((None, dt))
        self.logit_scale = self.add_weight(name="logit_scale", shape=(),
                                           initializer=keras.initializers.Constant(self.spec.logit_scale_init_value))
        self.built = True

    def encode_image(self, inputs, training=False):
        """Transformers' ``get_image_features``: the projection of every final-normed token."""
        return self.image_projection(self.image_model(inputs, training=training))

    def encode_text(self, inputs, training=False):
        """Transformers' ``get_text_features``: the projection of every final-normed token."""
        return self.text_projection(self.text_model(inputs, training=training))

    def outputs(self, inputs, training=False):
        """Every tower's ``outputs()`` (``image_output``, ``text_output``, ``multimodal_output``)
        and the embeddings FlavaModel returns."""
        im, tx = self.image_model, self.text_model
        x, bias = im.embed(inputs, training=training)
        image_pre, image_last, image_states = im.encode(x, bias, training=training)
        x, bias = tx.embed(inputs, training=training)
        text_pre, text_last, text_states = tx.encode(x, bias, training=training)
        mm_in = ops.concatenate([self.image_to_mm_projection(image_pre), self.text_to_mm_projection(text_pre)], axis=1)
        mm_inputs = {"hidden_states": mm_in}
        mask = inputs.get("attention_mask")
        if mask is not None:
            n_image = image_pre.shape[1] + int(self.multimodal_model.cls_token is not None)
            ones = ops.ones((ops.shape(mask)[0], n_image), mask.dtype)
            mm_inputs["attention_mask"] = ops.concatenate([ones, mask], axis=1)
        mm = self.multimodal_model.outputs(mm_inputs, training=training)
        return {"image_output": {"last_hidden_state": image_last, "pooler_output": im.pooler(image_last[:, 0]),
                                 "hidden_states": image_states},
                "text_output": {"last_hidden_state": text_last, "pooler_output": tx.pooler(text_last[:, 0]),
                                "hidden_states": text_states},
                "multimodal_output": mm}

    def call(self, inputs, training=False):
        o = self.outputs(inputs, training=training)
        return {"image_embeddings": o["image_output"]["last_hidden_state"],
                "text_embeddings": o["text_output"]["last_hidden_state"],
                "multimodal_embeddings": o["multimodal_output"]["last_hidden_state"],
                "image_pooler_output": o["image_output"]["pooler_output"],
                "text_pooler_output": o["text_output"]["pooler_output"],
                "multimodal_pooler_output": o["multimodal_output"]["pooler_output"]}

    def weight_rules(self):
        # mounted towers stay base-model names: FlavaForPreTraining holds them under ``flava.``
        r = [replace(rule, base=True) for tower_model, name in ((self.image_model, "image_model."),
                                                                (self.text_model, "text_model."),
                                                                (self.multimodal_model, "multimodal_model."))
             for rule in mount(tower_model.weight_rules(), name)]
        for name in ("image_projection", "text_projection", "image_to_mm_projection", "text_to_mm_projection"):
            r += dense_rules(name, getattr(self, name))
        return r + [Rule("logit_scale", self.logit_scale)]


@_ser
@register_task(FlavaBackbone, "ImageTextMatcher", ("FlavaForPreTraining",))
class FlavaImageTextMatcher(ImageTextMatcher):
    """FlavaForPreTraining's ``itm_logits`` (batch, 2) (index 1 = matches): its ITM head (dense +
    tanh on the multimodal [CLS], then a 2-way linear) over the multimodal encoding of
    ``input_ids`` (Transformers' ``input_ids_masked``) and ``pixel_values`` (+ optional
    ``bool_masked_pos``). The MIM / MLM / MMM heads and the codebook are not loaded (reported)."""

    hf_head_patterns = _PRETRAINING_HEADS

    def __init__(self, backbone, preprocessor=None, **kwargs):
        super().__init__(backbone, preprocessor=preprocessor, **kwargs)
        width = backbone.spec.hidden_size
        if width != backbone.multimodal_model.hidden_size:  # Transformers' ITM head is hidden_size wide
            raise ConfigError(f"config.json: hidden_size ({width}) must equal multimodal_config.hidden_size "
                              f"({backbone.multimodal_model.hidden_size}) for FlavaForPreTraining's ITM head")
        init = keras.initializers.TruncatedNormal(stddev=backbone.spec.initializer_range)
        common = dict(dtype=backbone.dtype_policy, kernel_initializer=init)
        self.itm_pooler = keras.layers.Dense(width, activation="tanh",
                                             name="itm_pooler", **common)
        self.itm = keras.layers.Dense(2, name="itm", **common)

    def build(self, input_shape=None):
        self.backbone.build_from_dummy()
        d = self.backbone.multimodal_model.hidden_size
        self.itm_pooler.build((None, d))
        self.itm.build((None, d))
        self.built = True

    def build_from_dummy(self):
        if not self.built:
            self.build()
        return self

    def call(self, inputs, training=False):
        mm = self.backbone(inputs, training=training)["multimodal_embeddings"]
        return self.itm(self.itm_pooler(mm[:, 0]))

    def default_loss(self):
        return keras.losses.SparseCategoricalCrossentropy(from_logits=True)

    def head_rules(self):
        return dense_rules("itm_head.pooler.dense", self.itm_pooler, base=False) + dense_rules(
            "itm_head.seq_relationship", self.itm, base=False)


__all__ = ["FlavaTowerSpec", "FlavaImageSpec", "FlavaTextSpec", "FlavaMultimodalSpec", "FlavaSpec", "FlavaTower",
           "FlavaImageBackbone", "FlavaTextBackbone", "FlavaMultimodalBackbone", "FlavaBackbone",
           "FlavaImageTextMatcher"]

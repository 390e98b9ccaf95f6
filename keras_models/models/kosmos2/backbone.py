"""KOSMOS-2: a CLIP-like vision tower, an image-to-text projection with latent queries, and a
text decoder whose image-embedding positions are given by ``image_embeds_position_mask``.

* vision tower: CLIP's layout (class token, ``pre_layrnorm``, pre-norm blocks); its last hidden
  state goes through ``post_layernorm`` (every token) and an L2 normalisation;
* projection: ``dense`` (vision hidden -> text hidden), then ``latent_query_num`` learned
  queries attend (one multi-head attention, biases on) over [dense features | latent queries];
  the result is (images, latent_query_num, text hidden);
* text decoder: token embeddings (the image features written at the positions where
  ``image_embeds_position_mask`` is 1, row-major over the batch) times sqrt(hidden) when
  ``scale_embedding``, plus fairseq sinusoidal positions numbered from the token ids: tokens equal
  to ``pad_token_id`` get position ``pad_token_id`` (a zero row), the others
  ``pad_token_id + 1 + (their rank among the non-pad tokens) + cache length``; pre-norm blocks
  whose attention output is LayerNormed before its output projection (``inner_attn_ln``) and whose
  MLP is LayerNormed after its activation (``ffn_layernorm``); a final LayerNorm;
* head: ``text_model.lm_head``, tied to the token table when ``tie_word_embeddings`` (top level or
  text config) is set, as Transformers ties it.

Weight names are those of Transformers' ``Kosmos2ForConditionalGeneration`` (``text_model.model.``,
``text_model.lm_head``, ``vision_model.model.``, ``image_to_text_projection.``).
"""

from dataclasses import dataclass

import keras
import numpy as np
from keras import ops

from keras_models.errors import ConfigError, InputError
from keras_models.generation.decode import CausalDecoder
from keras_models.generation.mixin import GenerationMixin, backend_to_numpy
from keras_models.layers.activations import get_activation
from keras_models.layers.attention import Attention
from keras_models.layers.decoder_masks import decoder_bias
from keras_models.layers.vision_embeddings import dense_rules, norm_rules
from keras_models.models.backbone import SpecBackbone
from keras_models.models.clip.vision import CLIPVisionSpec, VisionTower, _square
from keras_models.models.registry import register_backbone, register_task
from keras_models.presets.weight_map import Rule, mount
from keras_models.spec import Spec, const, dim, hf, nested
from keras_models.tasks.image_text_to_text import ImageTextToText

_ser = keras.saving.register_keras_serializable(package="keras_models")
_ALL = ("jax", "torch", "tensorflow")


# --- specs ------------------------------------------------------------------------------------
@dataclass(frozen=True, kw_only=True)
class Kosmos2VisionSpec(CLIPVisionSpec):
    hidden_size: int = dim("hidden_size", 1024)
    intermediate_size: int = dim("intermediate_size", 4096)
    num_layers: int = dim("num_hidden_layers", 24)
    num_heads: int = dim("num_attention_heads", 16)
    patch_size: int = hf("patch_size", 14, read=_square, dim=True)
    projection_dim: int | None = const(None)

    def validate(self, source="config.json"):
        super().validate(source)
        try:
            get_activation(self.hidden_act)
        except ValueError as e:
            raise ConfigError(f"{source}: key 'hidden_act': {e}") from e

    def adjust_to_hf(self, out):
        out.pop("projection_dim", None)
        return dict(out, model_type="kosmos_2_vision_model")


@dataclass(frozen=True, kw_only=True)
class Kosmos2TextSpec(Spec):
    unsupported = {"add_cross_attention": (False, None)}

    vocab_size: int = dim("vocab_size", 65037)
    max_position_embeddings: int = dim("max_position_embeddings", 2048)
    hidden_size: int = dim("embed_dim", 2048)
    num_layers: int = dim("layers", 24)
    intermediate_size: int = dim("ffn_dim", 8192)
    num_heads: int = dim("attention_heads", 32)
    activation_function: str = hf("activation_function", "gelu")
    layer_norm_eps: float = hf("layer_norm_eps", 1e-5)
    scale_embedding: bool = hf("scale_embedding", True)
    tie_word_embeddings: bool = hf("tie_word_embeddings", True)
    init_std: float = hf("init_std", 0.02)
    dropout: float = hf("dropout", 0.1, doc="training only: embeddings, attention and MLP outputs")
    attention_dropout: float = hf("attention_dropout", 0.1, doc="training only")
    activation_dropout: float = hf("activation_dropout", 0.0, doc="training only")
    pad_token_id: int = hf("pad_token_id", 1)
    bos_token_id: int | None = hf("bos_token_id", 0)
    eos_token_id: int | tuple | None = hf("eos_token_id", 2)

    def validate(self, source="config.json"):
        if self.hidden_size % self.num_heads:
            raise ConfigError(f"{source}: embed_dim={self.hidden_size} is not divisible by "
                              f"attention_heads={self.num_heads}")
        try:
            get_activation(self.activation_function)
        except ValueError as e:
            raise ConfigError(f"{source}: key 'activation_function': {e}") from e
        for key in ("dropout", "attention_dropout", "activation_dropout"):
            if not 0 <= getattr(self, key) < 1:
                raise ConfigError(f"{source}: key {key!r} must be in [0, 1), got {getattr(self, key)!r}")
        if not 0 <= self.pad_token_id < self.vocab_size:
            raise ConfigError(f"{source}: pad_token_id={self.pad_token_id} is outside the vocabulary "
                              f"(vocab_size={self.vocab_size})")

    def adjust_to_hf(self, out):
        return dict(out, model_type="kosmos_2_text_model")


@dataclass(frozen=True, kw_only=True)
class Kosmos2Spec(Spec):
    text_config: Kosmos2TextSpec = nested("text_config", Kosmos2TextSpec)
    vision_config: Kosmos2VisionSpec = nested("vision_config", Kosmos2VisionSpec)
    latent_query_num: int = dim("latent_query_num", 64)
    tie_word_embeddings: bool = hf("tie_word_embeddings", True)

    def dummy_inputs(self):
        v = self.vision_config
        return {"input_ids": np.ones((1, 2), "int32"), "attention_mask": np.ones((1, 2), "int32"),
                "image_embeds_position_mask": np.zeros((1, 2), "int32"),
                "pixel_values": np.zeros((1, v.image_size, v.image_size, v.num_channels), "float32")}


# --- layers -----------------------------------------------------------------------------------
@_ser
class Kosmos2VisionTower(VisionTower):
    """CLIP's vision tower with KOSMOS-2's defaults (built inside :class:`Kosmos2Backbone`)."""

    spec_cls = Kosmos2VisionSpec
    base_model_prefix = "model"


@_ser
class Kosmos2TextBlock(keras.layers.Layer):
    """Pre-norm block: x + out_proj(LN(attn(LN(x)))), then x + fc2(LN(act(fc1(LN(x)))))."""

    def __init__(self, hidden_size, num_heads, intermediate_size, activation="gelu", layer_norm_eps=1e-5,
                 kernel_initializer="glorot_uniform", dropout=0.0, attention_dropout=0.0, activation_dropout=0.0,
                 **kwargs):
        super().__init__(**kwargs)
        self.dropout_rates = (dropout, attention_dropout, activation_dropout)
        self.drop = keras.layers.Dropout(dropout, dtype=self.dtype_policy)
        self.act_drop = keras.layers.Dropout(activation_dropout, dtype=self.dtype_policy)
        self.hidden_size, self.num_heads, self.intermediate_size = hidden_size, num_heads, intermediate_size
        self.activation, self.layer_norm_eps = activation, layer_norm_eps
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        common = dict(dtype=self.dtype_policy)
        init = dict(kernel_initializer=self.kernel_initializer)
        ln = dict(epsilon=layer_norm_eps, **common)
        self.attention_norm = keras.layers.LayerNormalization(name="self_attn_layer_norm", **ln)
        self.attention = Attention(hidden_size, num_heads, use_bias=True, dropout=attention_dropout, name="self_attn",
                                   **common, **init)
        self.inner_attn_norm = keras.layers.LayerNormalization(name="inner_attn_ln", **ln)
        self.mlp_norm = keras.layers.LayerNormalization(name="final_layer_norm", **ln)
        self.fc1 = keras.layers.Dense(intermediate_size, name="fc1", **common, **init)
        self.ffn_norm = keras.layers.LayerNormalization(name="ffn_layernorm", **ln)
        self.fc2 = keras.layers.Dense(hidden_size, name="fc2", **common, **init)
        self.act = get_activation(activation)

    def build(self, input_shape=None):
        h = (None, None, self.hidden_size)
        for layer in (self.attention_norm, self.attention, self.inner_attn_norm, self.mlp_norm, self.fc1):
            layer.build(h)
        self.ffn_norm.build((None, None, self.intermediate_size))
        self.fc2.build((None, None, self.intermediate_size))
        self.built = True

    def call(self, x, bias=None, cache=None, cache_index=None, training=False):
        a = self.attention
        q, k, v = a.project_qkv(self.attention_norm(x))
        if cache is None:
            out = a.attend(q, k, v, bias, training=training)
        else:
            out, cache = a.attend_with_cache(q, k, v, cache, cache_index, bias, training=training)
        x = x + self.drop(a.output_dense(self.inner_attn_norm(out)), training=training)
        h = self.act_drop(self.act(self.fc1(self.mlp_norm(x))), training=training)
        h = self.fc2(self.ffn_norm(h))
        return x + self.drop(h, training=training), cache

    def rules(self, p):
        a = self.attention
        r = norm_rules(p + "self_attn_layer_norm", self.attention_norm, base=False)
        for name, dense in (("q_proj", a.query), ("k_proj", a.key), ("v_proj", a.value), ("out_proj", a.output_dense)):
            r += dense_rules(f"{p}self_attn.{name}", dense, base=False)
        r += norm_rules(p + "self_attn.inner_attn_ln", self.inner_attn_norm, base=False)
        r += norm_rules(p + "final_layer_norm", self.mlp_norm, base=False)
        r += dense_rules(p + "ffn.fc1", self.fc1, base=False) + dense_rules(p + "ffn.fc2", self.fc2, base=False)
        r += norm_rules(p + "ffn.ffn_layernorm", self.ffn_norm, base=False)
        return r

    def get_config(self):
        c = super().get_config()
        c.update(hidden_size=self.hidden_size, num_heads=self.num_heads, intermediate_size=self.intermediate_size,
                 activation=self.activation, layer_norm_eps=self.layer_norm_eps, dropout=self.dropout_rates[0],
                 attention_dropout=self.dropout_rates[1], activation_dropout=self.dropout_rates[2],
                 kernel_initializer=keras.initializers.serialize(self.kernel_initializer))
        return c


@_ser
class Kosmos2TextModel(keras.layers.Layer):
    """The text decoder (see the module docstring); the KV cache interface of a decoder backbone
    (``init_cache`` / ``call_with_cache(..., embed=)``) and the ``options`` ImageTextToText reads."""

    def __init__(self, spec, **kwargs):
        super().__init__(**kwargs)
        if isinstance(spec, dict):
            spec = Kosmos2TextSpec.from_config(spec)
        self.spec = s = spec
        self.vocab_size, self.hidden_size = s.vocab_size, s.hidden_size
        self.pad_token_id = s.pad_token_id
        self.options = dict(final_logit_softcap=None, lm_head_bias=False, initializer_range=s.init_std,
                            embed_proj_dim=None, tie_word_embeddings=s.tie_word_embeddings, logit_scale=None,
                            max_position_embeddings=s.max_position_embeddings)
        init = keras.initializers.TruncatedNormal(stddev=s.init_std)
        common = dict(dtype=self.dtype_policy)
        self.token_embedding = keras.layers.Embedding(s.vocab_size, s.hidden_size, embeddings_initializer=init,
                                                      name="embed_tokens", **common)
        self.blocks = [Kosmos2TextBlock(s.hidden_size, s.num_heads, s.intermediate_size, s.activation_function,
                                        s.layer_norm_eps, kernel_initializer=init, dropout=s.dropout,
                                        attention_dropout=s.attention_dropout, activation_dropout=s.activation_dropout,
                                        name=f"block_{i}", **common)
                       for i in range(s.num_layers)]
        self.final_norm = keras.layers.LayerNormalization(epsilon=s.layer_norm_eps, name="layer_norm", **common)
        half = s.hidden_size // 2
        # fairseq's sinusoid frequencies, evaluated at any position (Transformers grows its table)
        self.position_freq = np.exp(np.arange(half) * -(np.log(10000.0) / max(half - 1, 1))).astype("float32")
        self.embed_scale = float(np.sqrt(s.hidden_size)) if s.scale_embedding else None
        self.embed_drop = keras.layers.Dropout(s.dropout, dtype=self.dtype_policy)

    def build(self, input_shape=None):
        self.token_embedding.build((None, None))
        for layer in (*self.blocks, self.final_norm):
            layer.build((None, None, self.hidden_size))
        self.built = True

    def positions(self, ids, cache_index=0):
        """Transformers' position ids: pad tokens -> pad; others pad + 1 + their running count + cache_index."""
        real = ops.cast(ops.not_equal(ids, self.pad_token_id), "int32")
        return (ops.cumsum(real, axis=1) + ops.cast(cache_index, "int32")) * real + self.pad_token_id

    def position_embeddings(self, positions):
        """Sinusoids [sin | cos] of ``positions`` (zero-padded to an odd width); zero at the pad id."""
        pos = ops.cast(positions, "float32")
        angles = pos[..., None] * ops.convert_to_tensor(self.position_freq)
        out = ops.concatenate([ops.sin(angles), ops.cos(angles)], axis=-1)
        if self.hidden_size % 2:
            out = ops.pad(out, [(0, 0)] * (len(out.shape) - 1) + [(0, 1)])
        return out * ops.cast(ops.not_equal(positions, self.pad_token_id), "float32")[..., None]

    def forward(self, ids, key_mask, positions=None, cache=None, cache_index=0, embed=None, training=False):
        x = self.token_embedding(ids) if embed is None else embed(ids, self.token_embedding)
        if self.embed_scale is not None:
            x = x * ops.cast(self.embed_scale, x.dtype)
        if positions is None:
            positions = self.positions(ids, cache_index)
        x = self.embed_drop(x + ops.cast(self.position_embeddings(positions), x.dtype), training=training)
        bias = decoder_bias(key_mask, ops.shape(ids)[1], cache_index, None, x.dtype)
        new_cache = []
        for i, block in enumerate(self.blocks):
            x, c = block(x, bias=bias, cache=None if cache is None else cache[i], cache_index=cache_index,
                         training=training)
            new_cache.append(c)
        return self.final_norm(x), (None if cache is None else tuple(new_cache))

    def init_cache(self, batch_size, max_length):
        return tuple(b.attention.init_cache(batch_size, max_length, self.compute_dtype) for b in self.blocks)

    def call_with_cache(self, input_ids, cache, cache_index, attention_mask, embed=None):
        return self.forward(input_ids, attention_mask, None, cache, cache_index, embed=embed)

    def rules(self, p):
        r = [Rule(p + "embed_tokens.weight", self.token_embedding.embeddings, base=False)]
        for i, b in enumerate(self.blocks):
            r += b.rules(f"{p}layers.{i}.")
        return r + norm_rules(p + "layer_norm", self.final_norm, base=False)

    def get_config(self):
        c = super().get_config()
        c.update(spec=self.spec.to_config())
        return c


@_ser
class Kosmos2ImageToTextProjection(keras.layers.Layer):
    """dense(features), then the latent queries attend over [dense features | latent queries]."""

    def __init__(self, vision_hidden, hidden_size, num_heads, num_queries, attention_dropout=0.0, **kwargs):
        super().__init__(**kwargs)
        self.attention_dropout = attention_dropout
        self.vision_hidden, self.hidden_size = vision_hidden, hidden_size
        self.num_heads, self.num_queries = num_heads, num_queries
        common = dict(dtype=self.dtype_policy)
        self.dense = keras.layers.Dense(hidden_size, name="dense", **common)
        self.attention = Attention(hidden_size, num_heads, use_bias=True, dropout=attention_dropout, name="x_attn",
                                   **common)

    def build(self, input_shape=None):
        self.latent_query = self.add_weight(name="latent_query", shape=(self.num_queries, self.hidden_size),
                                            initializer=keras.initializers.RandomNormal(stddev=1.0))
        self.dense.build((None, None, self.vision_hidden))
        self.attention.build((None, None, self.hidden_size))
        self.built = True

    def call(self, features, training=False):
        h = self.dense(features)
        b = ops.shape(h)[0]
        queries = ops.broadcast_to(ops.cast(self.latent_query, h.dtype)[None], (b, self.num_queries, self.hidden_size))
        return self.attention(queries, context=ops.concatenate([h, queries], axis=1), training=training)

    def rules(self, p):
        a = self.attention
        r = dense_rules(p + "dense", self.dense, base=False)
        r.append(Rule(p + "latent_query", self.latent_query, base=False))
        for name, dense in (("q_proj", a.query), ("k_proj", a.key), ("v_proj", a.value), ("out_proj", a.output_dense)):
            r += dense_rules(f"{p}x_attn.{name}", dense, base=False)
        return r

    def get_config(self):
        c = super().get_config()
        c.update(vision_hidden=self.vision_hidden, hidden_size=self.hidden_size, num_heads=self.num_heads,
                 num_queries=self.num_queries, attention_dropout=self.attention_dropout)
        return c


def merge_image_embeddings(ids, table, features, position_mask, active=True):
    """Token embeddings of ``ids`` with the rows of ``features`` ((n, hidden) or (images, queries,
    hidden)) written where ``position_mask`` is 1, in row-major order; ``active`` (bool or a bool
    tensor) False leaves the token embeddings as they are."""
    x = table(ids)
    if active is False:
        return x
    is_image = ops.cast(position_mask, "bool")
    if active is not True:
        is_image = ops.logical_and(is_image, active)
    d = int(x.shape[-1])
    flat = ops.reshape(ops.cast(features, x.dtype), (-1, d))
    if flat.shape[0] == 0:
        return x
    order = ops.cumsum(ops.reshape(ops.cast(is_image, "int32"), (-1,))) - 1
    order = ops.clip(order, 0, ops.shape(flat)[0] - 1)
    picked = ops.reshape(ops.take(flat, order, axis=0), ops.shape(x))
    return ops.where(is_image[..., None], picked, x)


# --- backbone ---------------------------------------------------------------------------------
@_ser
@register_backbone("kosmos-2")
class Kosmos2Backbone(SpecBackbone):
    """Returns the text decoder's last hidden state (batch, seq, text hidden), after its final
    LayerNorm. Inputs: ``input_ids``, ``attention_mask``, ``pixel_values`` (channels_last) and
    ``image_embeds_position_mask`` (1 where the image features go; ``latent_query_num`` per image);
    ``position_ids`` optional (else numbered from the ids, as Transformers does)."""

    spec_cls = Kosmos2Spec
    hf_architecture = "Kosmos2Model"
    verified_backends = _ALL
    base_model_prefix = ""
    hf_ignore = ("*position_ids",)

    def __init__(self, spec=None, **kwargs):
        super().__init__(spec, **kwargs)
        s = self.spec
        common = dict(dtype=self.dtype_policy)
        self.vision_tower = Kosmos2VisionTower(spec=s.vision_config, name="vision_model", **common)
        self.language_model = Kosmos2TextModel(s.text_config, name="text_model", **common)
        t = s.text_config
        self.projection = Kosmos2ImageToTextProjection(s.vision_config.hidden_size, t.hidden_size, t.num_heads,
                                                       s.latent_query_num, attention_dropout=t.attention_dropout,
                                                       name="image_to_text_projection", **common)
        self.vocab_size, self.hidden_size = t.vocab_size, t.hidden_size
        self.max_position_embeddings = t.max_position_embeddings
        self.tokens_per_image = s.latent_query_num
        self.tie_word_embeddings = bool(s.tie_word_embeddings or t.tie_word_embeddings)
        self.image_token_index = None  # image positions come from image_embeds_position_mask

    def build(self, input_shape=None):
        self.vision_tower.build_from_dummy()
        self.language_model.build()
        self.projection.build()
        self.built = True

    def build_from_dummy(self):
        if not self.built:
            self.build()
        return self

    def image_features(self, pixels, training=False):
        """(images, latent_query_num, text hidden): the projected features of ``pixel_values``."""
        v = self.vision_tower
        size, channels = v.spec.image_size, v.spec.num_channels
        if len(pixels.shape) != 4 or tuple(pixels.shape[1:]) != (size, size, channels):
            raise InputError(f"pixel_values of shape {tuple(pixels.shape)}: this model's vision tower takes "
                             f"(images, {size}, {size}, {channels}) channels_last")
        x = v(ops.cast(pixels, self.compute_dtype), training=training)
        x = v.post_norm(x)
        norm = ops.sqrt(ops.sum(ops.square(x), axis=-1, keepdims=True))
        x = x / ops.maximum(norm, ops.cast(1e-12, x.dtype))
        return self.projection(x, training=training)

    def call(self, inputs, training=False):
        ids = inputs["input_ids"]
        mask = inputs.get("attention_mask")
        mask = ops.ones_like(ids) if mask is None else mask
        pixels = inputs.get("pixel_values")
        embed = None
        if pixels is not None:
            features = self.image_features(pixels, training)
            pos_mask = inputs.get("image_embeds_position_mask")
            if pos_mask is None:
                raise InputError("Kosmos2: pixel_values given without image_embeds_position_mask (1 where the "
                                 "image features go; the processor makes it)")

            def embed(token_ids, table):
                return merge_image_embeddings(token_ids, table, features, pos_mask)

        positions = inputs.get("position_ids")
        return self.language_model.forward(ids, mask, positions, embed=embed, training=training)[0]

    def check_image_inputs(self, inputs, where):
        """Host-side check: ``image_embeds_position_mask`` marks as many positions as the images
        give features (``latent_query_num`` each)."""
        ids, pixels = inputs.get("input_ids"), inputs.get("pixel_values")
        if not isinstance(ids, np.ndarray) or pixels is None:
            return
        shape = tuple(pixels.shape)
        if len(shape) != 4:
            raise InputError(f"{where}: pixel_values must be (images, height, width, channels), got shape {shape}")
        pos = inputs.get("image_embeds_position_mask")
        if pos is None:
            raise InputError(f"{where}: pixel_values given without image_embeds_position_mask")
        pos = np.asarray(backend_to_numpy(pos))
        if pos.shape != ids.shape:
            raise InputError(f"{where}: image_embeds_position_mask has shape {pos.shape}, input_ids {ids.shape}")
        found, need = int((pos != 0).sum()), int(shape[0]) * self.tokens_per_image
        if found != need:
            raise InputError(f"{where}: image_embeds_position_mask marks {found} positions but pixel_values has "
                             f"{shape[0]} image(s) of {self.tokens_per_image} features each ({need})")

    def weight_rules(self):
        r = mount(self.vision_tower.weight_rules(), "vision_model.model.")
        r += self.language_model.rules("text_model.model.")
        r += self.projection.rules("image_to_text_projection.")
        return r


class Kosmos2Decoder(CausalDecoder):
    """The engine's decoder: image features and their position mask (``extra``) merged on the prefill."""

    def forward(self, ids, cache, index, mask, extra, last_only=False):
        extra = extra or {}
        return self.model.call_with_cache(ids, cache, index, mask, last_only=last_only,
                                          image_features=extra.get("image_features"),
                                          image_mask=extra.get("image_mask"))


@_ser
@register_task(Kosmos2Backbone, "ImageTextToText", ("Kosmos2ForConditionalGeneration",))
class Kosmos2ImageTextToText(ImageTextToText):
    """``Kosmos2ForConditionalGeneration``: call on ``{input_ids, attention_mask, pixel_values,
    image_embeds_position_mask}`` -> logits (batch, seq, vocab); ``generate`` takes the same dict."""

    hf_lm_head = "text_model.lm_head"
    hf_lm_head_aliases = ()
    hf_head_patterns = ("text_model.lm_head.*",)
    decoder_adapter = Kosmos2Decoder
    _gen_image_mask = None

    def call_with_cache(self, input_ids, cache, cache_index, attention_mask, last_only=False, image_features=None,
                        image_mask=None):
        embed = None
        # the prefill is the only chunk as wide as the prompt's mask (a one-token prompt's steps are
        # told apart by the cache index)
        if image_features is not None and image_mask is not None and image_mask.shape[1] == input_ids.shape[1]:
            first = (cache_index == 0) if isinstance(cache_index, int) else ops.equal(
                ops.cast(cache_index, "int32"), 0)

            def embed(ids, table):
                return merge_image_embeddings(ids, table, image_features, image_mask, first)

        hidden, cache = self.backbone.language_model.call_with_cache(input_ids, cache, cache_index, attention_mask,
                                                                     embed=embed)
        if last_only:
            hidden = hidden[:, -1:, :]
        return self.logits(hidden), cache

    def generate(self, inputs=None, generation_config=None, *, pixel_values=None, image_embeds_position_mask=None,
                 **kwargs):
        """Transformers' ``generate``: ``inputs`` a dict with ``input_ids``, ``attention_mask``,
        ``pixel_values`` and ``image_embeds_position_mask`` (or those given as keywords).
        Returns the prompt ids followed by the new ids."""
        if isinstance(inputs, dict):
            inputs = dict(inputs)
            pixel_values = inputs.pop("pixel_values", pixel_values)
            image_embeds_position_mask = inputs.pop("image_embeds_position_mask", image_embeds_position_mask)
        if inputs is None and "input_ids" in kwargs:
            inputs = {k: kwargs.pop(k) for k in ("input_ids", "attention_mask") if k in kwargs}
        if pixel_values is None:
            return GenerationMixin.generate(self, inputs, generation_config, **kwargs)
        ids = np.asarray(backend_to_numpy(inputs["input_ids"] if isinstance(inputs, dict) else inputs))
        ids = ids[None] if ids.ndim == 1 else ids
        pos = None if image_embeds_position_mask is None else np.asarray(
            backend_to_numpy(image_embeds_position_mask)).reshape(ids.shape[0], -1)
        self.backbone.check_image_inputs({"input_ids": ids, "pixel_values": pixel_values,
                                          "image_embeds_position_mask": pos}, "generate")
        features = self.backbone.image_features(ops.convert_to_tensor(np.asarray(backend_to_numpy(pixel_values))))
        self._gen_images = ops.reshape(features, (-1, int(features.shape[-1])))
        self._gen_image_mask = pos.astype("int32")
        try:
            return GenerationMixin.generate(self, inputs, generation_config, **kwargs)
        finally:
            self._gen_images = self._gen_image_mask = None
            self._gen_extra = None

    def _gen_buffers(self, ids, mask, rows_per_prompt, max_length, pad):
        self._gen_extra = {}
        if self._gen_images is not None:
            pos = self._gen_image_mask
            counts = (pos != 0).sum(axis=1)
            starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
            order = np.concatenate([np.tile(np.arange(s, s + c), rows_per_prompt) for s, c in zip(starts, counts)]
                                   + [np.zeros((0,), "int64")]).astype("int32")
            self._gen_extra = {"image_features": ops.take(self._gen_images, order, axis=0),
                               "image_mask": ops.convert_to_tensor(np.repeat(pos, rows_per_prompt, axis=0))}
        return GenerationMixin._gen_buffers(self, ids, mask, rows_per_prompt, max_length, pad)

    @classmethod
    def preprocessor_from_preset(cls, folder, hf, **kw):
        from keras_models.models.kosmos2.processor import Kosmos2Processor

        return Kosmos2Processor.from_preset(folder, hf)


__all__ = ["Kosmos2Spec", "Kosmos2TextSpec", "Kosmos2VisionSpec", "Kosmos2Backbone", "Kosmos2ImageTextToText",
           "Kosmos2TextModel", "Kosmos2TextBlock", "Kosmos2ImageToTextProjection", "Kosmos2VisionTower",
           "merge_image_embeddings"]

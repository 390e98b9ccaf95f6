"""GIT (GenerativeImage2Text): a CLIP-like vision tower whose projected tokens are prefixed to a
BERT-like text stack that is causal over the text.

* vision tower (``vision_config``, ``git_vision_model``): CLIP's vision transformer with
  ``post_layernorm`` on every token; its tokens go through ``visual_projection`` (Linear +
  LayerNorm with the vision tower's eps);
* text: word + position embeddings (positions count text tokens only, from 0) and LayerNorm, then
  post-norm BERT layers (Seq2SeqBlock without cross-attention);
* attention: an image token sees every image token; a text token sees every image token and the
  text up to itself (padding excluded). The image tokens never see text, so their keys / values
  do not depend on it: ``image_kv`` computes them once and decoding keeps them as a fixed prefix
  of each layer's KV buffer (text written from slot ``num_image_tokens`` on).

Returns the last hidden state over [image tokens; text tokens] (batch, image + text, hidden), as
Transformers' GitModel (the text tokens only when no ``pixel_values`` are given).
"""

from dataclasses import dataclass, replace

import keras
import numpy as np
from keras import ops

from keras_models.errors import ConfigError, InputError
from keras_models.layers.masks import mask_value, padding_bias
from keras_models.layers.seq2seq_block import Seq2SeqBlock, heads_major
from keras_models.layers.vision_embeddings import dense_rules, norm_rules
from keras_models.models.backbone import SpecBackbone
from keras_models.models.clip.vision import CLIPVisionSpec, VisionTower, _square
from keras_models.models.registry import register_backbone
from keras_models.presets.weight_map import Rule
from keras_models.spec import Spec, build_tower, const, dim, hf, tower

_ser = keras.saving.register_keras_serializable(package="keras_models")
_ALL = ("jax", "torch", "tensorflow")


@dataclass(frozen=True, kw_only=True)
class GitVisionSpec(CLIPVisionSpec):
    patch_size: int = hf("patch_size", 16, read=_square, dim=True)
    projection_dim: int | None = const(None)
    post_norm: str = const("all", doc="post_layernorm on every token")


@_ser
@register_backbone("git_vision_model")
class GitVisionBackbone(VisionTower):
    spec_cls = GitVisionSpec
    hf_architecture = "GitVisionModel"
    verified_backends = _ALL


@dataclass(frozen=True, kw_only=True)
class GitSpec(Spec):
    unsupported = {"num_image_with_embedding": (None,),  # video GIT (temporal image embeddings)
                   "tie_word_embeddings": (False, None)}
    vision_config: dict = tower("vision_config", "git_vision_model")
    vocab_size: int = dim("vocab_size", 30522)
    hidden_size: int = dim("hidden_size", 768)
    num_layers: int = dim("num_hidden_layers", 6)
    num_heads: int = dim("num_attention_heads", 12)
    intermediate_size: int = dim("intermediate_size", 3072)
    hidden_act: str = hf("hidden_act", "gelu")
    dropout: float = hf("hidden_dropout_prob", 0.1)
    attention_dropout: float = hf("attention_probs_dropout_prob", 0.1)
    max_position_embeddings: int = dim("max_position_embeddings", 1024)
    layer_norm_eps: float = hf("layer_norm_eps", 1e-12)
    initializer_range: float = hf("initializer_range", 0.02)
    pad_token_id: int | None = hf("pad_token_id", 0)
    bos_token_id: int | None = hf("bos_token_id", 101)
    eos_token_id: int | None = hf("eos_token_id", 102)

    def dummy_inputs(self):
        v = self.vision_config
        size = v.get("image_size", 224)
        size = size[0] if isinstance(size, (list, tuple)) else size
        return {"input_ids": np.ones((1, 2), "int32"), "attention_mask": np.ones((1, 2), "int32"),
                "pixel_values": np.zeros((1, size, size, v.get("num_channels", 3)), "float32")}


@_ser
@register_backbone("git")
class GitBackbone(SpecBackbone):
    spec_cls = GitSpec
    verified_backends = _ALL
    base_model_prefix = "git"
    hf_architecture = "GitModel"
    hf_ignore = ("*position_ids",)

    def __init__(self, spec=None, **kwargs):
        super().__init__(spec, **kwargs)
        s = self.spec
        dt = self.dtype_policy
        self.image_encoder = build_tower(s.vision_config, "image_encoder", dt)
        v = self.image_encoder
        if not isinstance(v, VisionTower) or v.head is not None:
            raise ConfigError(f"vision_config: model_type {s.vision_config.get('model_type')!r} is not a CLIP-like "
                              "vision tower (git_vision_model, clip_vision_model)")
        self.num_image_tokens = v.grid * v.grid + v.num_prefix_tokens
        self.vocab_size, self.hidden_size = s.vocab_size, s.hidden_size
        self.max_position_embeddings = s.max_position_embeddings
        self.num_heads, self.head_dim = s.num_heads, s.hidden_size // s.num_heads
        for name in ("pad_token_id", "bos_token_id", "eos_token_id"):
            setattr(self, name, getattr(s, name))
        init = keras.initializers.TruncatedNormal(stddev=s.initializer_range)
        self.visual_projection = keras.layers.Dense(s.hidden_size, kernel_initializer=init, name="visual_projection",
                                                    dtype=dt)
        self.visual_norm = keras.layers.LayerNormalization(epsilon=v.spec.layer_norm_eps, name="visual_norm", dtype=dt)
        self.token_embedding = keras.layers.Embedding(s.vocab_size, s.hidden_size, embeddings_initializer=init,
                                                      name="token_embedding", dtype=dt)
        self.position_embedding = keras.layers.Embedding(s.max_position_embeddings, s.hidden_size,
                                                         embeddings_initializer=init, name="position_embedding",
                                                         dtype=dt)
        self.embed_norm = keras.layers.LayerNormalization(epsilon=s.layer_norm_eps, name="embed_norm", dtype=dt)
        self.dropout_layer = keras.layers.Dropout(s.dropout, dtype=dt)
        self.blocks = [Seq2SeqBlock(s.hidden_size, s.num_heads, s.intermediate_size, hidden_act=s.hidden_act,
                                    norm_first=False, layer_norm_eps=s.layer_norm_eps, dropout=s.dropout,
                                    attention_dropout=s.attention_dropout, kernel_initializer=init,
                                    name=f"block_{i}", dtype=dt)
                       for i in range(s.num_layers)]

    def build(self, input_shape=None):
        d = self.hidden_size
        self.image_encoder.build_from_dummy()
        self.visual_projection.build((None, None, self.image_encoder.hidden_size))
        for layer in (self.visual_norm, self.embed_norm, *self.blocks):
            layer.build((None, None, d))
        self.token_embedding.build((None, None))
        self.position_embedding.build((None, None))
        self.built = True

    def build_from_dummy(self):
        if not self.built:
            self.build()
        return self

    # --- pieces ---------------------------------------------------------------------------------
    def image_features(self, pixel_values, training=False):
        """(batch, num_image_tokens, hidden): the vision tower's tokens, projected."""
        if len(pixel_values.shape) != 4:
            raise InputError(f"pixel_values must be (batch, height, width, channels), got shape "
                             f"{tuple(pixel_values.shape)}")
        x = self.image_encoder({"pixel_values": ops.cast(pixel_values, self.compute_dtype)}, training=training)
        return self.visual_norm(self.visual_projection(x))

    def embed_text(self, ids, positions=None, training=False):
        """Token + position embeddings, normed; ``positions`` default to 0 .. t - 1."""
        if positions is None:
            positions = ops.arange(ops.shape(ids)[1], dtype="int32")[None, :]
        x = self.token_embedding(ids) + self.position_embedding(positions)
        return self.dropout_layer(self.embed_norm(x), training=training)

    def _bias(self, n_image, t, text_mask, dtype):
        """(batch, 1, n + t, n + t): every query sees the image tokens, text sees text causally."""
        q = ops.arange(n_image + t)[:, None]
        k = ops.arange(n_image + t)[None, :]
        allowed = ops.logical_or(k <= q, k < n_image)
        bias = ops.where(allowed, 0.0, mask_value(dtype))[None, None]
        if text_mask is not None:
            b = ops.shape(text_mask)[0]
            full = ops.concatenate([ops.ones((b, n_image), text_mask.dtype), text_mask], axis=1)
            bias = bias + padding_bias(full, dtype)
        return ops.cast(bias, dtype)

    def call(self, inputs, training=False):
        ids = inputs["input_ids"]
        mask = inputs.get("attention_mask")
        x = self.embed_text(ids, training=training)
        pixels = inputs.get("pixel_values")
        n = 0
        if pixels is not None:
            image = self.image_features(pixels, training)
            reps = ops.shape(x)[0] // ops.shape(image)[0]
            if not isinstance(reps, int) or reps != 1:
                image = ops.repeat(image, reps, axis=0)
            x = ops.concatenate([ops.cast(image, x.dtype), x], axis=1)
            n = self.num_image_tokens
        bias = self._bias(n, ops.shape(ids)[1], mask, x.dtype)
        for blk in self.blocks:
            x = blk(x, bias, training=training)
        return x

    # --- cached decoding ------------------------------------------------------------------------
    def image_kv(self, features):
        """Per layer the image tokens' (keys, values), heads-major (batch, heads, n, head_dim)."""
        x = features
        out = []
        for blk in self.blocks:
            a = blk.self_attention
            out.append((heads_major(blk._heads(a, a.key(x))), heads_major(blk._heads(a, a.value(x)))))
            x = blk(x, None)
        return tuple(out)

    def init_cache(self, batch_size, max_length):
        """Per layer zeroed (keys, values) buffers over the image prefix and ``max_length`` text slots."""
        shape = (batch_size, self.num_heads, self.num_image_tokens + max_length, self.head_dim)
        return tuple((ops.zeros(shape, self.compute_dtype), ops.zeros(shape, self.compute_dtype))
                     for _ in self.blocks)

    def call_with_cache(self, ids, cache, cache_index, attention_mask, image_kv=None):
        """Text ``ids`` (b, t) written at text slots ``cache_index ..``; ``attention_mask`` (b, text
        slots) covers the text part of the buffers, and the positions are counted over it
        (cumsum - 1, as Transformers' generate derives them); ``image_kv`` (see :meth:`image_kv`)
        is written into the image prefix. Returns (hidden (b, t, hidden), cache)."""
        from keras_models.generation.backend import write_time_slice
        from keras_models.layers.decoder_masks import positions_from_mask

        if type(cache_index) is not int:
            cache_index = ops.cast(cache_index, "int32")
        n = self.num_image_tokens
        slots = ops.arange(ops.shape(ids)[1], dtype="int32") + cache_index
        x = self.embed_text(ids, ops.take(positions_from_mask(attention_mask), slots, axis=1))
        t = ops.shape(x)[1]
        length = ops.shape(cache[0][0])[2]
        q = ops.arange(t)[:, None] + n + cache_index
        k = ops.arange(length)[None, :]
        bias = ops.where(k <= q, 0.0, mask_value(x.dtype))[None, None]
        b = ops.shape(ids)[0]
        full = ops.concatenate([ops.ones((b, n), "int32"), ops.cast(attention_mask, "int32")], axis=1)
        bias = ops.cast(bias + padding_bias(full, x.dtype), x.dtype)
        new = []
        for i, blk in enumerate(self.blocks):
            layer_cache = cache[i]
            if image_kv is not None:
                layer_cache = tuple(write_time_slice(buf, kv, 0, axis=2) for buf, kv in zip(layer_cache, image_kv[i]))
            x, layer_cache = blk(x, bias, cache=layer_cache, cache_index=n + cache_index)
            new.append(layer_cache)
        return x, tuple(new)

    # --- weights --------------------------------------------------------------------------------
    def weight_rules(self):
        v = self.image_encoder
        r = [replace(rule, hf=f"image_encoder.{v.base_model_prefix}.{rule.hf}") for rule in v.weight_rules()]
        r += [Rule("embeddings.word_embeddings.weight", self.token_embedding.embeddings),
              Rule("embeddings.position_embeddings.weight", self.position_embedding.embeddings)]
        r += norm_rules("embeddings.LayerNorm", self.embed_norm)
        r += dense_rules("visual_projection.visual_projection.0", self.visual_projection)
        r += norm_rules("visual_projection.visual_projection.1", self.visual_norm)
        for i, blk in enumerate(self.blocks):
            p = f"encoder.layer.{i}."
            a = blk.self_attention
            for name, dense in (("attention.self.query", a.query), ("attention.self.key", a.key),
                                ("attention.self.value", a.value), ("attention.output.dense", a.output_dense),
                                ("intermediate.dense", blk.ffn_in), ("output.dense", blk.ffn_out)):
                r += dense_rules(p + name, dense)
            r += norm_rules(p + "attention.output.LayerNorm", blk.self_attention_norm)
            r += norm_rules(p + "output.LayerNorm", blk.ffn_norm)
        return r


__all__ = ["GitVisionSpec", "GitVisionBackbone", "GitSpec", "GitBackbone"]

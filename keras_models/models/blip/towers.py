"""BLIP's two towers.

* vision (``blip_vision_model``, Transformers' BlipVisionModel): class token + patch convolution
  (with bias) + learned positions, pre-norm blocks whose attention is one fused ``qkv`` projection
  ([q heads | k heads | v heads]) and an output ``projection``; ``post_layernorm`` on every token.
  The pooled feature is ``post_layernorm`` applied once more to the (already normed) class token,
  as Transformers computes it. Output: (batch, 1 + patches, hidden).
* text (``blip_text_model``, BlipTextModel / the ``bert`` of BlipTextLMHeadModel): word +
  absolute position embeddings and LayerNorm, then post-norm BERT layers; with ``is_decoder``
  each layer also has a cross-attention (keys / values read ``encoder_hidden_size``-wide image
  states) between self-attention and the feed-forward. Self-attention is bidirectional
  (``forward(causal=False)``, the text encoder of retrieval / BlipModel) or causal (the captioning
  decoder). Cross-attention runs only when image states are given. Output: (batch, seq, hidden).
"""

from dataclasses import dataclass

import keras
import numpy as np
from keras import ops

from keras_models.errors import ConfigError, InputError
from keras_models.layers.activations import get_activation
from keras_models.layers.attention import Attention
from keras_models.layers.masks import mask_value, padding_bias
from keras_models.layers.seq2seq_block import Seq2SeqBlock
from keras_models.layers.vision_embeddings import PatchEmbedding, conv_rules, dense_rules, norm_rules
from keras_models.models.backbone import SpecBackbone
from keras_models.models.clip.vision import _square
from keras_models.models.registry import register_backbone
from keras_models.presets.weight_map import Rule, Reshape
from keras_models.spec import Spec, const, dim, hf

_ser = keras.saving.register_keras_serializable(package="keras_models")
_ALL = ("jax", "torch", "tensorflow")


# --- vision -------------------------------------------------------------------------------------
@_ser
class BlipVisionBlock(keras.layers.Layer):
    """Pre-norm block: norm -> fused-qkv attention -> projection + residual; norm -> MLP + residual."""

    def __init__(self, hidden_size, num_heads, intermediate_size, hidden_act="gelu", layer_norm_eps=1e-5,
                 attention_dropout=0.0, kernel_initializer="glorot_uniform", qkv_bias=True, **kwargs):
        super().__init__(**kwargs)
        self.qkv_bias = qkv_bias
        self.hidden_size, self.num_heads, self.intermediate_size = hidden_size, num_heads, intermediate_size
        self.hidden_act, self.layer_norm_eps, self.attention_dropout = hidden_act, layer_norm_eps, attention_dropout
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        common = dict(dtype=self.dtype_policy)
        dense = dict(kernel_initializer=self.kernel_initializer, **common)
        self.attention = Attention(hidden_size, num_heads, use_bias=qkv_bias, output_bias=True, fused_qkv=True,
                                   dropout=attention_dropout,
                                   name="attention", **dense)
        self.norm1 = keras.layers.LayerNormalization(epsilon=layer_norm_eps, name="norm1", **common)
        self.norm2 = keras.layers.LayerNormalization(epsilon=layer_norm_eps, name="norm2", **common)
        self.fc1 = keras.layers.Dense(intermediate_size, name="fc1", **dense)
        self.fc2 = keras.layers.Dense(hidden_size, name="fc2", **dense)
        self.act = get_activation(hidden_act)

    def build(self, input_shape):
        for layer in (self.attention, self.norm1, self.norm2, self.fc1):
            layer.build(input_shape)
        self.fc2.build(tuple(input_shape[:-1]) + (self.intermediate_size,))
        self.built = True

    def call(self, x, training=False):
        a = self.attention
        q, k, v = a.project_qkv(self.norm1(x))
        x = x + a.output_dense(a.attend(q, k, v, None, training=training))
        return x + self.fc2(self.act(self.fc1(self.norm2(x))))

    def rules(self, p):
        a = self.attention
        return (dense_rules(p + "self_attn.qkv", a.qkv) + dense_rules(p + "self_attn.projection", a.output_dense)
                + norm_rules(p + "layer_norm1", self.norm1) + norm_rules(p + "layer_norm2", self.norm2)
                + dense_rules(p + "mlp.fc1", self.fc1) + dense_rules(p + "mlp.fc2", self.fc2))

    def get_config(self):
        c = super().get_config()
        c.update(hidden_size=self.hidden_size, num_heads=self.num_heads, intermediate_size=self.intermediate_size,
                 hidden_act=self.hidden_act, layer_norm_eps=self.layer_norm_eps,
                 attention_dropout=self.attention_dropout, qkv_bias=self.qkv_bias,
                 kernel_initializer=keras.initializers.serialize(self.kernel_initializer))
        return c


@dataclass(frozen=True, kw_only=True)
class BlipVisionSpec(Spec):
    hidden_size: int = dim("hidden_size", 768)
    intermediate_size: int = dim("intermediate_size", 3072)
    num_layers: int = dim("num_hidden_layers", 12)
    num_heads: int = dim("num_attention_heads", 12)
    image_size: int = hf("image_size", 384, read=_square, dim=True)
    patch_size: int = hf("patch_size", 16, read=_square, dim=True)
    hidden_act: str = hf("hidden_act", "gelu")
    layer_norm_eps: float = hf("layer_norm_eps", 1e-5)
    attention_dropout: float = hf("attention_dropout", 0.0)
    projection_dim: int = hf("projection_dim", 512, doc="not read by the vision tower (kept for config.json)")
    initializer_range: float = hf("initializer_range", 1e-10)
    num_channels: int = const(3, doc="Transformers' patch convolution always takes 3 channels")
    qkv_bias: bool = const(True)

    def validate(self, source="config.json"):
        if self.hidden_size % self.num_heads:
            raise ConfigError(f"{source}: hidden_size={self.hidden_size} is not divisible by "
                              f"num_attention_heads={self.num_heads}")
        if self.image_size % self.patch_size:
            raise ConfigError(f"{source}: image_size={self.image_size} is not a multiple of "
                              f"patch_size={self.patch_size}")

    def dummy_inputs(self):
        return {"pixel_values": np.zeros((1, self.image_size, self.image_size, 3), "float32")}


@_ser
@register_backbone("blip_vision_model")
class BlipVisionBackbone(SpecBackbone):
    """``pixel_values`` (batch, height, width, 3) -> (batch, 1 + patches, hidden), post-normed."""

    spec_cls = BlipVisionSpec
    hf_architecture = "BlipVisionModel"
    verified_backends = _ALL
    base_model_prefix = ""

    def __init__(self, spec=None, **kwargs):
        super().__init__(spec, **kwargs)
        s = self.spec
        self.hidden_size = s.hidden_size
        self.grid = s.image_size // s.patch_size
        self.num_tokens = self.grid * self.grid + 1
        init = keras.initializers.TruncatedNormal(stddev=max(s.initializer_range, 1e-10))
        common = dict(dtype=self.dtype_policy)
        self.patch_embedding = PatchEmbedding(s.hidden_size, s.patch_size, 3, use_bias=True, name="patch_embedding",
                                              **common)
        self.blocks = [BlipVisionBlock(s.hidden_size, s.num_heads, s.intermediate_size, s.hidden_act,
                                       s.layer_norm_eps, s.attention_dropout, qkv_bias=s.qkv_bias,
                                       name=f"block_{i}", **common)
                       for i in range(s.num_layers)]
        self.post_norm = keras.layers.LayerNormalization(epsilon=s.layer_norm_eps, name="post_norm", **common)
        self._init = init

    def build(self, input_shape=None):
        d = self.hidden_size
        self.class_embedding = self.add_weight(name="class_embedding", shape=(d,), initializer=self._init)
        self.position_embedding = self.add_weight(name="position_embedding", shape=(self.num_tokens, d),
                                                  initializer=self._init)
        self.patch_embedding.build((None, None, None, 3))
        for layer in (*self.blocks, self.post_norm):
            layer.build((None, None, d))
        self.built = True

    def build_from_dummy(self):
        if not self.built:
            self.build()
        return self

    def call(self, inputs, training=False):
        pixels = inputs["pixel_values"] if isinstance(inputs, dict) else inputs
        if len(pixels.shape) != 4:
            raise InputError(f"pixel_values must be (batch, height, width, channels), got shape {tuple(pixels.shape)}")
        x = self.patch_embedding(ops.cast(pixels, self.compute_dtype))
        b, gh, gw = ops.shape(x)[0], x.shape[1], x.shape[2]
        if (gh, gw) != (self.grid, self.grid):
            size, p = self.spec.image_size, self.spec.patch_size
            raise InputError(f"pixel_values of {gh * p}x{gw * p} pixels: this model takes {size}x{size}")
        x = ops.reshape(x, (b, gh * gw, self.hidden_size))
        cls = ops.broadcast_to(ops.cast(self.class_embedding, x.dtype)[None, None, :], (b, 1, self.hidden_size))
        x = ops.concatenate([cls, x], axis=1) + ops.cast(self.position_embedding, x.dtype)[None]
        for block in self.blocks:
            x = block(x, training=training)
        return self.post_norm(x)

    def pooled(self, hidden, inputs=None):
        """Transformers' pooler_output: ``post_layernorm`` of the post-normed class token."""
        return self.post_norm(hidden[:, 0])

    def weight_rules(self):
        d = self.hidden_size
        r = conv_rules("embeddings.patch_embedding", self.patch_embedding.projection)
        r += [Rule("embeddings.class_embedding", self.class_embedding, Reshape((1, 1, d), (d,))),
              Rule("embeddings.position_embedding", self.position_embedding,
                   Reshape((1, self.num_tokens, d), (self.num_tokens, d)))]
        for i, block in enumerate(self.blocks):
            r += block.rules(f"encoder.layers.{i}.")
        return r + norm_rules("post_layernorm", self.post_norm)


@dataclass(frozen=True, kw_only=True)
class Blip2VisionSpec(BlipVisionSpec):
    """BLIP-2 / InstructBLIP: the fused projection's bias is one ``qkv.bias`` tensor (Transformers
    builds it from separate q / v biases and a zero k part, and saves it whole), or absent
    (``qkv_bias: false``)."""

    hidden_size: int = dim("hidden_size", 1408)
    intermediate_size: int = dim("intermediate_size", 6144)
    num_layers: int = dim("num_hidden_layers", 39)
    num_heads: int = dim("num_attention_heads", 16)
    image_size: int = hf("image_size", 224, read=_square, dim=True)
    patch_size: int = hf("patch_size", 14, read=_square, dim=True)
    layer_norm_eps: float = hf("layer_norm_eps", 1e-6)
    projection_dim: int = const(None)
    qkv_bias: bool = hf("qkv_bias", True)


@_ser
@register_backbone("blip_2_vision_model", "instructblip_vision_model")
class Blip2VisionBackbone(BlipVisionBackbone):
    spec_cls = Blip2VisionSpec
    hf_architecture = "Blip2VisionModel"
    verified_backends = _ALL


# --- text ---------------------------------------------------------------------------------------
@dataclass(frozen=True, kw_only=True)
class BlipTextSpec(Spec):
    vocab_size: int = dim("vocab_size", 30524)
    hidden_size: int = dim("hidden_size", 768)
    encoder_hidden_size: int = dim("encoder_hidden_size", 768)
    intermediate_size: int = dim("intermediate_size", 3072)
    projection_dim: int = hf("projection_dim", 768, doc="not read by the text tower (kept for config.json)")
    num_layers: int = dim("num_hidden_layers", 12)
    num_heads: int = dim("num_attention_heads", 8)
    max_position_embeddings: int = dim("max_position_embeddings", 512)
    hidden_act: str = hf("hidden_act", "gelu")
    layer_norm_eps: float = hf("layer_norm_eps", 1e-12)
    dropout: float = hf("hidden_dropout_prob", 0.0)
    attention_dropout: float = hf("attention_probs_dropout_prob", 0.0)
    initializer_range: float = hf("initializer_range", 0.02)
    bos_token_id: int | None = hf("bos_token_id", 30522)
    eos_token_id: int | None = hf("eos_token_id", 2)
    pad_token_id: int | None = hf("pad_token_id", 0)
    sep_token_id: int | None = hf("sep_token_id", 102)
    is_decoder: bool = hf("is_decoder", True, doc="layers carry a cross-attention over image states")
    tie_word_embeddings: bool = hf("tie_word_embeddings", True)
    label_smoothing: float = hf("label_smoothing", 0.0, doc="training loss only")

    def validate(self, source="config.json"):
        if self.hidden_size % self.num_heads:
            raise ConfigError(f"{source}: hidden_size={self.hidden_size} is not divisible by "
                              f"num_attention_heads={self.num_heads}")


@_ser
@register_backbone("blip_text_model")
class BlipTextBackbone(SpecBackbone):
    """``{"input_ids", "attention_mask"[, "encoder_hidden_states"]}`` -> (batch, seq, hidden),
    bidirectional (Transformers' BlipTextModel default); :meth:`forward` takes ``causal=True``."""

    spec_cls = BlipTextSpec
    hf_architecture = "BlipTextModel"
    verified_backends = _ALL
    base_model_prefix = "bert"
    hf_ignore = ("*position_ids",)
    hf_known_unused = ("pooler.*", "cls.*")

    def __init__(self, spec=None, **kwargs):
        super().__init__(spec, **kwargs)
        s = self.spec
        dt = self.dtype_policy
        self.vocab_size, self.hidden_size = s.vocab_size, s.hidden_size
        self.max_position_embeddings = s.max_position_embeddings
        self.num_heads, self.head_dim = s.num_heads, s.hidden_size // s.num_heads
        self.context_size = s.encoder_hidden_size
        for name in ("pad_token_id", "bos_token_id", "eos_token_id", "sep_token_id"):
            setattr(self, name, getattr(s, name))
        init = keras.initializers.TruncatedNormal(stddev=s.initializer_range)
        self.token_embedding = keras.layers.Embedding(s.vocab_size, s.hidden_size, embeddings_initializer=init,
                                                      name="token_embedding", dtype=dt)
        self.position_embedding = keras.layers.Embedding(s.max_position_embeddings, s.hidden_size,
                                                         embeddings_initializer=init, name="position_embedding",
                                                         dtype=dt)
        self.embed_norm = keras.layers.LayerNormalization(epsilon=s.layer_norm_eps, name="embed_norm", dtype=dt)
        self.dropout_layer = keras.layers.Dropout(s.dropout, dtype=dt)
        self.blocks = [Seq2SeqBlock(s.hidden_size, s.num_heads, s.intermediate_size, hidden_act=s.hidden_act,
                                    norm_first=False, layer_norm_eps=s.layer_norm_eps, dropout=s.dropout,
                                    attention_dropout=s.attention_dropout, cross_attention=s.is_decoder,
                                    context_size=s.encoder_hidden_size if s.is_decoder else None,
                                    kernel_initializer=init, name=f"block_{i}", dtype=dt)
                       for i in range(s.num_layers)]

    def build(self, input_shape=None):
        d = self.hidden_size
        self.token_embedding.build((None, None))
        self.position_embedding.build((None, None))
        for layer in (self.embed_norm, *self.blocks):
            layer.build((None, None, d))
        self.built = True

    def build_from_dummy(self):
        if not self.built:
            self.build()
        return self

    def embed(self, ids, positions=None, training=False):
        if positions is None:
            positions = ops.arange(ops.shape(ids)[1], dtype="int32")[None, :]
        x = self.token_embedding(ids) + self.position_embedding(positions)
        return self.dropout_layer(self.embed_norm(x), training=training)

    def _check_context(self, context):
        if context is not None and not self.spec.is_decoder:
            raise InputError("encoder_hidden_states given, but this text model has no cross-attention "
                             "(its config says is_decoder=false)")

    def forward(self, ids, attention_mask=None, context=None, context_mask=None, causal=False, training=False):
        """Hidden states of ``ids``; ``context`` (batch, tokens, encoder_hidden_size): image states
        the cross-attention reads (``context_mask`` 1 = visible); ``causal``: decoder self-attention."""
        self._check_context(context)
        x = self.embed(ids, training=training)
        t = ops.shape(ids)[1]
        bias = None
        if causal:
            q, k = ops.arange(t)[:, None], ops.arange(t)[None, :]
            bias = ops.where(k <= q, 0.0, mask_value(x.dtype))[None, None]
        if attention_mask is not None:
            pad = padding_bias(attention_mask, x.dtype)
            bias = pad if bias is None else bias + pad
        bias = None if bias is None else ops.cast(bias, x.dtype)
        cross = None if context_mask is None else padding_bias(context_mask, x.dtype)
        if context is not None:
            context = ops.cast(context, x.dtype)
        for blk in self.blocks:
            x = blk(x, bias, context=context, cross_bias=cross, training=training)
        return x

    def call(self, inputs, training=False):
        return self.forward(inputs["input_ids"], inputs.get("attention_mask"), inputs.get("encoder_hidden_states"),
                            inputs.get("encoder_attention_mask"), training=training)

    # --- cached (causal) decoding ---------------------------------------------------------------
    def cross_kv(self, context):
        """Per layer the image states' cross-attention (keys, values), heads-major."""
        self._check_context(context)
        context = ops.cast(context, self.compute_dtype)
        return tuple(blk.cross_kv(context) for blk in self.blocks)

    def init_cache(self, batch_size, max_length):
        shape = (batch_size, self.num_heads, max_length, self.head_dim)
        return tuple((ops.zeros(shape, self.compute_dtype), ops.zeros(shape, self.compute_dtype))
                     for _ in self.blocks)

    def call_with_cache(self, ids, cache, cache_index, attention_mask, cross_kv=None):
        """Causal decoding: ``ids`` (b, t) written at ``cache_index``; ``attention_mask`` (b,
        buffer length) 1 = real token; positions count the real tokens (cumsum - 1, as
        Transformers' generate derives them). Returns (hidden (b, t, hidden), cache)."""
        from keras_models.layers.decoder_masks import positions_from_mask

        if type(cache_index) is not int:
            cache_index = ops.cast(cache_index, "int32")
        slots = ops.arange(ops.shape(ids)[1], dtype="int32") + cache_index
        x = self.embed(ids, ops.take(positions_from_mask(attention_mask), slots, axis=1))
        length = ops.shape(cache[0][0])[2]
        q = ops.arange(ops.shape(ids)[1])[:, None] + cache_index
        k = ops.arange(length)[None, :]
        bias = ops.where(k <= q, 0.0, mask_value(x.dtype))[None, None]
        bias = ops.cast(bias + padding_bias(attention_mask, x.dtype), x.dtype)
        new = []
        for i, blk in enumerate(self.blocks):
            kv = None if cross_kv is None else cross_kv[i]
            x, layer_cache = blk(x, bias, cache=cache[i], cache_index=cache_index, cross_kv=kv)
            new.append(layer_cache)
        return x, tuple(new)

    # --- weights --------------------------------------------------------------------------------
    def weight_rules(self):
        r = [Rule("embeddings.word_embeddings.weight", self.token_embedding.embeddings),
             Rule("embeddings.position_embeddings.weight", self.position_embedding.embeddings)]
        r += norm_rules("embeddings.LayerNorm", self.embed_norm)
        for i, blk in enumerate(self.blocks):
            p = f"encoder.layer.{i}."
            parts = [("attention", blk.self_attention, blk.self_attention_norm)]
            if self.spec.is_decoder:
                parts.append(("crossattention", blk.cross_attention_layer, blk.cross_attention_norm))
            for name, a, norm in parts:
                for sub, dense in (("self.query", a.query), ("self.key", a.key), ("self.value", a.value),
                                   ("output.dense", a.output_dense)):
                    r += dense_rules(f"{p}{name}.{sub}", dense)
                r += norm_rules(f"{p}{name}.output.LayerNorm", norm)
            r += dense_rules(p + "intermediate.dense", blk.ffn_in) + dense_rules(p + "output.dense", blk.ffn_out)
            r += norm_rules(p + "output.LayerNorm", blk.ffn_norm)
        return r


__all__ = ["BlipVisionBlock", "BlipVisionSpec", "BlipVisionBackbone", "Blip2VisionSpec", "Blip2VisionBackbone", "BlipTextSpec", "BlipTextBackbone"]

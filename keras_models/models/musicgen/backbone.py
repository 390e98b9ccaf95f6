"""MusicGen: a T5 text encoder, a decoder over ``num_codebooks`` parallel EnCodec codebooks, and the
EnCodec codec that turns the generated codes into a waveform.

* :class:`MusicgenDecoderBackbone` (``musicgen_decoder``, Transformers' ``MusicgenModel``): the sum
  of one token table per codebook (each ``vocab_size + 1`` rows: the last is the pad / start token),
  sinusoidal positions (``[cos | sin]`` halves), pre-norm layers (bias-free attention and
  feed-forward, LayerNorms with bias, cross-attention to the conditioning states), a final LayerNorm.
  ``input_ids`` are ``(batch * num_codebooks, time)`` as in Transformers (row ``b * K + k`` is
  codebook ``k`` of sample ``b``); the output is ``(batch, time, hidden)``.
* :class:`MusicgenBackbone` (``musicgen``): the composite. ``text_encoder`` is a T5-family config
  (its encoder stack is built from the T5 family, no decoder layers; weight map mounted under
  ``text_encoder.``), ``audio_encoder`` an EnCodec config (the EnCodec backbone, mounted under
  ``audio_encoder.``), ``decoder`` a ``musicgen_decoder`` config (under ``decoder.model.decoder.``).
  The encoder states are projected by ``enc_to_dec_proj`` when the widths differ and zeroed at
  padded positions, as Transformers does, before the decoder cross-attends to them.
"""

import math
from dataclasses import dataclass, replace

import keras
import numpy as np
from keras import ops

from keras_models.errors import ConfigError, InputError
from keras_models.layers.masks import causal_bias, padding_bias
from keras_models.layers.seq2seq_block import Seq2SeqBlock, norm_rules
from keras_models.layers.vision_embeddings import dense_rules
from keras_models.models.backbone import SpecBackbone
from keras_models.models.encoder_decoder.rules import block_rules
from keras_models.models.registry import register_backbone
from keras_models.presets.weight_map import Rule, mount
from keras_models.spec import Spec, build_tower, const, dim, hf, tower, tower_kwargs

_ser = keras.saving.register_keras_serializable(package="keras_models")
_ALL = ("jax", "torch", "tensorflow")

# Our Seq2SeqBlock's sub-layers -> MusicgenDecoderLayer's names.
MUSICGEN_NAMES = {
    "self_attention": ("self_attn", ("q_proj", "k_proj", "v_proj", "out_proj")),
    "self_attention_norm": "self_attn_layer_norm",
    "cross_attention": ("encoder_attn", ("q_proj", "k_proj", "v_proj", "out_proj")),
    "cross_attention_norm": "encoder_attn_layer_norm",
    "ffn_in": "fc1",
    "ffn_out": "fc2",
    "ffn_norm": "final_layer_norm",
}


@dataclass(frozen=True, kw_only=True)
class MusicgenDecoderSpec(Spec):
    unsupported = {"tie_word_embeddings": (False, None)}
    ignored = ("layerdrop", "scale_embedding", "use_cache", "is_decoder", "add_cross_attention")

    vocab_size: int = dim("vocab_size", 2048)
    max_position_embeddings: int = dim("max_position_embeddings", 2048)
    num_layers: int = dim("num_hidden_layers", 24)
    intermediate_size: int = dim("ffn_dim", 4096)
    num_heads: int = dim("num_attention_heads", 16)
    hidden_act: str = hf("activation_function", "gelu")
    hidden_size: int = dim("hidden_size", 1024)
    dropout: float = hf("dropout", 0.1)
    attention_dropout: float = hf("attention_dropout", 0.0)
    activation_dropout: float = hf("activation_dropout", 0.0)
    initializer_factor: float = hf("initializer_factor", 0.02)
    num_codebooks: int = dim("num_codebooks", 4)
    audio_channels: int = dim("audio_channels", 1)
    pad_token_id: int | None = hf("pad_token_id", 2048)
    bos_token_id: int | None = hf("bos_token_id", 2048)
    eos_token_id: int | None = hf("eos_token_id", None)
    cross_attention_hidden_size: int | None = hf("cross_attention_hidden_size", None)
    layer_norm_eps: float = const(1e-5, doc="torch nn.LayerNorm's default")
    cross_attention: bool = const(True, doc="cross-attention to the conditioning (MusicGen Melody prepends it instead)")

    def validate(self, source="config.json"):
        from keras_models.layers.activations import get_activation

        if self.hidden_size % self.num_heads:
            raise ConfigError(f"{source}: hidden_size {self.hidden_size} is not a multiple of num_attention_heads "
                              f"{self.num_heads}")
        if self.hidden_size < 4:
            raise ConfigError(f"{source}: hidden_size must be at least 4 (sinusoidal positions), got {self.hidden_size}")
        if self.audio_channels not in (1, 2):
            raise ConfigError(f"{source}: audio_channels must be 1 or 2, got {self.audio_channels}")
        if self.audio_channels == 2 and self.num_codebooks % 2:
            raise ConfigError(f"{source}: num_codebooks must be even for stereo (audio_channels=2), got "
                              f"{self.num_codebooks}")
        try:
            get_activation(self.hidden_act)
        except Exception as e:
            raise ConfigError(f"{source}: activation_function={self.hidden_act!r} is not supported") from e
        for key in ("pad_token_id", "bos_token_id"):
            v = getattr(self, key)
            if v is not None and not 0 <= v <= self.vocab_size:
                raise ConfigError(f"{source}: {key}={v} is outside the token tables (0..{self.vocab_size})")

    def dummy_inputs(self):
        return {"input_ids": np.zeros((self.num_codebooks, 2), "int32")}


def sinusoidal_positions(positions, dim, dtype):
    """(t,) positions -> (t, dim): MusicGen's ``[cos | sin]`` halves (frequencies
    exp(-i * log(10000) / (dim/2 - 1)), float32 as Transformers computes them), zero-padded when
    ``dim`` is odd."""
    half = dim // 2
    freq = np.exp(np.arange(half, dtype=np.float32) * np.float32(-math.log(10000) / (half - 1)))
    angles = ops.cast(positions, "float32")[:, None] * ops.convert_to_tensor(freq)[None, :]
    out = ops.concatenate([ops.cos(angles), ops.sin(angles)], axis=-1)
    if dim % 2:
        out = ops.pad(out, ((0, 0), (0, 1)))
    return ops.cast(out, dtype)


@_ser
@register_backbone("musicgen_decoder")
class MusicgenDecoderBackbone(SpecBackbone):
    """``(batch, time, hidden)`` for ``{"input_ids" (batch * num_codebooks, time), "attention_mask"
    (batch, time), "encoder_hidden_states" (batch, source, hidden), "encoder_attention_mask"
    (batch, source)}`` (the last three optional; without encoder states, no cross-attention)."""

    spec_cls = MusicgenDecoderSpec
    verified_backends = _ALL
    base_model_prefix = "model"
    hf_architecture = "MusicgenModel"

    def __init__(self, spec=None, **kwargs):
        super().__init__(spec, **kwargs)
        s = self.spec
        dt = self.dtype_policy
        init = keras.initializers.RandomNormal(stddev=s.initializer_factor)
        self.token_embeddings = [keras.layers.Embedding(s.vocab_size + 1, s.hidden_size, embeddings_initializer=init,
                                                        name=f"embed_tokens_{k}", dtype=dt)
                                 for k in range(s.num_codebooks)]
        self.blocks = [Seq2SeqBlock(s.hidden_size, s.num_heads, s.intermediate_size, hidden_act=s.hidden_act,
                                    use_bias=False, norm_type="layer", norm_first=True, layer_norm_eps=s.layer_norm_eps,
                                    cross_attention=s.cross_attention, dropout=s.dropout, attention_dropout=s.attention_dropout,
                                    activation_dropout=s.activation_dropout, kernel_initializer=init,
                                    name=f"layer_{i}", dtype=dt) for i in range(s.num_layers)]
        self.final_norm = keras.layers.LayerNormalization(epsilon=s.layer_norm_eps, name="layer_norm", dtype=dt)
        self.embedding_dropout = keras.layers.Dropout(s.dropout, dtype=dt)
        self.hidden_size = s.hidden_size
        self.num_codebooks = s.num_codebooks
        self.decoder_heads = s.num_heads
        self.decoder_head_dim = s.hidden_size // s.num_heads
        self.num_decoder_layers = s.num_layers

    def build(self, input_shape=None):
        h = self.hidden_size
        for emb in self.token_embeddings:
            emb.build((None, None))
        for blk in self.blocks:
            blk.build((None, None, h))
            if blk.cross_attention and not blk.cross_attention_norm.built:  # Seq2SeqBlock.build leaves it to the first call
                blk.cross_attention_norm.build((None, None, h))
        self.final_norm.build((None, None, h))
        self.built = True

    # --- forward --------------------------------------------------------------------------------
    def embed(self, input_ids, offset=0, prefix=None):
        """(batch * K, t) codes -> (batch, t, hidden): the codebooks' embeddings summed, plus positions;
        ``prefix`` (batch, p, hidden) conditioning states are put before them (positions from ``offset``
        over both)."""
        k = self.num_codebooks
        ids = ops.cast(input_ids, "int32")
        if len(ids.shape) != 2 or (ids.shape[0] is not None and ids.shape[0] % k):
            raise InputError(f"input_ids: expected (batch * num_codebooks={k}, time), got shape {tuple(ids.shape)}")
        t = ops.shape(ids)[1]
        ids = ops.reshape(ids, (-1, k, t))
        x = self.token_embeddings[0](ids[:, 0])
        for i in range(1, k):
            x = x + self.token_embeddings[i](ids[:, i])
        if prefix is not None:
            x = ops.concatenate([ops.cast(prefix, x.dtype), x], axis=1)
            t = ops.shape(x)[1]
        return x + sinusoidal_positions(ops.arange(t) + offset, self.hidden_size, x.dtype)[None]

    def decode(self, input_ids, encoder_states=None, encoder_attention_mask=None, attention_mask=None,
               training=False):
        x = self.embedding_dropout(self.embed(input_ids), training=training)
        t = ops.shape(x)[1]
        self_bias = causal_bias(t, t, x.dtype)
        if attention_mask is not None:
            self_bias = self_bias + padding_bias(attention_mask, x.dtype)
        cross = None if encoder_attention_mask is None else padding_bias(encoder_attention_mask, x.dtype)
        for blk in self.blocks:
            x = blk(x, self_bias, context=encoder_states, cross_bias=cross, training=training)
        return self.final_norm(x)

    def call(self, inputs, training=False):
        if not isinstance(inputs, dict):
            inputs = {"input_ids": inputs}
        if "input_ids" not in inputs:
            raise InputError(f"MusicGen's decoder takes 'input_ids' (batch * num_codebooks, time), got {sorted(inputs)}")
        return self.decode(inputs["input_ids"], inputs.get("encoder_hidden_states"),
                           inputs.get("encoder_attention_mask"), inputs.get("attention_mask"), training=training)

    # --- cached decoding ------------------------------------------------------------------------
    def init_cache(self, batch_size, max_length):
        """Per layer a (keys, values) pair of zeroed heads-major (batch, heads, max_length, head_dim)."""
        shape = (batch_size, self.decoder_heads, max_length, self.decoder_head_dim)
        return {"self_kv": tuple((ops.zeros(shape, dtype=self.compute_dtype), ops.zeros(shape, dtype=self.compute_dtype))
                                 for _ in self.blocks)}

    def cross_kv_cache(self, encoder_states):
        return tuple(tuple(blk.cross_kv(encoder_states)) for blk in self.blocks)

    def decode_with_cache(self, input_ids, encoder_states, encoder_attention_mask, cache, cache_index):
        """Decode ``input_ids`` (batch * K, t) at positions ``cache_index ..``; ``cache`` may hold
        ``"cross_kv"`` (:meth:`cross_kv_cache`). Returns ``(hidden (batch, t, hidden), new_cache)``."""
        if type(cache_index) is not int:
            cache_index = ops.cast(cache_index, "int32")
        x = self.embed(input_ids, cache_index)
        t = ops.shape(x)[1]
        max_length = ops.shape(cache["self_kv"][0][0])[2]
        self_bias = causal_bias(t, max_length, x.dtype, offset=cache_index)
        cross = None if encoder_attention_mask is None else padding_bias(encoder_attention_mask, x.dtype)
        new_self = []
        for i, blk in enumerate(self.blocks):
            cross_kv = cache["cross_kv"][i] if "cross_kv" in cache else None
            x, layer_cache = blk(x, self_bias, context=encoder_states, cross_bias=cross, cache=cache["self_kv"][i],
                                 cache_index=cache_index, cross_kv=cross_kv)
            new_self.append(layer_cache)
        return self.final_norm(x), {**cache, "self_kv": tuple(new_self)}

    # --- weights --------------------------------------------------------------------------------
    def decoder_rules(self):
        """The decoder stack's rules, relative to Transformers' ``MusicgenDecoder``."""
        r = [Rule(f"embed_tokens.{k}.weight", emb.embeddings) for k, emb in enumerate(self.token_embeddings)]
        for i, blk in enumerate(self.blocks):
            r += block_rules(f"layers.{i}", blk, MUSICGEN_NAMES)
        return r + norm_rules("layer_norm", self.final_norm)

    def weight_rules(self):
        return [replace(r, hf="decoder." + r.hf) for r in self.decoder_rules()]


def _t5_encoder(config, dtype):
    """The encoder stack of a T5-family config (no decoder layers), and its rules."""
    from keras_models.models.t5.backbone import T5Backbone

    cls, kwargs = tower_kwargs(config, "config.json [text_encoder]")
    if cls is not T5Backbone:
        raise ConfigError(f"config.json [text_encoder]: model_type {config.get('model_type')!r} is not supported "
                          "as MusicGen's text encoder (t5, mt5, umt5)")
    kwargs["num_decoder_layers"] = 0
    encoder = T5Backbone(name="text_encoder", dtype=dtype, **kwargs)
    for layer in encoder.decoder_relative_bias + [encoder.decoder_final_norm]:
        layer.trainable = False  # the (absent) decoder side's layers are never used
    return encoder


@dataclass(frozen=True, kw_only=True)
class MusicgenSpec(Spec):
    text_encoder: dict = tower("text_encoder", "t5", doc="a T5-family config (its encoder is used)")
    audio_encoder: dict = tower("audio_encoder", "encodec", doc="the EnCodec codec's config")
    decoder: dict = tower("decoder", "musicgen_decoder", doc="the codebook decoder's config")
    initializer_factor: float = hf("initializer_factor", 0.02)
    decoder_start_token_id: int | None = hf("decoder_start_token_id", None, doc="None: the decoder's bos_token_id")
    pad_token_id: int | None = hf("pad_token_id", None, doc="None: the decoder's pad_token_id")

    def adjust_to_hf(self, out):
        out["is_encoder_decoder"] = True
        for key in ("decoder_start_token_id", "pad_token_id"):
            if out.get(key) is None:
                out.pop(key, None)
        return out

    def dummy_inputs(self):
        k = self.decoder.get("num_codebooks", 4)
        ones = np.ones((1, 2), "int32")
        return {"input_ids": ones, "attention_mask": ones, "decoder_input_ids": np.zeros((k, 2), "int32")}


@_ser
@register_backbone("musicgen")
class MusicgenBackbone(SpecBackbone):
    """``{"encoder_last_hidden_state", "last_hidden_state"}`` for ``{"input_ids", "attention_mask"``
    (the text), ``"decoder_input_ids"`` (batch * num_codebooks, time), ``"decoder_attention_mask"``
    (batch, time, optional)``}``: the text encoder's output and the decoder's last hidden state."""

    spec_cls = MusicgenSpec
    verified_backends = _ALL
    base_model_prefix = ""
    hf_architecture = "MusicgenForConditionalGeneration"
    # the tied copy of text_encoder.shared; EnCodec's k-means statistics (unused at inference): not written back
    hf_known_unused = ("text_encoder.encoder.embed_tokens.weight",
                       "audio_encoder.quantizer.layers.*.codebook.inited",
                       "audio_encoder.quantizer.layers.*.codebook.cluster_size",
                       "audio_encoder.quantizer.layers.*.codebook.embed_avg")

    def __init__(self, spec=None, **kwargs):
        super().__init__(spec, **kwargs)
        s = self.spec
        dt = self.dtype_policy
        self.text_encoder = _t5_encoder(s.text_encoder, dt)
        self.audio_encoder = build_tower(s.audio_encoder, "audio_encoder", dt)
        self.decoder = build_tower(s.decoder, "decoder", dt)
        if not isinstance(self.decoder, MusicgenDecoderBackbone):
            raise ConfigError(f"config.json [decoder]: model_type {s.decoder.get('model_type')!r} is not "
                              "'musicgen_decoder'")
        d = self.decoder.spec
        width = self.text_encoder.hidden_size
        context = d.cross_attention_hidden_size
        if context is not None and context != width:
            raise ConfigError(f"config.json [decoder]: cross_attention_hidden_size={context} must equal the text "
                              f"encoder's hidden size ({width})")
        if context is not None and context != d.hidden_size:
            raise ConfigError(f"config.json [decoder]: cross_attention_hidden_size={context} differs from the "
                              f"decoder's hidden_size ({d.hidden_size}): Transformers' cross-attention cannot read it")
        self.enc_to_dec_proj = None
        if width != d.hidden_size and context is None:
            self.enc_to_dec_proj = keras.layers.Dense(d.hidden_size, name="enc_to_dec_proj", dtype=dt)
        self.text_width = width
        self.num_codebooks = d.num_codebooks
        self.audio_channels = d.audio_channels
        self.vocab_size = d.vocab_size
        self.hidden_size = d.hidden_size
        self.decoder_start_token_id = d.bos_token_id if s.decoder_start_token_id is None else s.decoder_start_token_id
        self.pad_token_id = d.pad_token_id if s.pad_token_id is None else s.pad_token_id

    def build(self, input_shape=None):
        self.text_encoder.build_from_dummy()
        self.audio_encoder.build_from_dummy()
        self.decoder.build_from_dummy()
        if self.enc_to_dec_proj is not None:
            self.enc_to_dec_proj.build((None, None, self.text_width))
        self.built = True

    def build_from_dummy(self):
        if not self.built:
            self.build()
        return self

    def encode_text(self, input_ids, attention_mask=None, training=False):
        """``(text encoder output, conditioning states)``: the latter projected to the decoder's width
        and zeroed at padded positions."""
        ids = ops.cast(input_ids, "int32")
        mask = None if attention_mask is None else ops.cast(attention_mask, "int32")
        states = self.text_encoder.encode(ids, mask, training=training)
        cond = states if self.enc_to_dec_proj is None else self.enc_to_dec_proj(states)
        if mask is not None:
            cond = cond * ops.cast(mask, cond.dtype)[..., None]
        return states, cond

    def call(self, inputs, training=False):
        if not isinstance(inputs, dict) or "input_ids" not in inputs or "decoder_input_ids" not in inputs:
            got = sorted(inputs) if isinstance(inputs, dict) else type(inputs).__name__
            raise InputError(f"MusicGen takes a dict with 'input_ids' (the text) and 'decoder_input_ids' (batch * "
                             f"num_codebooks, time); got {got}")
        mask = inputs.get("attention_mask")
        states, cond = self.encode_text(inputs["input_ids"], mask, training=training)
        dec = self.decoder.decode(inputs["decoder_input_ids"], cond, mask, inputs.get("decoder_attention_mask"),
                                  training=training)
        return {"encoder_last_hidden_state": states, "last_hidden_state": dec}

    # --- weights --------------------------------------------------------------------------------
    def weight_rules(self):
        text = []
        for r in self.text_encoder.weight_rules():
            if r.hf == "shared.weight":  # tied: a checkpoint may hold either name (or both)
                text.append(replace(r, aliases=r.aliases + ("encoder.embed_tokens.weight",)))
            elif r.hf.startswith("encoder.") and r.hf != "encoder.embed_tokens.weight":
                text.append(r)
        r = mount(text, "text_encoder.") + mount(self.audio_encoder.weight_rules(), "audio_encoder.")
        r += mount(self.decoder.decoder_rules(), "decoder.model.decoder.")
        if self.enc_to_dec_proj is not None:
            r += dense_rules("enc_to_dec_proj", self.enc_to_dec_proj, base=False)
        return r


__all__ = ["MusicgenDecoderSpec", "MusicgenDecoderBackbone", "MusicgenSpec", "MusicgenBackbone",
           "sinusoidal_positions", "MUSICGEN_NAMES"]

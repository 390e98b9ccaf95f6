"""CLVP (``clvp``, Transformers' ``ClvpModelForConditionalGeneration``): the Tortoise TTS speech
candidate generator and scorer.

* the **conditioning encoder** turns a reference voice's log-mel ``input_features`` (batch, frames,
  feature_size) into one vector (a 1x1 convolution, ``num_mel_attn_blocks`` of GroupNorm ->
  unmasked self-attention with a residual, then the first frame) and puts it before the text's
  embeddings (start and end tokens added as Transformers does, positions from the mask);
* the **speech decoder** (GPT-2-like: pre-LayerNorm :class:`~keras_models.layers.decoder_block.
  DecoderBlock` s with learned positions, then a final LayerNorm, another LayerNorm and a biased
  LM head) continues that prefix with speech tokens;
* the **text encoder** and the **speech encoder** (:mod:`keras_models.models.clvp.encoder`) embed
  the text and the speech tokens; their unit-norm projections give CLIP-like similarity logits.

:class:`ClvpBackbone` holds the parts; the task (:class:`~keras_models.tasks.speech_text_scorer.
SpeechTextScorer`) adds the learned temperature, the forward scoring and ``generate``.
"""

from dataclasses import dataclass

import keras
import numpy as np
from keras import ops

from keras_models.errors import ConfigError, InputError
from keras_models.layers.activations import get_activation
from keras_models.layers.attention import Attention
from keras_models.layers.decoder_block import DecoderBlock
from keras_models.layers.decoder_masks import decoder_bias
from keras_models.layers.vision_embeddings import dense_rules, norm_rules
from keras_models.models.backbone import SpecBackbone
from keras_models.models.clvp.encoder import ClvpEncoderBackbone, ClvpEncoderSpec, attention_rules
from keras_models.models.registry import register_backbone
from keras_models.presets.weight_map import IDENTITY, TRANSPOSE, Chain, Reshape, Rule, mount
from keras_models.spec import Spec, dim, hf, nested

_ser = keras.saving.register_keras_serializable(package="keras_models")
# Transformers locates the end of each text by the first id 0 (a literal, whatever the tokenizer's pad)
TEXT_PAD_ID = 0


def groupnorm_groups(channels, source="config.json"):
    """Tortoise's group count for the conditioning encoder's GroupNorms."""
    groups = 8 if channels <= 16 else 16 if channels <= 64 else 32
    while channels % groups:
        groups //= 2
    if groups <= 2:
        raise ConfigError(f"{source}: decoder_config.hidden_size={channels} gives {groups} GroupNorm groups "
                          "(CLVP needs more than 2)")
    return groups


@dataclass(frozen=True, kw_only=True)
class ClvpDecoderSpec(Spec):
    vocab_size: int = dim("vocab_size", 8194)
    max_position_embeddings: int = dim("max_position_embeddings", 608)
    max_text_tokens: int = dim("max_text_tokens", 404)
    hidden_size: int = dim("hidden_size", 1024)
    num_layers: int = dim("num_hidden_layers", 30)
    num_heads: int = dim("num_attention_heads", 16)
    n_inner: int | None = hf("n_inner", None, doc="None: 4 * hidden_size")
    num_mel_attn_blocks: int = hf("num_mel_attn_blocks", 6)
    activation_function: str = hf("activation_function", "gelu_new")
    layer_norm_epsilon: float = hf("layer_norm_epsilon", 1e-5)
    feature_size: int = dim("feature_size", 80)
    use_attention_bias: bool = hf("use_attention_bias", True)
    bos_token_id: int | None = hf("bos_token_id", 8192)
    eos_token_id: int | None = hf("eos_token_id", 8193)
    pad_token_id: int | None = hf("pad_token_id", None)
    decoder_fixing_codes: tuple = hf("decoder_fixing_codes", (83, 45, 45, 248), read=tuple, write=list)

    unsupported = {"add_cross_attention": (False,)}
    ignored = ("resid_pdrop", "embd_pdrop", "attention_dropout", "initializer_range", "initializer_factor",
               "summary_type", "summary_use_proj", "summary_activation", "summary_proj_to_labels",
               "summary_first_dropout", "use_cache")

    def validate(self, source="config.json"):
        if self.hidden_size % self.num_heads:
            raise ConfigError(f"{source}: hidden_size ({self.hidden_size}) must be divisible by "
                              f"num_attention_heads ({self.num_heads})")
        if self.num_mel_attn_blocks < 0:
            raise ConfigError(f"{source}: num_mel_attn_blocks must be >= 0, got {self.num_mel_attn_blocks}")
        if self.n_inner is not None and self.n_inner <= 0:
            raise ConfigError(f"{source}: n_inner must be a positive integer or null, got {self.n_inner}")
        if not self.decoder_fixing_codes or not all(isinstance(c, int) and not isinstance(c, bool)
                                                    for c in self.decoder_fixing_codes):
            raise ConfigError(f"{source}: decoder_fixing_codes must be a non-empty list of token ids, "
                              f"got {list(self.decoder_fixing_codes)!r}")
        for key in ("bos_token_id", "eos_token_id"):
            if getattr(self, key) is None or not 0 <= getattr(self, key) < self.vocab_size:
                raise ConfigError(f"{source}: {key}={getattr(self, key)!r} must be an id below vocab_size "
                                  f"({self.vocab_size})")
        try:
            get_activation(self.activation_function)
        except ValueError as e:
            raise ConfigError(f"{source}: activation_function={self.activation_function!r} is not a known "
                              "activation") from e
        groupnorm_groups(self.hidden_size, source)


@dataclass(frozen=True, kw_only=True)
class ClvpSpec(Spec):
    text_config: ClvpEncoderSpec = nested("text_config", ClvpEncoderSpec)
    speech_config: ClvpEncoderSpec = nested("speech_config", ClvpEncoderSpec)
    decoder_config: ClvpDecoderSpec = nested("decoder_config", ClvpDecoderSpec)
    projection_dim: int = dim("projection_dim", 768)
    logit_scale_init_value: float = hf("logit_scale_init_value", 2.6592)

    ignored = ("initializer_factor",)

    def validate(self, source="config.json"):
        t, s = self.text_config, self.speech_config
        if t.projection_dim != s.projection_dim:
            raise ConfigError(f"{source}: text_config.projection_dim ({t.projection_dim}) and "
                              f"speech_config.projection_dim ({s.projection_dim}) must match (their embeddings "
                              "are compared)")
        for key in ("bos_token_id", "eos_token_id"):
            v = getattr(t, key)
            if v is None or not 0 <= v < t.vocab_size:
                raise ConfigError(f"{source}: text_config.{key}={v!r} must be an id below text_config.vocab_size "
                                  f"({t.vocab_size}) (the conditioning encoder adds it to every text)")

    def dummy_inputs(self):
        return {"input_ids": np.ones((1, 2), "int32"), "attention_mask": np.ones((1, 2), "int32"),
                "input_features": np.zeros((1, 3, self.decoder_config.feature_size), "float32")}


def pad_bos_eos(ids, mask, bos_id, eos_id, add_bos=True):
    """Transformers' ``_pad_extra_bos_eos_tokens``: ``bos_id`` first (when ``add_bos``), then
    ``eos_id`` inserted at each row's first id 0 (or appended), the rest shifted right; the mask
    gains a leading 1 for each added token."""
    ids = ops.cast(ids, "int32")
    b = ops.shape(ids)[0]
    if add_bos:
        ids = ops.concatenate([ops.full((b, 1), bos_id, "int32"), ids], axis=1)
        mask = None if mask is None else ops.concatenate([ops.ones((b, 1), mask.dtype), mask], axis=1)
    t = ids.shape[1]
    is_pad = ops.cast(ops.equal(ids, TEXT_PAD_ID), "int32")
    first = ops.where(ops.max(is_pad, axis=1) > 0, ops.argmax(is_pad, axis=1), t)[:, None]
    col = ops.arange(t + 1, dtype="int32")[None]
    filler = ops.full((b, 1), TEXT_PAD_ID, "int32")
    unshifted = ops.concatenate([ids, filler], axis=1)
    shifted = ops.concatenate([filler, ids], axis=1)
    first = ops.cast(first, "int32")
    out = ops.where(col < first, unshifted, shifted)
    out = ops.where(col == first, eos_id, out)
    mask = None if mask is None else ops.concatenate([ops.ones((b, 1), mask.dtype), mask], axis=1)
    return out, mask


def fix_speech_ids(speech_ids, eos_id, codes):
    """Transformers' ``fix_speech_decoder_output`` (from Tortoise): drop the start token; in each
    row that produced ``eos_id``, every eos becomes ``codes[0]`` and the tail from the first eos
    (at the latest the last 3 positions) becomes ``codes[0]...`` ending in ``codes[1:]``."""
    ids = ops.cast(speech_ids, "int32")[:, 1:]
    t = ids.shape[1]
    is_stop = ops.equal(ids, eos_id)
    ids = ops.where(is_stop, codes[0], ids)
    filler = np.full((t,), codes[0], "int32")
    n = min(len(codes) - 1, t)
    if n > 0:
        filler[t - n:] = np.asarray(codes[1:], "int32")[len(codes) - 1 - n:]
    boundary = ops.minimum(ops.argmax(ops.cast(is_stop, "int32"), axis=1), max(0, t - 3))[:, None]
    stopped = ops.max(ops.cast(is_stop, "int32"), axis=1, keepdims=True) > 0
    replace = ops.logical_and(stopped, ops.arange(t, dtype="int32")[None] >= ops.cast(boundary, "int32"))
    return ops.where(replace, ops.convert_to_tensor(filler)[None], ids)


@_ser
@register_backbone("clvp")
class ClvpBackbone(SpecBackbone):
    """``encode_text(inputs)`` / ``encode_speech(speech_ids)``: projected embeddings (not normalised);
    ``conditioning(inputs)``: the decoder prefix; ``decoder_logits(embeds)``: the speech decoder on a
    prefix of embeddings. Calling it returns the speech decoder's logits on the conditioning prefix
    (batch, 1 + text + 2, vocab)."""

    spec_cls = ClvpSpec
    base_model_prefix = ""
    hf_architecture = "ClvpModelForConditionalGeneration"
    hf_ignore = ("*rotary_pos_emb.inv_freq",)  # a buffer rebuilt from the config
    verified_backends = ("jax", "torch", "tensorflow")

    def __init__(self, spec=None, **kwargs):
        super().__init__(spec, **kwargs)
        s, d = self.spec, self.spec.decoder_config
        c = dict(dtype=self.dtype_policy)
        self.hidden_size = d.hidden_size
        self.text_model = ClvpEncoderBackbone(s.text_config, name="text_model", **c)
        self.speech_model = ClvpEncoderBackbone(s.speech_config, name="speech_model", **c)
        # conditioning encoder
        self.text_token_embedding = keras.layers.Embedding(s.text_config.vocab_size, d.hidden_size,
                                                           name="text_token_embedding", **c)
        self.text_position_embedding = keras.layers.Embedding(d.max_text_tokens, d.hidden_size,
                                                              name="text_position_embedding", **c)
        self.mel_conv = keras.layers.Dense(d.hidden_size, name="mel_conv", **c)
        groups = groupnorm_groups(d.hidden_size)
        self.group_norms = [keras.layers.GroupNormalization(groups, epsilon=1e-5, name=f"group_norm_{i}", **c)
                            for i in range(d.num_mel_attn_blocks)]
        self.mel_attention = [Attention(d.hidden_size, d.num_heads, use_bias=d.use_attention_bias, output_bias=True,
                                        name=f"mel_attention_{i}", **c) for i in range(d.num_mel_attn_blocks)]
        # speech decoder
        self.token_embedding = keras.layers.Embedding(d.vocab_size, d.hidden_size, name="token_embedding", **c)
        self.position_embedding = keras.layers.Embedding(d.max_position_embeddings, d.hidden_size,
                                                         name="position_embedding", **c)
        self.blocks = [DecoderBlock(d.hidden_size, d.num_heads, d.n_inner or 4 * d.hidden_size,
                                    activation=d.activation_function, norm_type="layer", norm_eps=d.layer_norm_epsilon,
                                    qkv_bias=d.use_attention_bias, out_bias=True, mlp_gated=False, mlp_bias=True,
                                    name=f"block_{i}", **c) for i in range(d.num_layers)]
        self.decoder_norm = keras.layers.LayerNormalization(epsilon=d.layer_norm_epsilon, name="decoder_norm", **c)
        # ClvpForCausalLM's own LayerNorm keeps torch's default epsilon, whatever the config says
        self.final_norm = keras.layers.LayerNormalization(epsilon=1e-5, name="final_norm", **c)
        self.lm_head = keras.layers.Dense(d.vocab_size, name="lm_head", **c)

    def build(self, input_shape=None):
        d = self.spec.decoder_config
        h = (None, None, d.hidden_size)
        self.text_model.build()
        self.speech_model.build()
        for emb in (self.text_token_embedding, self.text_position_embedding, self.token_embedding,
                    self.position_embedding):
            emb.build((None, None))
        self.mel_conv.build((None, None, d.feature_size))
        for layer in (*self.group_norms, *self.mel_attention, *self.blocks, self.decoder_norm, self.final_norm,
                      self.lm_head):
            layer.build(h)
        self.built = True

    def build_from_dummy(self):
        if not self.built:
            self.build()
        return self

    # --- the parts ----------------------------------------------------------------------------
    def encode_text(self, inputs, training=False):
        text = {k: inputs[k] for k in ("input_ids", "attention_mask") if inputs.get(k) is not None}
        return self.text_model.embed(text, training=training)

    def encode_speech(self, speech_ids, attention_mask=None, training=False):
        inputs = {"input_ids": speech_ids}
        if attention_mask is not None:
            inputs["attention_mask"] = attention_mask
        return self.speech_model.embed(inputs, training=training)

    def voice_vector(self, input_features, training=False):
        """(batch, frames, feature_size) log-mel -> (batch, 1, hidden): the conditioning encoder's
        summary of the reference voice."""
        feats = ops.convert_to_tensor(input_features, self.compute_dtype)
        if len(feats.shape) != 3 or feats.shape[-1] != self.spec.decoder_config.feature_size:
            raise InputError(f"input_features must be (batch, frames, {self.spec.decoder_config.feature_size}) "
                             f"log-mel features, got shape {tuple(feats.shape)}")
        x = self.mel_conv(feats)
        for norm, attention in zip(self.group_norms, self.mel_attention):
            x = x + attention(norm(x), training=training)
        return x[:, :1]

    def conditioning(self, inputs, training=False):
        """Transformers' ``ClvpConditioningEncoder``: [voice vector, bos, text..., eos] embeddings
        (batch, 1 + text + 2, hidden); a single text or a single voice is repeated over the other's
        batch."""
        ids = inputs["input_ids"]
        mask = inputs.get("attention_mask")
        if mask is None:
            mask = ops.ones_like(ids)
        t = self.spec.text_config
        ids, mask = pad_bos_eos(ids, ops.cast(mask, "int32"), t.bos_token_id, t.eos_token_id)
        if ids.shape[1] is not None and ids.shape[1] > self.spec.decoder_config.max_text_tokens:
            raise InputError(f"input_ids: {ids.shape[1] - 2} tokens, more than the text position table allows "
                             f"(decoder_config.max_text_tokens {self.spec.decoder_config.max_text_tokens} - 2)")
        positions = ops.cumsum(mask, axis=1) - 1
        text = self.text_token_embedding(ids) + self.text_position_embedding(positions)
        voice = self.voice_vector(inputs["input_features"], training=training)
        nt, nv = text.shape[0], voice.shape[0]
        if nt == 1 and nv not in (None, 1):
            text = ops.repeat(text, nv, axis=0)
        elif nv == 1 and nt not in (None, 1):
            voice = ops.repeat(voice, nt, axis=0)
        elif None not in (nt, nv) and nt != nv:
            raise InputError(f"input_ids has {nt} texts and input_features {nv} voices: give as many of each, "
                             "or one of either")
        return ops.concatenate([ops.cast(voice, text.dtype), text], axis=1)

    def decoder_hidden(self, x, cache=None, cache_index=0, training=False):
        """The speech decoder's blocks over embeddings ``x`` (positions already added), causal;
        with ``cache`` (one (keys, values) pair per block) ``x`` is written at ``cache_index``.
        Returns (LM logits, cache)."""
        t = ops.shape(x)[1]
        b = ops.shape(x)[0]
        keys = t if cache is None else ops.shape(cache[0][0])[1]
        bias = decoder_bias(ops.ones((b, keys), "int32"), t, cache_index, dtype=x.dtype)
        new_cache = []
        for i, block in enumerate(self.blocks):
            x, layer_cache = block(x, bias=bias, cache=None if cache is None else cache[i], cache_index=cache_index,
                                   training=training)
            new_cache.append(layer_cache)
        logits = self.lm_head(self.final_norm(self.decoder_norm(x)))
        return logits, (None if cache is None else tuple(new_cache))

    def decoder_logits(self, embeds, training=False):
        """``ClvpForCausalLM`` on ``inputs_embeds``: positions 0..t-1 added, logits (batch, t, vocab)."""
        t = ops.shape(embeds)[1]
        x = embeds + self.position_embedding(ops.arange(t, dtype="int32"))[None]
        return self.decoder_hidden(x, training=training)[0]

    def init_cache(self, batch_size, max_length):
        return tuple(block.attention.init_cache(batch_size, max_length, self.compute_dtype) for block in self.blocks)

    def call(self, inputs, training=False):
        return self.decoder_logits(self.conditioning(inputs, training), training)

    # --- weights ------------------------------------------------------------------------------
    def weight_rules(self):
        d = self.spec.decoder_config
        r = mount(self.text_model.weight_rules(), "text_encoder_model.")
        r += mount(self.speech_model.weight_rules(), "speech_encoder_model.")
        ce = "conditioning_encoder."
        r += [Rule(ce + "text_token_embedding.weight", self.text_token_embedding.embeddings),
              Rule(ce + "text_position_embedding.weight", self.text_position_embedding.embeddings),
              Rule(ce + "mel_conv.weight", self.mel_conv.kernel,
                   Chain(Reshape((d.hidden_size, d.feature_size, 1), (d.hidden_size, d.feature_size)), TRANSPOSE)),
              Rule(ce + "mel_conv.bias", self.mel_conv.bias)]
        for i, (norm, att) in enumerate(zip(self.group_norms, self.mel_attention)):
            r += norm_rules(f"{ce}group_norms.{i}", norm)
            r += attention_rules(f"{ce}mel_attn_blocks.{i}", att)
        dm = "speech_decoder_model."
        dec = dm + "model.decoder."
        r += [Rule(dec + "input_embeds_layer.weight", self.token_embedding.embeddings),
              Rule(dec + "position_embeds_layer.weight", self.position_embedding.embeddings)]
        for i, block in enumerate(self.blocks):
            p = f"{dec}layers.{i}."
            r += norm_rules(p + "input_layernorm", block.attention_norm)
            r += norm_rules(p + "post_attention_layernorm", block.mlp_norm)
            r += attention_rules(p + "attn", block.attention)
            for name, dense in (("c_fc", block.mlp.up), ("c_proj", block.mlp.down)):  # GPT-2 Conv1D: (in, out)
                r += [Rule(f"{p}mlp.{name}.weight", dense.kernel, IDENTITY), Rule(f"{p}mlp.{name}.bias", dense.bias)]
        r += norm_rules(dec + "layer_norm", self.decoder_norm) + norm_rules(dm + "final_norm", self.final_norm)
        r += dense_rules(dm + "lm_head", self.lm_head)
        return r


__all__ = ["ClvpDecoderSpec", "ClvpSpec", "ClvpBackbone", "pad_bos_eos", "fix_speech_ids"]

"""SeamlessM4T's text / speech to text model: an NLLB (M2M100) pre-norm text encoder and decoder on
the BART-like backbone, plus the Conformer speech encoder (speech_encoder.py).

config.json is one flat SeamlessM4TConfig (``hidden_size``, ``encoder_layers``, ...,
``speech_encoder_*``, ``t2u_*``, vocoder keys). Which encoders a checkpoint holds follows its
``architectures``: ``SeamlessM4TForTextToText`` / ``ForTextToSpeech`` have no speech encoder,
``ForSpeechToText`` / ``ForSpeechToSpeech`` no text encoder, ``SeamlessM4TModel`` (and no
``architectures``) both. ``SeamlessM4TModel`` / ``ForTextToSpeech`` / ``ForSpeechToSpeech`` also
hold the text-to-unit model and the unit vocoder (``t2u_model.*``, ``vocoder.*``,
speech_output.py), loaded as ``t2u_model`` / ``vocoder`` and used by
``SeamlessM4TSeq2SeqLM.generate(..., generate_speech=True)``.

Inputs: ``input_ids`` (text) or ``input_features`` (batch, frames, feature_projection_input_dim)
with the frame ``attention_mask``; ``decoder_input_ids`` / ``decoder_attention_mask``. Token tables:
``shared``, ``text_encoder.embed_tokens`` and ``text_decoder.embed_tokens`` are one tied table
(``tie_word_embeddings`` false: three, as BartBackbone reads them).
"""

from dataclasses import dataclass
from typing import ClassVar

import keras
import numpy as np
from keras import ops

from keras_models.errors import ConfigError, InputError
from keras_models.layers.seq2seq_block import norm_rules
from keras_models.models.bart.backbone import BartBackbone
from keras_models.models.bart.families import M2M100Spec
from keras_models.models.encoder_decoder.rules import block_rules
from keras_models.models.registry import register_backbone
from keras_models.models.seamless_m4t.speech_encoder import SeamlessSpeechEncoder
from keras_models.models.seamless_m4t.speech_output import (T2U_FIELDS, V2_FIELDS, SeamlessCodeHifiGan,
                                                            SeamlessT2U, SeamlessT2Uv2)
from keras_models.models.speecht5.hifigan import _ints, _nested_ints
from keras_models.presets.weight_map import mount
from keras_models.spec import const, dim, hf

_ser = keras.saving.register_keras_serializable(package="keras_models")

QKVO = ("q_proj", "k_proj", "v_proj", "out_proj")
SEAMLESS_NAMES = {
    "self_attention": ("self_attn", QKVO),
    "self_attention_norm": "self_attn_layer_norm",
    "cross_attention": ("cross_attention", QKVO),
    "cross_attention_norm": "cross_attention_layer_norm",
    "ffn_in": "ffn.fc1",
    "ffn_out": "ffn.fc2",
    "ffn_norm": "ffn_layer_norm",
}
TEXT_ONLY = ("SeamlessM4TForTextToText", "SeamlessM4TForTextToSpeech",
             "SeamlessM4Tv2ForTextToText", "SeamlessM4Tv2ForTextToSpeech")
SPEECH_ONLY = ("SeamlessM4TForSpeechToText", "SeamlessM4TForSpeechToSpeech",
               "SeamlessM4Tv2ForSpeechToText", "SeamlessM4Tv2ForSpeechToSpeech")
SPEECH_FIELDS = ("speech_encoder_layers", "speech_encoder_attention_heads", "speech_encoder_intermediate_size",
                 "speech_encoder_hidden_act", "feature_projection_input_dim", "position_embeddings_type",
                 "rotary_embedding_base", "conv_depthwise_kernel_size", "layer_norm_eps", "add_adapter",
                 "adaptor_kernel_size", "adaptor_stride", "num_adapter_layers", "speech_encoder_dropout",
                 "adaptor_dropout", "text_encoder", "speech_encoder", "left_max_position_embeddings",
                 "right_max_position_embeddings", "speech_encoder_chunk_size", "speech_encoder_left_chunk_num")


def _position_type(value):
    if value not in ("relative", "rotary"):
        raise ValueError("must be 'relative', 'rotary' or null")
    return value


@dataclass(frozen=True, kw_only=True)
class SeamlessM4TSpec(M2M100Spec):
    architecture: ClassVar[str] = "SeamlessM4TModel"

    vocab_size: int = dim("vocab_size", 256102)
    hidden_size: int = dim("hidden_size", 1024)
    num_encoder_layers: int = dim("encoder_layers", 24)
    num_decoder_layers: int = dim("decoder_layers", 24)
    encoder_heads: int = dim("encoder_attention_heads", 16)
    decoder_heads: int = dim("decoder_attention_heads", 16)
    encoder_intermediate_size: int = dim("encoder_ffn_dim", 8192)
    decoder_intermediate_size: int = dim("decoder_ffn_dim", 8192)
    max_position_embeddings: int = dim("max_position_embeddings", 1024)
    hidden_act: str = hf("activation_function", "relu")
    dropout: float = hf("dropout", 0.1)
    attention_dropout: float = hf("attention_dropout", 0.1)
    scale_embedding: bool = hf("scale_embedding", True)
    pad_token_id: int | None = hf("pad_token_id", 0)
    bos_token_id: int | None = hf("bos_token_id", 2)
    eos_token_id: int | None = hf("eos_token_id", 3)
    decoder_start_token_id: int | None = hf("decoder_start_token_id", 3)
    forced_eos_token_id: int | None = hf("forced_eos_token_id", None)
    initializer_range: float = hf("initializer_range", 0.02)
    # speech encoder
    speech_encoder_layers: int = dim("speech_encoder_layers", 24)
    speech_encoder_attention_heads: int = dim("speech_encoder_attention_heads", 16)
    speech_encoder_intermediate_size: int = dim("speech_encoder_intermediate_size", 4096)
    speech_encoder_hidden_act: str = hf("speech_encoder_hidden_act", "swish")
    feature_projection_input_dim: int = dim("feature_projection_input_dim", 160)
    position_embeddings_type: str | None = hf("position_embeddings_type", "relative", read=_position_type,
                                              doc="'relative', 'rotary' or null (none)")
    rotary_embedding_base: float = hf("rotary_embedding_base", 10000)
    conv_depthwise_kernel_size: int = dim("conv_depthwise_kernel_size", 31)
    layer_norm_eps: float = hf("layer_norm_eps", 1e-5, doc="feature projection and speech encoder final norms")
    add_adapter: bool = hf("add_adapter", True)
    adaptor_kernel_size: int = dim("adaptor_kernel_size", 8)
    adaptor_stride: int = dim("adaptor_stride", 8)
    num_adapter_layers: int = hf("num_adapter_layers", 1)
    speech_encoder_dropout: float = hf("speech_encoder_dropout", 0.0)
    adaptor_dropout: float = hf("adaptor_dropout", 0.1)
    hf_model_type: str = const("seamless_m4t")
    text_encoder: bool = const(True, doc="the checkpoint has a text encoder (from architectures)")
    speech_encoder: bool = const(True, doc="the checkpoint has a speech encoder (from architectures)")
    speech_output: bool = const(True, doc="the checkpoint has the t2u model and vocoder (from architectures)")
    # text-to-unit model (t2u_model.*) and unit vocoder (vocoder.*)
    t2u_vocab_size: int = dim("t2u_vocab_size", 10082)
    t2u_bos_token_id: int | None = hf("t2u_bos_token_id", 0)
    t2u_pad_token_id: int = hf("t2u_pad_token_id", 1)
    t2u_eos_token_id: int = hf("t2u_eos_token_id", 2)
    t2u_decoder_start_token_id: int = hf("t2u_decoder_start_token_id", 2)
    t2u_max_new_tokens: int = dim("t2u_max_new_tokens", 1024)
    t2u_encoder_layers: int = hf("t2u_encoder_layers", 6)
    t2u_encoder_ffn_dim: int = dim("t2u_encoder_ffn_dim", 8192)
    t2u_encoder_attention_heads: int = dim("t2u_encoder_attention_heads", 16)
    t2u_decoder_layers: int = hf("t2u_decoder_layers", 6)
    t2u_decoder_ffn_dim: int = dim("t2u_decoder_ffn_dim", 8192)
    t2u_decoder_attention_heads: int = dim("t2u_decoder_attention_heads", 16)
    t2u_max_position_embeddings: int = dim("t2u_max_position_embeddings", 2048)
    upsample_initial_channel: int = dim("upsample_initial_channel", 512)
    upsample_rates: tuple = hf("upsample_rates", (5, 4, 4, 2, 2), read=_ints)
    upsample_kernel_sizes: tuple = hf("upsample_kernel_sizes", (11, 8, 8, 4, 4), read=_ints)
    resblock_kernel_sizes: tuple = hf("resblock_kernel_sizes", (3, 7, 11), read=_ints)
    resblock_dilation_sizes: tuple = hf("resblock_dilation_sizes", ((1, 3, 5),) * 3, read=_nested_ints)
    leaky_relu_slope: float = hf("leaky_relu_slope", 0.1)
    unit_hifi_gan_vocab_size: int = dim("unit_hifi_gan_vocab_size", 10000)
    unit_embed_dim: int = dim("unit_embed_dim", 1280)
    lang_embed_dim: int = dim("lang_embed_dim", 256)
    spkr_embed_dim: int = dim("spkr_embed_dim", 256)
    vocoder_num_langs: int = dim("vocoder_num_langs", 36)
    vocoder_num_spkrs: int = dim("vocoder_num_spkrs", 200)
    variance_predictor_kernel_size: int = dim("variance_predictor_kernel_size", 3)
    var_pred_dropout: float = hf("var_pred_dropout", 0.5)
    vocoder_offset: int = hf("vocoder_offset", 4)

    @classmethod
    def adjust_from_hf(cls, config, values, source):
        values = super().adjust_from_hf(config, values, source)
        archs = config.get("architectures") or []
        values["text_encoder"] = not any(a in SPEECH_ONLY for a in archs)
        values["speech_encoder"] = not any(a in TEXT_ONLY for a in archs)
        values["speech_output"] = not archs or any(a.endswith(("Model", "ToSpeech")) for a in archs)
        return values

    def validate(self, source="config.json"):
        super().validate(source)
        for heads in ("encoder_heads", "decoder_heads", "speech_encoder_attention_heads"):
            if self.hidden_size % getattr(self, heads):
                raise ConfigError(f"{source}: hidden_size {self.hidden_size} is not a multiple of "
                                  f"{heads} {getattr(self, heads)}")
        if self.conv_depthwise_kernel_size % 2 == 0:
            raise ConfigError(f"{source}: conv_depthwise_kernel_size must be odd, got "
                              f"{self.conv_depthwise_kernel_size}")
        n = self.num_adapter_layers
        if not isinstance(n, int) or isinstance(n, bool) or not 0 <= n <= 64:
            raise ConfigError(f"{source}: num_adapter_layers must be an integer in 0..64, got {n!r}")
        if self.pad_token_id is None:
            raise ConfigError(f"{source}: pad_token_id is required (SeamlessM4T positions count from it)")


@_ser
@register_backbone("seamless_m4t")
class SeamlessM4TBackbone(BartBackbone):
    """``{"encoder_last_hidden_state", "last_hidden_state"}`` of text (``input_ids``) or speech
    (``input_features``) inputs and ``decoder_input_ids`` (SeamlessM4TModel's text outputs)."""

    spec_cls = SeamlessM4TSpec
    base_model_prefix = ""
    hf_architecture = "SeamlessM4TModel"
    verified_backends = ("jax", "torch", "tensorflow")  # text / speech to text and speech output
    encoder_block_names = decoder_block_names = SEAMLESS_NAMES
    reads_untied_tables = True
    token_table_names = ("shared.weight", "text_encoder.embed_tokens.weight", "text_decoder.embed_tokens.weight")
    hf_ignore = ("*num_batches_tracked", "*embed_positions.weights", "*embed_positions.inv_freq",
                 "*embed_positions.pe")
    hf_known_unused = ("t2u_model.*", "vocoder.*")  # read when speech_output (an instance sets ())
    t2u_cls = SeamlessT2U
    speech_conv_norm = "batch"  # v1's conformer convolution module (v2: "layer")
    architecture_prefix = "SeamlessM4T"

    def __init__(self, *args, speech_encoder_layers=24, speech_encoder_attention_heads=16,
                 speech_encoder_intermediate_size=4096, speech_encoder_hidden_act="swish",
                 feature_projection_input_dim=160, position_embeddings_type="relative", rotary_embedding_base=10000,
                 conv_depthwise_kernel_size=31, layer_norm_eps=1e-5, add_adapter=True, adaptor_kernel_size=8,
                 adaptor_stride=8, num_adapter_layers=1, speech_encoder_dropout=0.0, adaptor_dropout=0.1,
                 text_encoder=True, speech_encoder=True, left_max_position_embeddings=64,
                 right_max_position_embeddings=8, speech_encoder_chunk_size=None, speech_encoder_left_chunk_num=128,
                 hf_model_type="seamless_m4t", speech_output=False, **kwargs):
        fields = T2U_FIELDS + (V2_FIELDS if self.t2u_cls is SeamlessT2Uv2 else ())
        self.speech_out_fields = {name: kwargs.pop(name) for name in fields if name in kwargs}
        num_encoder_layers = kwargs.pop("num_encoder_layers")
        # no text encoder: no blocks built (num_encoder_layers is kept for config.json)
        super().__init__(*args, num_encoder_layers=num_encoder_layers if text_encoder else 0,
                         hf_model_type=hf_model_type, **kwargs)
        self.num_encoder_layers = num_encoder_layers
        if not text_encoder and self.encoder_final_norm is not None:
            self.encoder_final_norm.build((None, None, self.hidden_size))  # unused (no text encoder)
        if not (text_encoder or speech_encoder):
            raise ConfigError("SeamlessM4TBackbone needs a text encoder, a speech encoder or both")
        local = locals()
        self.speech_fields = {name: local[name] for name in SPEECH_FIELDS}
        self.text_encoder, self.speech_encoder_on = text_encoder, speech_encoder
        p = self.architecture_prefix
        self.speech_output = speech_output
        out = "Speech" if speech_output else "Text"
        self.hf_architecture = (f"{p}Model" if text_encoder and speech_encoder else
                                f"{p}ForTextTo{out}" if text_encoder else f"{p}ForSpeechTo{out}")
        self.t2u_model = self.vocoder = None
        if speech_output:
            missing = [n for n in fields if n not in self.speech_out_fields]
            if missing:
                raise ConfigError(f"speech_output=True needs {', '.join(missing)}")
            cfg = self.speech_out_fields
            text = dict(hidden_act=self.hidden_act, scale_embedding=self.scale_embedding,
                        initializer_range=self.initializer_range)
            self.t2u_model = self.t2u_cls(self.hidden_size, cfg, text, name="t2u_model", dtype=self.dtype_policy)
            self.t2u_model.build(None)
            self.vocoder = SeamlessCodeHifiGan(cfg, cfg["t2u_pad_token_id"], name="vocoder", dtype=self.dtype_policy)
            self.vocoder.build(None)
            self.hf_known_unused = ()  # the t2u model and vocoder are read
        self.speech_encoder = None
        if speech_encoder:
            self.speech_encoder = SeamlessSpeechEncoder(
                self.hidden_size, speech_encoder_layers, speech_encoder_attention_heads,
                speech_encoder_intermediate_size, feature_projection_input_dim, speech_encoder_hidden_act,
                position_embeddings_type or "none", rotary_embedding_base, conv_depthwise_kernel_size,
                layer_norm_eps, add_adapter, adaptor_kernel_size, adaptor_stride, num_adapter_layers,
                speech_encoder_dropout, adaptor_dropout, conv_norm=self.speech_conv_norm,
                left_max_position_embeddings=left_max_position_embeddings,
                right_max_position_embeddings=right_max_position_embeddings, chunk_size=speech_encoder_chunk_size,
                left_chunk_num=speech_encoder_left_chunk_num, kernel_initializer=self.kernel_init, name="speech_encoder", dtype=self.dtype_policy)
            self.speech_encoder.build()

    # --- encoders -------------------------------------------------------------------------------
    def encode(self, input_ids, attention_mask=None, training=False):
        if not self.text_encoder:
            raise InputError(f"{self.hf_architecture}: this checkpoint has no text encoder; pass input_features")
        return super().encode(input_ids, attention_mask, training=training)

    def encode_speech(self, input_features, attention_mask=None, training=False):
        """Speech encoder states of ``input_features`` (batch, frames, feature_projection_input_dim)."""
        if self.speech_encoder is None:
            raise InputError(f"{self.hf_architecture}: this checkpoint has no speech encoder; pass input_ids")
        shape = tuple(input_features.shape)
        want = self.speech_fields["feature_projection_input_dim"]
        if len(shape) != 3 or shape[2] not in (want, None):
            raise InputError(f"input_features must be (batch, frames, {want}) (feature_projection_input_dim), "
                             f"got shape {shape}")
        return self.speech_encoder(input_features, attention_mask, training=training)

    def encoder_mask(self, attention_mask, frames):
        """The decoder's (batch, frames) cross-attention mask of speech encoder states, from the
        input frames' ``attention_mask`` (Transformers' one-step subsampled length)."""
        lengths = self.speech_encoder.output_lengths(attention_mask)
        return ops.cast(ops.arange(frames, dtype="int32")[None, :] < lengths[:, None], "int32")

    def encode_inputs(self, inputs, training=False):
        if "input_features" in inputs:
            return self.encode_speech(inputs["input_features"], inputs.get("attention_mask"), training=training)
        return self.encode(inputs["input_ids"], inputs.get("attention_mask"), training=training)

    def call(self, inputs, training=False):
        if not isinstance(inputs, dict):
            inputs = {"input_ids": inputs}
        if "decoder_input_ids" not in inputs:
            raise InputError("SeamlessM4TBackbone needs decoder_input_ids")
        enc = self.encode_inputs(inputs, training=training)
        mask = inputs.get("attention_mask")
        if mask is not None and "input_features" in inputs:
            mask = self.encoder_mask(mask, ops.shape(enc)[1])
        dec = self.decode(inputs["decoder_input_ids"], enc, mask, inputs.get("decoder_attention_mask"),
                          training=training)
        return {"encoder_last_hidden_state": enc, "last_hidden_state": dec}

    def dummy_inputs(self):
        ones = np.ones((1, 2), "int32")
        out = {"decoder_input_ids": ones, "decoder_attention_mask": ones}
        if self.text_encoder:
            return {"input_ids": ones, "attention_mask": ones, **out}
        dim = self.speech_fields["feature_projection_input_dim"]
        return {"input_features": np.zeros((1, 8, dim), "float32"), "attention_mask": np.ones((1, 8), "int32"),
                **out}

    # --- HF conversion --------------------------------------------------------------------------
    def weight_rules(self):
        r = self.token_table_rules()
        sides = [("text_decoder", self.decoder_blocks, self.decoder_final_norm)]
        if self.text_encoder:
            sides.insert(0, ("text_encoder", self.encoder_blocks, self.encoder_final_norm))
        else:  # the encoder's table name is not in a speech-only checkpoint
            r = [rule for rule in r if rule.hf != self.token_table_names[1]]
        for side, blocks, final in sides:
            for i, blk in enumerate(blocks):
                r += block_rules(f"{side}.layers.{i}", blk, SEAMLESS_NAMES)
            r += norm_rules(f"{side}.layer_norm", final)
        if self.speech_encoder is not None:
            r += self.speech_encoder.rules("speech_encoder.")
        if self.t2u_model is not None:
            r += mount(self.t2u_model.rules(""), "t2u_model.") + mount(self.vocoder.rules(""), "vocoder.")
        return r

    def get_config(self):
        config = super().get_config()
        config.update(self.speech_fields)
        config.update(self.speech_out_fields)
        config["speech_output"] = self.speech_output
        return config


def _v2_position_type(value):
    if value != "relative_key":
        raise ValueError("must be 'relative_key' or null (SeamlessM4Tv2's speech encoder has no other)")
    return value


@dataclass(frozen=True, kw_only=True)
class SeamlessM4Tv2Spec(SeamlessM4TSpec):
    """SeamlessM4Tv2: the same text model; the speech encoder's blocks use ``relative_key``
    distances (clamped to ``-left_max_position_embeddings .. right_max_position_embeddings``), a
    causal depthwise conv with a LayerNorm, and chunked self-attention."""

    architecture: ClassVar[str] = "SeamlessM4Tv2Model"
    t2u_max_position_embeddings: int = dim("t2u_max_position_embeddings", 4096)
    char_vocab_size: int = dim("char_vocab_size", 10943)
    t2u_variance_predictor_embed_dim: int = dim("t2u_variance_predictor_embed_dim", 1024)
    t2u_variance_predictor_hidden_dim: int = dim("t2u_variance_predictor_hidden_dim", 256)
    t2u_variance_predictor_kernel_size: int = dim("t2u_variance_predictor_kernel_size", 3)
    t2u_variance_pred_dropout: float = hf("t2u_variance_pred_dropout", 0.5)
    max_position_embeddings: int = dim("max_position_embeddings", 4096)
    position_embeddings_type: str | None = hf("position_embeddings_type", "relative_key", read=_v2_position_type,
                                              doc="'relative_key' or null (none)")
    left_max_position_embeddings: int = dim("left_max_position_embeddings", 64)
    right_max_position_embeddings: int = dim("right_max_position_embeddings", 8)
    speech_encoder_chunk_size: int | None = hf("speech_encoder_chunk_size", 20000, doc="null: no chunks")
    speech_encoder_left_chunk_num: int = hf("speech_encoder_left_chunk_num", 128, doc="negative: all before")
    hf_model_type: str = const("seamless_m4t_v2")

    def validate(self, source="config.json"):
        super().validate(source)
        chunk = self.speech_encoder_chunk_size
        if chunk is not None and (isinstance(chunk, bool) or chunk < 1):
            raise ConfigError(f"{source}: speech_encoder_chunk_size must be a positive integer or null, got {chunk!r}")


@_ser
@register_backbone("seamless_m4t_v2")
class SeamlessM4Tv2Backbone(SeamlessM4TBackbone):
    """SeamlessM4Tv2's text outputs (SeamlessM4Tv2Model / ForTextToText / ForSpeechToText)."""

    spec_cls = SeamlessM4Tv2Spec
    hf_architecture = "SeamlessM4Tv2Model"
    verified_backends = ("jax", "torch", "tensorflow")  # text / speech to text and speech output
    reads_untied_tables = True
    speech_conv_norm = "layer"
    architecture_prefix = "SeamlessM4Tv2"
    t2u_cls = SeamlessT2Uv2

    def __init__(self, *args, hf_model_type="seamless_m4t_v2", **kwargs):
        super().__init__(*args, hf_model_type=hf_model_type, **kwargs)


__all__ = ["SeamlessM4TSpec", "SeamlessM4TBackbone", "SeamlessM4Tv2Spec", "SeamlessM4Tv2Backbone"]

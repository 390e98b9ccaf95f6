"""SpeechT5: one post-norm encoder-decoder shared by three modality pairs, with pre-nets that
turn speech or text into the encoder's / decoder's inputs.

* encoder: a LayerNorm after the pre-net, then post-norm blocks whose self-attention adds a
  query-dependent relative position term (Shaw et al.): for query i and key j,
  ``(q_i * head_dim**-0.5) . table[clip(i - j, -R, R - 1) + R]`` with a learned
  (2R, head_dim) table (``encoder_max_relative_position`` = R); no final norm.
* decoder: post-norm blocks (self-, cross-attention, feed-forward), no final norm.
* speech encoder pre-net (``encoder_input="speech"``): Wav2Vec2's conv feature encoder on the
  raw waveform, a LayerNorm + projection, the weight-normalised conv position embedding, then
  fairseq sinusoidal positions that count the real frames from ``pad_token_id + 1``.
* text encoder pre-net (``"text"``): token embeddings + ``alpha`` x a fixed sinusoidal table
  (interleaved sin / cos; ``alpha`` learned).
* text decoder pre-net (``decoder_input="text"``): token embeddings (x sqrt(hidden) with
  ``scale_embedding``) + fairseq sinusoidal positions over the non-pad tokens.
* speech decoder pre-net (``"speech"``): ReLU linears on mel frames, each followed by
  Transformers' "consistent" dropout, applied at inference too (Tacotron 2's pre-net): one random
  mask per call, shared by the batch, that KEEPS each unit with probability
  ``speech_decoder_prenet_dropout`` (p) and scales by 1 / (1 - p), as Transformers computes it (so
  p = 0 zeroes the frames' contribution and is the deterministic setting); then a projection,
  ``alpha`` x the sinusoidal table, the L2-normalised speaker embedding concatenated and a ReLU
  linear.

Which pre-nets are built follows config.json's ``architectures``: SpeechT5ForSpeechToText
(speech -> text), SpeechT5ForTextToSpeech (text -> speech), SpeechT5ForSpeechToSpeech.
Returns ``{"encoder_last_hidden_state", "last_hidden_state"}``.
"""

import math
from dataclasses import dataclass
from typing import ClassVar

import keras
import numpy as np
from keras import ops

from keras_models.errors import ConfigError, InputError
from keras_models.layers.activations import get_activation
from keras_models.layers.masks import causal_bias, padding_bias
from keras_models.layers.vision_embeddings import dense_rules, norm_rules
from keras_models.models.bart.backbone import BartBackbone
from keras_models.models.bart.families import BartSpec
from keras_models.models.encoder_decoder.rules import block_rules
from keras_models.models.registry import register_backbone
from keras_models.models.wav2vec2.backbone import WeightNormConv1D, frame_lengths
from keras_models.presets.weight_map import Reshape, Rule, Transpose
from keras_models.spec import const, dim, hf

_ser = keras.saving.register_keras_serializable(package="keras_models")
CONV1D_AXES = (2, 1, 0)  # torch Conv1d (out, in, k) <-> Keras Conv1D (k, in, out)

# architectures -> (encoder input, decoder input)
MODALITIES = {"SpeechT5ForSpeechToText": ("speech", "text"), "SpeechT5ForTextToSpeech": ("text", "speech"),
              "SpeechT5ForSpeechToSpeech": ("speech", "speech")}

ENCODER_NAMES = {
    "self_attention": ("attention", ("q_proj", "k_proj", "v_proj", "out_proj")),
    "self_attention_norm": "layer_norm",
    "ffn_in": "feed_forward.intermediate_dense",
    "ffn_out": "feed_forward.output_dense",
    "ffn_norm": "final_layer_norm",
}
DECODER_NAMES = {
    "self_attention": ("self_attn", ("q_proj", "k_proj", "v_proj", "out_proj")),
    "self_attention_norm": "self_attn_layer_norm",
    "cross_attention": ("encoder_attn", ("q_proj", "k_proj", "v_proj", "out_proj")),
    "cross_attention_norm": "encoder_attn_layer_norm",
    "ffn_in": "feed_forward.intermediate_dense",
    "ffn_out": "feed_forward.output_dense",
    "ffn_norm": "final_layer_norm",
}


def _ints(value):
    return tuple(int(v) for v in value)


def scaled_table(length, dim_):
    """The pre-nets' fixed (length, dim) table: sin on even, cos on odd channels."""
    table = np.zeros((length, dim_), np.float32)
    pos = np.arange(length, dtype=np.float32)[:, None]
    div = np.exp(np.arange(0, dim_, 2, dtype=np.float32) * -(math.log(10000.0) / dim_))
    table[:, 0::2] = np.sin(pos * div)
    table[:, 1::2] = np.cos(pos * div)[:, : dim_ // 2]
    return table


@dataclass(frozen=True, kw_only=True)
class SpeechT5Spec(BartSpec):
    architecture: ClassVar[str] = "SpeechT5Model"
    ignored: ClassVar[tuple] = ("apply_spec_augment", "mask_time_prob", "mask_time_length", "mask_time_min_masks",
                                "mask_feature_prob", "mask_feature_length", "mask_feature_min_masks",
                                "use_guided_attention_loss", "guided_attention_loss_num_heads",
                                "guided_attention_loss_sigma", "guided_attention_loss_scale",
                                "encoder_layerdrop", "decoder_layerdrop")

    vocab_size: int = dim("vocab_size", 81)
    hidden_size: int = dim("hidden_size", 768)
    num_encoder_layers: int = dim("encoder_layers", 12)
    num_decoder_layers: int = dim("decoder_layers", 6)
    encoder_heads: int = dim("encoder_attention_heads", 12)
    decoder_heads: int = dim("decoder_attention_heads", 12)
    encoder_intermediate_size: int = dim("encoder_ffn_dim", 3072)
    decoder_intermediate_size: int = dim("decoder_ffn_dim", 3072)
    max_position_embeddings: int = dim("max_speech_positions", 4000, doc="speech positions")
    decoder_max_position_embeddings: int = dim("max_text_positions", 450, doc="text positions")
    hidden_act: str = hf("hidden_act", "gelu")
    layer_norm_eps: float = hf("layer_norm_eps", 1e-5)
    dropout: float = hf("hidden_dropout", 0.1)
    attention_dropout: float = hf("attention_dropout", 0.1)
    activation_dropout: float = hf("activation_dropout", 0.1)
    positional_dropout: float = hf("positional_dropout", 0.1)
    scale_embedding: bool = hf("scale_embedding", False, doc="sqrt(hidden) on the text decoder's tokens")
    pad_token_id: int | None = hf("pad_token_id", 1)
    bos_token_id: int | None = hf("bos_token_id", 0)
    eos_token_id: int | None = hf("eos_token_id", 2)
    decoder_start_token_id: int | None = hf("decoder_start_token_id", 2)
    forced_eos_token_id: int | None = hf("forced_eos_token_id", None)
    initializer_range: float = hf("initializer_range", 0.02)
    encoder_max_relative_position: int = dim("encoder_max_relative_position", 160)
    # speech encoder pre-net (Wav2Vec2's feature encoder)
    feat_extract_norm: str = hf("feat_extract_norm", "group", doc="'group' or 'layer'")
    feat_extract_activation: str = hf("feat_extract_activation", "gelu")
    conv_dim: tuple = hf("conv_dim", (512, 512, 512, 512, 512, 512, 512), read=_ints)
    conv_stride: tuple = hf("conv_stride", (5, 2, 2, 2, 2, 2, 2), read=_ints)
    conv_kernel: tuple = hf("conv_kernel", (10, 3, 3, 3, 3, 2, 2), read=_ints)
    conv_bias: bool = hf("conv_bias", False)
    num_conv_pos_embeddings: int = dim("num_conv_pos_embeddings", 128)
    num_conv_pos_embedding_groups: int = dim("num_conv_pos_embedding_groups", 16)
    feat_proj_dropout: float = hf("feat_proj_dropout", 0.0)
    # speech decoder pre-net / post-net
    num_mel_bins: int = dim("num_mel_bins", 80)
    speech_decoder_prenet_layers: int = dim("speech_decoder_prenet_layers", 2)
    speech_decoder_prenet_units: int = dim("speech_decoder_prenet_units", 256)
    speech_decoder_prenet_dropout: float = hf("speech_decoder_prenet_dropout", 0.5,
                                              doc="always on; keeps a unit with this probability")
    speaker_embedding_dim: int = dim("speaker_embedding_dim", 512)
    speech_decoder_postnet_layers: int = dim("speech_decoder_postnet_layers", 5)
    speech_decoder_postnet_units: int = dim("speech_decoder_postnet_units", 256)
    speech_decoder_postnet_kernel: int = dim("speech_decoder_postnet_kernel", 5)
    speech_decoder_postnet_dropout: float = hf("speech_decoder_postnet_dropout", 0.5)
    reduction_factor: int = dim("reduction_factor", 2)
    encoder_input: str = const("speech", doc="'speech' or 'text' (from architectures)")
    decoder_input: str = const("text", doc="'text' or 'speech' (from architectures)")
    hf_model_type: str = const("speecht5")
    position_embedding: str = const("sinusoidal_fairseq")
    position_offset: int = const(2)
    padding_aware_positions: bool = const(True)
    embedding_norm: bool = const(False)
    norm_first: bool = const(False)
    final_norm: bool = const(False)

    @classmethod
    def adjust_from_hf(cls, config, values, source):
        values = super().adjust_from_hf(config, values, source)
        for arch in config.get("architectures") or ():
            if arch in MODALITIES:
                values["encoder_input"], values["decoder_input"] = MODALITIES[arch]
                break
        return values

    def validate(self, source="config.json"):
        for side, heads in (("encoder", self.encoder_heads), ("decoder", self.decoder_heads)):
            if self.hidden_size % heads:
                raise ConfigError(f"{source}: hidden_size={self.hidden_size} is not a multiple of "
                                  f"{side}_attention_heads={heads}")
        if self.encoder_input not in ("speech", "text") or self.decoder_input not in ("speech", "text"):
            raise ConfigError(f"{source}: unknown SpeechT5 modalities {self.encoder_input!r} -> {self.decoder_input!r}")
        if self.feat_extract_norm not in ("group", "layer"):
            raise ConfigError(f"{source}: feat_extract_norm must be 'group' or 'layer', got {self.feat_extract_norm!r}")
        if not len(self.conv_dim) == len(self.conv_kernel) == len(self.conv_stride) or not self.conv_dim:
            raise ConfigError(f"{source}: conv_dim, conv_kernel and conv_stride must have one (equal, non-zero) "
                              f"length, got {len(self.conv_dim)}, {len(self.conv_kernel)}, {len(self.conv_stride)}")
        if self.hidden_size % self.num_conv_pos_embedding_groups:
            raise ConfigError(f"{source}: hidden_size {self.hidden_size} is not a multiple of "
                              f"num_conv_pos_embedding_groups {self.num_conv_pos_embedding_groups}")
        if not 0.0 <= self.speech_decoder_prenet_dropout < 1.0:
            raise ConfigError(f"{source}: speech_decoder_prenet_dropout={self.speech_decoder_prenet_dropout} must be "
                              "in [0, 1) (the pre-net scales by 1 / (1 - p))")
        if self.pad_token_id is None:
            raise ConfigError(f"{source}: pad_token_id is required (SpeechT5's positions count from it)")
        if self.hidden_size % 2:
            raise ConfigError(f"{source}: hidden_size={self.hidden_size} must be even (sinusoidal positions)")

    def adjust_to_hf(self, out):
        out = super().adjust_to_hf(out)
        out["num_feat_extract_layers"] = len(self.conv_dim)
        return out


@_ser
@register_backbone("speecht5")
class SpeechT5Backbone(BartBackbone):
    """``{"encoder_last_hidden_state", "last_hidden_state"}`` of ``{"input_values"`` (speech) or
    ``"input_ids"`` (text), ``"attention_mask"``, ``"decoder_input_ids"`` (text) or
    ``"decoder_input_values"`` (mel frames) + ``"speaker_embeddings"``, ``"decoder_attention_mask"}``."""

    base_model_prefix = "speecht5"
    hf_architecture = "SpeechT5Model"
    spec_cls = SpeechT5Spec
    verified_backends = ("jax", "torch", "tensorflow")  # ASR and TTS parity (tests/audio/test_speecht5.py)
    encoder_block_names = ENCODER_NAMES
    decoder_block_names = DECODER_NAMES
    hf_known_unused = ("*masked_spec_embed",)
    hf_ignore = ("*num_batches_tracked",)

    def __init__(self, *args, encoder_input="speech", decoder_input="text", encoder_max_relative_position=160,
                 positional_dropout=0.1, feat_extract_norm="group", feat_extract_activation="gelu",
                 conv_dim=(512,) * 7, conv_stride=(5, 2, 2, 2, 2, 2, 2), conv_kernel=(10, 3, 3, 3, 3, 2, 2),
                 conv_bias=False, num_conv_pos_embeddings=128, num_conv_pos_embedding_groups=16,
                 feat_proj_dropout=0.0, num_mel_bins=80, speech_decoder_prenet_layers=2,
                 speech_decoder_prenet_units=256, speech_decoder_prenet_dropout=0.5, speaker_embedding_dim=512,
                 speech_decoder_postnet_layers=5, speech_decoder_postnet_units=256, speech_decoder_postnet_kernel=5,
                 speech_decoder_postnet_dropout=0.5, reduction_factor=2, position_embedding="sinusoidal_fairseq",
                 position_offset=2, padding_aware_positions=True, embedding_norm=False, norm_first=False,
                 final_norm=False, hf_model_type="speecht5", **kwargs):
        super().__init__(*args, position_embedding=position_embedding, position_offset=position_offset,
                         padding_aware_positions=padding_aware_positions, embedding_norm=embedding_norm,
                         norm_first=norm_first, final_norm=final_norm, hf_model_type=hf_model_type, **kwargs)
        self.hf_architecture = "SpeechT5Model"
        self.extra = dict(
            encoder_input=encoder_input, decoder_input=decoder_input,
            encoder_max_relative_position=encoder_max_relative_position, positional_dropout=positional_dropout,
            feat_extract_norm=feat_extract_norm, feat_extract_activation=feat_extract_activation,
            conv_dim=_ints(conv_dim), conv_stride=_ints(conv_stride), conv_kernel=_ints(conv_kernel),
            conv_bias=conv_bias, num_conv_pos_embeddings=num_conv_pos_embeddings,
            num_conv_pos_embedding_groups=num_conv_pos_embedding_groups, feat_proj_dropout=feat_proj_dropout,
            num_mel_bins=num_mel_bins, speech_decoder_prenet_layers=speech_decoder_prenet_layers,
            speech_decoder_prenet_units=speech_decoder_prenet_units,
            speech_decoder_prenet_dropout=speech_decoder_prenet_dropout, speaker_embedding_dim=speaker_embedding_dim,
            speech_decoder_postnet_layers=speech_decoder_postnet_layers,
            speech_decoder_postnet_units=speech_decoder_postnet_units,
            speech_decoder_postnet_kernel=speech_decoder_postnet_kernel,
            speech_decoder_postnet_dropout=speech_decoder_postnet_dropout, reduction_factor=reduction_factor)
        for k, v in self.extra.items():
            setattr(self, k, v)
        dt = self.dtype_policy
        h = self.hidden_size
        ln = dict(epsilon=self.layer_norm_eps, dtype=dt)
        self.encoder_norm = keras.layers.LayerNormalization(name="encoder_norm", **ln)
        self.encoder_norm.build((None, h))
        self.relative_table = keras.layers.Embedding(2 * encoder_max_relative_position, self.encoder_head_dim,
                                                     embeddings_initializer=self.kernel_init,
                                                     name="relative_table", dtype=dt)
        self.relative_table.build((None, None))
        for blk in self.encoder_blocks:  # built here: encode() reads their query projections first
            blk.build((None, None, h))
        self.positional_drop = keras.layers.Dropout(positional_dropout, dtype=dt)
        if encoder_input == "speech":
            self._build_speech_encoder_prenet()
        else:
            self.encoder_alpha = self.add_weight(name="encoder_alpha", shape=(), initializer="ones")
            self.encoder_table = scaled_table(self.decoder_max_position_embeddings, h)
        if decoder_input == "speech":
            self._build_speech_decoder_prenet()

    def build(self, input_shape=None):
        self.token_embedding.build((None, None))
        for blk in self.decoder_blocks:
            blk.build((None, None, self.hidden_size))
        self.built = True

    def _build_speech_encoder_prenet(self):
        dt = self.dtype_policy
        self.convs, self.conv_norms = [], []
        shape = (None, None, 1)
        for i, (c, k, st) in enumerate(zip(self.conv_dim, self.conv_kernel, self.conv_stride)):
            conv = keras.layers.Conv1D(c, k, strides=st, use_bias=self.conv_bias, padding="valid",
                                       kernel_initializer="he_normal", name=f"conv_{i}", dtype=dt)
            conv.build(shape)
            shape = (None, None, c)
            if self.feat_extract_norm == "layer":
                norm = keras.layers.LayerNormalization(epsilon=1e-5, name=f"conv_norm_{i}", dtype=dt)
            elif i == 0:
                norm = keras.layers.GroupNormalization(groups=c, epsilon=1e-5, name="conv_norm_0", dtype=dt)
            else:
                norm = None
            if norm is not None:
                norm.build(shape)
            self.convs.append(conv)
            self.conv_norms.append(norm)
        self.conv_act = get_activation(self.feat_extract_activation)
        self.projection_norm = keras.layers.LayerNormalization(epsilon=self.layer_norm_eps, name="projection_norm",
                                                               dtype=dt)
        self.projection_norm.build(shape)
        self.projection = keras.layers.Dense(self.hidden_size, name="projection", dtype=dt)
        self.projection.build(shape)
        self.projection_dropout = keras.layers.Dropout(self.feat_proj_dropout, dtype=dt)
        self.pos_conv = WeightNormConv1D(self.hidden_size, self.num_conv_pos_embeddings,
                                         self.num_conv_pos_embedding_groups, activation=self.feat_extract_activation,
                                         name="pos_conv", dtype=dt)
        self.pos_conv.build((None, None, self.hidden_size))

    def _build_speech_decoder_prenet(self):
        dt = self.dtype_policy
        dense = dict(kernel_initializer=self.kernel_init, dtype=dt)
        self.speech_prenet_layers = []
        width = self.num_mel_bins
        self.prenet_seed = keras.random.SeedGenerator(name="prenet_seed")  # the consistent dropout's masks
        for i in range(self.speech_decoder_prenet_layers):
            layer = keras.layers.Dense(self.speech_decoder_prenet_units, name=f"speech_prenet_{i}", **dense)
            layer.build((None, width))
            width = self.speech_decoder_prenet_units
            self.speech_prenet_layers.append(layer)
        self.speech_prenet_final = keras.layers.Dense(self.hidden_size, name="speech_prenet_final", **dense)
        self.speech_prenet_final.build((None, width))
        self.decoder_alpha = self.add_weight(name="decoder_alpha", shape=(), initializer="ones")
        self.decoder_table = scaled_table(self.max_position_embeddings, self.hidden_size)
        self.speaker_projection = keras.layers.Dense(self.hidden_size, name="speaker_projection", **dense)
        self.speaker_projection.build((None, self.speaker_embedding_dim + self.hidden_size))

    # --- speech encoder pre-net -----------------------------------------------------------------
    def frame_lengths(self, lengths):
        return frame_lengths(lengths, self.conv_kernel, self.conv_stride)

    def encoder_mask(self, attention_mask, frames):
        """The (batch, frames) int mask of the encoder states for an input-level ``attention_mask``."""
        if self.encoder_input == "text":
            return ops.cast(attention_mask, "int32")
        lengths = self.frame_lengths(ops.sum(ops.cast(attention_mask, "int32"), axis=-1))
        positions = ops.arange(frames, dtype="int32")[None, :]
        return ops.cast(ops.less(positions, ops.cast(lengths, "int32")[:, None]), "int32")

    def min_samples(self):
        n = 1
        for k, s in reversed(list(zip(self.conv_kernel, self.conv_stride))):
            n = (n - 1) * s + k
        return n

    def embed_speech(self, input_values, attention_mask=None, training=False):
        """The speech encoder pre-net: (states (batch, frames, hidden), frame mask or None)."""
        shape = tuple(input_values.shape)
        if len(shape) != 2:
            raise InputError(f"input_values must be (batch, samples), got shape {shape}")
        if isinstance(shape[1], int) and shape[1] < self.min_samples():
            raise InputError(f"input_values: {shape[1]} samples are fewer than the {self.min_samples()} the "
                             "conv feature encoder needs for one frame")
        x = ops.expand_dims(ops.cast(input_values, self.compute_dtype), -1)
        for conv, norm in zip(self.convs, self.conv_norms):
            x = conv(x)
            if norm is not None:
                x = norm(x)
            x = self.conv_act(x)
        x = self.projection_dropout(self.projection(self.projection_norm(x)), training=training)
        x = x + self.pos_conv(x)
        mask = None if attention_mask is None else self.encoder_mask(attention_mask, ops.shape(x)[1])
        padded = ops.zeros(ops.shape(x)[:2], "int32") if mask is None else 1 - mask
        pos = self.encoder_position_embedding(self._positions(padded, 0))  # counts the 0 (= real) entries
        return x + ops.cast(pos, x.dtype), mask

    def embed_text_encoder(self, input_ids, training=False):
        x = self.token_embedding(input_ids)
        t = ops.shape(x)[1]
        if isinstance(t, int) and t > len(self.encoder_table):
            raise InputError(f"input_ids: {t} tokens are more than max_text_positions={len(self.encoder_table)}")
        table = ops.convert_to_tensor(self.encoder_table, x.dtype)[None, :t]
        x = x + ops.cast(self.encoder_alpha, x.dtype) * table
        return self.positional_drop(x, training=training)

    # --- encoder ------------------------------------------------------------------------------
    def relative_bias_table(self, seq_len):
        """(seq, seq, head_dim): the learned vector of each clipped (query - key) offset."""
        r = self.encoder_max_relative_position
        pos = ops.arange(seq_len, dtype="int32")
        rel = ops.clip(pos[:, None] - pos[None, :], -r, r - 1) + r
        return self.relative_table(rel)

    def encode(self, inputs, attention_mask=None, training=False):
        """Encoder states of ``inputs`` (waveforms (batch, samples) or token ids (batch, seq));
        ``attention_mask`` is input-level (samples or tokens)."""
        if self.encoder_input == "speech":
            x, mask = self.embed_speech(inputs, attention_mask, training=training)
        else:
            mask = None if attention_mask is None else ops.cast(attention_mask, "int32")
            x = self.embed_text_encoder(inputs, training=training)
        x = self.embedding_dropout(self.encoder_norm(x), training=training)
        pad = None if mask is None else padding_bias(mask, x.dtype)
        table = ops.cast(self.relative_bias_table(ops.shape(x)[1]), x.dtype)
        for blk in self.encoder_blocks:
            a = blk.self_attention
            b, t = ops.shape(x)[0], ops.shape(x)[1]
            q = ops.reshape(a.query(x), (b, t, a.num_heads, a.head_dim)) * ops.cast(a.head_dim**-0.5, x.dtype)
            bias = ops.einsum("bihd,ijd->bhij", q, table)
            if pad is not None:
                bias = bias + pad
            x = blk(x, bias, training=training)
        return x

    def encode_inputs(self, inputs, training=False):
        key = "input_values" if self.encoder_input == "speech" else "input_ids"
        if key not in inputs:
            raise InputError(f"SpeechT5Backbone ({self.encoder_input} encoder) needs {key!r}")
        return self.encode(inputs[key], inputs.get("attention_mask"), training=training)

    # --- decoder ------------------------------------------------------------------------------
    def consistent_dropout(self, x, rng=None, layer=0):
        """Transformers' always-on pre-net dropout: a (steps, units) mask shared by the batch that
        keeps a unit with probability p, scaled by 1 / (1 - p). ``rng``: an (int32 seed, step) pair
        for the generation engine's counter-based uniforms (compiled loops), else Keras' random."""
        p = float(self.speech_decoder_prenet_dropout)
        if p == 0.0:
            return ops.zeros_like(x)
        if rng is None:
            draw = keras.random.uniform(ops.shape(x)[1:], seed=self.prenet_seed)
        else:
            from keras_models.generation.backend import uniform

            seed, step = rng
            draw = uniform(seed, ops.cast(step, "int32") * len(self.speech_prenet_layers) + layer, tuple(x.shape[1:]))
        keep = draw < p
        return ops.where(keep[None], x, ops.zeros_like(x)) / ops.cast(1.0 - p, x.dtype)

    def embed_speech_decoder(self, values, speaker_embeddings=None, offset=0, training=False,
                             consistent_dropout=True, dropout_rng=None):
        """The speech decoder pre-net on mel frames (batch, steps, num_mel_bins) at positions
        ``offset ..``. ``consistent_dropout=False`` skips the pre-net dropout (not a
        Transformers setting: for inspecting the pre-net)."""
        x = ops.cast(values, self.compute_dtype)
        for i, layer in enumerate(self.speech_prenet_layers):
            x = ops.relu(layer(x))
            if consistent_dropout:
                x = self.consistent_dropout(x, dropout_rng, i)
        x = self.speech_prenet_final(x)
        t = ops.shape(x)[1]
        table = ops.convert_to_tensor(self.decoder_table, x.dtype)
        rows = ops.take(table, ops.arange(t, dtype="int32") + offset, axis=0)[None]
        x = self.positional_drop(x + ops.cast(self.decoder_alpha, x.dtype) * rows, training=training)
        if speaker_embeddings is not None:
            s = ops.cast(speaker_embeddings, x.dtype)
            norm = ops.sqrt(ops.sum(ops.square(s), axis=-1, keepdims=True))
            s = s / ops.maximum(norm, 1e-12)
            s = ops.broadcast_to(s[:, None, :], (ops.shape(x)[0], t, ops.shape(s)[-1]))
            x = ops.relu(self.speaker_projection(ops.concatenate([x, s], axis=-1)))
        return x

    def decode_states(self, x, encoder_states, encoder_attention_mask=None, decoder_attention_mask=None,
                      training=False):
        """The decoder blocks on embedded inputs ``x`` (causal, teacher-forced)."""
        t = ops.shape(x)[1]
        self_bias = causal_bias(t, t, x.dtype)
        if decoder_attention_mask is not None:
            self_bias = self_bias + padding_bias(decoder_attention_mask, x.dtype)
        cross = self._cross_bias(encoder_attention_mask, x.dtype)
        for blk in self.decoder_blocks:
            x = blk(x, self_bias, context=encoder_states, cross_bias=cross, training=training)
        return x

    def decode_speech_with_cache(self, frames, speaker_embeddings, encoder_states, cross_bias, cache, cache_index,
                                 dropout_rng=None):
        """The speech decoder on mel ``frames`` (batch, t, num_mel_bins) at positions
        ``cache_index ..`` against the KV ``cache`` (see ``init_cache``) -> (hidden, new cache)."""
        if type(cache_index) is not int:
            cache_index = ops.cast(cache_index, "int32")
        x = self.embed_speech_decoder(frames, speaker_embeddings, offset=cache_index, dropout_rng=dropout_rng)
        t = ops.shape(x)[1]
        self_bias = causal_bias(t, self.cache_length(cache), x.dtype, offset=cache_index)
        new_self = []
        for i, blk in enumerate(self.decoder_blocks):
            x, layer_cache = blk(x, self_bias, context=encoder_states, cross_bias=cross_bias,
                                 cache=cache["self_kv"][i], cache_index=cache_index, cross_kv=cache["cross_kv"][i])
            new_self.append(layer_cache)
        return x, dict(cache, self_kv=tuple(new_self))

    def call(self, inputs, training=False):
        if not isinstance(inputs, dict):
            raise InputError("SpeechT5Backbone needs a dict of inputs")
        enc = self.encode_inputs(inputs, training=training)
        mask = inputs.get("attention_mask")
        enc_mask = None if mask is None else self.encoder_mask(mask, ops.shape(enc)[1])
        if self.decoder_input == "text":
            if "decoder_input_ids" not in inputs:
                raise InputError("SpeechT5Backbone (text decoder) needs 'decoder_input_ids'")
            dec = self.decode(inputs["decoder_input_ids"], enc, enc_mask, inputs.get("decoder_attention_mask"),
                              training=training)
        else:
            if "decoder_input_values" not in inputs:
                raise InputError("SpeechT5Backbone (speech decoder) needs 'decoder_input_values' "
                                 "(batch, steps, num_mel_bins)")
            x = self.embed_speech_decoder(inputs["decoder_input_values"], inputs.get("speaker_embeddings"),
                                          training=training)
            dec = self.decode_states(x, enc, enc_mask, inputs.get("decoder_attention_mask"), training=training)
        return {"encoder_last_hidden_state": enc, "last_hidden_state": dec}

    def dummy_inputs(self):
        ones = np.ones((1, 2), "int32")
        if self.encoder_input == "speech":
            n = self.min_samples() + int(np.prod(self.conv_stride))
            out = {"input_values": np.zeros((1, n), "float32"), "attention_mask": np.ones((1, n), "int32")}
        else:
            out = {"input_ids": ones, "attention_mask": ones}
        if self.decoder_input == "text":
            out.update(decoder_input_ids=ones, decoder_attention_mask=ones)
        else:
            out.update(decoder_input_values=np.zeros((1, 2, self.num_mel_bins), "float32"),
                       speaker_embeddings=np.ones((1, self.speaker_embedding_dim), "float32"))
        return out

    # --- HF conversion (config.json: SpeechT5Spec) ----------------------------------------------
    def weight_rules(self):
        r = []
        enc, dec = "encoder.", "decoder."
        if self.encoder_input == "speech":
            p = enc + "prenet."
            for i, (conv, norm) in enumerate(zip(self.convs, self.conv_norms)):
                c = f"{p}feature_encoder.conv_layers.{i}."
                r.append(Rule(c + "conv.weight", conv.kernel, Transpose(CONV1D_AXES)))
                if conv.use_bias:
                    r.append(Rule(c + "conv.bias", conv.bias))
                if norm is not None:
                    r += norm_rules(c + "layer_norm", norm)
            r += norm_rules(p + "feature_projection.layer_norm", self.projection_norm)
            r += dense_rules(p + "feature_projection.projection", self.projection)
            pc, k = p + "pos_conv_embed.conv.", self.pos_conv.kernel_size
            r += [Rule(pc + "parametrizations.weight.original0", self.pos_conv.weight_g, Reshape((1, 1, k), (k,)),
                       aliases=(pc + "weight_g",)),
                  Rule(pc + "parametrizations.weight.original1", self.pos_conv.weight_v, Transpose(CONV1D_AXES),
                       aliases=(pc + "weight_v",)),
                  Rule(pc + "bias", self.pos_conv.bias)]
        else:
            r.append(Rule(enc + "prenet.embed_tokens.weight", self.token_embedding.embeddings))
            r.append(Rule(enc + "prenet.encode_positions.alpha", self.encoder_alpha))
        w = enc + "wrapped_encoder."
        r += norm_rules(w + "layer_norm", self.encoder_norm)
        r.append(Rule(w + "embed_positions.pe_k.weight", self.relative_table.embeddings))
        for i, blk in enumerate(self.encoder_blocks):
            r += block_rules(f"{w}layers.{i}", blk, ENCODER_NAMES)
        if self.decoder_input == "text":
            r.append(Rule(dec + "prenet.embed_tokens.weight", self.token_embedding.embeddings))
        else:
            p = dec + "prenet."
            for i, layer in enumerate(self.speech_prenet_layers):
                r += dense_rules(f"{p}layers.{i}", layer)
            r += dense_rules(p + "final_layer", self.speech_prenet_final)
            r.append(Rule(p + "encode_positions.alpha", self.decoder_alpha))
            r += dense_rules(p + "speaker_embeds_layer", self.speaker_projection)
        for i, blk in enumerate(self.decoder_blocks):
            r += block_rules(f"{dec}wrapped_decoder.layers.{i}", blk, DECODER_NAMES)
        return r

    def get_config(self):
        config = super().get_config()
        config.update({k: (list(v) if isinstance(v, tuple) else v) for k, v in self.extra.items()})
        return config


__all__ = ["SpeechT5Backbone", "SpeechT5Spec", "MODALITIES"]

"""Speech2Text (S2T, fairseq): a strided GLU conv subsampler over log-mel filterbank features,
then the BART-like pre-norm encoder-decoder.

The subsampler is ``num_conv_layers`` Conv1D layers (stride 2, symmetric padding kernel // 2),
each followed by a GLU over the channels (the first half gated by the sigmoid of the second); the
last one gives 2 * d_model channels. Its output is scaled by sqrt(d_model) when
``scale_embedding``, as are the decoder's token embeddings. Both sides add fixed fairseq
sinusoidal positions ([sin | cos] halves, the padding row zeroed) that count non-padding items
from ``pad_token_id + 1``: the decoder counts non-pad tokens (as M2M100), the encoder counts the
frames its subsampled ``attention_mask`` keeps. The subsampled mask (lengths (L - 1) // 2 + 1
per conv layer) masks the encoder's self-attention and the decoder's cross-attention.
``input_features`` is (batch, frames, input_feat_per_channel * input_channels), channels last.
"""

from dataclasses import dataclass
from typing import ClassVar

import keras
import numpy as np
from keras import ops

from keras_models.errors import ConfigError
from keras_models.layers.seq2seq_block import norm_rules
from keras_models.models.bart.backbone import BART_NAMES, BartBackbone
from keras_models.models.bart.families import BartSpec
from keras_models.models.encoder_decoder.rules import block_rules
from keras_models.models.registry import register_backbone
from keras_models.presets.weight_map import Rule, Transpose
from keras_models.spec import const, dim, hf

_ser = keras.saving.register_keras_serializable(package="keras_models")
CONV1D_AXES = (2, 1, 0)  # torch Conv1d (out, in, k) <-> Keras Conv1D (k, in, out)


def _ints(value):
    return tuple(int(v) for v in value)


@dataclass(frozen=True, kw_only=True)
class Speech2TextSpec(BartSpec):
    architecture: ClassVar[str] = "Speech2TextModel"

    vocab_size: int = dim("vocab_size", 10000)
    hidden_size: int = dim("d_model", 256)
    num_encoder_layers: int = dim("encoder_layers", 12)
    num_decoder_layers: int = dim("decoder_layers", 6)
    encoder_heads: int = dim("encoder_attention_heads", 4)
    decoder_heads: int = dim("decoder_attention_heads", 4)
    encoder_intermediate_size: int = dim("encoder_ffn_dim", 2048)
    decoder_intermediate_size: int = dim("decoder_ffn_dim", 2048)
    max_position_embeddings: int = dim("max_source_positions", 6000, doc="encoder positions (subsampled frames)")
    decoder_max_position_embeddings: int = dim("max_target_positions", 1024)
    hidden_act: str = hf("activation_function", "relu")
    scale_embedding: bool = hf("scale_embedding", True, doc="sqrt(d_model) on the subsampler output and tokens")
    conv_kernel_sizes: tuple = hf("conv_kernel_sizes", (5, 5), read=_ints)
    conv_channels: int = dim("conv_channels", 1024)
    input_feat_per_channel: int = dim("input_feat_per_channel", 80)
    input_channels: int = dim("input_channels", 1)
    num_conv_layers: int = dim("num_conv_layers", 2)
    pad_token_id: int | None = hf("pad_token_id", 1)
    bos_token_id: int | None = hf("bos_token_id", 0)
    eos_token_id: int | None = hf("eos_token_id", 2)
    decoder_start_token_id: int | None = hf("decoder_start_token_id", 2)
    forced_eos_token_id: int | None = hf("forced_eos_token_id", None)
    hf_model_type: str = const("speech_to_text")
    position_embedding: str = const("sinusoidal_fairseq")
    position_offset: int = const(2)
    padding_aware_positions: bool = const(True)
    embedding_norm: bool = const(False)
    norm_first: bool = const(True)
    final_norm: bool = const(True)

    def validate(self, source="config.json"):
        super().validate(source)
        if len(self.conv_kernel_sizes) != self.num_conv_layers or not self.conv_kernel_sizes:
            raise ConfigError(f"{source}: conv_kernel_sizes {list(self.conv_kernel_sizes)} must have "
                              f"num_conv_layers={self.num_conv_layers} entries")
        if self.conv_channels % 2:
            raise ConfigError(f"{source}: conv_channels={self.conv_channels} must be even (GLU halves)")
        if self.pad_token_id is None:
            raise ConfigError(f"{source}: pad_token_id is required (Speech2Text positions count from it)")


@_ser
@register_backbone("speech_to_text")
class Speech2TextBackbone(BartBackbone):
    """``{"encoder_last_hidden_state", "last_hidden_state"}`` of ``{"input_features",
    "attention_mask", "decoder_input_ids", "decoder_attention_mask"}`` (Speech2TextModel)."""

    base_model_prefix = "model"
    hf_architecture = "Speech2TextModel"
    spec_cls = Speech2TextSpec
    verified_backends = ("jax", "torch", "tensorflow")

    def __init__(self, *args, conv_kernel_sizes=(5, 5), conv_channels=1024, input_feat_per_channel=80,
                 input_channels=1, num_conv_layers=None, position_embedding="sinusoidal_fairseq",
                 position_offset=2, padding_aware_positions=True, embedding_norm=False, norm_first=True,
                 final_norm=True, scale_embedding=True, hf_model_type="speech_to_text", **kwargs):
        super().__init__(*args, position_embedding=position_embedding, position_offset=position_offset,
                         padding_aware_positions=padding_aware_positions, embedding_norm=embedding_norm,
                         norm_first=norm_first, final_norm=final_norm, scale_embedding=scale_embedding,
                         hf_model_type=hf_model_type, **kwargs)
        self.hf_architecture = "Speech2TextModel"
        self.conv_kernel_sizes = tuple(int(k) for k in conv_kernel_sizes)
        self.conv_channels = conv_channels
        self.input_feat_per_channel = input_feat_per_channel
        self.input_channels = input_channels
        self.num_conv_layers = len(self.conv_kernel_sizes)
        self.feature_size = input_feat_per_channel * input_channels
        self.subsampler = []
        n = len(self.conv_kernel_sizes)
        for i, k in enumerate(self.conv_kernel_sizes):
            out = conv_channels if i < n - 1 else 2 * self.hidden_size
            conv = keras.layers.Conv1D(out, k, strides=2, padding="valid", kernel_initializer=self.kernel_init,
                                       name=f"subsampler_conv_{i}", dtype=self.dtype_policy)
            conv.build((None, None, self.feature_size if i == 0 else conv_channels // 2))
            self.subsampler.append(conv)

    # --- encoder --------------------------------------------------------------------------------
    def subsampled_lengths(self, lengths):
        for _ in self.conv_kernel_sizes:
            lengths = (lengths - 1) // 2 + 1
        return lengths

    def encoder_mask(self, attention_mask, frames):
        """The (batch, frames) mask of the subsampled sequence for a feature-level ``attention_mask``."""
        lengths = self.subsampled_lengths(ops.sum(ops.cast(attention_mask, "int32"), axis=-1))
        positions = ops.arange(frames, dtype="int32")[None, :]
        return ops.cast(ops.less(positions, lengths[:, None]), "int32")

    def _features(self, input_features):
        shape = tuple(input_features.shape)
        if len(shape) != 3 or shape[2] not in (self.feature_size, None):
            raise ValueError(f"input_features must be (batch, frames, {self.feature_size}) "
                             f"(input_feat_per_channel * input_channels), got shape {shape}")
        return ops.cast(input_features, self.compute_dtype)

    def subsample(self, input_features):
        x = self._features(input_features)
        for conv in self.subsampler:
            k = conv.kernel_size[0]
            x = conv(ops.pad(x, [[0, 0], [k // 2, k // 2], [0, 0]]))
            a, b = ops.split(x, 2, axis=-1)
            x = a * ops.sigmoid(b)
        return x

    def embed_encoder(self, input_features, attention_mask=None, training=False):
        x = self.subsample(input_features)
        if self.scale_embedding:
            x = x * ops.cast(self.embed_scale, x.dtype)
        if attention_mask is None:
            padded = ops.zeros(ops.shape(x)[:2], "int32")
        else:  # Transformers feeds 1 - mask through the token position rule
            padded = 1 - attention_mask
        pos = self.encoder_position_embedding(self._positions(padded, 0))
        return self.embedding_dropout(x + ops.cast(pos, x.dtype), training=training)

    def encode(self, input_features, attention_mask=None, training=False):
        """Encoder states; ``attention_mask`` is the feature-level (batch, frames) mask."""
        frames = self.subsample_frames(input_features)
        limit = self.max_position_embeddings + self.position_offset
        if isinstance(frames, int) and frames > limit:
            raise ValueError(f"input_features: {input_features.shape[1]} frames subsample to {frames} positions, "
                             f"more than this model's {limit} (max_source_positions={self.max_position_embeddings}); "
                             "cut the audio into shorter windows")
        mask = None if attention_mask is None else self.encoder_mask(attention_mask, frames)
        x = self.embed_encoder(input_features, mask, training=training)
        bias = None
        if mask is not None:
            from keras_models.layers.masks import padding_bias

            bias = padding_bias(mask, x.dtype)
        for blk in self.encoder_blocks:
            x = blk(x, bias, training=training)
        return self.embedding_dropout(self.encoder_final_norm(x), training=training)

    def subsample_frames(self, input_features):
        frames = ops.shape(input_features)[1]
        for _ in self.conv_kernel_sizes:
            frames = (frames - 1) // 2 + 1
        return frames

    def encode_inputs(self, inputs, training=False):
        return self.encode(inputs["input_features"], inputs.get("attention_mask"), training=training)

    def call(self, inputs, training=False):
        if not isinstance(inputs, dict) or "input_features" not in inputs or "decoder_input_ids" not in inputs:
            raise ValueError("Speech2TextBackbone needs a dict with 'input_features' and 'decoder_input_ids'")
        enc = self.encode_inputs(inputs, training=training)
        mask = inputs.get("attention_mask")
        enc_mask = None if mask is None else self.encoder_mask(mask, ops.shape(enc)[1])
        dec = self.decode(inputs["decoder_input_ids"], enc, enc_mask, inputs.get("decoder_attention_mask"),
                          training=training)
        return {"encoder_last_hidden_state": enc, "last_hidden_state": dec}

    def dummy_inputs(self):
        ones = np.ones((1, 2), "int32")
        return {"input_features": np.zeros((1, 8, self.feature_size), "float32"),
                "attention_mask": np.ones((1, 8), "int32"), "decoder_input_ids": ones,
                "decoder_attention_mask": ones}

    # --- HF conversion (config.json: Speech2TextSpec) -------------------------------------------
    def weight_rules(self):
        r = []
        for i, conv in enumerate(self.subsampler):
            r += [Rule(f"encoder.conv.conv_layers.{i}.weight", conv.kernel, Transpose(CONV1D_AXES)),
                  Rule(f"encoder.conv.conv_layers.{i}.bias", conv.bias)]
        r.append(Rule("decoder.embed_tokens.weight", self.token_embedding.embeddings))
        for side, blocks, final in (("encoder", self.encoder_blocks, self.encoder_final_norm),
                                    ("decoder", self.decoder_blocks, self.decoder_final_norm)):
            for i, blk in enumerate(blocks):
                r += block_rules(f"{side}.layers.{i}", blk, BART_NAMES)
            r += norm_rules(f"{side}.layer_norm", final)
        return r

    def get_config(self):
        config = super().get_config()
        config.update(conv_kernel_sizes=list(self.conv_kernel_sizes), conv_channels=self.conv_channels,
                      input_feat_per_channel=self.input_feat_per_channel, input_channels=self.input_channels)
        return config


__all__ = ["Speech2TextBackbone", "Speech2TextSpec"]

"""Whisper: an audio encoder (two GELU conv1d, the second with stride 2, a fixed sinusoidal
position table, pre-norm blocks, a final norm) in front of the BART-like pre-norm decoder with
learned positions.

Everything after the encoder's conv stem is BartBackbone with named switches: pre-norm blocks
(``norm_first``), final norms, no embedding norm, positions from 0, an encoder position table
that is fixed sinusoidal ([sin | cos] halves, the fairseq layout) while the decoder's is learned,
and bias-free key projections (``k_proj`` has no bias in every Whisper attention).
``input_features`` is Transformers' (batch, num_mel_bins, frames) with frames =
2 * max_source_positions; a (batch, frames, num_mel_bins) array is accepted too (told apart by
the static shape). Whisper ignores an encoder attention mask, as Transformers does.
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


@dataclass(frozen=True, kw_only=True)
class WhisperSpec(BartSpec):
    architecture: ClassVar[str] = "WhisperModel"

    vocab_size: int = dim("vocab_size", 51865)
    hidden_size: int = dim("d_model", 384)
    num_encoder_layers: int = dim("encoder_layers", 4)
    num_decoder_layers: int = dim("decoder_layers", 4)
    encoder_heads: int = dim("encoder_attention_heads", 6)
    decoder_heads: int = dim("decoder_attention_heads", 6)
    encoder_intermediate_size: int = dim("encoder_ffn_dim", 1536)
    decoder_intermediate_size: int = dim("decoder_ffn_dim", 1536)
    num_mel_bins: int = dim("num_mel_bins", 80)
    max_position_embeddings: int = dim("max_source_positions", 1500,
                                       doc="encoder positions (frames / 2)")
    decoder_max_position_embeddings: int = dim("max_target_positions", 448)
    dropout: float = hf("dropout", 0.0)
    pad_token_id: int | None = hf("pad_token_id", 50256)
    bos_token_id: int | None = hf("bos_token_id", 50256)
    eos_token_id: int | None = hf("eos_token_id", 50256)
    decoder_start_token_id: int | None = hf("decoder_start_token_id", 50257)
    forced_eos_token_id: int | None = hf("forced_eos_token_id", None)
    # Transformers reads scale_embedding but never applies it to Whisper
    scale_embedding: bool = const(False, doc="Transformers' Whisper ignores scale_embedding")
    hf_model_type: str = const("whisper")
    position_embedding: str = const("learned", doc="decoder positions; the encoder's are fixed sinusoids")
    position_offset: int = const(0)
    embedding_norm: bool = const(False)
    norm_first: bool = const(True)
    final_norm: bool = const(True)

    def validate(self, source="config.json"):
        super().validate(source)
        if self.hidden_size % 2:
            raise ConfigError(f"{source}: d_model={self.hidden_size} must be even (sinusoidal encoder positions)")


@_ser
@register_backbone("whisper")
class WhisperBackbone(BartBackbone):
    """``{"encoder_last_hidden_state", "last_hidden_state"}`` of ``{"input_features",
    "decoder_input_ids", "decoder_attention_mask"}`` (WhisperModel)."""

    base_model_prefix = "model"
    hf_architecture = "WhisperModel"
    spec_cls = WhisperSpec
    verified_backends = ("jax", "torch", "tensorflow")

    def __init__(self, *args, num_mel_bins=80, position_offset=0, embedding_norm=False, norm_first=True,
                 final_norm=True, hf_model_type="whisper", **kwargs):
        super().__init__(*args, position_offset=position_offset, embedding_norm=embedding_norm,
                         norm_first=norm_first, final_norm=final_norm, hf_model_type=hf_model_type, **kwargs)
        self.num_mel_bins = num_mel_bins
        self.hf_architecture = "WhisperModel"
        dt = self.dtype_policy
        conv = dict(kernel_size=3, padding="valid", kernel_initializer=self.kernel_init, dtype=dt)
        self.conv1 = keras.layers.Conv1D(self.hidden_size, strides=1, name="conv1", **conv)
        self.conv2 = keras.layers.Conv1D(self.hidden_size, strides=2, name="conv2", **conv)
        self.conv1.build((None, None, num_mel_bins))
        self.conv2.build((None, None, self.hidden_size))
        # Whisper's k_proj has no bias (set before the blocks build their variables)
        for blk in self.encoder_blocks + self.decoder_blocks:
            attentions = [blk.self_attention] + ([blk.cross_attention_layer] if blk.cross_attention else [])
            for attention in attentions:
                attention.key.use_bias = False

    def side_position_embedding(self, side):
        return "sinusoidal_fairseq" if side == "encoder" else self.position_embedding

    # The spec's max_position_embeddings (config.json max_source_positions) sizes the encoder's
    # table and is kept as ``max_source_positions``; the attribute itself answers the decoder's
    # context (max_target_positions), which is what the generation engine reads as the limit.
    @property
    def max_position_embeddings(self):
        return self.decoder_max_position_embeddings

    @max_position_embeddings.setter
    def max_position_embeddings(self, value):
        self.max_source_positions = value

    @property
    def num_frames(self):
        """The mel frames one input window has (Transformers requires exactly this many)."""
        return 2 * self.max_source_positions

    # --- encoder --------------------------------------------------------------------------------
    def _channels_last(self, features):
        """(batch, frames, mels) from Transformers' (batch, mels, frames) (or from channels-last)."""
        shape = tuple(features.shape)
        if len(shape) != 3:
            raise ValueError(f"input_features must be (batch, num_mel_bins, frames), got shape {shape}")
        mels, frames = self.num_mel_bins, self.num_frames
        if shape[1] == mels and shape[2] in (frames, None):
            return ops.transpose(features, (0, 2, 1))
        if shape[2] == mels and shape[1] in (frames, None):
            return features
        raise ValueError(f"input_features of shape {shape}: Whisper expects (batch, {mels} mel bins, "
                         f"{frames} frames) (pad or cut the log-mel features to {frames} frames)")

    def embed_encoder(self, input_features, training=False):
        x = self._channels_last(ops.cast(input_features, self.compute_dtype))
        pad = [[0, 0], [1, 1], [0, 0]]  # torch padding=1 on both sides (Keras 'same' differs at stride 2)
        x = ops.gelu(self.conv1(ops.pad(x, pad)), approximate=False)
        x = ops.gelu(self.conv2(ops.pad(x, pad)), approximate=False)
        table = ops.cast(self.encoder_position_embedding.embeddings, x.dtype)
        x = x + table[None, : ops.shape(x)[1]]
        return self.embedding_dropout(x, training=training)

    def encode_features(self, input_features):
        """Inference encoder states of ``input_features`` (what ``generate`` runs; the same values
        as ``encode``): compiled once per input shape under jax (``jax.jit`` with the variables as
        inputs) and tensorflow (``tf.function``), run without autograd under torch with the Dense
        layers through oneDNN (``generation.backend.fast_inference``). Eager ``encode`` runs the
        ~90 GFLOP Whisper-base encoder op by op: 2x the CPU time under jax."""
        from keras_models.generation import backend

        if backend.BACKEND == "torch":
            import torch

            # no_grad, not inference_mode: the states may feed autograd-recording ops afterwards
            with torch.no_grad(), backend.fast_inference(self):
                return self.encode(input_features)
        compiled = self.__dict__.get("_encode_compiled")
        if compiled is None:
            if backend.BACKEND == "jax":
                compiled = backend.compile_fn(self, lambda features: self.encode(features))
            elif backend.BACKEND == "tensorflow":
                compiled = backend.tf_graph(lambda features: self.encode(features), reduce_retracing=False)
            else:
                compiled = self.encode
            object.__setattr__(self, "_encode_compiled", compiled)  # not a tracked Keras attribute
        return compiled(ops.convert_to_tensor(input_features, self.compute_dtype))

    def _cross_bias(self, encoder_attention_mask, dtype):
        # Transformers' Whisper decoder ignores an encoder attention mask (and so no bias is added
        # to the cross-attention scores: the fused attention kernel runs without one)
        return None

    def encode_inputs(self, inputs, training=False):
        # Transformers' Whisper encoder takes no attention mask
        return self.encode(inputs["input_features"], None, training=training)

    def call(self, inputs, training=False):
        if not isinstance(inputs, dict) or "decoder_input_ids" not in inputs:
            raise ValueError("WhisperBackbone needs a dict with 'input_features' and 'decoder_input_ids'")
        enc = self.encode_inputs(inputs, training=training)
        dec = self.decode(inputs["decoder_input_ids"], enc, None, inputs.get("decoder_attention_mask"),
                          training=training)
        return {"encoder_last_hidden_state": enc, "last_hidden_state": dec}

    def decoder_cross_attentions(self, decoder_input_ids, encoder_states, layers):
        """Teacher-forced decoder pass that returns the cross-attention probabilities of decoder
        ``layers``: {layer: (batch, heads, decoder_len, encoder_len) float32} (Transformers' eager
        ``cross_attentions``; token-level timestamps read them). The cached decode path is not
        involved."""
        from keras_models.layers.masks import causal_bias

        x = self.embed_decoder(ops.convert_to_tensor(decoder_input_ids, "int32"), 0)
        t = ops.shape(x)[1]
        bias = causal_bias(t, t, x.dtype)
        out = {}
        for i, blk in enumerate(self.decoder_blocks[: max(layers) + 1]):
            if i in layers:
                h = blk._residual(x, blk.self_attention_norm,
                                  lambda y: blk._self_attend(y, bias, None, None, False)[0], False)
                a = blk.cross_attention_layer
                q = blk._heads(a, a.query(blk.cross_attention_norm(h)))
                k = blk._heads(a, a.key(encoder_states))
                scale = a.scale if a.scale is not None else a.head_dim**-0.5
                scores = ops.cast(ops.einsum("bthd,bshd->bhts", q, k), "float32") * scale
                out[i] = np.asarray(ops.convert_to_numpy(ops.softmax(scores, axis=-1)), "float32")
            x = blk(x, bias, context=encoder_states)
        return out

    def dummy_inputs(self):
        ones = np.ones((1, 2), "int32")
        return {"input_features": np.zeros((1, self.num_mel_bins, self.num_frames), "float32"),
                "decoder_input_ids": ones, "decoder_attention_mask": ones}

    # --- HF conversion (config.json: WhisperSpec) -----------------------------------------------
    def weight_rules(self):
        r = []
        for name in ("conv1", "conv2"):
            conv = getattr(self, name)
            r += [Rule(f"encoder.{name}.weight", conv.kernel, Transpose(CONV1D_AXES)),
                  Rule(f"encoder.{name}.bias", conv.bias)]
        r.append(Rule("encoder.embed_positions.weight", self.encoder_position_embedding.embeddings))
        r.append(Rule("decoder.embed_tokens.weight", self.token_embedding.embeddings))
        r.append(Rule("decoder.embed_positions.weight", self.decoder_position_embedding.embeddings))
        for side, blocks, final in (("encoder", self.encoder_blocks, self.encoder_final_norm),
                                    ("decoder", self.decoder_blocks, self.decoder_final_norm)):
            for i, blk in enumerate(blocks):
                r += block_rules(f"{side}.layers.{i}", blk, BART_NAMES)
            r += norm_rules(f"{side}.layer_norm", final)
        return r

    def get_config(self):
        config = super().get_config()
        config["num_mel_bins"] = self.num_mel_bins
        config["max_position_embeddings"] = self.max_source_positions
        return config


__all__ = ["WhisperBackbone", "WhisperSpec"]

"""Text decoders with cross-attention for VisionEncoderDecoder: the decoder half of BartBackbone.

A decoder sub-config (``config.json`` ``decoder``) is read by its ``model_type``:

* ``trocr`` (TrOCRForCausalLM): post-norm BART decoder layers; ``use_learned_position_embeddings``
  (learned table with BART's offset 2) or fixed fairseq sinusoids over non-pad positions;
  ``layernorm_embedding``, ``scale_embedding``, ``cross_attention_hidden_size`` (cross-attention
  keys / values read encoder states of that width, with no ``enc_to_dec_proj``); head
  ``output_projection``;
* any BART-like family BartBackbone reads (``mbart`` for Donut / Nougat, ``bart``, ...) as its
  ``*ForCausalLM``; head ``lm_head``.

The head is tied to the token table when the decoder config's ``tie_word_embeddings`` is true
(the top-level VisionEncoderDecoder config always says false and does not decide it).
"""

from dataclasses import dataclass
from typing import ClassVar

import keras

from keras_models.errors import ConfigError
from keras_models.layers.seq2seq_block import norm_rules
from keras_models.models.bart.backbone import BART_NAMES, BartBackbone
from keras_models.models.bart.families import FAMILIES, BartSpec
from keras_models.models.encoder_decoder.rules import block_rules
from keras_models.presets.weight_map import Rule
from keras_models.spec import const, dim, hf


@dataclass(frozen=True, kw_only=True)
class TrOCRSpec(BartSpec):
    architecture: ClassVar[str] = "TrOCRForCausalLM"

    vocab_size: int = dim("vocab_size", 50265)
    hidden_size: int = dim("d_model", 1024)
    num_decoder_layers: int = dim("decoder_layers", 12)
    decoder_heads: int = dim("decoder_attention_heads", 16)
    decoder_intermediate_size: int = dim("decoder_ffn_dim", 4096)
    max_position_embeddings: int = dim("max_position_embeddings", 512)
    num_encoder_layers: int = const(0, doc="a decoder only")
    encoder_heads: int = const(1, doc="unused (no encoder layers)")
    encoder_intermediate_size: int = const(1, doc="unused (no encoder layers)")
    forced_eos_token_id: int | None = hf("forced_eos_token_id", None)
    position_embedding: str = hf("use_learned_position_embeddings", "learned",
                                 read=lambda v: "learned" if v else "sinusoidal_fairseq",
                                 write=lambda v: v == "learned")
    embedding_norm: bool = hf("layernorm_embedding", True)
    cross_attention_hidden_size: int | None = hf("cross_attention_hidden_size", None)
    tie_word_embeddings: bool = hf("tie_word_embeddings", True)
    hf_model_type: str = const("trocr")

    @classmethod
    def adjust_from_hf(cls, config, values, source):
        values = super().adjust_from_hf(config, values, source)
        # fixed sinusoids count positions over non-pad tokens, from pad_token_id + 1 (no offset)
        values["padding_aware_positions"] = values.get("position_embedding", "learned") != "learned"
        return values

    def adjust_to_hf(self, out):
        out.update(is_decoder=True, add_cross_attention=True)
        return out


@keras.saving.register_keras_serializable(package="keras_models")
class CrossAttentionDecoder(BartBackbone):
    """BartBackbone with no encoder layers: ``decode`` / ``decode_with_cache`` on encoder states
    given from outside. ``cross_attention_hidden_size``: the width of those states (None: the
    decoder's hidden size)."""

    def __init__(self, *args, cross_attention_hidden_size=None, tie_word_embeddings=True, **kwargs):
        object.__setattr__(self, "_context_size", cross_attention_hidden_size)  # read by the block hook
        super().__init__(*args, **kwargs)
        self.cross_attention_hidden_size = cross_attention_hidden_size
        self.tie_word_embeddings = tie_word_embeddings
        # the encoder side's embedding tables are never used
        for layer in (self.encoder_position_embedding, self.encoder_embedding_norm):
            if layer is not None:
                layer.trainable = False

    def dummy_inputs(self):
        import numpy as np

        width = self.cross_attention_hidden_size or self.hidden_size
        ones = np.ones((1, 2), "int32")
        return {"decoder_input_ids": ones, "decoder_attention_mask": ones,
                "encoder_hidden_states": np.zeros((1, 2, width), "float32")}

    def call(self, inputs, training=False):
        """The decoder's last hidden state for ``{"decoder_input_ids", "encoder_hidden_states",
        "decoder_attention_mask"}``."""
        return self.decode(inputs["decoder_input_ids"], inputs["encoder_hidden_states"], None,
                           inputs.get("decoder_attention_mask"), training=training)

    def block_extra_options(self, index, cross):
        options = super().block_extra_options(index, cross)
        if cross and self._context_size is not None:
            options = dict(options, context_size=self._context_size)
        return options

    def decoder_rules(self):
        """Rules relative to the decoder stack (``model.decoder.`` in a *ForCausalLM)."""
        r = [Rule("embed_tokens.weight", self.token_embedding.embeddings)]
        if self.position_embedding == "learned":
            r.append(Rule("embed_positions.weight", self.decoder_position_embedding.embeddings))
        if self.decoder_embedding_norm is not None:
            r += norm_rules("layernorm_embedding", self.decoder_embedding_norm)
        for i, blk in enumerate(self.decoder_blocks):
            r += block_rules(f"layers.{i}", blk, BART_NAMES)
        if self.decoder_final_norm is not None:
            r += norm_rules("layer_norm", self.decoder_final_norm)
        return r

    def get_config(self):
        config = super().get_config()
        config.update(cross_attention_hidden_size=self.cross_attention_hidden_size,
                      tie_word_embeddings=self.tie_word_embeddings)
        return config


# decoder model_type -> the head's tensor name in the checkpoint (under ``decoder.``)
HEADS = {"trocr": "output_projection"}


def decoder_kwargs(config, source="config.json [decoder]"):
    """CrossAttentionDecoder kwargs of a decoder sub-config (raises ConfigError naming ``source``)."""
    model_type = config.get("model_type")
    if model_type == "trocr":
        return TrOCRSpec.from_hf(config, source).kwargs()
    if model_type in FAMILIES:
        kwargs = FAMILIES[model_type].from_hf(config, source).kwargs()
        kwargs.update(num_encoder_layers=0, tie_word_embeddings=bool(config.get("tie_word_embeddings", True)),
                      cross_attention_hidden_size=None)
        if config.get("cross_attention_hidden_size") is not None:
            raise ConfigError(f"{source}: cross_attention_hidden_size is only read for TrOCR decoders")
        return kwargs
    raise ConfigError(f"{source}: decoder model_type {model_type!r} is not supported by VisionEncoderDecoder "
                      f"(supported: trocr, {', '.join(sorted(FAMILIES))})")


def build_decoder(config, name="decoder", dtype=None):
    kwargs = decoder_kwargs(config)
    if dtype is not None:
        kwargs["dtype"] = dtype
    return CrossAttentionDecoder(name=name, **kwargs)


def head_name(config):
    return HEADS.get(config.get("model_type"), "lm_head")


__all__ = ["TrOCRSpec", "CrossAttentionDecoder", "decoder_kwargs", "build_decoder", "head_name"]

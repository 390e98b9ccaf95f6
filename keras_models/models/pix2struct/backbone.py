"""Pix2Struct (and its DePlot / MatCha checkpoints): an encoder over flattened variable-resolution
patches and a T5-style text decoder with cross-attention.

Encoder input ``flattened_patches`` (batch, patches, 2 + patch_h * patch_w * channels): each row
holds the patch's 1-based row and column index, then its pixels (the image processor's output;
all-zero rows are padding). The encoder adds a learned row and a learned column embedding to the
projected pixels (a biased Linear), then runs pre-norm blocks with T5's RMS norm, unscaled
bias-free attention (``num_attention_heads`` x ``d_kv``, which may differ from the width) and a
gated feed-forward (``dense_act_fn``), and ends in an RMS norm. The patch ``attention_mask``
(1 = real patch) masks the encoder's keys; when absent it is read off the patches (rows summing
to zero are padding), as Transformers does.

The decoder is T5's (T5Backbone with no encoder layers): bucketed relative position bias computed
by the first layer and shared, causal self-attention, cross-attention over the encoder states
masked by the given ``attention_mask`` (none when it is not given, as Transformers), gated
feed-forward, RMS norms. Its attention projections are ``hidden_size`` wide, so ``hidden_size``
must equal ``num_heads * d_kv``, and the encoder's width must equal the decoder's.

``is_vqa`` (DePlot, MatCha, the *-vqa / *-ai2d / *-docvqa checkpoints) does not change the model:
the question is rendered onto the image by the image processor.

Returns ``{"encoder_last_hidden_state", "last_hidden_state"}``. Weight names are Transformers'
``Pix2StructForConditionalGeneration`` ones (``encoder.`` / ``decoder.``); the head
(``decoder.lm_head``) belongs to ImageToText.
"""

from dataclasses import dataclass

import keras
import numpy as np
from keras import ops

from keras_models.errors import ConfigError, InputError
from keras_models.layers.masks import padding_bias
from keras_models.layers.seq2seq_block import Seq2SeqBlock, norm_rules
from keras_models.models.backbone import SpecBackbone
from keras_models.models.encoder_decoder.rules import block_rules
from keras_models.models.registry import register_backbone
from keras_models.models.t5.backbone import T5Backbone
from keras_models.presets.weight_map import TRANSPOSE, Rule
from keras_models.spec import Spec, dim, hf, nested

_ser = keras.saving.register_keras_serializable(package="keras_models")


@dataclass(frozen=True, kw_only=True)
class Pix2StructVisionSpec(Spec):
    ignored = ("relative_attention_num_buckets", "relative_attention_max_distance", "initializer_range",
               "initializer_factor")

    hidden_size: int = dim("hidden_size", 768)
    patch_embed_hidden_size: int = dim("patch_embed_hidden_size", 768, doc="pixels per patch (p*p*channels)")
    intermediate_size: int = dim("d_ff", 2048)
    head_dim: int = dim("d_kv", 64)
    num_layers: int = dim("num_hidden_layers", 12)
    num_heads: int = dim("num_attention_heads", 12)
    hidden_act: str = hf("dense_act_fn", "gelu_new")
    layer_norm_eps: float = hf("layer_norm_eps", 1e-6)
    dropout: float = hf("dropout_rate", 0.0)
    attention_dropout: float = hf("attention_dropout", 0.0)
    seq_len: int = dim("seq_len", 4096, doc="rows of the row / column embedding tables")

    def adjust_to_hf(self, out):
        out["model_type"] = "pix2struct_vision_model"
        return out


@dataclass(frozen=True, kw_only=True)
class Pix2StructTextSpec(Spec):
    unsupported = {"is_decoder": (True,)}
    ignored = ("use_cache", "initializer_factor", "initializer_range", "tie_word_embeddings", "add_cross_attention")

    vocab_size: int = dim("vocab_size", 50244)
    hidden_size: int = dim("hidden_size", 768)
    head_dim: int = dim("d_kv", 64)
    intermediate_size: int = dim("d_ff", 2048)
    num_layers: int = dim("num_layers", 12)
    num_heads: int = dim("num_heads", 12)
    relative_attention_num_buckets: int = dim("relative_attention_num_buckets", 32)
    relative_attention_max_distance: int = dim("relative_attention_max_distance", 128)
    dropout: float = hf("dropout_rate", 0.1)
    layer_norm_eps: float = hf("layer_norm_epsilon", 1e-6)
    hidden_act: str = hf("dense_act_fn", "gelu_new")
    decoder_start_token_id: int = hf("decoder_start_token_id", 0)
    pad_token_id: int | None = hf("pad_token_id", 0)
    eos_token_id: int | None = hf("eos_token_id", 1)
    bos_token_id: int | None = hf("bos_token_id", None)

    def validate(self, source="config.json"):
        if self.hidden_size != self.num_heads * self.head_dim:
            raise ConfigError(f"{source}: hidden_size={self.hidden_size} must equal num_heads * d_kv "
                              f"({self.num_heads} * {self.head_dim}): Pix2Struct's text attention is "
                              "hidden_size wide")

    def adjust_to_hf(self, out):
        out.update(model_type="pix2struct_text_model", is_decoder=True)
        return out


@dataclass(frozen=True, kw_only=True)
class Pix2StructSpec(Spec):
    # a head tied to the token table: Transformers' Pix2Struct checkpoints have none, refused
    unsupported = {"tie_word_embeddings": (False,)}
    ignored = ("initializer_factor", "is_encoder_decoder", "use_cache")

    text_config: Pix2StructTextSpec = nested("text_config", Pix2StructTextSpec)
    vision_config: Pix2StructVisionSpec = nested("vision_config", Pix2StructVisionSpec)
    is_vqa: bool = hf("is_vqa", False, doc="question rendered onto the image (DePlot, MatCha); same model")
    initializer_range: float = hf("initializer_range", 0.02)

    def validate(self, source="config.json"):
        if self.vision_config.hidden_size != self.text_config.hidden_size:
            raise ConfigError(f"{source}: vision_config.hidden_size={self.vision_config.hidden_size} must equal "
                              f"text_config.hidden_size={self.text_config.hidden_size} (cross-attention reads the "
                              "encoder states at the decoder's width)")

    def adjust_to_hf(self, out):
        t = self.text_config
        out.update(is_encoder_decoder=True, tie_word_embeddings=False, decoder_start_token_id=t.decoder_start_token_id,
                   pad_token_id=t.pad_token_id, eos_token_id=t.eos_token_id)
        return out

    @classmethod
    def adjust_from_hf(cls, config, values, source):
        # a head tied in text_config only: Transformers lets the top-level key override it
        return values

    def dummy_inputs(self):
        v = self.vision_config
        ones = np.ones((1, 2), "int32")
        patches = np.ones((1, 2, 2 + v.patch_embed_hidden_size), "float32")
        return {"flattened_patches": patches, "attention_mask": ones, "decoder_input_ids": ones,
                "decoder_attention_mask": ones}


# Our Seq2SeqBlock sub-layers -> Transformers' names, per encoder / decoder layer.
VISION_NAMES = {
    "self_attention": ("attention", ("query", "key", "value", "output")),
    "self_attention_norm": "pre_attention_layer_norm",
    "ffn_in": ("mlp.wi", "mlp.wi_0"),
    "ffn_gate": "mlp.wi_1",
    "ffn_out": "mlp.wo",
    "ffn_norm": "pre_mlp_layer_norm",
}
TEXT_NAMES = {
    "self_attention": ("self_attention.attention", ("query", "key", "value", "output")),
    "self_attention_norm": "self_attention.layer_norm",
    "cross_attention": ("encoder_decoder_attention.attention", ("query", "key", "value", "output")),
    "cross_attention_norm": "encoder_decoder_attention.layer_norm",
    "ffn_in": ("mlp.DenseReluDense.wi", "mlp.DenseReluDense.wi_0"),
    "ffn_gate": "mlp.DenseReluDense.wi_1",
    "ffn_out": "mlp.DenseReluDense.wo",
    "ffn_norm": "mlp.layer_norm",
}


def _text_decoder(t, init_range, dtype):
    """T5's decoder stack (no encoder layers) for a Pix2StructTextSpec."""
    decoder = T5Backbone(
        vocab_size=t.vocab_size, hidden_size=t.hidden_size, num_encoder_layers=0, num_decoder_layers=t.num_layers,
        encoder_heads=t.num_heads, decoder_heads=t.num_heads, encoder_intermediate_size=t.intermediate_size,
        decoder_intermediate_size=t.intermediate_size, head_dim=t.head_dim, hidden_act=t.hidden_act, gated_ffn=True,
        layer_norm_eps=t.layer_norm_eps, dropout=t.dropout, initializer_range=init_range,
        relative_attention_num_buckets=t.relative_attention_num_buckets,
        relative_attention_max_distance=t.relative_attention_max_distance, pad_token_id=t.pad_token_id,
        eos_token_id=t.eos_token_id, decoder_start_token_id=t.decoder_start_token_id, bos_token_id=t.bos_token_id,
        name="decoder", dtype=dtype)
    for layer in decoder.encoder_relative_bias + [decoder.encoder_final_norm]:
        layer.trainable = False  # the (absent) encoder side's layers are never used
    return decoder


@_ser
@register_backbone("pix2struct")
class Pix2StructBackbone(SpecBackbone):
    """``{"encoder_last_hidden_state", "last_hidden_state"}`` for ``{"flattened_patches",
    "attention_mask", "decoder_input_ids", "decoder_attention_mask"}``."""

    spec_cls = Pix2StructSpec
    verified_backends = ("jax", "torch", "tensorflow")  # tests/multimodal/test_pix2struct.py
    checkpoint_families = ("DePlot", "MatCha")
    base_model_prefix = ""
    hf_architecture = "Pix2StructForConditionalGeneration"

    def __init__(self, spec=None, **kwargs):
        super().__init__(spec, **kwargs)
        v, t = self.spec.vision_config, self.spec.text_config
        dt = self.dtype_policy
        init = keras.initializers.TruncatedNormal(stddev=self.spec.initializer_range)
        self.patch_projection = keras.layers.Dense(v.hidden_size, kernel_initializer=init, name="patch_projection",
                                                   dtype=dt)
        self.row_embedder = keras.layers.Embedding(v.seq_len, v.hidden_size, embeddings_initializer=init,
                                                   name="row_embedder", dtype=dt)
        self.column_embedder = keras.layers.Embedding(v.seq_len, v.hidden_size, embeddings_initializer=init,
                                                      name="column_embedder", dtype=dt)
        self.embedding_dropout = keras.layers.Dropout(v.dropout, dtype=dt)
        self.vision_blocks = [
            Seq2SeqBlock(v.hidden_size, v.num_heads, v.intermediate_size, head_dim=v.head_dim, hidden_act=v.hidden_act,
                         gated_ffn=True, use_bias=False, norm_type="rms", norm_first=True,
                         layer_norm_eps=v.layer_norm_eps, attention_scale=1.0, dropout=v.dropout,
                         attention_dropout=v.attention_dropout, kernel_initializer=init, name=f"vision_block_{i}",
                         dtype=dt)
            for i in range(v.num_layers)]
        self.vision_norm = keras.layers.RMSNormalization(epsilon=v.layer_norm_eps, name="vision_norm", dtype=dt)
        self.decoder = _text_decoder(t, self.spec.initializer_range, dt)
        # the generation interface (Seq2SeqLM) reads these off the backbone
        d = self.decoder
        for name in ("vocab_size", "hidden_size", "initializer_range", "decoder_heads", "decoder_head_dim",
                     "num_decoder_layers", "bos_token_id", "decoder_start_token_id", "pad_token_id", "eos_token_id"):
            setattr(self, name, getattr(d, name))
        self.forced_bos_token_id = self.forced_eos_token_id = None

    def build(self, input_shape=None):
        v = self.spec.vision_config
        self.patch_projection.build((None, None, v.patch_embed_hidden_size))
        self.row_embedder.build((None, None))
        self.column_embedder.build((None, None))
        for blk in self.vision_blocks:
            blk.build((None, None, v.hidden_size))
        self.vision_norm.build((None, None, v.hidden_size))
        self.decoder.build_from_dummy()
        self.built = True

    def build_from_dummy(self):
        if not self.built:
            self.build()
        return self

    # --- encoder ------------------------------------------------------------------------------
    @staticmethod
    def patch_mask(flattened_patches):
        """Transformers' default mask: 1 where a patch row is not all zeros."""
        return ops.cast(ops.not_equal(ops.sum(flattened_patches, axis=-1), 0), "int32")

    def encode_patches(self, flattened_patches, attention_mask=None, training=False):
        """The encoder's last hidden state (batch, patches, hidden)."""
        if flattened_patches is None:
            raise InputError("Pix2Struct needs 'flattened_patches' (batch, patches, 2 + pixels per patch): the "
                             "image processor's output")
        want = 2 + self.spec.vision_config.patch_embed_hidden_size
        if len(flattened_patches.shape) != 3 or flattened_patches.shape[-1] not in (None, want):
            raise InputError(f"flattened_patches must be (batch, patches, {want}), got shape "
                             f"{tuple(flattened_patches.shape)}")
        patches = ops.cast(flattened_patches, self.compute_dtype)
        if attention_mask is None:
            attention_mask = self.patch_mask(patches)
        rows = ops.cast(patches[..., 0], "int32")
        cols = ops.cast(patches[..., 1], "int32")
        x = self.patch_projection(patches[..., 2:]) + self.row_embedder(rows) + self.column_embedder(cols)
        x = self.embedding_dropout(x, training=training)
        bias = padding_bias(attention_mask, x.dtype)
        for blk in self.vision_blocks:
            x = blk(x, bias, training=training)
        return self.vision_norm(x)

    def encode_inputs(self, inputs, training=False):
        if not isinstance(inputs, dict):
            inputs = {"flattened_patches": inputs}
        return self.encode_patches(inputs.get("flattened_patches"), inputs.get("attention_mask"), training)

    # --- the shared encoder-decoder interface (Seq2SeqLM, its generation) ------------------------
    def decoder_embedding(self):
        return self.decoder.token_embedding

    @property
    def token_embedding(self):
        return self.decoder.token_embedding

    def init_cache(self, batch_size, max_length, encoder_states=None):
        return self.decoder.init_cache(batch_size, max_length, encoder_states)

    def cross_kv_cache(self, encoder_states):
        return self.decoder.cross_kv_cache(encoder_states)

    def decode(self, decoder_input_ids, encoder_states, encoder_attention_mask=None, decoder_attention_mask=None,
               training=False):
        return self.decoder.decode(decoder_input_ids, encoder_states, encoder_attention_mask, decoder_attention_mask,
                                   training=training)

    def decode_with_cache(self, decoder_input_ids, encoder_states, encoder_attention_mask, cache, cache_index,
                          decoder_attention_mask=None):
        return self.decoder.decode_with_cache(decoder_input_ids, encoder_states, encoder_attention_mask, cache,
                                              cache_index, decoder_attention_mask)

    def call(self, inputs, training=False):
        if not isinstance(inputs, dict) or "decoder_input_ids" not in inputs:
            raise InputError("Pix2Struct takes a dict with 'flattened_patches', 'attention_mask' and "
                             "'decoder_input_ids'")
        mask = inputs.get("attention_mask")
        enc = self.encode_patches(inputs.get("flattened_patches"), mask, training)
        dec = self.decode(inputs["decoder_input_ids"], enc, mask, inputs.get("decoder_attention_mask"),
                          training=training)
        return {"encoder_last_hidden_state": enc, "last_hidden_state": dec}

    hf_lm_head = "decoder.lm_head.weight"

    @classmethod
    def tied_head(cls, hf_config):
        return False  # tie_word_embeddings=True is refused by the spec

    # --- weights --------------------------------------------------------------------------------
    def weight_rules(self):
        r = [Rule("encoder.embeddings.patch_projection.weight", self.patch_projection.kernel, TRANSPOSE),
             Rule("encoder.embeddings.patch_projection.bias", self.patch_projection.bias),
             Rule("encoder.embeddings.row_embedder.weight", self.row_embedder.embeddings),
             Rule("encoder.embeddings.column_embedder.weight", self.column_embedder.embeddings)]
        for i, blk in enumerate(self.vision_blocks):
            r += block_rules(f"encoder.encoder.layer.{i}", blk, VISION_NAMES)
        r += norm_rules("encoder.layernorm", self.vision_norm)
        d = self.decoder
        r.append(Rule("decoder.embed_tokens.weight", d.token_embedding.embeddings))
        for i, blk in enumerate(d.decoder_blocks):
            r += block_rules(f"decoder.layer.{i}", blk, TEXT_NAMES)
        r.append(Rule("decoder.layer.0.self_attention.attention.relative_attention_bias.weight",
                      d.decoder_relative_bias[0].embeddings))
        r += norm_rules("decoder.final_layer_norm", d.decoder_final_norm)
        return r


__all__ = ["Pix2StructBackbone", "Pix2StructSpec", "Pix2StructTextSpec", "Pix2StructVisionSpec"]

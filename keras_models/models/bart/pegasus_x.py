"""Pegasus-X: pre-norm Pegasus with block-local + global-token attention in the encoder.

Named differences from Pegasus: fairseq-layout sinusoidal positions from 0, bias-free attention
projections (FFNs keep their biases), and an encoder that prepends ``num_global_tokens`` learned
global tokens (``embed_global``, own pre-attention norm, shared FFN). Ordinary tokens attend to
the global tokens and to their block of ``block_size`` tokens (every other layer shifted by half a
block with ``stagger_local_blocks``); global tokens attend to everything. Computed densely with
one additive bias per layer over [global tokens, tokens].
"""

from dataclasses import dataclass
from typing import ClassVar

import keras
from keras import ops

from keras_models.layers.masks import mask_value
from keras_models.layers.seq2seq_block import norm_rules
from keras_models.models.bart.backbone import BartBackbone
from keras_models.models.bart.families import BartSpec
from keras_models.models.bart.tasks import BartLikeSeq2SeqLM
from keras_models.models.registry import register_backbone, register_task
from keras_models.presets.weight_map import Rule
from keras_models.spec import const, dim, hf

_ser = keras.saving.register_keras_serializable(package="keras_models")
PEGASUS_X_FIELDS = ("num_global_tokens", "block_size", "stagger_local_blocks")


def global_local_bias(attention_mask, num_global, block_size, stagger, dtype="float32"):
    """(batch, 1, G + seq, G + seq) bias over [G global tokens, tokens]: global queries see every
    unpadded key; a token sees the global tokens and the unpadded tokens of its block (blocks
    shifted by ``block_size // 2`` when ``stagger``)."""
    keep = ops.cast(attention_mask, "bool")
    b, t = ops.shape(keep)[0], ops.shape(keep)[1]
    block = (ops.arange(t, dtype="int32") + (block_size // 2 if stagger else 0)) // block_size
    same = ops.equal(block[:, None], block[None, :])[None]
    to_global = ops.ones((b, t, num_global), "bool")
    local_rows = ops.concatenate([to_global, ops.logical_and(same, keep[:, None, :])], axis=2)
    global_rows = ops.concatenate([ops.ones((b, num_global, num_global), "bool"),
                                   ops.broadcast_to(keep[:, None, :], (b, num_global, t))], axis=2)
    allowed = ops.concatenate([global_rows, local_rows], axis=1)
    return ops.where(allowed, 0.0, mask_value(dtype))[:, None]


@dataclass(frozen=True, kw_only=True)
class PegasusXSpec(BartSpec):
    architecture: ClassVar[str] = "PegasusXModel"
    scale_embedding: bool = hf("scale_embedding", True)
    pad_token_id: int | None = hf("pad_token_id", 0)
    bos_token_id: int | None = hf("bos_token_id", None)
    eos_token_id: int | None = hf("eos_token_id", 1)
    decoder_start_token_id: int | None = hf("decoder_start_token_id", 0)
    forced_eos_token_id: int | None = hf("forced_eos_token_id", 1)
    num_global_tokens: int = dim("num_global_tokens", 32)
    block_size: int = dim("block_size", 512)
    stagger_local_blocks: bool = hf("stagger_local_blocks", True)
    hf_model_type: str = const("pegasus_x")
    position_embedding: str = const("sinusoidal_fairseq")
    position_offset: int = const(0)
    embedding_norm: bool = const(False)
    norm_first: bool = const(True)
    final_norm: bool = const(True)


@_ser
@register_backbone("pegasus_x")
class PegasusXBackbone(BartBackbone):
    base_model_prefix = "model"
    hf_architecture = "PegasusXModel"
    spec_cls = PegasusXSpec
    reads_untied_tables = True  # tie_word_embeddings false: own encoder / decoder / shared tables
    block_options = {"attention_bias": False}
    encoder_block_options = {"global_token_norm": True}
    verified_backends = ("jax", "torch", "tensorflow")

    def __init__(self, *args, num_global_tokens=32, block_size=512, stagger_local_blocks=True,
                 position_embedding="sinusoidal_fairseq", position_offset=0, embedding_norm=False,
                 norm_first=True, final_norm=True, hf_model_type="pegasus_x", **kwargs):
        super().__init__(*args, position_embedding=position_embedding, position_offset=position_offset,
                         embedding_norm=embedding_norm, norm_first=norm_first, final_norm=final_norm,
                         hf_model_type=hf_model_type, **kwargs)
        self.num_global_tokens = num_global_tokens
        self.block_size = block_size
        self.stagger_local_blocks = stagger_local_blocks
        self.hf_architecture = "PegasusXModel"
        self.global_embedding = keras.layers.Embedding(
            num_global_tokens, self.hidden_size, embeddings_initializer=self.kernel_init,
            name="global_embedding", dtype=self.dtype_policy)
        self.global_embedding.build((None, None))

    def encode(self, input_ids, attention_mask=None, training=False):
        x = self.embed_encoder(input_ids, training=training)
        if attention_mask is None:
            attention_mask = ops.ones_like(input_ids)
        g = self.num_global_tokens
        glob = ops.cast(self.global_embedding.embeddings, x.dtype)[None]
        h = ops.concatenate([ops.broadcast_to(glob, (ops.shape(x)[0], g, self.hidden_size)), x], axis=1)
        for i, blk in enumerate(self.encoder_blocks):
            stagger = self.stagger_local_blocks and i % 2 == 1
            bias = global_local_bias(attention_mask, g, self.block_size, stagger, x.dtype)
            h = blk(h, bias, training=training, global_tokens=g)
        x = self.encoder_final_norm(h[:, g:])
        return self.embedding_dropout(x, training=training)

    # --- HF conversion (config.json: PegasusXSpec) ----------------------------------------------
    def weight_rules(self):
        r = super().weight_rules()
        r.append(Rule("encoder.embed_global.weight", self.global_embedding.embeddings))
        for i, blk in enumerate(self.encoder_blocks):
            r += norm_rules(f"encoder.layers.{i}.global_self_attn_layer_norm",
                            blk.global_self_attention_norm)
        return r

    def get_config(self):
        config = super().get_config()
        config.update({name: getattr(self, name) for name in PEGASUS_X_FIELDS})
        return config


@_ser
@register_task(PegasusXBackbone, "Seq2SeqLM", ("PegasusXForConditionalGeneration",))
class PegasusXSeq2SeqLM(BartLikeSeq2SeqLM):
    hf_final_logits_bias = None
    hf_head_patterns = ("lm_head.*",)


__all__ = ["PegasusXBackbone", "PegasusXSeq2SeqLM"]

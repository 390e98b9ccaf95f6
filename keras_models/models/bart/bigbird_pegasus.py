"""BigBird-Pegasus (``model_type`` "bigbird_pegasus"): pre-norm Pegasus whose encoder
self-attention is BigBird's block-sparse attention on long inputs.

Named differences from Pegasus: learned positions from 0 (no offset), scaled token embeddings
(``scale_embedding``, default true), no embedding LayerNorm and a final LayerNorm per stack that
Transformers names ``layernorm_embedding``; ``use_bias`` (default false) sets the biases of every
attention projection (the feed-forwards keep theirs). The encoder's attention is Transformers'
``BigBirdPegasusEncoderAttention``: ``self.query/key/value`` + ``output``.

``attention_type="original_full"`` is full attention. ``"block_sparse"`` applies, as in
Transformers, only to inputs longer than ``(5 + 2 * num_random_blocks) * block_size`` tokens;
those are padded to a multiple of ``block_size`` (mask 0; the padding is cut from the encoder's
output) and attend block-sparsely with BigBird's pattern and its inference random blocks
(:func:`keras_models.models.big_bird.backbone.block_sparse_attention`). Shorter inputs use full
attention (Transformers switches the module to ``original_full`` for good at that point; this
model decides per call).
"""

from dataclasses import dataclass, replace
from typing import ClassVar

import keras
from keras import ops

from keras_models.errors import ConfigError
from keras_models.models.bart.backbone import BART_NAMES, BartBackbone
from keras_models.models.bart.families import BartSpec
from keras_models.models.bart.tasks import BartLikeSeq2SeqLM, BartQuestionAnswerer, BartTextClassifier
from keras_models.models.big_bird.backbone import block_sparse_attention
from keras_models.models.registry import register_backbone, register_task
from keras_models.spec import const, dim, hf

_ser = keras.saving.register_keras_serializable(package="keras_models")
FIELDS = ("attention_type", "block_size", "num_random_blocks", "attention_bias")


@dataclass(frozen=True, kw_only=True)
class BigBirdPegasusSpec(BartSpec):
    architecture: ClassVar[str] = "BigBirdPegasusModel"
    vocab_size: int = dim("vocab_size", 96103)
    hidden_size: int = dim("d_model", 1024)
    num_encoder_layers: int = dim("encoder_layers", 16)
    num_decoder_layers: int = dim("decoder_layers", 16)
    encoder_heads: int = dim("encoder_attention_heads", 16)
    decoder_heads: int = dim("decoder_attention_heads", 16)
    encoder_intermediate_size: int = dim("encoder_ffn_dim", 4096)
    decoder_intermediate_size: int = dim("decoder_ffn_dim", 4096)
    max_position_embeddings: int = dim("max_position_embeddings", 4096)
    hidden_act: str = hf("activation_function", "gelu_new")
    scale_embedding: bool = hf("scale_embedding", True)
    pad_token_id: int | None = hf("pad_token_id", 0)
    bos_token_id: int | None = hf("bos_token_id", 2)
    eos_token_id: int | None = hf("eos_token_id", 1)
    decoder_start_token_id: int | None = hf("decoder_start_token_id", 2)
    forced_eos_token_id: int | None = hf("forced_eos_token_id", None)
    attention_type: str = hf("attention_type", "block_sparse")
    block_size: int = dim("block_size", 64)
    num_random_blocks: int = dim("num_random_blocks", 3)
    attention_bias: bool = hf("use_bias", False, doc="biases of the attention projections")
    hf_model_type: str = const("bigbird_pegasus")
    position_offset: int = const(0)
    embedding_norm: bool = const(False)
    norm_first: bool = const(True)
    final_norm: bool = const(True)

    def validate(self, source="config.json"):
        if self.attention_type not in ("original_full", "block_sparse"):
            raise ConfigError(f"{source}: attention_type={self.attention_type!r}: expected 'original_full' or "
                              "'block_sparse'")

    @property
    def sparse_threshold(self):
        return (5 + 2 * self.num_random_blocks) * self.block_size


ENCODER_NAMES = {**BART_NAMES, "self_attention": ("self_attn", ("self.query", "self.key", "self.value", "output"))}


@_ser
@register_backbone("bigbird_pegasus")
class BigBirdPegasusBackbone(BartBackbone):
    base_model_prefix = "model"
    hf_architecture = "BigBirdPegasusModel"
    spec_cls = BigBirdPegasusSpec
    reads_untied_tables = True  # tie_word_embeddings false: own encoder / decoder / shared tables
    encoder_block_names = ENCODER_NAMES
    verified_backends = ("jax", "torch", "tensorflow")

    def __init__(self, *args, attention_type="block_sparse", block_size=64, num_random_blocks=3,
                 attention_bias=False, position_offset=0, embedding_norm=False, norm_first=True, final_norm=True,
                 scale_embedding=True, hf_model_type="bigbird_pegasus", **kwargs):
        object.__setattr__(self, "_attention_bias", attention_bias)  # read by the block hook in super().__init__
        super().__init__(*args, position_offset=position_offset, embedding_norm=embedding_norm,
                         norm_first=norm_first, final_norm=final_norm, scale_embedding=scale_embedding,
                         hf_model_type=hf_model_type, **kwargs)
        self.attention_type, self.block_size = attention_type, block_size
        self.num_random_blocks, self.attention_bias = num_random_blocks, attention_bias
        self.hf_architecture = "BigBirdPegasusModel"

    def block_extra_options(self, index, cross):
        return dict(super().block_extra_options(index, cross), attention_bias=self._attention_bias)

    def uses_block_sparse(self, seq_len):
        threshold = (5 + 2 * self.num_random_blocks) * self.block_size
        return self.attention_type == "block_sparse" and (seq_len is None or seq_len > threshold)

    def encode(self, input_ids, attention_mask=None, training=False):
        t = input_ids.shape[1]
        if not self.uses_block_sparse(t):
            return super().encode(input_ids, attention_mask, training=training)
        if t is None:
            raise ValueError("BigBird-Pegasus block_sparse attention needs a static sequence length")
        x = self.embed_encoder(input_ids, training=training)
        mask = ops.ones_like(input_ids) if attention_mask is None else attention_mask
        pad = (self.block_size - t % self.block_size) % self.block_size
        if pad:  # padded positions are masked keys and zeroed queries: their values never matter
            x = ops.pad(x, ((0, 0), (0, pad), (0, 0)))
            mask = ops.pad(mask, ((0, 0), (0, pad)))
        for blk in self.encoder_blocks:
            x = blk._residual(x, blk.self_attention_norm, lambda h, blk=blk: self._sparse_attend(blk, h, mask),
                              training)
            x = blk._residual(x, blk.ffn_norm, lambda h, blk=blk: blk._ffn(h, training), training)
        x = self.encoder_final_norm(x)
        x = x[:, :t] if pad else x
        return self.embedding_dropout(x, training=training)

    def _sparse_attend(self, blk, x, mask):
        a = blk.self_attention
        q, k, v = (ops.transpose(blk._heads(a, dense(x)), (0, 2, 1, 3)) for dense in (a.query, a.key, a.value))
        out = block_sparse_attention(q, k, v, mask, self.block_size, self.num_random_blocks)
        b, t = ops.shape(out)[0], ops.shape(out)[2]
        return a.output_dense(ops.reshape(ops.transpose(out, (0, 2, 1, 3)), (b, t, a.num_heads * a.head_dim)))

    def weight_rules(self):
        renamed = {"encoder.layer_norm.": "encoder.layernorm_embedding.",
                   "decoder.layer_norm.": "decoder.layernorm_embedding."}
        out = []
        for r in super().weight_rules():
            for old, new in renamed.items():
                if r.hf.startswith(old):
                    r = replace(r, hf=new + r.hf[len(old):])
            out.append(r)
        return out

    def get_config(self):
        config = super().get_config()
        config.update({name: getattr(self, name) for name in FIELDS})
        return config


@_ser
@register_task(BigBirdPegasusBackbone, "Seq2SeqLM", ("BigBirdPegasusForConditionalGeneration",))
class BigBirdPegasusSeq2SeqLM(BartLikeSeq2SeqLM):
    pass


@_ser
@register_task(BigBirdPegasusBackbone, "TextClassifier", ("BigBirdPegasusForSequenceClassification",))
class BigBirdPegasusTextClassifier(BartTextClassifier):
    pass


@_ser
@register_task(BigBirdPegasusBackbone, "QuestionAnswerer", ("BigBirdPegasusForQuestionAnswering",))
class BigBirdPegasusQuestionAnswerer(BartQuestionAnswerer):
    pass


__all__ = ["BigBirdPegasusBackbone", "BigBirdPegasusSeq2SeqLM", "BigBirdPegasusTextClassifier",
           "BigBirdPegasusQuestionAnswerer"]

"""DeBERTa (v1): DeBERTa-v2's encoder with v1's attention projections and config keys.

Differences from DeBERTa-v2 (all named switches of :class:`DisentangledAttention`): one fused,
bias-free ``in_proj`` (per head [q | k | v]) plus ``q_bias`` / ``v_bias``; a bias-free c2p
projection (``pos_proj``) and a biased p2c one (``pos_q_proj``); scores scaled by
1 + len(pos_att_type) even without relative attention; plain (never bucketed) relative offsets
over ``2 * max_relative_positions`` embeddings, no relative-embedding LayerNorm, no convolution.
"""

from dataclasses import dataclass

import keras

from keras_models.layers.encoder_block import EncoderBlock
from keras_models.models.encoder.backbone import BERT_NAMES, EncoderSpec, dense_rules, norm_rules
from keras_models.models.encoder.deberta import (
    DebertaMaskedLMBase,
    DebertaTextClassifierBase,
    DebertaV2Backbone,
    DebertaV2Spec,
)
from keras_models.models.encoder.tasks import family_task
from keras_models.models.registry import register_backbone
from keras_models.presets.weight_map import Rule
from keras_models.spec import const, dim
from keras_models.tasks.embedder import TextEmbedder
from keras_models.tasks.text import QuestionAnswerer, TokenClassifier

_V2_ONLY = (None, -1, 0, False, "none")  # DeBERTa-v2 options (model_type deberta-v2) left at their defaults


@dataclass(frozen=True, kw_only=True)
class DebertaSpec(DebertaV2Spec):
    vocab_size: int = dim("vocab_size", 50265)
    hidden_size: int = dim("hidden_size", 768)
    num_layers: int = dim("num_hidden_layers", 12)
    num_heads: int = dim("num_attention_heads", 12)
    intermediate_size: int = dim("intermediate_size", 3072)
    share_att_key: bool = const(False)
    position_buckets: int = const(-1)
    norm_rel_ebd: bool = const(False)
    conv_kernel_size: int = const(0)
    conv_groups: int = const(1)
    conv_act: str = const("tanh")

    unsupported = {"legacy": (True, None), "talking_head": (False, None), "pooler_hidden_act": ("gelu", None),
                   **{key: _V2_ONLY for key in ("position_buckets", "share_att_key", "norm_rel_ebd",
                                                "conv_kernel_size")}}

    def adjust_to_hf(self, out):
        out = EncoderSpec.adjust_to_hf(self, out)
        out.update(pooler_hidden_size=self.hidden_size, pooler_hidden_act="gelu", legacy=True)
        if out.get("embedding_size") in (None, self.hidden_size):
            out.pop("embedding_size", None)  # absent: the hidden size
        return out


@keras.saving.register_keras_serializable(package="keras_models")
@register_backbone("deberta")
class DebertaBackbone(DebertaV2Backbone):
    spec_cls = DebertaSpec
    hf_architecture = "DebertaModel"
    hf_model_type = "deberta"
    hf_names = {**BERT_NAMES, "emb_proj": "embeddings.embed_proj"}
    verified_backends = ("jax", "torch", "tensorflow")

    def make_block(self, index, init):
        span = self.max_relative_positions if self.max_relative_positions > 0 else self.max_position_embeddings
        return EncoderBlock(
            self.hidden_size, self.num_heads, self.intermediate_size, hidden_act=self.hidden_act,
            layer_norm_eps=self.layer_norm_eps, dropout=self.dropout_rate,
            attention_dropout=self.attention_dropout, kernel_initializer=init, name=f"block_{index}",
            dtype=self.dtype_policy, attention_type="disentangled",
            attention_options=dict(pos_att_type=self.pos_att_type if self.relative_attention else (),
                                   scale_factor=1 + len(self.pos_att_type), attention_span=span,
                                   fused_qkv=True, pos_key_bias=False),
        )

    def block_rules(self, prefix, block):
        n, a = self.hf_names, block.attention
        r = dense_rules(prefix + "attention.self.in_proj", a.in_proj)
        r += [Rule(prefix + "attention.self.q_bias", a.q_bias), Rule(prefix + "attention.self.v_bias", a.v_bias)]
        for key, dense in (("attn_out", a.output_dense), ("ffn_in", block.intermediate),
                           ("ffn_out", block.output_dense)):
            r += dense_rules(prefix + n[key], dense)
        r += norm_rules(prefix + n["attn_norm"], block.attention_norm)
        r += norm_rules(prefix + n["ffn_norm"], block.output_norm)
        if a.pos_key is not None:
            r += dense_rules(prefix + "attention.self.pos_proj", a.pos_key)
        if a.pos_query is not None:
            r += dense_rules(prefix + "attention.self.pos_q_proj", a.pos_query)
        return r


@family_task(DebertaBackbone, "MaskedLM", "DebertaForMaskedLM")
class DebertaMaskedLM(DebertaMaskedLMBase):
    pass


@family_task(DebertaBackbone, "TextClassifier", "DebertaForSequenceClassification")
class DebertaTextClassifier(DebertaTextClassifierBase):
    pass


@family_task(DebertaBackbone, "TokenClassifier", "DebertaForTokenClassification")
class DebertaTokenClassifier(TokenClassifier):
    pass


@family_task(DebertaBackbone, "QuestionAnswerer", "DebertaForQuestionAnswering")
class DebertaQuestionAnswerer(QuestionAnswerer):
    pass


@family_task(DebertaBackbone, "TextEmbedder", "DebertaModel")
class DebertaTextEmbedder(TextEmbedder):
    pass


__all__ = [
    "DebertaBackbone", "DebertaMaskedLM", "DebertaTextClassifier", "DebertaTokenClassifier",
    "DebertaQuestionAnswerer", "DebertaTextEmbedder",
]

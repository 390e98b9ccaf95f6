"""DeBERTa (v1): DeBERTa-v2's encoder with v1's attention projections and config keys.

Differences from DeBERTa-v2 (all named switches of :class:`DisentangledAttention`): one fused,
bias-free ``in_proj`` (per head [q | k | v]) plus ``q_bias`` / ``v_bias``; a bias-free c2p
projection (``pos_proj``) and a biased p2c one (``pos_q_proj``); scores scaled by
1 + len(pos_att_type) even without relative attention; plain (never bucketed) relative offsets
over ``2 * max_relative_positions`` embeddings, no relative-embedding LayerNorm, no convolution.
"""

import keras

from keras_models.errors import ConfigError
from keras_models.layers.encoder_block import EncoderBlock
from keras_models.models.encoder.backbone import BERT_KEYS, BERT_NAMES, dense_rules, norm_rules
from keras_models.models.encoder.deberta import DEBERTA_HEADS, DebertaV2Backbone
from keras_models.models.encoder.tasks import define_tasks
from keras_models.models.registry import register_backbone
from keras_models.presets.weight_map import Rule


@keras.saving.register_keras_serializable(package="keras_models")
@register_backbone("deberta")
class DebertaBackbone(DebertaV2Backbone):
    hf_architecture = "DebertaModel"
    hf_model_type = "deberta"
    hf_keys = {**BERT_KEYS, "type_vocab_size": ("type_vocab_size", 0), "layer_norm_eps": ("layer_norm_eps", 1e-7),
               "embedding_size": ("embedding_size", None)}
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

    @classmethod
    def config_from_hf(cls, hf):
        if hf.get("talking_head"):
            raise ConfigError("config.json: DeBERTa talking_head=true is not supported yet")
        if str(hf.get("pooler_hidden_act") or "gelu") != "gelu":
            raise ConfigError(f"config.json: pooler_hidden_act={hf['pooler_hidden_act']!r} is not supported yet")
        for key in ("position_buckets", "share_att_key", "norm_rel_ebd", "conv_kernel_size"):
            if hf.get(key) not in (None, -1, 0, False, "none"):
                raise ConfigError(f"config.json: {key} is a DeBERTa-v2 option (model_type deberta-v2)")
        return super().config_from_hf(hf)

    def config_to_hf(self):
        config = super(DebertaV2Backbone, self).config_to_hf()
        config.update(relative_attention=self.relative_attention, pos_att_type=list(self.pos_att_type),
                      max_relative_positions=self.max_relative_positions,
                      position_biased_input=self.position_biased_input, pooler_hidden_size=self.hidden_size,
                      pooler_hidden_act="gelu", legacy=True)
        config.pop("embedding_size", None)  # absent: the hidden size
        if self.embedding_dim != self.hidden_size:
            config["embedding_size"] = self.embedding_dim
        return config

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


__all__ = ["DebertaBackbone"] + define_tasks(globals(), DebertaBackbone, "Deberta", DEBERTA_HEADS)

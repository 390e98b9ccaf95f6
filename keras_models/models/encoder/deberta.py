"""DeBERTa-v2: disentangled attention over shared relative-position embeddings (optionally
log-bucketed, optionally LayerNorm-ed), factorised embeddings projected (no bias) *before* the
embedding LayerNorm, optional absolute positions, and an optional convolution after layer 0."""

import keras
from keras import ops

from keras_models.errors import ConfigError
from keras_models.layers.activations import get_activation
from keras_models.layers.disentangled_attention import relative_positions
from keras_models.layers.encoder_block import EncoderBlock
from keras_models.models.encoder.backbone import BERT_KEYS, BERT_NAMES, EncoderBackbone, dense_rules, norm_rules
from keras_models.models.encoder.tasks import BERT_HEADS, define_tasks
from keras_models.models.registry import register_backbone
from keras_models.presets.weight_map import Rule, Transpose

_ser = keras.saving.register_keras_serializable(package="keras_models")


@_ser
@register_backbone("deberta-v2")
class DebertaV2Backbone(EncoderBackbone):
    base_model_prefix = "deberta"
    hf_architecture = "DebertaV2Model"
    hf_model_type = "deberta-v2"
    hf_known_unused = ("pooler.*",)
    hf_keys = {**BERT_KEYS, "type_vocab_size": ("type_vocab_size", 0), "layer_norm_eps": ("layer_norm_eps", 1e-7),
               "embedding_size": ("embedding_size", None)}
    hf_names = {**BERT_NAMES, "query": "attention.self.query_proj", "key": "attention.self.key_proj",
                "value": "attention.self.value_proj", "emb_proj": "embeddings.embed_proj"}
    verified_backends = ("jax", "torch", "tensorflow")

    def __init__(self, *args, relative_attention=False, pos_att_type=(), share_att_key=False,
                 position_buckets=-1, max_relative_positions=-1, norm_rel_ebd=False, conv_kernel_size=0,
                 conv_groups=1, conv_act="tanh", position_biased_input=True, **kwargs):
        kwargs.setdefault("position_mode", "absolute" if position_biased_input else "none")
        kwargs.setdefault("embedding_projection_bias", False)
        self.relative_attention, self.pos_att_type = relative_attention, tuple(pos_att_type or ())
        self.share_att_key, self.position_buckets = share_att_key, position_buckets
        self.max_relative_positions, self.norm_rel_ebd = max_relative_positions, norm_rel_ebd
        self.conv_kernel_size, self.conv_groups, self.conv_act = conv_kernel_size, conv_groups, conv_act
        self.position_biased_input = position_biased_input
        super().__init__(*args, **kwargs)
        span = max_relative_positions if max_relative_positions > 0 else self.max_position_embeddings
        self.attention_span = position_buckets if position_buckets > 0 else span
        self.relative_span = span
        common = dict(dtype=self.dtype_policy)
        init = keras.initializers.TruncatedNormal(stddev=self.initializer_range)
        self.rel_embeddings = keras.layers.Embedding(2 * self.attention_span, self.hidden_size,
                                                     embeddings_initializer=init, name="rel_embeddings",
                                                     **common) if relative_attention else None
        if self.rel_embeddings is not None:
            self.rel_embeddings.build((None,))  # its table is read directly, never looked up
        self.rel_norm = keras.layers.LayerNormalization(epsilon=self.layer_norm_eps, name="rel_norm",
                                                        **common) if relative_attention and norm_rel_ebd else None
        self.conv = keras.layers.Conv1D(self.hidden_size, conv_kernel_size, padding="same", groups=conv_groups,
                                        name="conv", **common) if conv_kernel_size else None
        self.conv_norm = keras.layers.LayerNormalization(epsilon=self.layer_norm_eps, name="conv_norm",
                                                         **common) if conv_kernel_size else None

    def make_block(self, index, init):
        span = self.position_buckets if self.position_buckets > 0 else (
            self.max_relative_positions if self.max_relative_positions > 0 else self.max_position_embeddings)
        return EncoderBlock(
            self.hidden_size, self.num_heads, self.intermediate_size, hidden_act=self.hidden_act,
            layer_norm_eps=self.layer_norm_eps, dropout=self.dropout_rate,
            attention_dropout=self.attention_dropout, kernel_initializer=init, name=f"block_{index}",
            dtype=self.dtype_policy, attention_type="disentangled",
            attention_options=dict(pos_att_type=self.pos_att_type, share_att_key=self.share_att_key,
                                   attention_span=span),
        )

    def embed(self, inputs, training=False):
        ids = inputs["input_ids"]
        x = self.token_embedding(ids)
        if self.position_embedding is not None:
            positions = inputs.get("position_ids")
            x = x + self.position_embedding(self.position_ids(ids) if positions is None else positions)
        if self.token_type_embedding is not None:
            types = inputs.get("token_type_ids")
            x = x + self.token_type_embedding(ops.zeros_like(ids) if types is None else types)
        if self.embeddings_project is not None:
            x = self.embeddings_project(x)
        x = self.embeddings_norm_layer(x)
        mask = inputs.get("attention_mask")
        if mask is not None:
            x = x * ops.cast(mask, x.dtype)[..., None]
        return self.embeddings_dropout(x, training=training)

    def call(self, inputs, training=False):
        if not isinstance(inputs, dict):
            inputs = {"input_ids": inputs}
        x = self.embed(inputs, training=training)
        bias = self.attention_bias(inputs, x)
        relative = None
        if self.relative_attention:
            n = ops.shape(x)[1]
            table = self.rel_embeddings.embeddings
            if self.rel_norm is not None:
                table = self.rel_norm(table)
            relative = (relative_positions(n, n, self.position_buckets, self.relative_span), table)
        embedded = x
        for i, index in enumerate(self.layer_schedule):
            x = self.blocks[index](x, bias, training=training, relative=relative)
            if i == 0 and self.conv is not None:
                x = self.apply_conv(embedded, x, inputs.get("attention_mask"), training)
        return x

    def apply_conv(self, embedded, residual, mask, training):
        out = self.conv(embedded)
        if mask is not None:
            out = out * ops.cast(mask, out.dtype)[..., None]
        out = get_activation(self.conv_act)(out)
        out = self.conv_norm(residual + out)
        return out if mask is None else out * ops.cast(mask, out.dtype)[..., None]

    @classmethod
    def config_from_hf(cls, hf):
        if hf.get("legacy") is False:
            raise ConfigError("config.json: DeBERTa-v2 with legacy=false (lm_predictions head) is not supported yet")
        if hf.get("pooler_hidden_size") not in (None, hf.get("hidden_size")):
            raise ConfigError("config.json: pooler_hidden_size != hidden_size is not supported yet")
        kwargs = super().config_from_hf({**hf, "position_embedding_type": "absolute"})
        pos = hf.get("pos_att_type") or ()
        pos = [p.strip() for p in pos.lower().split("|")] if isinstance(pos, str) else list(pos)
        kwargs.update(
            relative_attention=bool(hf.get("relative_attention", False)), pos_att_type=pos,
            share_att_key=bool(hf.get("share_att_key", False)), position_buckets=hf.get("position_buckets") or -1,
            max_relative_positions=hf.get("max_relative_positions") or -1,
            norm_rel_ebd="layer_norm" in str(hf.get("norm_rel_ebd") or "none").lower(),
            conv_kernel_size=hf.get("conv_kernel_size") or 0, conv_groups=hf.get("conv_groups") or 1,
            conv_act=hf.get("conv_act") or "tanh", position_biased_input=hf.get("position_biased_input", True),
            embedding_projection=(hf.get("embedding_size") or hf["hidden_size"]) != hf["hidden_size"],
        )
        return kwargs

    def config_to_hf(self):
        config = super().config_to_hf()
        config.update(relative_attention=self.relative_attention, pos_att_type=list(self.pos_att_type),
                      share_att_key=self.share_att_key, position_buckets=self.position_buckets,
                      max_relative_positions=self.max_relative_positions,
                      norm_rel_ebd="layer_norm" if self.norm_rel_ebd else "none",
                      conv_kernel_size=self.conv_kernel_size, conv_groups=self.conv_groups, conv_act=self.conv_act,
                      position_biased_input=self.position_biased_input, embedding_size=self.embedding_dim,
                      pooler_hidden_size=self.hidden_size, legacy=True)
        return config

    def block_rules(self, prefix, block):
        r = super().block_rules(prefix, block)
        a = block.attention
        if a.pos_key is not None:
            r += dense_rules(prefix + "attention.self.pos_key_proj", a.pos_key)
        if a.pos_query is not None:
            r += dense_rules(prefix + "attention.self.pos_query_proj", a.pos_query)
        return r

    def weight_rules(self):
        r = super().weight_rules()
        if self.rel_embeddings is not None:
            r.append(Rule("encoder.rel_embeddings.weight", self.rel_embeddings.embeddings))
        if self.rel_norm is not None:
            r += norm_rules("encoder.LayerNorm", self.rel_norm)
        if self.conv is not None:
            # torch Conv1d (out, in/groups, k) <-> Keras Conv1D (k, in/groups, out)
            r.append(Rule("encoder.conv.conv.weight", self.conv.kernel, Transpose((2, 1, 0))))
            r.append(Rule("encoder.conv.conv.bias", self.conv.bias))
            r += norm_rules("encoder.conv.LayerNorm", self.conv_norm)
        return r

    def get_config(self):
        config = super().get_config()
        config.update(relative_attention=self.relative_attention, pos_att_type=list(self.pos_att_type),
                      share_att_key=self.share_att_key, position_buckets=self.position_buckets,
                      max_relative_positions=self.max_relative_positions, norm_rel_ebd=self.norm_rel_ebd,
                      conv_kernel_size=self.conv_kernel_size, conv_groups=self.conv_groups,
                      conv_act=self.conv_act, position_biased_input=self.position_biased_input)
        return config


DEBERTA_HEADS = {
    **BERT_HEADS,
    "MaskedLM": dict(head_width_attr="embedding_dim"),
    "TextClassifier": dict(hf_inner=("pooler.dense", False), inner_activation="gelu", input_dropout=True,
                           hf_head_patterns=("pooler.*", "classifier.*")),
}

__all__ = ["DebertaV2Backbone"] + define_tasks(globals(), DebertaV2Backbone, "DebertaV2", DEBERTA_HEADS)

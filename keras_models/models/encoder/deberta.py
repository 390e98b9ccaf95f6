"""DeBERTa-v2: disentangled attention over shared relative-position embeddings (optionally
log-bucketed, optionally LayerNorm-ed), factorised embeddings projected (no bias) *before* the
embedding LayerNorm, optional absolute positions, and an optional convolution after layer 0."""

from dataclasses import dataclass

import keras
from keras import ops

from keras_models.errors import ConfigError
from keras_models.layers.activations import get_activation
from keras_models.layers.disentangled_attention import relative_positions
from keras_models.layers.encoder_block import EncoderBlock
from keras_models.models.encoder.backbone import (
    BERT_NAMES,
    EncoderBackbone,
    EncoderSpec,
    dense_rules,
    explicit_embedding_size,
    norm_rules,
)
from keras_models.models.encoder.tasks import family_task
from keras_models.tasks.multiple_choice import MultipleChoice
from keras_models.models.registry import register_backbone
from keras_models.presets.weight_map import Rule, Transpose
from keras_models.spec import const, dim, hf
from keras_models.tasks.embedder import TextEmbedder
from keras_models.tasks.text import MaskedLM, QuestionAnswerer, TextClassifier, TokenClassifier

_ser = keras.saving.register_keras_serializable(package="keras_models")


def _pos_att_types(value):
    """``pos_att_type``: "p2c|c2p" (DeBERTa-v2 style) or a list."""
    return tuple(p.strip() for p in value.lower().split("|")) if isinstance(value, str) else tuple(value)


def _default(cls, name):
    return cls.__dataclass_fields__[name].default


@dataclass(frozen=True, kw_only=True)
class DebertaV2Spec(EncoderSpec):
    vocab_size: int = dim("vocab_size", 128100)
    hidden_size: int = dim("hidden_size", 1536)
    num_layers: int = dim("num_hidden_layers", 24)
    num_heads: int = dim("num_attention_heads", 24)
    intermediate_size: int = dim("intermediate_size", 6144)
    type_vocab_size: int = hf("type_vocab_size", 0)
    layer_norm_eps: float = hf("layer_norm_eps", 1e-7)
    embedding_size: int | None = hf("embedding_size", None)
    embedding_projection_bias: bool = const(False)
    relative_attention: bool = hf("relative_attention", False, read=bool)
    pos_att_type: tuple = hf("pos_att_type", (), read=_pos_att_types)
    share_att_key: bool = hf("share_att_key", False, read=bool)
    position_buckets: int = hf("position_buckets", -1, read=lambda v: v or -1)
    max_relative_positions: int = hf("max_relative_positions", -1, read=lambda v: v or -1)
    norm_rel_ebd: bool = hf("norm_rel_ebd", False, read=lambda v: "layer_norm" in str(v).lower(),
                            write=lambda v: "layer_norm" if v else "none")
    conv_kernel_size: int = hf("conv_kernel_size", 0, read=lambda v: v or 0)
    conv_groups: int = hf("conv_groups", 1, read=lambda v: v or 1)
    conv_act: str = hf("conv_act", "tanh")
    position_biased_input: bool = hf("position_biased_input", True)

    # position_embedding_type is not read: positions are position_biased_input's
    unsupported = {"legacy": (True, None)}

    @classmethod
    def adjust_from_hf(cls, config, values, source):
        hidden = values.get("hidden_size", _default(cls, "hidden_size"))
        if config.get("pooler_hidden_size") not in (None, hidden):
            raise ConfigError(f"{source}: pooler_hidden_size != hidden_size is not supported yet")
        return values

    def adjust_to_hf(self, out):
        out.update(pooler_hidden_size=self.hidden_size, legacy=True)
        return explicit_embedding_size(self, super().adjust_to_hf(out))


@_ser
@register_backbone("deberta-v2")
class DebertaV2Backbone(EncoderBackbone):
    spec_cls = DebertaV2Spec
    base_model_prefix = "deberta"
    hf_architecture = "DebertaV2Model"
    hf_model_type = "deberta-v2"
    hf_known_unused = ("pooler.*",)
    hf_names = {**BERT_NAMES, "query": "attention.self.query_proj", "key": "attention.self.key_proj",
                "value": "attention.self.value_proj", "emb_proj": "embeddings.embed_proj"}
    verified_backends = ("jax", "torch", "tensorflow")

    def __init__(self, spec=None, **kwargs):
        super().__init__(spec, **kwargs)
        max_relative_positions, position_buckets = self.max_relative_positions, self.position_buckets
        relative_attention, norm_rel_ebd = self.relative_attention, self.norm_rel_ebd
        conv_kernel_size, conv_groups = self.conv_kernel_size, self.conv_groups
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

    def resolve_spec(self, spec):
        if not spec.position_biased_input and spec.position_mode == "absolute":
            spec = spec.replace(position_mode="none")
        return spec

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


class DebertaTextClassifierBase(TextClassifier):
    """DeBERTa's classifier: ``pooler.dense`` (gelu) on the first token, input dropout."""

    hf_inner = ("pooler.dense", False)
    inner_activation = "gelu"
    input_dropout = True
    hf_head_patterns = ("pooler.*", "classifier.*")


class DebertaMaskedLMBase(MaskedLM):
    head_width_attr = "embedding_dim"


@family_task(DebertaV2Backbone, "MaskedLM", "DebertaV2ForMaskedLM")
class DebertaV2MaskedLM(DebertaMaskedLMBase):
    pass


@family_task(DebertaV2Backbone, "TextClassifier", "DebertaV2ForSequenceClassification")
class DebertaV2TextClassifier(DebertaTextClassifierBase):
    pass


@family_task(DebertaV2Backbone, "MultipleChoice", "DebertaV2ForMultipleChoice")
class DebertaV2MultipleChoice(MultipleChoice, DebertaV2TextClassifier):
    """DebertaV2ForMultipleChoice: the sequence classifier's head (``pooler.dense``) with one unit."""


@family_task(DebertaV2Backbone, "TokenClassifier", "DebertaV2ForTokenClassification")
class DebertaV2TokenClassifier(TokenClassifier):
    pass


@family_task(DebertaV2Backbone, "QuestionAnswerer", "DebertaV2ForQuestionAnswering")
class DebertaV2QuestionAnswerer(QuestionAnswerer):
    pass


@family_task(DebertaV2Backbone, "TextEmbedder", "DebertaV2Model")
class DebertaV2TextEmbedder(TextEmbedder):
    pass


__all__ = [
    "DebertaV2Backbone", "DebertaV2MaskedLM", "DebertaV2TextClassifier", "DebertaV2TokenClassifier",
    "DebertaV2QuestionAnswerer", "DebertaV2TextEmbedder", "DebertaV2MultipleChoice",
]

"""MobileBERT: bottleneck blocks (``keras_models.layers.bottleneck_block``) with ``NoNorm``, stacked
feed-forward networks, a trigram input embedding (each token's embedding concatenated with its
right and left neighbours' and projected to ``hidden_size``) and ``embedding_size != hidden_size``.

The MLM head projects onto ``[word embeddings | cls.predictions.dense]`` (the word embeddings cover
the first ``embedding_size`` channels, a separate table the rest). The classifier's pooler is
optional (``classifier_activation``).
"""

from dataclasses import dataclass

import keras
from keras import ops

from keras_models.errors import ConfigError
from keras_models.layers.bottleneck_block import DEFAULT_LAYER_NORM_EPS, BottleneckBlock, make_mobile_norm
from keras_models.layers.masks import padding_bias
from keras_models.models.backbone import SpecBackbone
from keras_models.models.encoder.backbone import dense_rules, norm_rules
from keras_models.models.encoder.tasks import family_task
from keras_models.models.registry import register_backbone
from keras_models.presets.weight_map import TRANSPOSE, Rule
from keras_models.spec import Spec, dim, hf
from keras_models.tasks.embedder import TextEmbedder
from keras_models.tasks.heads import MaskedLMHead
from keras_models.tasks.task import Task
from keras_models.tasks.text import MaskedLM, QuestionAnswerer, TextClassifier, TokenClassifier

_ser = keras.saving.register_keras_serializable(package="keras_models")


@dataclass(frozen=True, kw_only=True)
class MobileBertSpec(Spec):
    vocab_size: int = dim("vocab_size", 30522)
    hidden_size: int = dim("hidden_size", 512)
    num_layers: int = dim("num_hidden_layers", 24)
    num_heads: int = dim("num_attention_heads", 4)
    intermediate_size: int = dim("intermediate_size", 512)
    hidden_act: str = hf("hidden_act", "relu")
    dropout: float = hf("hidden_dropout_prob", 0.0)
    attention_dropout: float = hf("attention_probs_dropout_prob", 0.1)
    max_position_embeddings: int = dim("max_position_embeddings", 512)
    type_vocab_size: int = hf("type_vocab_size", 2)
    initializer_range: float = hf("initializer_range", 0.02)
    layer_norm_eps: float = hf("layer_norm_eps", 1e-12)
    pad_token_id: int = hf("pad_token_id", 0)
    embedding_size: int = dim("embedding_size", 128)
    trigram_input: bool = hf("trigram_input", True)
    use_bottleneck: bool = hf("use_bottleneck", True)
    bottleneck_size: int = dim("intra_bottleneck_size", 128)
    bottleneck_attention: bool = hf("use_bottleneck_attention", False)
    shared_bottleneck: bool = hf("key_query_shared_bottleneck", True)
    num_feedforward_networks: int = dim("num_feedforward_networks", 4)
    normalization: str = hf("normalization_type", "no_norm")
    classifier_activation: bool = hf("classifier_activation", True)

    unsupported = {"normalization_type": ("no_norm", "layer_norm", None)}


@_ser
@register_backbone("mobilebert")
class MobileBertBackbone(SpecBackbone):
    spec_cls = MobileBertSpec
    base_model_prefix = "mobilebert"
    hf_architecture = "MobileBertModel"
    hf_model_type = "mobilebert"
    hf_ignore = ("*embeddings.position_ids",)
    hf_known_unused = ("*pooler.dense.*",)
    verified_backends = ("jax", "torch", "tensorflow")

    def __init__(self, spec=None, **kwargs):
        super().__init__(spec, **kwargs)
        for k, v in self.spec.kwargs().items():
            setattr(self, "dropout_rate" if k == "dropout" else k, v)
        s = self.spec
        self.embedding_dim = s.embedding_size
        init = keras.initializers.TruncatedNormal(stddev=s.initializer_range)
        common = dict(dtype=self.dtype_policy)

        def embedding(n, width, name):
            return keras.layers.Embedding(n, width, embeddings_initializer=init, name=name, **common)

        self.token_embedding = embedding(s.vocab_size, s.embedding_size, "token_embedding")
        self.position_embedding = embedding(s.max_position_embeddings, s.hidden_size, "position_embedding")
        self.token_type_embedding = (
            embedding(s.type_vocab_size, s.hidden_size, "token_type_embedding") if s.type_vocab_size else None
        )
        self.embedding_transformation = None
        if s.trigram_input or s.embedding_size != s.hidden_size:
            self.embedding_transformation = keras.layers.Dense(s.hidden_size, kernel_initializer=init,
                                                               name="embedding_transformation", **common)
        self.embeddings_norm = make_mobile_norm(s.normalization, DEFAULT_LAYER_NORM_EPS, "embeddings_norm",
                                                self.dtype_policy)
        self.embeddings_dropout = keras.layers.Dropout(s.dropout, **common)
        self.blocks = [
            BottleneckBlock(s.hidden_size, s.num_heads, s.intermediate_size, bottleneck_size=s.bottleneck_size,
                            hidden_act=s.hidden_act, layer_norm_eps=s.layer_norm_eps, dropout=s.dropout,
                            attention_dropout=s.attention_dropout, normalization=s.normalization,
                            use_bottleneck=s.use_bottleneck, bottleneck_attention=s.bottleneck_attention,
                            shared_bottleneck=s.shared_bottleneck, num_feedforward_networks=s.num_feedforward_networks,
                            kernel_initializer=init, name=f"block_{i}", **common)
            for i in range(s.num_layers)
        ]

    def embed(self, inputs, training=False):
        ids = inputs["input_ids"]
        x = self.token_embedding(ids)
        if self.trigram_input:  # [next token | token | previous token], zeros beyond the ends
            nxt = ops.pad(x[:, 1:], [[0, 0], [0, 1], [0, 0]])
            prev = ops.pad(x[:, :-1], [[0, 0], [1, 0], [0, 0]])
            x = ops.concatenate([nxt, x, prev], axis=-1)
        if self.embedding_transformation is not None:
            x = self.embedding_transformation(x)
        positions = inputs.get("position_ids")
        if positions is None:
            positions = ops.arange(ops.shape(ids)[1], dtype="int32")[None, :]
        x = x + self.position_embedding(positions)
        if self.token_type_embedding is not None:
            types = inputs.get("token_type_ids")
            x = x + self.token_type_embedding(ops.zeros_like(ids) if types is None else types)
        return self.embeddings_dropout(self.embeddings_norm(x), training=training)

    def call(self, inputs, training=False):
        if not isinstance(inputs, dict):
            inputs = {"input_ids": inputs}
        x = self.embed(inputs, training=training)
        mask = inputs.get("attention_mask")
        bias = None if mask is None else padding_bias(mask, x.dtype)
        for block in self.blocks:
            x = block(x, bias, training=training)
        return x

    # --- HF conversion ------------------------------------------------------------------------
    def weight_rules(self):
        r = [Rule("embeddings.word_embeddings.weight", self.token_embedding.embeddings),
             Rule("embeddings.position_embeddings.weight", self.position_embedding.embeddings)]
        if self.token_type_embedding is not None:
            r.append(Rule("embeddings.token_type_embeddings.weight", self.token_type_embedding.embeddings))
        if self.embedding_transformation is not None:
            r += dense_rules("embeddings.embedding_transformation", self.embedding_transformation)
        r += norm_rules("embeddings.LayerNorm", self.embeddings_norm)
        for i, b in enumerate(self.blocks):
            p = f"encoder.layer.{i}."
            a = b.attention
            pairs = [("attention.self.query", a.query), ("attention.self.key", a.key),
                     ("attention.self.value", a.value), ("attention.output.dense", a.output_dense),
                     ("intermediate.dense", b.intermediate), ("output.dense", b.output_dense),
                     ("bottleneck.input.dense", b.input_dense), ("bottleneck.attention.dense", b.qk_dense),
                     ("output.bottleneck.dense", b.out_bottleneck)]
            norms = [("attention.output.LayerNorm", b.attention_norm), ("output.LayerNorm", b.output_norm),
                     ("bottleneck.input.LayerNorm", b.input_norm), ("bottleneck.attention.LayerNorm", b.qk_norm),
                     ("output.bottleneck.LayerNorm", b.out_bottleneck_norm)]
            for j, (up, down, norm) in enumerate(b.ffns()):
                pairs += [(f"ffn.{j}.intermediate.dense", up), (f"ffn.{j}.output.dense", down)]
                norms.append((f"ffn.{j}.output.LayerNorm", norm))
            for name, dense in pairs:
                if dense is not None:
                    r += dense_rules(p + name, dense)
            for name, norm in norms:
                if norm is not None:
                    r += norm_rules(p + name, norm)
        return r


# --- heads --------------------------------------------------------------------------------------
@_ser
class MobileBertLMHead(MaskedLMHead):
    """Transform (dense, activation, LayerNorm at ``hidden_size``), then logits against
    ``[word embeddings (or own decoder) | extra]``: ``extra`` (vocab, hidden - embedding) covers the
    channels the ``embedding_size``-wide table lacks."""

    def __init__(self, hidden_size, vocab_size, embedding_size, **kwargs):
        super().__init__(hidden_size, vocab_size, **kwargs)
        self.embedding_size = embedding_size

    def build(self, input_shape):
        self.dense.build(input_shape)
        self.norm.build(tuple(input_shape[:-1]) + (self.hidden_size,))
        if not self.tied:
            self.decoder = self.add_weight(name="decoder", shape=(self.vocab_size, self.embedding_size),
                                           initializer=self.kernel_initializer)
        self.extra = self.add_weight(name="extra", shape=(self.vocab_size, self.hidden_size - self.embedding_size),
                                     initializer=self.kernel_initializer)
        self.bias = self.add_weight(name="bias", shape=(self.vocab_size,), initializer="zeros")
        self.built = True

    def call(self, x, embeddings=None):
        h = self.norm(self.act(self.dense(x)))
        table = embeddings if self.tied else self.decoder
        full = ops.concatenate([ops.cast(table, h.dtype), ops.cast(self.extra, h.dtype)], axis=-1)
        return ops.matmul(h, ops.transpose(full)) + ops.cast(self.bias, h.dtype)

    def get_config(self):
        c = super().get_config()
        c["embedding_size"] = self.embedding_size
        return c


class MobileBertMaskedLMBase(MaskedLM):
    def __init__(self, backbone, preprocessor=None, tie_word_embeddings=True, **kwargs):
        Task.__init__(self, backbone, preprocessor=preprocessor, **kwargs)  # MaskedLM's head is not built
        if backbone.hidden_size <= backbone.embedding_dim:
            raise ConfigError("MobileBERT's MLM head needs hidden_size > embedding_size")
        self.tie_word_embeddings = tie_word_embeddings
        self.head = MobileBertLMHead(
            backbone.hidden_size, backbone.vocab_size, backbone.embedding_dim, hidden_act=backbone.hidden_act,
            layer_norm_eps=backbone.layer_norm_eps, tied=tie_word_embeddings, name="mlm_head",
            dtype=backbone.dtype_policy,
            kernel_initializer=keras.initializers.TruncatedNormal(stddev=backbone.initializer_range),
        )

    def head_rules(self):
        return super().head_rules() + [Rule("cls.predictions.dense.weight", self.head.extra, TRANSPOSE, base=False)]


class MobileBertClassifierBase(TextClassifier):
    """BERT's pooled classifier; without ``classifier_activation`` the pooler is skipped."""

    def __init__(self, backbone, **kwargs):
        if not backbone.classifier_activation:
            self.hf_inner = None  # instance override read by TextClassifier and head_rules
        super().__init__(backbone, **kwargs)


@family_task(MobileBertBackbone, "MaskedLM", "MobileBertForMaskedLM", "MobileBertForPreTraining")
class MobileBertMaskedLM(MobileBertMaskedLMBase):
    pass


@family_task(MobileBertBackbone, "TextClassifier", "MobileBertForSequenceClassification")
class MobileBertTextClassifier(MobileBertClassifierBase):
    pass


@family_task(MobileBertBackbone, "TokenClassifier", "MobileBertForTokenClassification")
class MobileBertTokenClassifier(TokenClassifier):
    pass


@family_task(MobileBertBackbone, "QuestionAnswerer", "MobileBertForQuestionAnswering")
class MobileBertQuestionAnswerer(QuestionAnswerer):
    pass


@family_task(MobileBertBackbone, "TextEmbedder", "MobileBertModel")
class MobileBertTextEmbedder(TextEmbedder):
    pass


__all__ = [
    "MobileBertBackbone", "MobileBertLMHead", "MobileBertMaskedLM", "MobileBertTextClassifier",
    "MobileBertTokenClassifier", "MobileBertQuestionAnswerer", "MobileBertTextEmbedder",
]

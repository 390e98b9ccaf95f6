"""MarkupLM (model_type ``markuplm``): RoBERTa-style positions plus an XPath embedding per token.

Two more inputs, ``xpath_tags_seq`` and ``xpath_subs_seq`` (batch, seq, ``max_depth``), hold each
token's XPath as tag ids and subscripts per depth (padded with ``tag_pad_id`` / ``subs_pad_id``,
which is also what a missing input means). Each depth has its own tag and subscript tables
(``xpath_unit_hidden_size`` wide); the per-depth vectors are concatenated, tags and subscripts
summed, then mapped by a ReLU MLP (``xpath_unitseq2_inner`` -> ``inner2emb``) and added to BERT's
embedding sum before its LayerNorm. Transformers also stores an unused ``xpath_unitseq2_embeddings``
projection; it is loaded and written back unchanged.
"""

from dataclasses import dataclass

import keras
from keras import ops

from keras_models.models.encoder.backbone import EncoderBackbone, EncoderSpec, dense_rules
from keras_models.models.encoder.tasks import family_task
from keras_models.models.registry import register_backbone
from keras_models.presets.weight_map import Rule
from keras_models.spec import const, dim, hf
from keras_models.tasks.embedder import TextEmbedder
from keras_models.tasks.text import QuestionAnswerer, TextClassifier, TokenClassifier

XPATH = "embeddings.xpath_embeddings."


@dataclass(frozen=True, kw_only=True)
class MarkupLMSpec(EncoderSpec):
    """MarkupLMConfig: BERT's keys, RoBERTa's positions and the XPath tables."""

    position_mode: str = const("padding_offset")
    max_xpath_tag_unit_embeddings: int = dim("max_xpath_tag_unit_embeddings", 256)
    max_xpath_subs_unit_embeddings: int = dim("max_xpath_subs_unit_embeddings", 1024)
    tag_pad_id: int = hf("tag_pad_id", 216)
    subs_pad_id: int = hf("subs_pad_id", 1001)
    xpath_unit_hidden_size: int = dim("xpath_unit_hidden_size", 32)
    max_depth: int = dim("max_depth", 50)

    hf_constants = {"bos_token_id": 0, "eos_token_id": 2}


@keras.saving.register_keras_serializable(package="keras_models")
@register_backbone("markuplm")
class MarkupLMBackbone(EncoderBackbone):
    """Inputs: ``input_ids``, ``xpath_tags_seq``, ``xpath_subs_seq``, ``attention_mask``,
    ``token_type_ids``."""

    spec_cls = MarkupLMSpec
    base_model_prefix = "markuplm"
    hf_architecture = "MarkupLMModel"
    hf_model_type = "markuplm"
    verified_backends = ("jax", "torch", "tensorflow")

    def __init__(self, spec=None, **kwargs):
        super().__init__(spec, **kwargs)
        init = keras.initializers.TruncatedNormal(stddev=self.initializer_range)
        common = dict(dtype=self.dtype_policy)
        unit, depth = self.xpath_unit_hidden_size, self.max_depth

        def tables(n, kind):
            return [keras.layers.Embedding(n, unit, embeddings_initializer=init, name=f"xpath_{kind}_{i}", **common)
                    for i in range(depth)]

        self.tag_tables = tables(self.max_xpath_tag_unit_embeddings, "tag")
        self.subs_tables = tables(self.max_xpath_subs_unit_embeddings, "subs")
        self.xpath_inner = keras.layers.Dense(4 * self.hidden_size, activation="relu", kernel_initializer=init,
                                              name="xpath_inner", **common)
        self.xpath_out = keras.layers.Dense(self.hidden_size, kernel_initializer=init, name="xpath_out", **common)
        self.xpath_dropout = keras.layers.Dropout(self.dropout_rate, **common)
        # stored by Transformers, never used in its forward pass: kept so presets round-trip
        self.xpath_unused = keras.layers.Dense(self.hidden_size, kernel_initializer=init,
                                               name="xpath_unitseq2_embeddings", **common)
        self.xpath_unused.build((None, unit * depth))

    def extra_embeddings(self, x, inputs, training=False):
        ids = inputs["input_ids"]
        vectors = []
        for key, pad, tables in (("xpath_tags_seq", self.tag_pad_id, self.tag_tables),
                                 ("xpath_subs_seq", self.subs_pad_id, self.subs_tables)):
            seq = inputs.get(key)
            if seq is None:
                level = ops.zeros_like(ops.cast(ids, "int32")) + pad
                vectors.append(ops.concatenate([t(level) for t in tables], axis=-1))
            else:
                seq = ops.cast(seq, "int32")
                vectors.append(ops.concatenate([t(seq[..., i]) for i, t in enumerate(tables)], axis=-1))
        xpath = self.xpath_out(self.xpath_dropout(self.xpath_inner(vectors[0] + vectors[1]), training=training))
        return x + xpath

    def weight_rules(self):
        r = super().weight_rules()
        for i, (tag, subs) in enumerate(zip(self.tag_tables, self.subs_tables)):
            r.append(Rule(f"{XPATH}xpath_tag_sub_embeddings.{i}.weight", tag.embeddings))
            r.append(Rule(f"{XPATH}xpath_subs_sub_embeddings.{i}.weight", subs.embeddings))
        return (r + dense_rules(XPATH + "xpath_unitseq2_inner", self.xpath_inner)
                + dense_rules(XPATH + "inner2emb", self.xpath_out)
                + dense_rules(XPATH + "xpath_unitseq2_embeddings", self.xpath_unused))


@family_task(MarkupLMBackbone, "TextClassifier", "MarkupLMForSequenceClassification")
class MarkupLMTextClassifier(TextClassifier):
    pass


@family_task(MarkupLMBackbone, "TokenClassifier", "MarkupLMForTokenClassification")
class MarkupLMTokenClassifier(TokenClassifier):
    pass


@family_task(MarkupLMBackbone, "QuestionAnswerer", "MarkupLMForQuestionAnswering")
class MarkupLMQuestionAnswerer(QuestionAnswerer):
    pass


@family_task(MarkupLMBackbone, "TextEmbedder", "MarkupLMModel")
class MarkupLMTextEmbedder(TextEmbedder):
    pass


__all__ = ["MarkupLMBackbone", "MarkupLMTextClassifier", "MarkupLMTokenClassifier", "MarkupLMQuestionAnswerer",
           "MarkupLMTextEmbedder"]

"""RoCBert (model_type ``roc_bert``): BERT with glyph-shape and pronunciation embeddings.

Two more inputs, ``input_shape_ids`` and ``input_pronunciation_ids`` (batch, seq), index their own
tables (``shape_embed``, ``pronunciation_embed``; switched by ``enable_shape`` /
``enable_pronunciation``). With ``concat_input`` (the default) the word, shape and pronunciation
vectors are concatenated and mapped to ``hidden_size`` by ``map_inputs_layer`` before token-type and
position embeddings are added (a missing id input counts as zeros). Without it, BERT's normalised
embedding is averaged with the shape / pronunciation vectors of the id inputs that are given.
"""

from dataclasses import dataclass

import keras
from keras import ops

from keras_models.errors import ConfigError
from keras_models.models.encoder.backbone import EncoderBackbone, EncoderSpec, dense_rules
from keras_models.models.encoder.tasks import family_task
from keras_models.models.registry import register_backbone
from keras_models.presets.weight_map import Rule
from keras_models.spec import dim, hf
from keras_models.tasks.embedder import TextEmbedder
from keras_models.tasks.text import MaskedLM, QuestionAnswerer, TextClassifier, TokenClassifier

EXTRA = (("shape", "input_shape_ids"), ("pronunciation", "input_pronunciation_ids"))


@dataclass(frozen=True, kw_only=True)
class RoCBertSpec(EncoderSpec):
    """RoCBertConfig: BERT's keys plus the shape / pronunciation tables and ``concat_input``."""

    enable_shape: bool = hf("enable_shape", True)
    enable_pronunciation: bool = hf("enable_pronunciation", True)
    shape_embed_dim: int = dim("shape_embed_dim", 512)
    shape_vocab_size: int = dim("shape_vocab_size", 24858)
    pronunciation_embed_dim: int = dim("pronunciation_embed_dim", 768)
    pronunciation_vocab_size: int = dim("pronunciation_vocab_size", 910)
    concat_input: bool = hf("concat_input", True)

    unsupported = {"position_embedding_type": ("absolute", None), "is_decoder": (False, None),
                   "add_cross_attention": (False, None)}

    def validate(self, source="config.json"):
        super().validate(source)
        if not self.concat_input:
            for kind in ("shape", "pronunciation"):
                width = getattr(self, f"{kind}_embed_dim")
                if getattr(self, f"enable_{kind}") and width != self.hidden_size:
                    raise ConfigError(f"{source}: {kind}_embed_dim={width} must equal hidden_size="
                                      f"{self.hidden_size} when concat_input is false (the vectors are averaged)")

    def dummy_inputs(self):
        inputs = super().dummy_inputs()
        for _, key in EXTRA:
            inputs[key] = inputs["input_ids"] * 0
        return inputs


@keras.saving.register_keras_serializable(package="keras_models")
@register_backbone("roc_bert")
class RoCBertBackbone(EncoderBackbone):
    """Inputs: BERT's plus ``input_shape_ids`` and ``input_pronunciation_ids``."""

    spec_cls = RoCBertSpec
    base_model_prefix = "roc_bert"
    hf_architecture = "RoCBertModel"
    hf_model_type = "roc_bert"
    verified_backends = ("jax", "torch", "tensorflow")

    def __init__(self, spec=None, **kwargs):
        super().__init__(spec, **kwargs)
        init = keras.initializers.TruncatedNormal(stddev=self.initializer_range)
        common = dict(embeddings_initializer=init, dtype=self.dtype_policy)
        self.extra_tables = {}  # both tables exist (and are stored) even when disabled, as in Transformers
        for kind, _ in EXTRA:
            self.extra_tables[kind] = keras.layers.Embedding(
                getattr(self, f"{kind}_vocab_size"), getattr(self, f"{kind}_embed_dim"),
                name=f"{kind}_embedding", **common)
            self.extra_tables[kind].build((None, None))  # eagerly: a disabled table is never called
        self.map_inputs = None
        if self.concat_input:
            self.map_inputs = keras.layers.Dense(self.hidden_size, kernel_initializer=init, name="map_inputs",
                                                 dtype=self.dtype_policy)

    def embed(self, inputs, training=False):
        input_ids = inputs["input_ids"]
        if self.map_inputs is None:  # BERT's embedding, averaged with the given extra vectors
            x = super().embed(inputs, training=training)
            parts = [x] + [self.extra_tables[kind](inputs[key]) for kind, key in EXTRA
                           if getattr(self, f"enable_{kind}") and inputs.get(key) is not None]
            return sum(parts[1:], parts[0]) / float(len(parts))
        pieces = [self.token_embedding(input_ids)]
        for kind, key in EXTRA:
            if getattr(self, f"enable_{kind}"):
                ids = inputs.get(key)
                pieces.append(self.extra_tables[kind](ops.zeros_like(input_ids) if ids is None else ids))
        x = self.map_inputs(ops.concatenate(pieces, axis=-1) if len(pieces) > 1 else pieces[0])
        types = inputs.get("token_type_ids")
        x = x + self.token_type_embedding(ops.zeros_like(input_ids) if types is None else types)
        positions = inputs.get("position_ids")
        x = x + self.position_embedding(self.position_ids(input_ids) if positions is None else positions)
        return self.embeddings_dropout(self.embeddings_norm_layer(x), training=training)

    def weight_rules(self):
        rules = super().weight_rules()
        for kind, layer in self.extra_tables.items():  # (a disabled table is still stored)
            rules.append(Rule(f"embeddings.{kind}_embed.weight", layer.embeddings))
        if self.map_inputs is not None:
            rules += dense_rules("embeddings.map_inputs_layer", self.map_inputs)
        return rules


@family_task(RoCBertBackbone, "MaskedLM", "RoCBertForMaskedLM", "RoCBertForPreTraining")
class RoCBertMaskedLM(MaskedLM):
    pass


@family_task(RoCBertBackbone, "TextClassifier", "RoCBertForSequenceClassification")
class RoCBertTextClassifier(TextClassifier):
    pass


@family_task(RoCBertBackbone, "TokenClassifier", "RoCBertForTokenClassification")
class RoCBertTokenClassifier(TokenClassifier):
    pass


@family_task(RoCBertBackbone, "QuestionAnswerer", "RoCBertForQuestionAnswering")
class RoCBertQuestionAnswerer(QuestionAnswerer):
    pass


@family_task(RoCBertBackbone, "TextEmbedder", "RoCBertModel")
class RoCBertTextEmbedder(TextEmbedder):
    pass


__all__ = ["RoCBertBackbone", "RoCBertMaskedLM", "RoCBertTextClassifier", "RoCBertTokenClassifier",
           "RoCBertQuestionAnswerer", "RoCBertTextEmbedder"]

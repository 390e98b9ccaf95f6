"""LUKE (and mLUKE checkpoints), entity-less: words only.

Without entity inputs LUKE's encoder is RoBERTa's (pad-aware positions, post-norm blocks); its
entity embeddings and entity-aware query projections (``w2e``/``e2w``/``e2e``) only act on entity
tokens, so they are reported as unused on load and not exported (a Transformers reload of a saved
preset initialises them afresh). Heads: the RoBERTa-shaped MLM head (untied decoder, bias saved as
``lm_head.decoder.bias``; the entity-prediction head is unused), BERT's pooler + classifier for
sequence classification, token classification and extractive QA. Entity inputs
(``entity_ids``, ...) and the entity tasks are not supported.
"""

from dataclasses import dataclass

import keras

from keras_models.models.encoder.backbone import dense_rules, norm_rules
from keras_models.models.encoder.tasks import family_task
from keras_models.models.registry import register_backbone
from keras_models.models.roberta import RobertaBackbone, RobertaSpec
from keras_models.presets.weight_map import Rule
from keras_models.spec import dim, hf
from keras_models.tasks.embedder import TextEmbedder
from keras_models.tasks.text import MaskedLM, QuestionAnswerer, TextClassifier, TokenClassifier

_ser = keras.saving.register_keras_serializable(package="keras_models")
ENTITY_INPUTS = ("entity_ids", "entity_attention_mask", "entity_token_type_ids", "entity_position_ids")


@dataclass(frozen=True, kw_only=True)
class LukeSpec(RobertaSpec):
    vocab_size: int = dim("vocab_size", 50267)
    # entity-side config, kept only to write config.json back
    entity_vocab_size: int = dim("entity_vocab_size", 500000)
    entity_emb_size: int = dim("entity_emb_size", 256)
    use_entity_aware_attention: bool = hf("use_entity_aware_attention", True)

    hf_constants = {"bos_token_id": 0, "eos_token_id": 2}


@_ser
@register_backbone("luke")
class LukeBackbone(RobertaBackbone):
    spec_cls = LukeSpec
    base_model_prefix = "luke"
    hf_architecture = "LukeModel"
    hf_model_type = "luke"
    hf_known_unused = ("*pooler.dense.*", "*entity_embeddings.*", "*.attention.self.w2e_query.*",
                       "*.attention.self.e2w_query.*", "*.attention.self.e2e_query.*")
    verified_backends = ("jax", "torch", "tensorflow")
    checkpoint_families = ("mLUKE",)

    def call(self, inputs, training=False):
        if isinstance(inputs, dict) and any(k in inputs for k in ENTITY_INPUTS):
            raise ValueError("LUKE entity inputs (entity_ids, ...) are not supported: pass word inputs only")
        return super().call(inputs, training=training)


class LukeMaskedLMBase(MaskedLM):
    """The word-prediction head; its decoder is its own (Transformers 5 does not tie it), read
    from the word embeddings when a checkpoint saved it tied."""

    hf_head_patterns = ("lm_head.*", "entity_predictions.*")
    head_activation = "gelu"

    @classmethod
    def task_config_from_hf(cls, hf, head_from_checkpoint, **kwargs):
        kwargs.setdefault("tie_word_embeddings", False)
        return kwargs

    def task_config_to_hf(self):
        return {}

    def head_rules(self):
        h, r = self.head, dense_rules("lm_head.dense", self.head.dense, base=False)
        r += norm_rules("lm_head.layer_norm", h.norm, base=False)
        r.append(Rule("lm_head.decoder.bias", h.bias, base=False, aliases=("lm_head.bias",)))
        if self.tie_word_embeddings:
            r.append(Rule("lm_head.decoder.weight", self.backbone.token_embedding.embeddings, base=False,
                          optional=True, export=False))
        else:
            word = f"{self.backbone.base_model_prefix}.embeddings.word_embeddings.weight"
            r.append(Rule("lm_head.decoder.weight", h.decoder, base=False, aliases=(word,)))
        return r


@family_task(LukeBackbone, "MaskedLM", "LukeForMaskedLM")
class LukeMaskedLM(LukeMaskedLMBase):
    pass


@family_task(LukeBackbone, "TextClassifier", "LukeForSequenceClassification")
class LukeTextClassifier(TextClassifier):
    """BERT's: pooler.dense (tanh) -> classifier."""


@family_task(LukeBackbone, "TokenClassifier", "LukeForTokenClassification")
class LukeTokenClassifier(TokenClassifier):
    pass


@family_task(LukeBackbone, "QuestionAnswerer", "LukeForQuestionAnswering")
class LukeQuestionAnswerer(QuestionAnswerer):
    pass


@family_task(LukeBackbone, "TextEmbedder", "LukeModel")
class LukeTextEmbedder(TextEmbedder):
    pass


__all__ = [
    "LukeBackbone", "LukeMaskedLM", "LukeTextClassifier", "LukeTokenClassifier", "LukeQuestionAnswerer",
    "LukeTextEmbedder",
]

"""LUKE (and mLUKE checkpoints), entity-less: words only.

Without entity inputs LUKE's encoder is RoBERTa's (pad-aware positions, post-norm blocks); its
entity embeddings and entity-aware query projections (``w2e``/``e2w``/``e2e``) only act on entity
tokens, so they are reported as unused on load and not exported (a Transformers reload of a saved
preset initialises them afresh). Heads: the RoBERTa-shaped MLM head (untied decoder, bias saved as
``lm_head.decoder.bias``; the entity-prediction head is unused), BERT's pooler + classifier for
sequence classification, token classification and extractive QA. Entity inputs
(``entity_ids``, ...) and the entity tasks are not supported.
"""

import keras

from keras_models.models.encoder.backbone import dense_rules, norm_rules
from keras_models.models.encoder.tasks import define_tasks
from keras_models.models.registry import register_backbone
from keras_models.models.roberta import ROBERTA_KEYS, RobertaBackbone
from keras_models.presets.weight_map import Rule
from keras_models.tasks.text import MaskedLM

_ser = keras.saving.register_keras_serializable(package="keras_models")
ENTITY_INPUTS = ("entity_ids", "entity_attention_mask", "entity_token_type_ids", "entity_position_ids")


@_ser
@register_backbone("luke")
class LukeBackbone(RobertaBackbone):
    base_model_prefix = "luke"
    hf_architecture = "LukeModel"
    hf_model_type = "luke"
    # entity-side config, kept only to write config.json back
    hf_keys = {**ROBERTA_KEYS, "entity_vocab_size": ("entity_vocab_size", 500000),
               "entity_emb_size": ("entity_emb_size", 256),
               "use_entity_aware_attention": ("use_entity_aware_attention", True)}
    hf_extra = {"bos_token_id": 0, "eos_token_id": 2}
    hf_known_unused = ("*pooler.dense.*", "*entity_embeddings.*", "*.attention.self.w2e_query.*",
                       "*.attention.self.e2w_query.*", "*.attention.self.e2e_query.*")
    verified_backends = ("jax", "torch", "tensorflow")
    checkpoint_families = ("mLUKE",)

    def __init__(self, *args, entity_vocab_size=500000, entity_emb_size=256, use_entity_aware_attention=True,
                 **kwargs):
        self.entity_vocab_size, self.entity_emb_size = entity_vocab_size, entity_emb_size
        self.use_entity_aware_attention = use_entity_aware_attention
        super().__init__(*args, **kwargs)

    def call(self, inputs, training=False):
        if isinstance(inputs, dict) and any(k in inputs for k in ENTITY_INPUTS):
            raise ValueError("LUKE entity inputs (entity_ids, ...) are not supported: pass word inputs only")
        return super().call(inputs, training=training)

    def get_config(self):
        return {**super().get_config(), "entity_vocab_size": self.entity_vocab_size,
                "entity_emb_size": self.entity_emb_size, "use_entity_aware_attention": self.use_entity_aware_attention}


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


LUKE_HEADS = {
    "MaskedLM": dict(base=LukeMaskedLMBase),
    "TextClassifier": {},  # BERT's: pooler.dense (tanh) -> classifier
    "TokenClassifier": {},
    "QuestionAnswerer": {},
    "TextEmbedder": {},
}

__all__ = ["LukeBackbone"] + define_tasks(globals(), LukeBackbone, "Luke", LUKE_HEADS)

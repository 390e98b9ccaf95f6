"""BART-like task classes: Seq2SeqLM for every family; BART's sequence classification (on the
decoder state of the last eos token) and extractive QA heads."""

import keras
from keras import ops

from keras_models.errors import ConfigError
from keras_models.models.bart.backbone import BartBackbone
from keras_models.models.bart.families import FAMILIES
from keras_models.models.registry import register_task
from keras_models.presets.weight_map import Rule
from keras_models.tasks.seq2seq_lm import Seq2SeqLM
from keras_models.tasks.text import QuestionAnswerer, TextClassifier

_ser = keras.saving.register_keras_serializable(package="keras_models")
_PREFIXES = [f.architecture[: -len("Model")] for f in FAMILIES.values()]


class BartLikeSeq2SeqLM(Seq2SeqLM):
    """Seq2SeqLM of the BART-like backbones: a tied head (``tie_word_embeddings``) needs tied token
    tables; over separate ones (config.json's tie_word_embeddings false) Transformers has no tied
    head, and the checkpoint written back would tie the diverging tables on reload."""

    def __init__(self, *args, **kwargs):
        backbone = args[0] if args else kwargs.get("backbone")
        if kwargs.get("tie_word_embeddings", True) and getattr(backbone, "separate_token_embeddings", False):
            raise ConfigError("tie_word_embeddings=True: the backbone's token tables are separate "
                              "(separate_token_embeddings, config.json tie_word_embeddings false); "
                              "pass tie_word_embeddings=False (own lm_head)")
        super().__init__(*args, **kwargs)

    def head_rules(self):
        r = super().head_rules()
        if self.lm_head is not None and not getattr(self.backbone, "separate_token_embeddings", True):
            # an own head over one token table: config.json will say tie_word_embeddings false,
            # under which Transformers reads the encoder's and decoder's own tables: write the
            # table under those names too (loading reads them as the backbone's tied copies)
            table = self.backbone.token_embedding.embeddings
            r += [Rule(name, table, optional=True) for name in self.backbone.token_table_names[1:]]
        return r


@_ser
@register_task(BartBackbone, "Seq2SeqLM", tuple(f"{p}ForConditionalGeneration" for p in _PREFIXES) + ("MarianMTModel",))
class BartSeq2SeqLM(BartLikeSeq2SeqLM):
    pass


def _decoder_states(backbone, inputs, training):
    if not isinstance(inputs, dict):
        inputs = {"input_ids": inputs}
    return backbone(inputs, training=training)["last_hidden_state"]


@_ser
@register_task(BartBackbone, "TextClassifier", tuple(f"{p}ForSequenceClassification" for p in _PREFIXES))
class BartTextClassifier(TextClassifier):
    """Classifies the decoder state at each row's last ``eos_token_id`` (decoder inputs are the
    encoder inputs shifted right, as in Transformers)."""

    hf_inner = ("classification_head.dense", False)
    hf_out = "classification_head.out_proj"
    hf_head_patterns = ("classification_head.*",)
    input_dropout = True

    def pool(self, hidden, inputs):
        ids = inputs["input_ids"] if isinstance(inputs, dict) else inputs
        positions = ops.arange(ops.shape(ids)[1], dtype="int32")[None, :]
        is_eos = ops.equal(ids, self.backbone.eos_token_id)
        last = ops.max(ops.where(is_eos, positions, -1), axis=1)
        last = ops.maximum(last, 0)  # rows without eos: position 0 (Transformers raises instead)
        return ops.take_along_axis(hidden, last[:, None, None], axis=1)[:, 0]

    def call(self, inputs, training=False):
        h = _decoder_states(self.backbone, inputs, training)
        return self.head(self.pool(h, inputs), training=training)


@_ser
@register_task(BartBackbone, "QuestionAnswerer", tuple(f"{p}ForQuestionAnswering" for p in _PREFIXES))
class BartQuestionAnswerer(QuestionAnswerer):
    def call(self, inputs, training=False):
        logits = self.qa(_decoder_states(self.backbone, inputs, training))
        return {"start_logits": logits[..., 0], "end_logits": logits[..., 1]}

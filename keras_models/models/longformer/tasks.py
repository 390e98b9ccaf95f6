"""Longformer's tasks: RoBERTa's head names, and Transformers' default global tokens where the
input has no ``global_attention_mask``: the first token for TextClassifier
(LongformerForSequenceClassification), the question (the tokens before the first
``sep_token_id``) for QuestionAnswerer; MaskedLM and TokenClassifier have none."""

from keras import ops

from keras_models.models.encoder.tasks import RobertaShapedMaskedLM, RobertaShapedTextClassifier, family_task
from keras_models.models.longformer.backbone import LongformerBackbone
from keras_models.tasks.embedder import TextEmbedder
from keras_models.tasks.text import QuestionAnswerer, TokenClassifier


def _with_global(inputs, make):
    if not isinstance(inputs, dict):
        inputs = {"input_ids": inputs}
    if inputs.get("global_attention_mask") is not None:
        return inputs
    return dict(inputs, global_attention_mask=make(inputs["input_ids"]))


def first_token_global(ids):
    """1 on each row's first token."""
    first = ops.equal(ops.arange(ops.shape(ids)[1], dtype="int32"), 0)[None, :]
    return ops.cast(ops.logical_and(first, ops.ones_like(ids, dtype="bool")), "int32")


def question_global(ids, sep_token_id):
    """1 on the tokens before each row's first ``sep_token_id`` (none where a row has none)."""
    positions = ops.arange(ops.shape(ids)[1], dtype="int32")[None, :]
    is_sep = ops.equal(ids, sep_token_id)
    first = ops.min(ops.where(is_sep, positions, ops.shape(ids)[1]), axis=1)
    first = ops.where(ops.any(is_sep, axis=1), first, 0)
    return ops.cast(positions < first[:, None], "int32")


@family_task(LongformerBackbone, "MaskedLM", "LongformerForMaskedLM")
class LongformerMaskedLM(RobertaShapedMaskedLM):
    pass


@family_task(LongformerBackbone, "TextClassifier", "LongformerForSequenceClassification")
class LongformerTextClassifier(RobertaShapedTextClassifier):
    def call(self, inputs, training=False):
        return super().call(_with_global(inputs, first_token_global), training=training)


@family_task(LongformerBackbone, "TokenClassifier", "LongformerForTokenClassification")
class LongformerTokenClassifier(TokenClassifier):
    pass


@family_task(LongformerBackbone, "QuestionAnswerer", "LongformerForQuestionAnswering")
class LongformerQuestionAnswerer(QuestionAnswerer):
    def call(self, inputs, training=False):
        sep = self.backbone.spec.sep_token_id
        return super().call(_with_global(inputs, lambda ids: question_global(ids, sep)), training=training)


@family_task(LongformerBackbone, "TextEmbedder", "LongformerModel")
class LongformerTextEmbedder(TextEmbedder):
    pass


__all__ = ["LongformerMaskedLM", "LongformerTextClassifier", "LongformerTokenClassifier",
           "LongformerQuestionAnswerer", "LongformerTextEmbedder", "first_token_global", "question_global"]

"""CANINE's tasks: sequence classification on Transformers' ``pooler_output`` (the deep encoder's
first molecule through ``pooler.dense`` + tanh, then ``classifier``), token classification and
extractive QA on the final character states, and mean-pooled embeddings. Transformers has no
working masked-LM head for CANINE."""

from keras_models.models.canine.backbone import CanineBackbone
from keras_models.models.encoder.tasks import family_task
from keras_models.tasks.embedder import TextEmbedder
from keras_models.tasks.text import QuestionAnswerer, TextClassifier, TokenClassifier


@family_task(CanineBackbone, "TextClassifier", "CanineForSequenceClassification")
class CanineTextClassifier(TextClassifier):
    def call(self, inputs, training=False):
        if not isinstance(inputs, dict):
            inputs = {"input_ids": inputs}
        _, molecules = self.backbone.encode(inputs, training=training)
        return self.head(molecules[:, 0], training=training)


@family_task(CanineBackbone, "TokenClassifier", "CanineForTokenClassification")
class CanineTokenClassifier(TokenClassifier):
    pass


@family_task(CanineBackbone, "QuestionAnswerer", "CanineForQuestionAnswering")
class CanineQuestionAnswerer(QuestionAnswerer):
    pass


@family_task(CanineBackbone, "TextEmbedder", "CanineModel")
class CanineTextEmbedder(TextEmbedder):
    pass


__all__ = ["CanineTextClassifier", "CanineTokenClassifier", "CanineQuestionAnswerer", "CanineTextEmbedder"]

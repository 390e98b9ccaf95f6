"""Nyströmformer's tasks: BERT's MLM head (``cls.predictions``), a ``classifier.dense`` ->
``classifier.out_proj`` classifier with the model's activation, token classification and
extractive QA."""

from keras_models.models.encoder.tasks import ClassifierDenseOutProj, family_task
from keras_models.models.nystromformer.backbone import NystromformerBackbone
from keras_models.tasks.embedder import TextEmbedder
from keras_models.tasks.text import MaskedLM, QuestionAnswerer, TokenClassifier


@family_task(NystromformerBackbone, "MaskedLM", "NystromformerForMaskedLM")
class NystromformerMaskedLM(MaskedLM):
    pass


@family_task(NystromformerBackbone, "TextClassifier", "NystromformerForSequenceClassification")
class NystromformerTextClassifier(ClassifierDenseOutProj):
    inner_activation = None  # the backbone's hidden_act


@family_task(NystromformerBackbone, "TokenClassifier", "NystromformerForTokenClassification")
class NystromformerTokenClassifier(TokenClassifier):
    pass


@family_task(NystromformerBackbone, "QuestionAnswerer", "NystromformerForQuestionAnswering")
class NystromformerQuestionAnswerer(QuestionAnswerer):
    pass


@family_task(NystromformerBackbone, "TextEmbedder", "NystromformerModel")
class NystromformerTextEmbedder(TextEmbedder):
    pass


__all__ = ["NystromformerMaskedLM", "NystromformerTextClassifier", "NystromformerTokenClassifier",
           "NystromformerQuestionAnswerer", "NystromformerTextEmbedder"]

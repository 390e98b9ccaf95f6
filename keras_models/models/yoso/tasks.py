"""YOSO's tasks: BERT's MLM head (``cls.predictions``), a ``classifier.dense`` ->
``classifier.out_proj`` classifier with the model's activation, token classification and
extractive QA."""

from keras_models.models.encoder.tasks import ClassifierDenseOutProj, family_task
from keras_models.models.yoso.backbone import YosoBackbone
from keras_models.tasks.embedder import TextEmbedder
from keras_models.tasks.text import MaskedLM, QuestionAnswerer, TokenClassifier


@family_task(YosoBackbone, "MaskedLM", "YosoForMaskedLM")
class YosoMaskedLM(MaskedLM):
    pass


@family_task(YosoBackbone, "TextClassifier", "YosoForSequenceClassification")
class YosoTextClassifier(ClassifierDenseOutProj):
    inner_activation = None  # the backbone's hidden_act


@family_task(YosoBackbone, "TokenClassifier", "YosoForTokenClassification")
class YosoTokenClassifier(TokenClassifier):
    pass


@family_task(YosoBackbone, "QuestionAnswerer", "YosoForQuestionAnswering")
class YosoQuestionAnswerer(QuestionAnswerer):
    pass


@family_task(YosoBackbone, "TextEmbedder", "YosoModel")
class YosoTextEmbedder(TextEmbedder):
    pass


__all__ = ["YosoMaskedLM", "YosoTextClassifier", "YosoTokenClassifier",
           "YosoQuestionAnswerer", "YosoTextEmbedder"]

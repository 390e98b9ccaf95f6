"""QDQBert's tasks: BERT's (unquantised) heads and head names (``cls.predictions``, pooler +
``classifier``, ``qa_outputs``)."""

from keras_models.models.encoder.tasks import family_task
from keras_models.models.qdqbert.backbone import QDQBertBackbone
from keras_models.tasks.embedder import TextEmbedder
from keras_models.tasks.text import MaskedLM, QuestionAnswerer, TextClassifier, TokenClassifier


@family_task(QDQBertBackbone, "MaskedLM", "QDQBertForMaskedLM")
class QDQBertMaskedLM(MaskedLM):
    pass


@family_task(QDQBertBackbone, "TextClassifier", "QDQBertForSequenceClassification")
class QDQBertTextClassifier(TextClassifier):
    pass


@family_task(QDQBertBackbone, "TokenClassifier", "QDQBertForTokenClassification")
class QDQBertTokenClassifier(TokenClassifier):
    pass


@family_task(QDQBertBackbone, "QuestionAnswerer", "QDQBertForQuestionAnswering")
class QDQBertQuestionAnswerer(QuestionAnswerer):
    pass


@family_task(QDQBertBackbone, "TextEmbedder", "QDQBertModel")
class QDQBertTextEmbedder(TextEmbedder):
    pass

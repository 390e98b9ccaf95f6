"""BERT task classes: the generic tasks with BERT's HF head names (their defaults)."""

from keras_models.models.bert.backbone import BertBackbone
from keras_models.models.encoder.tasks import family_task
from keras_models.tasks.embedder import TextEmbedder
from keras_models.tasks.multiple_choice import MultipleChoice
from keras_models.tasks.text import MaskedLM, QuestionAnswerer, TextClassifier, TokenClassifier


@family_task(BertBackbone, "MaskedLM", "BertForMaskedLM", "BertForPreTraining")
class BertMaskedLM(MaskedLM):
    pass


@family_task(BertBackbone, "TextClassifier", "BertForSequenceClassification")
class BertTextClassifier(TextClassifier):
    pass


@family_task(BertBackbone, "TokenClassifier", "BertForTokenClassification")
class BertTokenClassifier(TokenClassifier):
    pass


@family_task(BertBackbone, "QuestionAnswerer", "BertForQuestionAnswering")
class BertQuestionAnswerer(QuestionAnswerer):
    pass


@family_task(BertBackbone, "MultipleChoice", "BertForMultipleChoice")
class BertMultipleChoice(MultipleChoice):
    pass


@family_task(BertBackbone, "TextEmbedder", "BertModel")
class BertTextEmbedder(TextEmbedder):
    pass


__all__ = ["BertMaskedLM", "BertTextClassifier", "BertTokenClassifier", "BertQuestionAnswerer", "BertTextEmbedder",
           "BertMultipleChoice"]

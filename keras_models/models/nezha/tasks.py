"""NEZHA's tasks: BERT's heads and head names (``cls.predictions``, pooler + ``classifier``)."""

from keras_models.models.encoder.tasks import family_task
from keras_models.models.nezha.backbone import NezhaBackbone
from keras_models.tasks.embedder import TextEmbedder
from keras_models.tasks.text import MaskedLM, QuestionAnswerer, TextClassifier, TokenClassifier


@family_task(NezhaBackbone, "MaskedLM", "NezhaForMaskedLM", "NezhaForPreTraining")
class NezhaMaskedLM(MaskedLM):
    pass


@family_task(NezhaBackbone, "TextClassifier", "NezhaForSequenceClassification")
class NezhaTextClassifier(TextClassifier):
    pass


@family_task(NezhaBackbone, "TokenClassifier", "NezhaForTokenClassification")
class NezhaTokenClassifier(TokenClassifier):
    pass


@family_task(NezhaBackbone, "QuestionAnswerer", "NezhaForQuestionAnswering")
class NezhaQuestionAnswerer(QuestionAnswerer):
    pass


@family_task(NezhaBackbone, "TextEmbedder", "NezhaModel")
class NezhaTextEmbedder(TextEmbedder):
    pass

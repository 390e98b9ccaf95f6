from keras_models.models.tapas.backbone import TapasBackbone
from keras_models.models.tapas.tokenizer import TapasTokenizer
from keras_models.models.tapas.tasks import TapasMaskedLM, TapasTableQuestionAnswerer, TapasTextClassifier

__all__ = ["TapasBackbone", "TapasMaskedLM", "TapasTableQuestionAnswerer", "TapasTextClassifier", "TapasTokenizer"]

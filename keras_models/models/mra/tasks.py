"""MRA's tasks: BERT's MLM head (``cls.predictions``), a ``classifier.dense`` ->
``classifier.out_proj`` classifier with the model's activation, token classification and
extractive QA, and multiple choice (``pre_classifier`` -> relu -> ``classifier``, no dropout)."""

from keras_models.models.encoder.tasks import ClassifierDenseOutProj, family_task
from keras_models.models.mra.backbone import MraBackbone
from keras_models.tasks.embedder import TextEmbedder
from keras_models.tasks.multiple_choice import MultipleChoice
from keras_models.tasks.text import MaskedLM, QuestionAnswerer, TokenClassifier


@family_task(MraBackbone, "MaskedLM", "MraForMaskedLM")
class MraMaskedLM(MaskedLM):
    pass


@family_task(MraBackbone, "TextClassifier", "MraForSequenceClassification")
class MraTextClassifier(ClassifierDenseOutProj):
    inner_activation = None  # the backbone's hidden_act


@family_task(MraBackbone, "TokenClassifier", "MraForTokenClassification")
class MraTokenClassifier(TokenClassifier):
    pass


@family_task(MraBackbone, "QuestionAnswerer", "MraForQuestionAnswering")
class MraQuestionAnswerer(QuestionAnswerer):
    pass


@family_task(MraBackbone, "MultipleChoice", "MraForMultipleChoice")
class MraMultipleChoice(MultipleChoice):
    """MraForMultipleChoice: [CLS] -> ``pre_classifier`` -> relu -> ``classifier`` (no dropout)."""

    hf_inner = ("pre_classifier", False)
    inner_activation = "relu"
    hf_head_patterns = ("pre_classifier.*", "classifier.*")

    @classmethod
    def task_config_from_hf(cls, hf, head_from_checkpoint, **kwargs):
        kwargs = super().task_config_from_hf(hf, head_from_checkpoint, **kwargs)
        kwargs.setdefault("dropout", 0.0)
        return kwargs


@family_task(MraBackbone, "TextEmbedder", "MraModel")
class MraTextEmbedder(TextEmbedder):
    pass


__all__ = ["MraMaskedLM", "MraTextClassifier", "MraTokenClassifier", "MraQuestionAnswerer", "MraTextEmbedder",
           "MraMultipleChoice"]

"""Funnel Transformer's tasks.

MaskedLM (``lm_head``: the vocabulary projection, tied to the word embeddings, plus a bias; no
transform), Discriminator (FunnelForPreTraining: replaced-token logits), TokenClassifier and
QuestionAnswerer run on the decoder's full-length output; TextClassifier
(FunnelForSequenceClassification) runs on the [CLS] state of the pooled encoder output
(``classifier.linear_hidden`` -> tanh -> ``classifier.linear_out``), as Transformers builds it on
FunnelBaseModel. TextEmbedder mean-pools the decoder's output (FunnelModel checkpoints only).
"""

import keras

from keras_models.errors import ConfigError
from keras_models.models.encoder.tasks import family_task
from keras_models.models.encoder.xlm import TiedOutputBias
from keras_models.models.encoder.electra import ElectraDiscriminator
from keras_models.models.funnel.backbone import FunnelBackbone
from keras_models.models.registry import register_task
from keras_models.presets.weight_map import Rule
from keras_models.tasks.embedder import TextEmbedder
from keras_models.tasks.multiple_choice import MultipleChoice
from keras_models.tasks.task import Task
from keras_models.tasks.text import MaskedLM, QuestionAnswerer, TextClassifier, TokenClassifier


@family_task(FunnelBackbone, "MaskedLM", "FunnelForMaskedLM")
class FunnelMaskedLM(MaskedLM):
    hf_head_patterns = ("lm_head.*",)

    def __init__(self, backbone, preprocessor=None, tie_word_embeddings=True, **kwargs):
        Task.__init__(self, backbone, preprocessor=preprocessor, **kwargs)  # no transform layer
        self.tie_word_embeddings = tie_word_embeddings
        self.head = TiedOutputBias(backbone.vocab_size, backbone.hidden_size, tied=tie_word_embeddings,
                                   name="lm_head", dtype=backbone.dtype_policy)

    def head_rules(self):
        r = [Rule("lm_head.bias", self.head.bias, base=False)]
        if self.tie_word_embeddings:
            r.append(Rule("lm_head.weight", self.backbone.token_embedding.embeddings, base=False, optional=True,
                          export=False))
        else:
            r.append(Rule("lm_head.weight", self.head.decoder, base=False))
        return r


@keras.saving.register_keras_serializable(package="keras_models")
@register_task(FunnelBackbone, "Discriminator", ("FunnelForPreTraining",))
class FunnelDiscriminator(ElectraDiscriminator):
    """Replaced-token detection as ELECTRA's (the same head and weight names), over the Funnel
    backbone's upsampled token states."""


@family_task(FunnelBackbone, "TextClassifier", "FunnelForSequenceClassification")
class FunnelTextClassifier(TextClassifier):
    hf_inner = ("classifier.linear_hidden", False)
    hf_out = "classifier.linear_out"
    inner_activation = "tanh"

    def call(self, inputs, training=False):
        if not isinstance(inputs, dict):
            inputs = {"input_ids": inputs}
        pooled, _ = self.backbone.encode(inputs, training=training)
        return self.head(pooled[:, 0], training=training)


@family_task(FunnelBackbone, "MultipleChoice", "FunnelForMultipleChoice")
class FunnelMultipleChoice(MultipleChoice, FunnelTextClassifier):
    """FunnelForMultipleChoice: the sequence classifier's head with one unit."""


@family_task(FunnelBackbone, "TokenClassifier", "FunnelForTokenClassification")
class FunnelTokenClassifier(TokenClassifier):
    pass


@family_task(FunnelBackbone, "QuestionAnswerer", "FunnelForQuestionAnswering")
class FunnelQuestionAnswerer(QuestionAnswerer):
    pass


@family_task(FunnelBackbone, "TextEmbedder", "FunnelModel")
class FunnelTextEmbedder(TextEmbedder):
    def __init__(self, backbone, **kwargs):
        if not backbone.decoder:
            raise ConfigError("FunnelTextEmbedder: the backbone has no decoder (a FunnelBaseModel checkpoint): "
                              "its output is shorter than the input, so there is no per-token state to pool")
        super().__init__(backbone, **kwargs)


__all__ = ["FunnelMaskedLM", "FunnelDiscriminator", "FunnelTextClassifier", "FunnelTokenClassifier",
           "FunnelQuestionAnswerer", "FunnelTextEmbedder", "FunnelMultipleChoice"]

"""ELECTRA: factorised embeddings (``embedding_size``, projected by ``embeddings_project`` when it
differs from ``hidden_size``), a generator head (MaskedLM) and a discriminator head."""

from dataclasses import dataclass

import keras
from keras import ops

from keras_models.errors import ConfigError
from keras_models.layers.activations import get_activation
from keras_models.models.encoder.backbone import EncoderBackbone, EncoderSpec, dense_rules
from keras_models.models.encoder.tasks import ClassifierDenseOutProj, family_task
from keras_models.models.registry import register_backbone, register_task
from keras_models.spec import dim
from keras_models.tasks.embedder import TextEmbedder
from keras_models.tasks.multiple_choice import MultipleChoice
from keras_models.tasks.task import Task
from keras_models.tasks.text import MaskedLM, QuestionAnswerer, TokenClassifier

_ser = keras.saving.register_keras_serializable(package="keras_models")


@dataclass(frozen=True, kw_only=True)
class ElectraSpec(EncoderSpec):
    hidden_size: int = dim("hidden_size", 256)
    num_heads: int = dim("num_attention_heads", 4)
    intermediate_size: int = dim("intermediate_size", 1024)
    embedding_size: int | None = dim("embedding_size", 128)


@_ser
@register_backbone("electra")
class ElectraBackbone(EncoderBackbone):
    spec_cls = ElectraSpec
    base_model_prefix = "electra"
    hf_architecture = "ElectraModel"
    hf_model_type = "electra"
    verified_backends = ("jax", "torch", "tensorflow")


@_ser
@register_task(ElectraBackbone, "Discriminator", ("ElectraForPreTraining",))
class ElectraDiscriminator(Task):
    """Replaced-token detection: one logit per token, (batch, seq)."""

    hf_head_patterns = ("discriminator_predictions.*",)

    def __init__(self, backbone, preprocessor=None, **kwargs):
        super().__init__(backbone, preprocessor=preprocessor, **kwargs)
        init = keras.initializers.TruncatedNormal(stddev=backbone.initializer_range)
        common = dict(kernel_initializer=init, dtype=backbone.dtype_policy)
        self.dense = keras.layers.Dense(backbone.hidden_size, name="discriminator_dense", **common)
        self.prediction = keras.layers.Dense(1, name="discriminator_prediction", **common)
        self.act = get_activation(backbone.hidden_act)

    def default_loss(self):  # labels: 1 where the token was replaced
        return keras.losses.BinaryCrossentropy(from_logits=True)

    def call(self, inputs, training=False):
        if not isinstance(inputs, dict):
            inputs = {"input_ids": inputs}
        h = self.backbone(inputs, training=training)
        return ops.squeeze(self.prediction(self.act(self.dense(h))), -1)

    def head_rules(self):
        return (dense_rules("discriminator_predictions.dense", self.dense, base=False)
                + dense_rules("discriminator_predictions.dense_prediction", self.prediction, base=False))


@family_task(ElectraBackbone, "MaskedLM", "ElectraForMaskedLM")
class ElectraMaskedLM(MaskedLM):
    hf_dense = "generator_predictions.dense"
    hf_norm = "generator_predictions.LayerNorm"
    hf_bias = "generator_lm_head.bias"
    hf_decoder = "generator_lm_head"
    head_activation = "gelu"
    head_width_attr = "embedding_dim"
    hf_head_patterns = ("generator_predictions.*", "generator_lm_head.*")


@family_task(ElectraBackbone, "TextClassifier", "ElectraForSequenceClassification")
class ElectraTextClassifier(ClassifierDenseOutProj):
    inner_activation = "gelu"


@family_task(ElectraBackbone, "MultipleChoice", "ElectraForMultipleChoice")
class ElectraMultipleChoice(MultipleChoice):
    """ElectraForMultipleChoice: the sequence summary (the first token ->
    ``sequence_summary.summary`` -> ``summary_activation`` -> dropout ``summary_last_dropout``)
    and ``classifier``; summary_type "first" / "last" / "mean" (Transformers' unmasked mean)."""

    hf_inner = ("sequence_summary.summary", False)
    inner_activation = "gelu"  # ElectraConfig's summary_activation default
    hf_head_patterns = ("sequence_summary.*", "classifier.*")

    def __init__(self, backbone, summary_type="first", **kwargs):
        if summary_type not in ("first", "last", "mean"):
            raise ConfigError(f"ElectraMultipleChoice: summary_type={summary_type!r} is not supported "
                              "(first, last, mean)")
        self.summary_type = summary_type
        super().__init__(backbone, **kwargs)

    @classmethod
    def task_config_from_hf(cls, hf, head_from_checkpoint, **kwargs):
        kwargs = super().task_config_from_hf(hf, head_from_checkpoint, **kwargs)
        if not hf.get("summary_use_proj", True) or hf.get("summary_proj_to_labels"):
            raise ConfigError("config.json: ElectraForMultipleChoice with summary_use_proj=false or "
                              "summary_proj_to_labels=true is not supported (its classifier then mis-fits)")
        if hf.get("summary_first_dropout"):
            raise ConfigError("config.json: summary_first_dropout is not supported by ElectraMultipleChoice")
        kwargs.setdefault("summary_type", hf.get("summary_type", "first"))
        kwargs.setdefault("activation", hf.get("summary_activation", "gelu") or "linear")
        kwargs.setdefault("dropout", hf.get("summary_last_dropout", 0.1))
        return kwargs

    def task_config_to_hf(self):
        act = self.activation or "gelu"
        return {"summary_type": self.summary_type, "summary_use_proj": True,
                "summary_activation": None if act == "linear" else act,
                "summary_last_dropout": self.dropout}

    def pool(self, hidden, inputs):
        if self.summary_type == "last":
            return hidden[:, -1]
        if self.summary_type == "mean":
            return ops.mean(hidden, axis=1)
        return hidden[:, 0]

    def get_config(self):
        c = super().get_config()
        c["summary_type"] = self.summary_type
        return c


@family_task(ElectraBackbone, "TokenClassifier", "ElectraForTokenClassification")
class ElectraTokenClassifier(TokenClassifier):
    pass


@family_task(ElectraBackbone, "QuestionAnswerer", "ElectraForQuestionAnswering")
class ElectraQuestionAnswerer(QuestionAnswerer):
    pass


@family_task(ElectraBackbone, "TextEmbedder", "ElectraModel")
class ElectraTextEmbedder(TextEmbedder):
    pass


__all__ = [
    "ElectraBackbone", "ElectraDiscriminator", "ElectraMaskedLM", "ElectraTextClassifier", "ElectraTokenClassifier",
    "ElectraQuestionAnswerer", "ElectraTextEmbedder", "ElectraMultipleChoice",
]

"""I-BERT (model_type ``ibert``) in floating point: RoBERTa's architecture and head names.

With ``quant_mode`` false (the checkpoints' default) Transformers' I-BERT computes plain float
RoBERTa: exact GELU, softmax and LayerNorm; its quantisation buffers (``weight_integer``,
``*_scaling_factor``, ``x_min`` / ``x_max``, ``shift``...) are stored in the checkpoint and unused,
so they are skipped on load and not written back. ``quant_mode: true`` (integer-only inference) is
refused with a ConfigError naming the key; I-BERT requires ``hidden_act`` "gelu", as Transformers does.
"""

from dataclasses import dataclass

import keras

from keras_models.errors import ConfigError
from keras_models.models.encoder.tasks import RobertaShapedMaskedLM, RobertaShapedTextClassifier, family_task
from keras_models.models.registry import register_backbone
from keras_models.models.roberta import RobertaBackbone, RobertaSpec
from keras_models.spec import dim
from keras_models.tasks.embedder import TextEmbedder
from keras_models.tasks.text import QuestionAnswerer, TokenClassifier

QUANT_BUFFERS = ("*weight_integer", "*bias_integer", "*weight_scaling_factor", "*fc_scaling_factor",
                 "*act_scaling_factor", "*.x_min", "*.x_max", "*.shift")


@dataclass(frozen=True, kw_only=True)
class IBertSpec(RobertaSpec):
    """IBertConfig; ``quant_mode`` must be false (the float model)."""

    vocab_size: int = dim("vocab_size", 30522)

    unsupported = {"position_embedding_type": ("absolute", None), "quant_mode": (False, None)}
    ignored = ("force_dequant",)
    hf_constants = {**RobertaSpec.hf_constants, "quant_mode": False, "force_dequant": "none"}

    def validate(self, source="config.json"):
        super().validate(source)
        if self.hidden_act != "gelu":
            raise ConfigError(f"{source}: hidden_act={self.hidden_act!r}: I-BERT supports only 'gelu'")


@keras.saving.register_keras_serializable(package="keras_models")
@register_backbone("ibert")
class IBertBackbone(RobertaBackbone):
    spec_cls = IBertSpec
    base_model_prefix = "ibert"
    hf_architecture = "IBertModel"
    hf_model_type = "ibert"
    hf_ignore = RobertaBackbone.hf_ignore + QUANT_BUFFERS
    verified_backends = ("jax", "torch", "tensorflow")
    checkpoint_families = ()


@family_task(IBertBackbone, "MaskedLM", "IBertForMaskedLM")
class IBertMaskedLM(RobertaShapedMaskedLM):
    pass


@family_task(IBertBackbone, "TextClassifier", "IBertForSequenceClassification")
class IBertTextClassifier(RobertaShapedTextClassifier):
    pass


@family_task(IBertBackbone, "TokenClassifier", "IBertForTokenClassification")
class IBertTokenClassifier(TokenClassifier):
    pass


@family_task(IBertBackbone, "QuestionAnswerer", "IBertForQuestionAnswering")
class IBertQuestionAnswerer(QuestionAnswerer):
    pass


@family_task(IBertBackbone, "TextEmbedder", "IBertModel")
class IBertTextEmbedder(TextEmbedder):
    pass


__all__ = ["IBertBackbone", "IBertMaskedLM", "IBertTextClassifier", "IBertTokenClassifier", "IBertQuestionAnswerer",
           "IBertTextEmbedder"]

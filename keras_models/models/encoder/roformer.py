"""RoFormer: ELECTRA-style factorised embeddings, no position embeddings, rotary positions from a
sinusoidal table stored in the checkpoint (interleaved pairs; ``rotary_value`` rotates values too)."""

from dataclasses import dataclass

import keras

from keras_models.errors import ConfigError
from keras_models.models.encoder.backbone import EncoderBackbone, EncoderSpec, explicit_embedding_size
from keras_models.models.encoder.tasks import ClassifierDenseOutProj, family_task
from keras_models.models.registry import register_backbone
from keras_models.spec import const, dim, hf
from keras_models.tasks.embedder import TextEmbedder
from keras_models.tasks.text import MaskedLM, QuestionAnswerer, TokenClassifier


@dataclass(frozen=True, kw_only=True)
class RoFormerSpec(EncoderSpec):
    vocab_size: int = dim("vocab_size", 50000)
    # RoFormerConfig: an absent (null) embedding_size is the hidden size
    embedding_size: int | None = hf("embedding_size", None)
    max_position_embeddings: int = dim("max_position_embeddings", 1536)
    rotary_value: bool = hf("rotary_value", False)
    position_mode: str = const("none")
    rotary: str | None = const("table")

    def validate(self, source="config.json"):
        super().validate(source)
        if self.hidden_size // self.num_heads % 2:
            raise ConfigError(f"{source}: RoFormer needs an even head size (hidden_size / num_attention_heads)")

    def adjust_to_hf(self, out):
        return explicit_embedding_size(self, super().adjust_to_hf(out))


@keras.saving.register_keras_serializable(package="keras_models")
@register_backbone("roformer")
class RoFormerBackbone(EncoderBackbone):
    spec_cls = RoFormerSpec
    base_model_prefix = "roformer"
    hf_architecture = "RoFormerModel"
    hf_model_type = "roformer"
    verified_backends = ("jax", "torch", "tensorflow")


@family_task(RoFormerBackbone, "MaskedLM", "RoFormerForMaskedLM")
class RoFormerMaskedLM(MaskedLM):
    head_width_attr = "embedding_dim"


@family_task(RoFormerBackbone, "TextClassifier", "RoFormerForSequenceClassification")
class RoFormerTextClassifier(ClassifierDenseOutProj):
    inner_activation = None


@family_task(RoFormerBackbone, "TokenClassifier", "RoFormerForTokenClassification")
class RoFormerTokenClassifier(TokenClassifier):
    pass


@family_task(RoFormerBackbone, "QuestionAnswerer", "RoFormerForQuestionAnswering")
class RoFormerQuestionAnswerer(QuestionAnswerer):
    pass


@family_task(RoFormerBackbone, "TextEmbedder", "RoFormerModel")
class RoFormerTextEmbedder(TextEmbedder):
    pass


__all__ = [
    "RoFormerBackbone", "RoFormerMaskedLM", "RoFormerTextClassifier", "RoFormerTokenClassifier",
    "RoFormerQuestionAnswerer", "RoFormerTextEmbedder",
]

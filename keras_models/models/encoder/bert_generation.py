"""Bert Generation (model_type ``bert-generation``): BERT's encoder without token types or pooler
(``BertGenerationEncoder``, the encoder half of its encoder-decoder checkpoints)."""

from dataclasses import dataclass

import keras

from keras_models.models.encoder.backbone import EncoderBackbone, EncoderSpec
from keras_models.models.encoder.tasks import family_task
from keras_models.models.registry import register_backbone
from keras_models.spec import const, dim, hf
from keras_models.tasks.embedder import TextEmbedder


@dataclass(frozen=True, kw_only=True)
class BertGenerationSpec(EncoderSpec):
    """BertGenerationConfig: BERT's keys without ``type_vocab_size`` (no token types)."""

    vocab_size: int = dim("vocab_size", 50358)
    hidden_size: int = dim("hidden_size", 1024)
    num_layers: int = dim("num_hidden_layers", 24)
    num_heads: int = dim("num_attention_heads", 16)
    intermediate_size: int = dim("intermediate_size", 4096)
    type_vocab_size: int = const(0)

    unsupported = {"position_embedding_type": ("absolute", None), "is_decoder": (False, None),
                   "add_cross_attention": (False, None)}
    hf_constants = {"bos_token_id": 2, "eos_token_id": 1}


@keras.saving.register_keras_serializable(package="keras_models")
@register_backbone("bert-generation")
class BertGenerationBackbone(EncoderBackbone):
    spec_cls = BertGenerationSpec
    base_model_prefix = "bert"
    hf_architecture = "BertGenerationEncoder"
    hf_model_type = "bert-generation"
    hf_ignore = ("*embeddings.position_ids",)
    verified_backends = ("jax", "torch", "tensorflow")


@family_task(BertGenerationBackbone, "TextEmbedder", "BertGenerationEncoder")
class BertGenerationTextEmbedder(TextEmbedder):
    pass


__all__ = ["BertGenerationBackbone", "BertGenerationTextEmbedder"]

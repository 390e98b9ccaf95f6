"""ESM (protein language model): pre-norm encoder with a final ``emb_layer_norm_after``, rotary
(``position_embedding_type="rotary"``, half-split) or RoBERTa-style absolute positions, optional
embedding LayerNorm (``emb_layer_norm_before``), ESM-2's token dropout and zeroed padding."""

from dataclasses import dataclass

import keras

from keras_models.errors import ConfigError
from keras_models.models.encoder.backbone import BERT_NAMES, EncoderBackbone, EncoderSpec
from keras_models.models.encoder.tasks import RobertaShapedMaskedLM, RobertaShapedTextClassifier, family_task
from keras_models.models.registry import register_backbone
from keras_models.spec import const, dim, hf
from keras_models.tasks.embedder import TextEmbedder
from keras_models.tasks.text import TokenClassifier


@dataclass(frozen=True, kw_only=True)
class EsmSpec(EncoderSpec):
    """EsmConfig. ``position_embedding_type`` "rotary" sets ``position_mode="none"`` and
    ``rotary="computed"``; the feed-forward always uses exact gelu, whatever ``hidden_act`` says."""

    vocab_size: int = dim("vocab_size")  # EsmConfig has no default vocabulary
    max_position_embeddings: int = dim("max_position_embeddings", 1026)
    pad_token_id: int = hf("pad_token_id", 1)
    mask_token_id: int | None = hf("mask_token_id", None)
    token_dropout: bool = hf("token_dropout", False)
    embeddings_norm: bool = hf("emb_layer_norm_before", False, read=bool)
    hidden_act: str = const("gelu")
    type_vocab_size: int = const(0)
    position_mode: str = const("padding_offset")
    norm_first: bool = const(True)
    final_norm: bool = const(True)
    mask_padded_embeddings: bool = const(True)

    unsupported = {"position_embedding_type": ("absolute", "rotary", None)}

    @classmethod
    def adjust_from_hf(cls, config, values, source):
        if config.get("position_embedding_type") == "rotary":
            values.update(position_mode="none", rotary="computed")
        return values

    def validate(self, source="config.json"):
        super().validate(source)
        if self.token_dropout and self.mask_token_id is None:
            raise ConfigError(f"{source}: token_dropout=true needs mask_token_id")

    def adjust_to_hf(self, out):
        out.update(position_embedding_type="rotary" if self.rotary else "absolute", hidden_act="gelu")
        return super().adjust_to_hf(out)


@keras.saving.register_keras_serializable(package="keras_models")
@register_backbone("esm")
class EsmBackbone(EncoderBackbone):
    spec_cls = EsmSpec
    base_model_prefix = "esm"
    hf_architecture = "EsmModel"
    hf_model_type = "esm"
    hf_ignore = ("*embeddings.position_ids", "*rotary_embeddings.inv_freq", "*contact_head.regression.*")
    hf_names = {**BERT_NAMES, "emb_norm": "embeddings.layer_norm", "attn_norm": "attention.LayerNorm",
                "ffn_norm": "LayerNorm", "final_norm": "encoder.emb_layer_norm_after"}
    verified_backends = ("jax", "torch", "tensorflow")

    # Transformers 5 writes ESM's block LayerNorms under the legacy names LayerNorm.gamma/.beta;
    # hub checkpoints use .weight/.bias. Rule.names() accepts both (exactly one is required).


@family_task(EsmBackbone, "MaskedLM", "EsmForMaskedLM")
class EsmMaskedLM(RobertaShapedMaskedLM):
    pass


@family_task(EsmBackbone, "TextClassifier", "EsmForSequenceClassification")
class EsmTextClassifier(RobertaShapedTextClassifier):
    pass


@family_task(EsmBackbone, "TokenClassifier", "EsmForTokenClassification")
class EsmTokenClassifier(TokenClassifier):
    pass


@family_task(EsmBackbone, "TextEmbedder", "EsmModel")
class EsmTextEmbedder(TextEmbedder):
    pass


__all__ = ["EsmBackbone", "EsmMaskedLM", "EsmTextClassifier", "EsmTokenClassifier", "EsmTextEmbedder"]

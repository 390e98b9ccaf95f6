"""ESM (protein language model): pre-norm encoder with a final ``emb_layer_norm_after``, rotary
(``position_embedding_type="rotary"``, half-split) or RoBERTa-style absolute positions, optional
embedding LayerNorm (``emb_layer_norm_before``), ESM-2's token dropout and zeroed padding."""

import keras

from keras_models.errors import ConfigError
from keras_models.models.encoder.backbone import BERT_KEYS, BERT_NAMES, EncoderBackbone
from keras_models.models.encoder.tasks import ROBERTA_HEADS, define_tasks
from keras_models.models.registry import register_backbone


@keras.saving.register_keras_serializable(package="keras_models")
@register_backbone("esm")
class EsmBackbone(EncoderBackbone):
    base_model_prefix = "esm"
    hf_architecture = "EsmModel"
    hf_model_type = "esm"
    hf_ignore = ("*embeddings.position_ids", "*rotary_embeddings.inv_freq", "*contact_head.regression.*")
    hf_keys = {
        **{k: v for k, v in BERT_KEYS.items() if k not in ("hidden_act", "type_vocab_size")},
        "max_position_embeddings": ("max_position_embeddings", 1026),
        "pad_token_id": ("pad_token_id", 1),
        "mask_token_id": ("mask_token_id", None),
        "token_dropout": ("token_dropout", False),
        "embeddings_norm": ("emb_layer_norm_before", False),
    }
    family_defaults = {"norm_first": True, "final_norm": True, "mask_padded_embeddings": True,
                       "position_mode": "padding_offset"}
    hf_names = {**BERT_NAMES, "emb_norm": "embeddings.layer_norm", "attn_norm": "attention.LayerNorm",
                "ffn_norm": "LayerNorm", "final_norm": "encoder.emb_layer_norm_after"}
    verified_backends = ("jax", "torch", "tensorflow")

    def __init__(self, *args, hidden_act="gelu", type_vocab_size=0, pad_token_id=1, **kwargs):
        # ESM's feed-forward always uses exact gelu, whatever config.json's hidden_act says.
        super().__init__(*args, hidden_act=hidden_act, type_vocab_size=type_vocab_size,
                         pad_token_id=pad_token_id, **kwargs)

    @classmethod
    def config_from_hf(cls, hf):
        kind = hf.get("position_embedding_type") or "absolute"
        if kind not in ("absolute", "rotary"):
            raise ConfigError(f"config.json: ESM position_embedding_type={kind!r} is not supported")
        kwargs = super().config_from_hf({**hf, "position_embedding_type": "absolute"})
        kwargs["embeddings_norm"] = bool(kwargs["embeddings_norm"])
        if kwargs["token_dropout"] and kwargs["mask_token_id"] is None:
            raise ConfigError("config.json: token_dropout=true needs mask_token_id")
        if kind == "rotary":
            kwargs.update(position_mode="none", rotary="computed")
        return kwargs

    # Transformers 5 writes ESM's block LayerNorms under the legacy names LayerNorm.gamma/.beta;
    # hub checkpoints use .weight/.bias. Rule.names() accepts both (exactly one is required).

    def config_to_hf(self):
        config = super().config_to_hf()
        config.update(position_embedding_type="rotary" if self.rotary else "absolute", hidden_act="gelu",
                      emb_layer_norm_before=bool(self.embeddings_norm))
        return config


ESM_HEADS = {k: v for k, v in ROBERTA_HEADS.items() if k != "QuestionAnswerer"}

__all__ = ["EsmBackbone"] + define_tasks(globals(), EsmBackbone, "Esm", ESM_HEADS)

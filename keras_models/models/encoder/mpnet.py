"""MPNet: RoBERTa-style embeddings (no token types) and a bucketed relative-position attention
bias shared by all layers (``encoder.relative_attention_bias``)."""

import keras

from keras_models.models.encoder.backbone import BERT_KEYS, BERT_NAMES, EncoderBackbone
from keras_models.models.encoder.tasks import ROBERTA_HEADS, define_tasks
from keras_models.models.registry import register_backbone


@keras.saving.register_keras_serializable(package="keras_models")
@register_backbone("mpnet")
class MPNetBackbone(EncoderBackbone):
    base_model_prefix = "mpnet"
    hf_architecture = "MPNetModel"
    hf_model_type = "mpnet"
    hf_keys = {
        **{k: v for k, v in BERT_KEYS.items() if k not in ("type_vocab_size", "pad_token_id")},
        "relative_attention_buckets": ("relative_attention_num_buckets", 32),
    }
    family_defaults = {"position_mode": "padding_offset"}
    hf_names = {**BERT_NAMES, "query": "attention.attn.q", "key": "attention.attn.k", "value": "attention.attn.v",
                "attn_out": "attention.attn.o", "attn_norm": "attention.LayerNorm"}
    hf_extra = {"pad_token_id": 1, "bos_token_id": 0, "eos_token_id": 2}
    verified_backends = ("jax", "torch", "tensorflow")

    def __init__(self, *args, type_vocab_size=0, pad_token_id=1, **kwargs):
        # MPNet's embeddings hard-code padding index 1, whatever config.json says.
        super().__init__(*args, type_vocab_size=type_vocab_size, pad_token_id=pad_token_id, **kwargs)


__all__ = ["MPNetBackbone"] + define_tasks(globals(), MPNetBackbone, "MPNet", ROBERTA_HEADS)

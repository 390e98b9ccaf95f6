"""RoFormer: ELECTRA-style factorised embeddings, no position embeddings, rotary positions from a
sinusoidal table stored in the checkpoint (interleaved pairs; ``rotary_value`` rotates values too)."""

import keras

from keras_models.errors import ConfigError
from keras_models.models.encoder.backbone import BERT_KEYS, EncoderBackbone
from keras_models.models.encoder.tasks import BERT_HEADS, define_tasks
from keras_models.models.registry import register_backbone


@keras.saving.register_keras_serializable(package="keras_models")
@register_backbone("roformer")
class RoFormerBackbone(EncoderBackbone):
    base_model_prefix = "roformer"
    hf_architecture = "RoFormerModel"
    hf_model_type = "roformer"
    hf_keys = {**BERT_KEYS, "embedding_size": ("embedding_size", None), "max_position_embeddings":
               ("max_position_embeddings", 1536), "rotary_value": ("rotary_value", False)}
    family_defaults = {"position_mode": "none", "rotary": "table"}
    verified_backends = ("jax", "torch", "tensorflow")

    @classmethod
    def config_from_hf(cls, hf):
        kwargs = super().config_from_hf(hf)
        if kwargs["hidden_size"] // kwargs["num_heads"] % 2:
            raise ConfigError("config.json: RoFormer needs an even head size (hidden_size / num_attention_heads)")
        return kwargs

    def config_to_hf(self):
        config = super().config_to_hf()
        config["embedding_size"] = self.embedding_dim
        return config


ROFORMER_HEADS = {
    **BERT_HEADS,
    "MaskedLM": dict(head_width_attr="embedding_dim"),
    "TextClassifier": dict(hf_inner=("classifier.dense", False), hf_out="classifier.out_proj",
                           input_dropout=True, inner_activation=None),
}

__all__ = ["RoFormerBackbone"] + define_tasks(globals(), RoFormerBackbone, "RoFormer", ROFORMER_HEADS)

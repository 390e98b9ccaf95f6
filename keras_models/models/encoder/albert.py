"""ALBERT: factorised embeddings always mapped to ``hidden_size``, and shared layers:
``num_hidden_groups`` groups of ``inner_group_num`` blocks, reused across ``num_hidden_layers``."""

import keras

from keras_models.models.encoder.backbone import BERT_KEYS, BERT_NAMES, EncoderBackbone
from keras_models.models.encoder.tasks import BERT_HEADS, define_tasks
from keras_models.models.registry import register_backbone


@keras.saving.register_keras_serializable(package="keras_models")
@register_backbone("albert")
class AlbertBackbone(EncoderBackbone):
    base_model_prefix = "albert"
    hf_architecture = "AlbertModel"
    hf_model_type = "albert"
    hf_known_unused = ("*pooler.*",)
    hf_keys = {
        **BERT_KEYS,
        "embedding_size": ("embedding_size", 128),
        "num_layer_groups": ("num_hidden_groups", 1),
        "layers_per_group": ("inner_group_num", 1),
        "hidden_act": ("hidden_act", "gelu_new"),
        "dropout": ("hidden_dropout_prob", 0.0),
        "attention_dropout": ("attention_probs_dropout_prob", 0.0),
    }
    family_defaults = {"embedding_projection": True}
    hf_names = {
        **BERT_NAMES,
        "emb_proj": "encoder.embedding_hidden_mapping_in",
        "layer": "encoder.albert_layer_groups.{g}.albert_layers.{l}.",
        "query": "attention.query", "key": "attention.key", "value": "attention.value",
        "attn_out": "attention.dense", "attn_norm": "attention.LayerNorm",
        "ffn_in": "ffn", "ffn_out": "ffn_output", "ffn_norm": "full_layer_layer_norm",
    }
    verified_backends = ("jax", "torch", "tensorflow")


ALBERT_HEADS = {
    **BERT_HEADS,
    "MaskedLM": dict(hf_dense="predictions.dense", hf_norm="predictions.LayerNorm", hf_bias="predictions.bias",
                     hf_decoder="predictions.decoder", head_width_attr="embedding_dim",
                     hf_head_patterns=("predictions.*", "sop_classifier.*"),
                     extra_architectures=("ForPreTraining",)),
    "TextClassifier": dict(hf_inner=("pooler", True)),
}

__all__ = ["AlbertBackbone"] + define_tasks(globals(), AlbertBackbone, "Albert", ALBERT_HEADS)

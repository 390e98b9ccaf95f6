"""DistilBERT: BERT without token types, under its own config keys and tensor names."""

import keras

from keras_models.models.encoder.backbone import BERT_NAMES, REQUIRED, EncoderBackbone
from keras_models.models.encoder.tasks import define_tasks
from keras_models.models.registry import register_backbone


@keras.saving.register_keras_serializable(package="keras_models")
@register_backbone("distilbert")
class DistilBertBackbone(EncoderBackbone):
    base_model_prefix = "distilbert"
    hf_architecture = "DistilBertModel"
    hf_model_type = "distilbert"
    hf_ignore = ("*embeddings.position_ids",)
    hf_keys = {
        "vocab_size": ("vocab_size", REQUIRED),
        "hidden_size": ("dim", 768),
        "num_layers": ("n_layers", 6),
        "num_heads": ("n_heads", 12),
        "intermediate_size": ("hidden_dim", 3072),
        "hidden_act": ("activation", "gelu"),
        "max_position_embeddings": ("max_position_embeddings", 512),
        "type_vocab_size": (None, 0),
        "layer_norm_eps": (None, 1e-12),
        "dropout": ("dropout", 0.1),
        "attention_dropout": ("attention_dropout", 0.1),
        "pad_token_id": ("pad_token_id", 0),
        "initializer_range": ("initializer_range", 0.02),
    }
    hf_names = {
        **BERT_NAMES,
        "layer": "transformer.layer.{i}.",
        "query": "attention.q_lin", "key": "attention.k_lin", "value": "attention.v_lin",
        "attn_out": "attention.out_lin", "attn_norm": "sa_layer_norm",
        "ffn_in": "ffn.lin1", "ffn_out": "ffn.lin2", "ffn_norm": "output_layer_norm",
    }
    verified_backends = ("jax", "torch", "tensorflow")

    def __init__(self, *args, type_vocab_size=0, **kwargs):
        super().__init__(*args, type_vocab_size=type_vocab_size, **kwargs)


DISTILBERT_HEADS = {
    "MaskedLM": dict(hf_dense="vocab_transform", hf_norm="vocab_layer_norm", hf_bias="vocab_projector.bias",
                     hf_decoder="vocab_projector", hf_head_patterns=("vocab_*",)),
    "TextClassifier": dict(hf_inner=("pre_classifier", False), inner_activation="relu",
                           hf_head_patterns=("pre_classifier.*", "classifier.*")),
    "TokenClassifier": {},
    "QuestionAnswerer": {},
    "TextEmbedder": {},
}

__all__ = ["DistilBertBackbone"] + define_tasks(globals(), DistilBertBackbone, "DistilBert", DISTILBERT_HEADS)

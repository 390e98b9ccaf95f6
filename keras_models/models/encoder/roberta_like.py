"""RoBERTa-shaped families: RoBERTa's backbone and heads under other names and switches.

XLM-RoBERTa, CamemBERT and Data2VecText are RoBERTa under another ``model_type``; RoBERTa-
PreLayerNorm and XLM-RoBERTa-XL are its pre-norm variants (``norm_first`` plus a final
LayerNorm; XLM-RoBERTa-XL also drops the embedding LayerNorm).
"""

import keras

from keras_models.models.encoder.backbone import BERT_NAMES
from keras_models.models.encoder.tasks import ROBERTA_HEADS, define_tasks
from keras_models.models.registry import register_backbone
from keras_models.models.roberta import ROBERTA_KEYS, RobertaBackbone

_ser = keras.saving.register_keras_serializable(package="keras_models")
_ALL = ("jax", "torch", "tensorflow")


@_ser
@register_backbone("xlm-roberta")
class XLMRobertaBackbone(RobertaBackbone):
    hf_architecture = "XLMRobertaModel"
    hf_model_type = "xlm-roberta"
    verified_backends = _ALL
    checkpoint_families = ("XLM-V",)


@_ser
@register_backbone("camembert")
class CamembertBackbone(RobertaBackbone):
    hf_architecture = "CamembertModel"
    hf_model_type = "camembert"
    verified_backends = _ALL
    checkpoint_families = ()


@_ser
@register_backbone("data2vec-text")
class Data2VecTextBackbone(RobertaBackbone):
    base_model_prefix = "data2vec_text"
    hf_architecture = "Data2VecTextModel"
    hf_model_type = "data2vec-text"
    verified_backends = _ALL
    checkpoint_families = ()


@_ser
@register_backbone("roberta-prelayernorm")
class RobertaPreLayerNormBackbone(RobertaBackbone):
    base_model_prefix = "roberta_prelayernorm"
    hf_architecture = "RobertaPreLayerNormModel"
    hf_model_type = "roberta-prelayernorm"
    hf_known_unused = ("*pooler.dense.*",)
    family_defaults = {"position_mode": "padding_offset", "norm_first": True, "final_norm": True}
    hf_names = {**BERT_NAMES, "attn_norm": "attention.LayerNorm", "ffn_norm": "intermediate.LayerNorm",
                "final_norm": "LayerNorm"}
    verified_backends = _ALL
    checkpoint_families = ()


@_ser
@register_backbone("xlm-roberta-xl")
class XLMRobertaXLBackbone(RobertaBackbone):
    hf_architecture = "XLMRobertaXLModel"
    hf_model_type = "xlm-roberta-xl"
    hf_keys = {**ROBERTA_KEYS, "type_vocab_size": ("type_vocab_size", 1),
               "max_position_embeddings": ("max_position_embeddings", 514),
               "layer_norm_eps": ("layer_norm_eps", 1e-5)}
    family_defaults = {"position_mode": "padding_offset", "norm_first": True, "final_norm": True,
                       "embeddings_norm": False}
    hf_names = {**BERT_NAMES, "attn_norm": "attention.self_attn_layer_norm", "ffn_norm": "LayerNorm"}
    verified_backends = _ALL
    checkpoint_families = ()


__all__ = ["XLMRobertaBackbone", "CamembertBackbone", "Data2VecTextBackbone",
           "RobertaPreLayerNormBackbone", "XLMRobertaXLBackbone"]
__all__ += define_tasks(globals(), XLMRobertaBackbone, "XLMRoberta", ROBERTA_HEADS)
__all__ += define_tasks(globals(), CamembertBackbone, "Camembert", ROBERTA_HEADS)
__all__ += define_tasks(globals(), Data2VecTextBackbone, "Data2VecText", ROBERTA_HEADS)
__all__ += define_tasks(globals(), RobertaPreLayerNormBackbone, "RobertaPreLayerNorm", ROBERTA_HEADS)
__all__ += define_tasks(globals(), XLMRobertaXLBackbone, "XLMRobertaXL", ROBERTA_HEADS)

"""RoBERTa-shaped families: RoBERTa's backbone and heads under other names and switches.

XLM-RoBERTa, CamemBERT and Data2VecText are RoBERTa under another ``model_type``; RoBERTa-
PreLayerNorm and XLM-RoBERTa-XL are its pre-norm variants (``norm_first`` plus a final
LayerNorm; XLM-RoBERTa-XL also drops the embedding LayerNorm).
"""

from dataclasses import dataclass

import keras

from keras_models.models.encoder.backbone import BERT_NAMES
from keras_models.models.encoder.tasks import RobertaShapedMaskedLM, RobertaShapedTextClassifier, family_task
from keras_models.models.registry import register_backbone
from keras_models.models.roberta import RobertaBackbone, RobertaSpec
from keras_models.spec import const, dim, hf
from keras_models.tasks.embedder import TextEmbedder
from keras_models.tasks.text import QuestionAnswerer, TokenClassifier

_ser = keras.saving.register_keras_serializable(package="keras_models")
_ALL = ("jax", "torch", "tensorflow")


@dataclass(frozen=True, kw_only=True)
class XLMRobertaSpec(RobertaSpec):
    """XLMRobertaConfig (also CamembertConfig, Data2VecTextConfig): RoBERTa with BERT's vocabulary
    size as the default."""

    vocab_size: int = dim("vocab_size", 30522)


@dataclass(frozen=True, kw_only=True)
class RobertaPreLayerNormSpec(RobertaSpec):
    norm_first: bool = const(True)
    final_norm: bool = const(True)


@dataclass(frozen=True, kw_only=True)
class XLMRobertaXLSpec(RobertaSpec):
    vocab_size: int = dim("vocab_size", 250880)
    hidden_size: int = dim("hidden_size", 2560)
    num_layers: int = dim("num_hidden_layers", 36)
    num_heads: int = dim("num_attention_heads", 32)
    intermediate_size: int = dim("intermediate_size", 10240)
    max_position_embeddings: int = dim("max_position_embeddings", 514)
    type_vocab_size: int = hf("type_vocab_size", 1)
    layer_norm_eps: float = hf("layer_norm_eps", 1e-5)
    norm_first: bool = const(True)
    final_norm: bool = const(True)
    embeddings_norm: bool = const(False)


@_ser
@register_backbone("xlm-roberta")
class XLMRobertaBackbone(RobertaBackbone):
    spec_cls = XLMRobertaSpec
    hf_architecture = "XLMRobertaModel"
    hf_model_type = "xlm-roberta"
    verified_backends = _ALL
    checkpoint_families = ("XLM-V",)


@_ser
@register_backbone("camembert")
class CamembertBackbone(RobertaBackbone):
    spec_cls = XLMRobertaSpec
    hf_architecture = "CamembertModel"
    hf_model_type = "camembert"
    verified_backends = _ALL
    checkpoint_families = ()


@_ser
@register_backbone("data2vec-text")
class Data2VecTextBackbone(RobertaBackbone):
    spec_cls = XLMRobertaSpec
    base_model_prefix = "data2vec_text"
    hf_architecture = "Data2VecTextModel"
    hf_model_type = "data2vec-text"
    verified_backends = _ALL
    checkpoint_families = ()


@_ser
@register_backbone("roberta-prelayernorm")
class RobertaPreLayerNormBackbone(RobertaBackbone):
    spec_cls = RobertaPreLayerNormSpec
    base_model_prefix = "roberta_prelayernorm"
    hf_architecture = "RobertaPreLayerNormModel"
    hf_model_type = "roberta-prelayernorm"
    hf_known_unused = ("*pooler.dense.*",)
    hf_names = {**BERT_NAMES, "attn_norm": "attention.LayerNorm", "ffn_norm": "intermediate.LayerNorm",
                "final_norm": "LayerNorm"}
    verified_backends = _ALL
    checkpoint_families = ()


@_ser
@register_backbone("xlm-roberta-xl")
class XLMRobertaXLBackbone(RobertaBackbone):
    spec_cls = XLMRobertaXLSpec
    hf_architecture = "XLMRobertaXLModel"
    hf_model_type = "xlm-roberta-xl"
    hf_names = {**BERT_NAMES, "attn_norm": "attention.self_attn_layer_norm", "ffn_norm": "LayerNorm"}
    verified_backends = _ALL
    checkpoint_families = ()


__all__ = ["XLMRobertaBackbone", "CamembertBackbone", "Data2VecTextBackbone",
           "RobertaPreLayerNormBackbone", "XLMRobertaXLBackbone"]


@family_task(XLMRobertaBackbone, "MaskedLM", "XLMRobertaForMaskedLM")
class XLMRobertaMaskedLM(RobertaShapedMaskedLM):
    pass


@family_task(XLMRobertaBackbone, "TextClassifier", "XLMRobertaForSequenceClassification")
class XLMRobertaTextClassifier(RobertaShapedTextClassifier):
    pass


@family_task(XLMRobertaBackbone, "TokenClassifier", "XLMRobertaForTokenClassification")
class XLMRobertaTokenClassifier(TokenClassifier):
    pass


@family_task(XLMRobertaBackbone, "QuestionAnswerer", "XLMRobertaForQuestionAnswering")
class XLMRobertaQuestionAnswerer(QuestionAnswerer):
    pass


@family_task(XLMRobertaBackbone, "TextEmbedder", "XLMRobertaModel")
class XLMRobertaTextEmbedder(TextEmbedder):
    pass



@family_task(CamembertBackbone, "MaskedLM", "CamembertForMaskedLM")
class CamembertMaskedLM(RobertaShapedMaskedLM):
    pass


@family_task(CamembertBackbone, "TextClassifier", "CamembertForSequenceClassification")
class CamembertTextClassifier(RobertaShapedTextClassifier):
    pass


@family_task(CamembertBackbone, "TokenClassifier", "CamembertForTokenClassification")
class CamembertTokenClassifier(TokenClassifier):
    pass


@family_task(CamembertBackbone, "QuestionAnswerer", "CamembertForQuestionAnswering")
class CamembertQuestionAnswerer(QuestionAnswerer):
    pass


@family_task(CamembertBackbone, "TextEmbedder", "CamembertModel")
class CamembertTextEmbedder(TextEmbedder):
    pass



@family_task(Data2VecTextBackbone, "MaskedLM", "Data2VecTextForMaskedLM")
class Data2VecTextMaskedLM(RobertaShapedMaskedLM):
    pass


@family_task(Data2VecTextBackbone, "TextClassifier", "Data2VecTextForSequenceClassification")
class Data2VecTextTextClassifier(RobertaShapedTextClassifier):
    pass


@family_task(Data2VecTextBackbone, "TokenClassifier", "Data2VecTextForTokenClassification")
class Data2VecTextTokenClassifier(TokenClassifier):
    pass


@family_task(Data2VecTextBackbone, "QuestionAnswerer", "Data2VecTextForQuestionAnswering")
class Data2VecTextQuestionAnswerer(QuestionAnswerer):
    pass


@family_task(Data2VecTextBackbone, "TextEmbedder", "Data2VecTextModel")
class Data2VecTextTextEmbedder(TextEmbedder):
    pass



@family_task(RobertaPreLayerNormBackbone, "MaskedLM", "RobertaPreLayerNormForMaskedLM")
class RobertaPreLayerNormMaskedLM(RobertaShapedMaskedLM):
    pass


@family_task(RobertaPreLayerNormBackbone, "TextClassifier", "RobertaPreLayerNormForSequenceClassification")
class RobertaPreLayerNormTextClassifier(RobertaShapedTextClassifier):
    pass


@family_task(RobertaPreLayerNormBackbone, "TokenClassifier", "RobertaPreLayerNormForTokenClassification")
class RobertaPreLayerNormTokenClassifier(TokenClassifier):
    pass


@family_task(RobertaPreLayerNormBackbone, "QuestionAnswerer", "RobertaPreLayerNormForQuestionAnswering")
class RobertaPreLayerNormQuestionAnswerer(QuestionAnswerer):
    pass


@family_task(RobertaPreLayerNormBackbone, "TextEmbedder", "RobertaPreLayerNormModel")
class RobertaPreLayerNormTextEmbedder(TextEmbedder):
    pass



@family_task(XLMRobertaXLBackbone, "MaskedLM", "XLMRobertaXLForMaskedLM")
class XLMRobertaXLMaskedLM(RobertaShapedMaskedLM):
    pass


@family_task(XLMRobertaXLBackbone, "TextClassifier", "XLMRobertaXLForSequenceClassification")
class XLMRobertaXLTextClassifier(RobertaShapedTextClassifier):
    pass


@family_task(XLMRobertaXLBackbone, "TokenClassifier", "XLMRobertaXLForTokenClassification")
class XLMRobertaXLTokenClassifier(TokenClassifier):
    pass


@family_task(XLMRobertaXLBackbone, "QuestionAnswerer", "XLMRobertaXLForQuestionAnswering")
class XLMRobertaXLQuestionAnswerer(QuestionAnswerer):
    pass


@family_task(XLMRobertaXLBackbone, "TextEmbedder", "XLMRobertaXLModel")
class XLMRobertaXLTextEmbedder(TextEmbedder):
    pass


__all__ += [
    "XLMRobertaMaskedLM", "XLMRobertaTextClassifier", "XLMRobertaTokenClassifier", "XLMRobertaQuestionAnswerer",
    "XLMRobertaTextEmbedder", "CamembertMaskedLM", "CamembertTextClassifier", "CamembertTokenClassifier",
    "CamembertQuestionAnswerer", "CamembertTextEmbedder", "Data2VecTextMaskedLM", "Data2VecTextTextClassifier",
    "Data2VecTextTokenClassifier", "Data2VecTextQuestionAnswerer", "Data2VecTextTextEmbedder",
    "RobertaPreLayerNormMaskedLM", "RobertaPreLayerNormTextClassifier", "RobertaPreLayerNormTokenClassifier",
    "RobertaPreLayerNormQuestionAnswerer", "RobertaPreLayerNormTextEmbedder", "XLMRobertaXLMaskedLM",
    "XLMRobertaXLTextClassifier", "XLMRobertaXLTokenClassifier", "XLMRobertaXLQuestionAnswerer",
    "XLMRobertaXLTextEmbedder"
]

"""RoBERTa: the BERT encoder with pad-aware position ids and RoBERTa's head names."""

import keras

from keras_models.models.bert.backbone import BertBackbone
from keras_models.models.registry import register_backbone, register_task
from keras_models.tasks.embedder import TextEmbedder
from keras_models.tasks.text import MaskedLM, QuestionAnswerer, TextClassifier, TokenClassifier

_ser = keras.saving.register_keras_serializable(package="keras_models")


@_ser
@register_backbone("roberta")
class RobertaBackbone(BertBackbone):
    base_model_prefix = "roberta"
    hf_architecture = "RobertaModel"
    hf_model_type = "roberta"

    def __init__(self, *args, position_mode="padding_offset", pad_token_id=1, **kwargs):
        super().__init__(*args, position_mode=position_mode, pad_token_id=pad_token_id, **kwargs)

    @classmethod
    def config_from_hf(cls, hf):
        kwargs = super().config_from_hf(hf)
        kwargs["pad_token_id"] = hf.get("pad_token_id", 1)
        kwargs["type_vocab_size"] = hf.get("type_vocab_size", 1)
        return kwargs

    def config_to_hf(self):
        config = super().config_to_hf()
        config.update(bos_token_id=0, eos_token_id=2)
        return config

    def dummy_inputs(self):
        inputs = super().dummy_inputs()
        inputs["input_ids"] = inputs["input_ids"] * (self.pad_token_id + 1)
        return inputs


@_ser
@register_task(RobertaBackbone, "MaskedLM", ("RobertaForMaskedLM",))
class RobertaMaskedLM(MaskedLM):
    hf_dense = "lm_head.dense"
    hf_norm = "lm_head.layer_norm"
    hf_bias = "lm_head.bias"
    hf_decoder = "lm_head.decoder"
    hf_head_patterns = ("lm_head.*",)


@_ser
@register_task(RobertaBackbone, "TextClassifier", ("RobertaForSequenceClassification",))
class RobertaTextClassifier(TextClassifier):
    hf_inner = ("classifier.dense", False)
    hf_out = "classifier.out_proj"
    input_dropout = True


@_ser
@register_task(RobertaBackbone, "TokenClassifier", ("RobertaForTokenClassification",))
class RobertaTokenClassifier(TokenClassifier):
    pass


@_ser
@register_task(RobertaBackbone, "QuestionAnswerer", ("RobertaForQuestionAnswering",))
class RobertaQuestionAnswerer(QuestionAnswerer):
    pass


@_ser
@register_task(RobertaBackbone, "TextEmbedder", ("RobertaModel",))
class RobertaTextEmbedder(TextEmbedder):
    pass

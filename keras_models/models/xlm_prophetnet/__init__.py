"""XLM-ProphetNet (``model_type`` xlm-prophetnet, removed in Transformers 5): ProphetNet's
architecture, weight names (``prophetnet.*``) and config keys unchanged, with XLM-R's multilingual
SentencePiece vocabulary (``XLMProphetNetTokenizer``: keras_models/tokenizers/xlm_prophetnet.py)."""

import keras

from keras_models.models.prophetnet.backbone import ProphetNetBackbone
from keras_models.models.prophetnet.tasks import ProphetNetSeq2SeqLM
from keras_models.models.registry import register_backbone, register_task


@keras.saving.register_keras_serializable(package="keras_models")
@register_backbone("xlm-prophetnet")
class XLMProphetNetBackbone(ProphetNetBackbone):
    hf_architecture = "XLMProphetNetModel"
    hf_model_type = "xlm-prophetnet"


@keras.saving.register_keras_serializable(package="keras_models")
@register_task(XLMProphetNetBackbone, "Seq2SeqLM", ("XLMProphetNetForConditionalGeneration",))
class XLMProphetNetSeq2SeqLM(ProphetNetSeq2SeqLM):
    pass


__all__ = ["XLMProphetNetBackbone", "XLMProphetNetSeq2SeqLM"]

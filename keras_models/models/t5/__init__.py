from keras_models.models.t5.backbone import T5Backbone
from keras_models.models.t5.tasks import T5Seq2SeqLM

__all__ = ["T5Backbone", "T5Seq2SeqLM"]
from keras_models.models.t5.longt5 import LongT5Backbone, LongT5Seq2SeqLM

__all__ += ["LongT5Backbone", "LongT5Seq2SeqLM"]
from keras_models.models.t5.switch_transformers import SwitchTransformersBackbone, SwitchTransformersSeq2SeqLM

__all__ += ["SwitchTransformersBackbone", "SwitchTransformersSeq2SeqLM"]

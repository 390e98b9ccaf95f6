from keras_models.models.prophetnet.backbone import ProphetNetBackbone
from keras_models.models.prophetnet.tasks import ProphetNetSeq2SeqLM

__all__ = ["ProphetNetBackbone", "ProphetNetSeq2SeqLM"]

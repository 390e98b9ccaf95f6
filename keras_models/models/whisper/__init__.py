from keras_models.models.whisper.backbone import WhisperBackbone, WhisperSpec
from keras_models.models.whisper.tasks import WhisperSeq2SeqLM

__all__ = ["WhisperBackbone", "WhisperSpec", "WhisperSeq2SeqLM"]

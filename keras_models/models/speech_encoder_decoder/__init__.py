"""SpeechEncoderDecoder: a Wav2Vec2-family speech encoder + a cross-attention text decoder, Seq2SeqLM."""

from keras_models.models.speech_encoder_decoder.backbone import SpeechEncoderDecoderBackbone, SpeechEncoderDecoderSpec
from keras_models.models.speech_encoder_decoder.tasks import SpeechEncoderDecoderSeq2SeqLM

__all__ = ["SpeechEncoderDecoderBackbone", "SpeechEncoderDecoderSpec", "SpeechEncoderDecoderSeq2SeqLM"]

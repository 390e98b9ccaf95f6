"""Speech2Text (S2T): conv subsampler + BART-like pre-norm encoder-decoder, Seq2SeqLM."""

from keras_models.models.speech_to_text.backbone import Speech2TextBackbone, Speech2TextSpec
from keras_models.models.speech_to_text.tasks import Speech2TextSeq2SeqLM

__all__ = ["Speech2TextBackbone", "Speech2TextSpec", "Speech2TextSeq2SeqLM"]

"""Speech2Text (S2T): conv subsampler + BART-like pre-norm encoder-decoder, Seq2SeqLM, and its
Kaldi-fbank + CMVN feature extractor."""

from keras_models.models.speech_to_text.backbone import Speech2TextBackbone, Speech2TextSpec
from keras_models.models.speech_to_text.feature_extractor import Speech2TextFeatureExtractor
from keras_models.models.speech_to_text.tasks import Speech2TextSeq2SeqLM

__all__ = ["Speech2TextBackbone", "Speech2TextSpec", "Speech2TextSeq2SeqLM", "Speech2TextFeatureExtractor"]

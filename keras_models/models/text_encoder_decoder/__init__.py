"""EncoderDecoder (encoder-decoder): a registered text encoder + a BERT-shaped cross-attention
decoder, Seq2SeqLM."""

from keras_models.models.text_encoder_decoder.backbone import (BertDecoder, EncoderDecoderModelBackbone,
                                                               EncoderDecoderSpec)
from keras_models.models.text_encoder_decoder.tasks import EncoderDecoderSeq2SeqLM

__all__ = ["BertDecoder", "EncoderDecoderModelBackbone", "EncoderDecoderSpec", "EncoderDecoderSeq2SeqLM"]

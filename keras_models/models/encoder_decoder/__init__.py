"""The shared encoder-decoder backbone that T5- and BART-like families subclass."""

from keras_models.models.encoder_decoder.backbone import EncoderDecoderBackbone

__all__ = ["EncoderDecoderBackbone"]

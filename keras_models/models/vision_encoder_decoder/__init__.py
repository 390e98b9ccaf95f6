"""VisionEncoderDecoder (TrOCR, Donut, Nougat): a vision backbone, a text decoder with
cross-attention, and km.ImageToText."""

from keras_models.models.vision_encoder_decoder.backbone import VisionEncoderDecoderBackbone, VisionEncoderDecoderSpec
from keras_models.models.vision_encoder_decoder.donut import DonutSwinBackbone, DonutSwinSpec
from keras_models.models.vision_encoder_decoder.decoder import CrossAttentionDecoder, TrOCRSpec
from keras_models.models.vision_encoder_decoder.tasks import VisionEncoderDecoderImageToText

__all__ = ["VisionEncoderDecoderBackbone", "VisionEncoderDecoderSpec", "DonutSwinBackbone", "DonutSwinSpec", "CrossAttentionDecoder", "TrOCRSpec",
           "VisionEncoderDecoderImageToText"]

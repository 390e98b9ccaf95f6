"""Pix2Struct (DePlot, MatCha): flattened-patch image encoder + T5-style decoder, km.ImageToText."""

from keras_models.models.pix2struct.backbone import (Pix2StructBackbone, Pix2StructSpec, Pix2StructTextSpec,
                                                     Pix2StructVisionSpec)
from keras_models.models.pix2struct.processor import Pix2StructImageProcessor
from keras_models.models.pix2struct.tasks import Pix2StructImageToText, Pix2StructProcessor

__all__ = ["Pix2StructBackbone", "Pix2StructSpec", "Pix2StructTextSpec", "Pix2StructVisionSpec",
           "Pix2StructImageProcessor", "Pix2StructImageToText", "Pix2StructProcessor"]

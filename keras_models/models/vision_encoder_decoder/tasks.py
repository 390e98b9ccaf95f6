"""VisionEncoderDecoderModel's task: ImageToText (the decoder's LM head)."""

import keras

from keras_models.models.registry import register_task
from keras_models.models.vision_encoder_decoder.backbone import VisionEncoderDecoderBackbone
from keras_models.tasks.image_to_text import EncoderDecoderImageToText


@keras.saving.register_keras_serializable(package="keras_models")
@register_task(VisionEncoderDecoderBackbone, "ImageToText", ("VisionEncoderDecoderModel",))
class VisionEncoderDecoderImageToText(EncoderDecoderImageToText):
    hf_head_patterns = ("decoder.output_projection.*", "decoder.lm_head.*")


__all__ = ["VisionEncoderDecoderImageToText"]

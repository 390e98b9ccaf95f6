"""ZeroShotImageSegmenter: segment an image by a free-text prompt (or a prompt image) with a
dual encoder's towers and a light decoder.

Calling the model on ``{"input_ids", "attention_mask", "pixel_values"}`` (one prompt per image:
repeat an image once per prompt, as Transformers' processor examples do) returns the per-pixel
logits (batch, height, width) of Transformers' ``CLIPSegForImageSegmentation`` ``logits`` (one
channel, squeezed: no channel axis to reorder). The prompt may instead be given as
``conditional_pixel_values`` (a prompt image per image, channels_last) or directly as
``conditional_embeddings`` (batch, projection_dim). A family (subclass) implements ``call`` and
``head_rules``; ``encode_text`` / ``encode_image`` give the projected prompt embeddings.
"""

import keras

from keras_models.errors import InputError
from keras_models.tasks.task import Task

PROMPT_KEYS = ("conditional_embeddings", "input_ids", "conditional_pixel_values")


@keras.saving.register_keras_serializable(package="keras_models")
class ZeroShotImageSegmenter(Task):
    task_name = "ZeroShotImageSegmenter"

    def encode_text(self, inputs):
        return self.backbone.encode_text(inputs)

    def encode_image(self, inputs):
        return self.backbone.encode_image(inputs)

    def prompt_embeddings(self, inputs, training=False):
        """(batch, projection_dim) embeddings of the prompts: ``conditional_embeddings`` as given,
        else the projected text features of ``input_ids``, else the projected image features of
        ``conditional_pixel_values``."""
        if "pixel_values" not in inputs:
            raise InputError(f"{type(self).__name__} needs pixel_values (the images to segment)")
        given = [k for k in PROMPT_KEYS if k in inputs and inputs[k] is not None]
        if not given:
            raise InputError(f"{type(self).__name__} needs a prompt: one of {list(PROMPT_KEYS)}")
        key = given[0]
        n, batch = inputs[key].shape[0], inputs["pixel_values"].shape[0]
        if isinstance(n, int) and isinstance(batch, int) and n != batch:
            raise InputError(f"{key} holds {n} prompts for {batch} images in pixel_values: give one prompt per "
                             "image (repeat an image once per prompt)")
        if key == "conditional_embeddings":
            return inputs[key]
        if key == "input_ids":
            return self.backbone.encode_text(inputs, training=training)
        return self.backbone.encode_image(inputs[key], training=training)

    @classmethod
    def preprocessor_from_preset(cls, folder, hf, **kw):
        from keras_models.preprocessing.dual import DualEncoderProcessor

        return DualEncoderProcessor.from_preset(folder, text_padding="longest")

    def save_extra_files(self, folder):
        if self.preprocessor is not None:
            self.preprocessor.save_pretrained(folder)


__all__ = ["ZeroShotImageSegmenter", "PROMPT_KEYS"]

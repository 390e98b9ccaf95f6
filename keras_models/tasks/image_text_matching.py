"""ImageTextMatcher: does a text describe an image? (image-text retrieval heads: BLIP's
``BlipForImageTextRetrieval``).

Calling the model on ``{"input_ids", "attention_mask", "pixel_values"}`` (channels_last) returns
what Transformers returns as ``itm_score``: the image-text matching logits (batch, 2) (index 1 =
"matches") by default, or, with ``use_itm_head=False``, the (images, texts) cosine similarities of
the two towers' projected features.
"""

import keras

from keras_models.tasks.task import Task


@keras.saving.register_keras_serializable(package="keras_models")
class ImageTextMatcher(Task):
    """The task every image-text matching family registers (``from_preset`` picks its class)."""

    task_name = "ImageTextMatcher"

    @classmethod
    def preprocessor_from_preset(cls, folder, hf, **_):
        from keras_models.tasks.image_to_text import ImageToTextProcessor

        return ImageToTextProcessor.from_preset(folder)

    def save_extra_files(self, folder):
        super().save_extra_files(folder)  # the tokenizer
        image = getattr(self.preprocessor, "image_processor", None)
        if image is not None:
            image.save_pretrained(folder)


__all__ = ["ImageTextMatcher"]

"""VisualQuestionAnswerer: answer a question about an image by classifying over a fixed answer
vocabulary (ViLT's ``ViltForQuestionAnswering``).

Calling the model on ``{"input_ids", "attention_mask", "pixel_values"}`` (channels_last; plus
``pixel_mask`` where the family takes one) returns the answers' logits (batch, num_classes), as
Transformers' ``logits``; ``id2label`` names the answers.
"""

import keras

from keras_models.tasks.image_text_matching import ImageTextMatcher
from keras_models.tasks.task import Task


@keras.saving.register_keras_serializable(package="keras_models")
class VisualQuestionAnswerer(Task):
    """The task every classifying VQA family registers (``from_preset`` picks its class)."""

    task_name = "VisualQuestionAnswerer"
    @classmethod
    def preprocessor_from_preset(cls, folder, hf, **kwargs):
        return ImageTextMatcher.preprocessor_from_preset.__func__(cls, folder, hf, **kwargs)

    def save_extra_files(self, folder):
        super().save_extra_files(folder)  # the tokenizer
        image = getattr(self.preprocessor, "image_processor", None)
        if image is not None:
            image.save_pretrained(folder)


__all__ = ["VisualQuestionAnswerer"]

"""SceneTextRecognizer: text in a cropped word image as per-position class logits (Transformers'
``*ForSceneTextRecognition``).

Calling the model on ``{"pixel_values": (batch, H, W, C)}`` (channels_last, at the checkpoint's
``image_size``) returns a dict of logits, each (batch, max_token_length, classes) -- for MGP-STR
``{"char_logits", "bpe_logits", "wp_logits"}``, the three entries of Transformers'
``MgpstrModelOutput.logits`` tuple in its order. Decoding them into strings (MgpstrProcessor's
character / GPT-2 BPE / BERT WordPiece vocabularies and its confidence fusion) is not provided.
"""

import keras

from keras_models.tasks.task import Task


@keras.saving.register_keras_serializable(package="keras_models")
class SceneTextRecognizer(Task):
    task_name = "SceneTextRecognizer"
    default_learning_rate = 1e-4

    def __init__(self, backbone, preprocessor=None, **kwargs):
        super().__init__(backbone, preprocessor=preprocessor, **kwargs)

    @classmethod
    def preprocessor_from_preset(cls, folder, hf, **kw):
        from keras_models.presets.config import read_processor_part
        from keras_models.preprocessing.image import ImageProcessor

        if read_processor_part(folder, "image_processor") is None:
            return None
        return ImageProcessor.from_preset(folder)

    def save_extra_files(self, folder):
        if self.preprocessor is not None and hasattr(self.preprocessor, "save_pretrained"):
            self.preprocessor.save_pretrained(folder)


__all__ = ["SceneTextRecognizer"]

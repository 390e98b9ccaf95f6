"""ImageMatting: alpha mattes from an image and its trimap (Transformers' ``*ForImageMatting``).

Calling the model on ``{"pixel_values": (batch, H, W, 4)}`` -- the normalised RGB image with the
trimap (0 background, 0.5 unknown, 1 foreground after rescaling) as a 4th channel, channels_last,
as the checkpoint's image processor makes them (``processor(images, trimaps)``) -- returns the
``alphas`` in [0, 1], channels_last (batch, H, W, 1) (Transformers' ``ImageMattingOutput.alphas``
transposed). Crop them to the unpadded image size if the processor padded it.

``km.ImageMatting.from_preset(folder)`` resolves the family's subclass from config.json
(``VitMatteForImageMatting``). There is no default training loss (Transformers' model refuses
labels): ``compile`` with one before ``fit``. Raw images cannot go through ``predict`` / ``fit``
(the trimap is a second input): run the processor first.
"""

import keras

from keras_models.tasks.task import Task


@keras.saving.register_keras_serializable(package="keras_models")
class ImageMatting(Task):
    task_name = "ImageMatting"
    default_learning_rate = 1e-4

    def __init__(self, backbone, preprocessor=None, **kwargs):
        super().__init__(backbone, preprocessor=preprocessor, **kwargs)

    def save_extra_files(self, folder):
        if self.preprocessor is not None and hasattr(self.preprocessor, "save_pretrained"):
            self.preprocessor.save_pretrained(folder)


__all__ = ["ImageMatting"]

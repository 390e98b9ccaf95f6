"""ImageSuperResolution: image restoration / super-resolution (Transformers'
``*ForImageSuperResolution``).

Calling the model on ``{"pixel_values": (batch, H, W, C)}`` (channels_last, as the checkpoint's
image processor makes them: Swin2SR's rescales to [0, 1] and pads) returns the
``reconstruction``, channels_last (batch, H * upscale, W * upscale, num_channels_out), in the
input's value range (Transformers' ``ImageSuperResolutionOutput.reconstruction`` transposed). To
get an 8-bit image: ``clip(reconstruction, 0, 1) * 255``, rounded, cropped to the unpadded size
times ``upscale`` if the processor padded the image.

``km.ImageSuperResolution.from_preset(folder)`` resolves the family's subclass from config.json
(``Swin2SRForImageSuperResolution``). Subclasses implement ``call`` and ``head_rules``. There is
no default training loss (Transformers' model refuses labels too): ``compile`` with one, e.g.
``keras.losses.MeanAbsoluteError()``, before ``fit``.
"""

import keras
from keras import ops

from keras_models.tasks.task import Task


def pixel_shuffle(x, r):
    """torch ``PixelShuffle(r)`` in channels_last: (b, h, w, c*r*r) -> (b, h*r, w*r, c); input
    channel ``c*r*r + i*r + j`` goes to sub-pixel (i, j) of output channel c."""
    h, w, c = x.shape[1], x.shape[2], x.shape[3] // (r * r)
    x = ops.reshape(x, (-1, h, w, c, r, r))
    x = ops.transpose(x, (0, 1, 4, 2, 5, 3))
    return ops.reshape(x, (-1, h * r, w * r, c))


@keras.saving.register_keras_serializable(package="keras_models")
class ImageSuperResolution(Task):
    task_name = "ImageSuperResolution"
    default_learning_rate = 1e-4

    def __init__(self, backbone, preprocessor=None, **kwargs):
        super().__init__(backbone, preprocessor=preprocessor, **kwargs)

    def save_extra_files(self, folder):
        if self.preprocessor is not None and hasattr(self.preprocessor, "save_pretrained"):
            self.preprocessor.save_pretrained(folder)


__all__ = ["ImageSuperResolution", "pixel_shuffle"]

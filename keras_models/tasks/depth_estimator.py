"""DepthEstimator: monocular depth from a vision backbone's features, a family's neck and head.

Calling the model on ``{"pixel_values": (batch, H, W, C)}`` (channels_last) returns
``predicted_depth`` of shape (batch, h, w), Transformers' ``DepthEstimatorOutput.predicted_depth``
(no channel axis, so the layout is the same as theirs). The resolution is the head's own (DPT:
2x the finest fused map; Depth Anything: the patch grid x patch size; GLPN: the input's).
:meth:`post_process_depth_estimation` resizes it to the images' sizes as Transformers' image
processors do (bicubic, ``align_corners=False``).

Input sizes: DPT and Depth Anything take any height/width of at least one patch (the patch grid
floors, as in Transformers; DPT's position embeddings are resized bilinearly, Depth Anything's
DINOv2 ones bicubically); GLPN needs multiples of the product of its strides (InputError
otherwise). A pixel_values tensor that is not rank 4 raises InputError.

``km.DepthEstimator.from_preset(folder)`` resolves the family's subclass from config.json
(``DPTForDepthEstimation``, ``DepthAnythingForDepthEstimation``, ``GLPNForDepthEstimation``).
Subclasses build ``self.head`` pieces and implement ``depth(inputs, training)`` and ``head_rules``.

Training: the default loss is the scale-invariant log loss (:class:`SiLogLoss`, lambda 0.5) that
Transformers' GLPN uses; it is applied to every family (Transformers raises for DPT and Depth
Anything labels). Pixels whose target is <= 0 are ignored; predictions are clamped at 1e-6 before
the log so that a ReLU head's zeros stay finite.
"""

import keras
import numpy as np
from keras import ops

from keras_models.errors import InputError
from keras_models.tasks.task import Task


@keras.saving.register_keras_serializable(package="keras_models")
class SiLogLoss(keras.losses.Loss):
    """sqrt(mean(d^2) - lambd * mean(d)^2), d = log(target) - log(pred) over pixels with target > 0
    (the whole batch together, as Transformers' GLPN ``SiLogLoss``)."""

    def __init__(self, lambd=0.5, name="silog", **kwargs):
        super().__init__(name=name, **kwargs)
        self.lambd = lambd

    def call(self, y_true, y_pred):
        y_true = ops.cast(y_true, y_pred.dtype)
        valid = ops.cast(y_true > 0, y_pred.dtype)
        n = ops.maximum(ops.sum(valid), 1.0)
        d = (ops.log(ops.maximum(y_true, 1e-6)) - ops.log(ops.maximum(y_pred, 1e-6))) * valid
        mean_sq = ops.sum(d * d) / n
        mean = ops.sum(d) / n
        return ops.sqrt(ops.maximum(mean_sq - self.lambd * mean * mean, 0.0) + 1e-12)

    def get_config(self):
        c = super().get_config()
        c.update(lambd=self.lambd)
        return c


def check_pixels(pixels, where="DepthEstimator"):
    shape = pixels.shape
    if len(shape) != 4:
        raise InputError(
            f"{where}: pixel_values must be (batch, height, width, channels) (rank 4, channels_last), got "
            f"rank {len(shape)} {tuple(shape)}")
    return pixels


@keras.saving.register_keras_serializable(package="keras_models")
class DepthEstimator(Task):
    task_name = "DepthEstimator"
    default_learning_rate = 1e-4

    def __init__(self, backbone, preprocessor=None, **kwargs):
        super().__init__(backbone, preprocessor=preprocessor, **kwargs)

    def call(self, inputs, training=False):
        pixels = check_pixels(inputs["pixel_values"] if isinstance(inputs, dict) else inputs, type(self).__name__)
        return self.depth(pixels, training=training)

    def depth(self, pixels, training=False):
        raise NotImplementedError

    def default_loss(self):
        return SiLogLoss()

    # --- preprocessing / post-processing -------------------------------------------------------
    @classmethod
    def preprocessor_from_preset(cls, folder, hf, **kw):
        from keras_models.models.depth.processor import depth_image_processor

        return depth_image_processor(folder)

    def save_extra_files(self, folder):
        if self.preprocessor is not None and hasattr(self.preprocessor, "save_pretrained"):
            self.preprocessor.save_pretrained(folder)

    @staticmethod
    def post_process_depth_estimation(predicted_depth, target_sizes=None):
        """Transformers' ``post_process_depth_estimation``: a list of ``{"predicted_depth": (h, w)}``
        numpy maps, each resized bicubically (align_corners=False) to its ``target_sizes`` entry
        ((height, width), or None to keep the model's resolution)."""
        from keras_models.models.depth.layers import resize_numpy

        depth = predicted_depth["predicted_depth"] if isinstance(predicted_depth, dict) else predicted_depth
        depth = np.asarray(ops.convert_to_numpy(depth) if not isinstance(depth, np.ndarray) else depth)
        if depth.ndim != 3:
            raise InputError(f"post_process_depth_estimation: predicted_depth must be (batch, h, w), got "
                             f"{depth.shape}")
        if target_sizes is not None and len(target_sizes) != len(depth):
            raise InputError(f"post_process_depth_estimation: {len(target_sizes)} target_sizes for a batch of "
                             f"{len(depth)} depth maps")
        out = []
        for i, d in enumerate(depth):
            size = None if target_sizes is None else target_sizes[i]
            if size is not None:
                d = resize_numpy(d, int(size[0]), int(size[1]), "bicubic")
            out.append({"predicted_depth": d})
        return out


__all__ = ["DepthEstimator", "SiLogLoss"]

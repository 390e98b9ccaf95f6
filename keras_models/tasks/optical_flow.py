"""OpticalFlowEstimator: dense optical flow between two frames (Transformers' ``PerceiverForOpticalFlow``).

Calling the model on ``{"pixel_values": (batch, 2, H, W, C)}`` (two frames, channels_last; Perceiver
takes C = 27: each pixel's 3x3 patch of RGB values, as its optical-flow preprocessing extracts
them) returns the flow, (batch, H, W, 2): per pixel the (dx, dy)-displacement in pixels from the
first frame to the second. Transformers' ``logits`` have the same layout.

``km.OpticalFlowEstimator.from_preset(folder)`` resolves the family's subclass from config.json.
The default training loss is the mean end-point error (Euclidean distance between predicted and
target flow vectors, averaged over pixels).
"""

import keras
from keras import ops

from keras_models.tasks.task import Task


@keras.saving.register_keras_serializable(package="keras_models")
class EndPointError(keras.losses.Loss):
    """Mean Euclidean distance between the predicted and target flow vectors (last axis)."""

    def __init__(self, name="end_point_error", **kwargs):
        super().__init__(name=name, **kwargs)

    def call(self, y_true, y_pred):
        d = ops.cast(y_true, y_pred.dtype) - y_pred
        return ops.sqrt(ops.sum(d * d, axis=-1) + 1e-12)


@keras.saving.register_keras_serializable(package="keras_models")
class OpticalFlowEstimator(Task):
    task_name = "OpticalFlowEstimator"

    def __init__(self, backbone, preprocessor=None, **kwargs):
        super().__init__(backbone, preprocessor=preprocessor, **kwargs)

    def default_loss(self):
        return EndPointError()


__all__ = ["OpticalFlowEstimator", "EndPointError"]

"""The DETR family: DETR, Table Transformer and Conditional DETR (object detection over a ResNet,
an encoder-decoder transformer and learned object queries; :class:`~keras_models.tasks.
object_detector.ObjectDetector`)."""

from keras_models.models.detr.backbone import *  # noqa: F401,F403
from keras_models.models.detr.backbone import __all__ as _detr_all
from keras_models.models.detr.conditional import *  # noqa: F401,F403
from keras_models.models.detr.conditional import __all__ as _conditional_all

__all__ = list(_detr_all) + list(_conditional_all)

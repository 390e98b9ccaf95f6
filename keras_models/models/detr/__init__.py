"""The DETR family: DETR, Table Transformer, Conditional DETR, Deformable DETR and DETA (object detection
over a ResNet, an encoder-decoder transformer and learned object queries;
:class:`~keras_models.tasks.object_detector.ObjectDetector`), and their image processor."""

from keras_models.models.detr.backbone import *  # noqa: F401,F403
from keras_models.models.detr.backbone import __all__ as _detr_all
from keras_models.models.detr.conditional import *  # noqa: F401,F403
from keras_models.models.detr.conditional import __all__ as _conditional_all
from keras_models.models.detr.deformable import *  # noqa: F401,F403
from keras_models.models.detr.deformable import __all__ as _deformable_all
from keras_models.models.detr.deta import *  # noqa: F401,F403
from keras_models.models.detr.deta import __all__ as _deta_all
from keras_models.models.detr.processor import DetrImageProcessor

__all__ = list(_detr_all) + list(_conditional_all) + list(_deformable_all) + list(_deta_all) + ["DetrImageProcessor"]

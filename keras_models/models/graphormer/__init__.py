"""Graphormer (``graphormer``): the backbone, its GraphClassifier head and the numpy graph
preprocessing (see backbone.py and preprocessing.py)."""

from keras_models.models.graphormer.backbone import *  # noqa: F401,F403
from keras_models.models.graphormer.backbone import __all__ as _backbone_all
from keras_models.models.graphormer.preprocessing import GraphormerCollator, preprocess_graph

__all__ = [*_backbone_all, "GraphormerCollator", "preprocess_graph"]

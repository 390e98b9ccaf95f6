"""Depth estimation families: DPT, Depth Anything, GLPN (and DPT's semantic segmentation head)."""

from keras_models.models.depth.depth_anything import DepthAnythingBackbone, DepthAnythingDepthEstimator
from keras_models.models.depth.dpt import DPTBackbone, DPTDepthEstimator, DPTSemanticSegmenter
from keras_models.models.depth.glpn import GLPNBackbone, GLPNDepthEstimator

__all__ = ["DPTBackbone", "DPTDepthEstimator", "DPTSemanticSegmenter", "DepthAnythingBackbone",
           "DepthAnythingDepthEstimator", "GLPNBackbone", "GLPNDepthEstimator"]

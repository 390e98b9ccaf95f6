"""GIT: a CLIP-like vision tower's tokens prefixed to a BERT-like causal text stack (km.ImageToText)."""

from keras_models.models.git.backbone import GitBackbone, GitSpec, GitVisionBackbone, GitVisionSpec
from keras_models.models.git.tasks import GitImageToText

__all__ = ["GitBackbone", "GitSpec", "GitVisionBackbone", "GitVisionSpec", "GitImageToText"]

"""Jukebox (removed from Transformers 5): VQ-VAE + priors, and its tokenizer."""

from keras_models.models.jukebox.backbone import JukeboxBackbone
from keras_models.models.jukebox.tokenizer import JukeboxTokenizer

__all__ = ["JukeboxBackbone", "JukeboxTokenizer"]

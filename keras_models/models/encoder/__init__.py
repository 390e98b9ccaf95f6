"""The shared encoder (``backbone.py``), its task tables (``tasks.py``) and the families built on
it (one module per family or shape; ``families.py`` imports them all)."""

from keras_models.models.encoder.backbone import EncoderBackbone

__all__ = ["EncoderBackbone"]

"""ViLT: one transformer over text and image-patch embeddings (vision-language fusion encoder)."""

from keras_models.models.vilt.vilt import *  # noqa: F401,F403
from keras_models.models.vilt.vilt import __all__  # noqa: F401

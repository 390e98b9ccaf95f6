"""Document-layout encoders beyond LayoutLM v1 (which lives with the shared encoder): LiLT, BROS
and LayoutLMv3. Each takes ``bbox`` (batch, seq, 4) beside the token ids."""

from keras_models.models.layout_encoders.lilt import *  # noqa: F401,F403
from keras_models.models.layout_encoders.bros import *  # noqa: F401,F403
from keras_models.models.layout_encoders.layoutlmv3 import *  # noqa: F401,F403
from keras_models.models.layout_encoders.layoutlmv2 import *  # noqa: F401,F403
from keras_models.models.layout_encoders.layoutlmv2_processor import *  # noqa: F401,F403
from keras_models.models.layout_encoders import bros, layoutlmv2, layoutlmv2_processor, layoutlmv3, lilt

__all__ = (list(lilt.__all__) + list(bros.__all__) + list(layoutlmv3.__all__) + list(layoutlmv2.__all__)
           + list(layoutlmv2_processor.__all__))

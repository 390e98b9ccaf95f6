from keras_models.models.idefics.backbone import *  # noqa: F401,F403
from keras_models.models.idefics.task import *  # noqa: F401,F403
from keras_models.models.idefics.processor import *  # noqa: F401,F403

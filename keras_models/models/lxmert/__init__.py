"""LXMERT: language, object-relationship and cross-modality encoders (vision-language fusion)."""

from keras_models.models.lxmert.lxmert import *  # noqa: F401,F403
from keras_models.models.lxmert.lxmert import __all__  # noqa: F401

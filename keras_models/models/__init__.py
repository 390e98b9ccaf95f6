"""Architecture families. Importing this package registers every family.

One line per family: adding an architecture means adding its package and one import here.
"""

from keras_models.models.backbone import Backbone
from keras_models.models.bert import *  # noqa: F401,F403
from keras_models.models.roberta import *  # noqa: F401,F403
from keras_models.models.encoder.families import *  # noqa: F401,F403
from keras_models.models.decoder import *  # noqa: F401,F403
from keras_models.models.vit import *  # noqa: F401,F403
from keras_models.models.convnext import *  # noqa: F401,F403
from keras_models.models.resnet import *  # noqa: F401,F403
from keras_models.models.t5 import *  # noqa: F401,F403
from keras_models.models.bart import *  # noqa: F401,F403
from keras_models.models.prophetnet import *  # noqa: F401,F403
from keras_models.models.beit import *  # noqa: F401,F403
from keras_models.models.swin import *  # noqa: F401,F403
from keras_models.models.poolformer import *  # noqa: F401,F403
from keras_models.models.regnet import *  # noqa: F401,F403
from keras_models.models.bit import *  # noqa: F401,F403
from keras_models.models.mobilenet_v1 import *  # noqa: F401,F403
from keras_models.models.mobilenet_v2 import *  # noqa: F401,F403
from keras_models.models.efficientnet import *  # noqa: F401,F403
from keras_models.models.segformer import *  # noqa: F401,F403
from keras_models.models.mobilevit import *  # noqa: F401,F403
from keras_models.models.vitdet import *  # noqa: F401,F403
from keras_models.models.clip import *  # noqa: F401,F403
from keras_models.models.altclip import *  # noqa: F401,F403
from keras_models.models.align import *  # noqa: F401,F403
from keras_models.models.owlvit import *  # noqa: F401,F403
from keras_models.models.clipseg import *  # noqa: F401,F403
from keras_models.models.xclip import *  # noqa: F401,F403
from keras_models.models.groupvit import *  # noqa: F401,F403
from keras_models.models.wav2vec2 import *  # noqa: F401,F403
from keras_models.models.wav2vec2_bert import *  # noqa: F401,F403
from keras_models.models.encodec import *  # noqa: F401,F403
from keras_models.models.univnet import *  # noqa: F401,F403
from keras_models.models.decision_transformer import *  # noqa: F401,F403
from keras_models.models.whisper import *  # noqa: F401,F403
from keras_models.models.ast import *  # noqa: F401,F403
from keras_models.models.modernbert import *  # noqa: F401,F403
from keras_models.models.realm import *  # noqa: F401,F403
from keras_models.models.ernie_m import *  # noqa: F401,F403
from keras_models.models.retribert import *  # noqa: F401,F403
from keras_models.models.xlm_prophetnet import *  # noqa: F401,F403
from keras_models.models.open_llama import *  # noqa: F401,F403
from keras_models.models.nezha import *  # noqa: F401,F403
from keras_models.models.video import *  # noqa: F401,F403
from keras_models.models.llava import *  # noqa: F401,F403
from keras_models.models.fuyu import *  # noqa: F401,F403
from keras_models.models.depth import *  # noqa: F401,F403
from keras_models.models.cvt import *  # noqa: F401,F403
from keras_models.models.pvt import *  # noqa: F401,F403
from keras_models.models.focalnet import *  # noqa: F401,F403
from keras_models.models.mobilevitv2 import *  # noqa: F401,F403
from keras_models.models.swiftformer import *  # noqa: F401,F403
from keras_models.models.levit import *  # noqa: F401,F403
from keras_models.models.van import *  # noqa: F401,F403
from keras_models.models.vit_hybrid import *  # noqa: F401,F403
from keras_models.models.efficientformer import *  # noqa: F401,F403
from keras_models.models.detr import *  # noqa: F401,F403
from keras_models.models.yolos import *  # noqa: F401,F403
from keras_models.models.nystromformer import *  # noqa: F401,F403
from keras_models.models.yoso import *  # noqa: F401,F403
from keras_models.models.vision_encoder_decoder import *  # noqa: F401,F403
from keras_models.models.git import *  # noqa: F401,F403
from keras_models.models.funnel import *  # noqa: F401,F403
from keras_models.models.canine import *  # noqa: F401,F403
from keras_models.models.big_bird import *  # noqa: F401,F403
from keras_models.models.speech_to_text import *  # noqa: F401,F403
from keras_models.models.speecht5 import *  # noqa: F401,F403
from keras_models.models.speech_encoder_decoder import *  # noqa: F401,F403
from keras_models.models.swin2sr import *  # noqa: F401,F403
from keras_models.models.upernet import *  # noqa: F401,F403
from keras_models.models.vitmatte import *  # noqa: F401,F403
from keras_models.models.sam import *  # noqa: F401,F403
from keras_models.models.seggpt import *  # noqa: F401,F403
from keras_models.models.imagegpt import *  # noqa: F401,F403
from keras_models.models.mgp_str import *  # noqa: F401,F403
from keras_models.models.blip import *  # noqa: F401,F403
from keras_models.models.text_encoder_decoder import *  # noqa: F401,F403
from keras_models.models.longformer import *  # noqa: F401,F403
from keras_models.models.xlnet import *  # noqa: F401,F403
from keras_models.models.patchtst import *  # noqa: F401,F403
from keras_models.models.vilt import *  # noqa: F401,F403
from keras_models.models.visual_bert import *  # noqa: F401,F403
from keras_models.models.patchtsmixer import *  # noqa: F401,F403
from keras_models.models.time_series_transformer import *  # noqa: F401,F403
from keras_models.models.informer import *  # noqa: F401,F403
from keras_models.models.pix2struct import *  # noqa: F401,F403
from keras_models.models.registry import registered_model_types

__all__ = ["Backbone", "registered_model_types"]
from keras_models.models.layout_encoders import *  # noqa: F401,F403
from keras_models.models.rwkv import *  # noqa: F401,F403
from keras_models.models.maskformer import *  # noqa: F401,F403
from keras_models.models.tapas import *  # noqa: F401,F403

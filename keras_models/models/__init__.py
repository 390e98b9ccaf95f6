"""Architecture families, imported on demand.

``FAMILIES`` lists every family package (one entry per family: adding an architecture means adding
its package and its name here, then running ``python tools/gen_model_index.py``). Nothing is imported
with this package: ``keras_models.models.BertBackbone`` imports the family that defines it, and
``from_preset`` imports only the family a checkpoint's ``model_type`` names (through the generated
index in ``_index.py``, which tests/test_model_index.py keeps in step with the registrations). Import
costs 3-4 s for all ~125 families and about a tenth of that for one.
:func:`keras_models.models.registry.load_all` imports them all (``registered_model_types`` does).
"""

import importlib
import importlib.util

from keras_models.models.backbone import Backbone
from keras_models.models.registry import load_all, registered_model_types

FAMILIES = (
    "bert", "roberta", "encoder.families", "decoder", "vit", "convnext", "resnet", "t5", "bart",
    "prophetnet", "beit", "swin", "dinat", "poolformer", "regnet", "bit", "mobilenet_v1",
    "mobilenet_v2", "efficientnet", "segformer", "mobilevit", "vitdet", "clip", "altclip", "align",
    "owlvit", "clipseg", "xclip", "groupvit", "wav2vec2", "wav2vec2_bert", "seamless_m4t",
    "encodec", "univnet", "musicgen", "musicgen_melody", "bark", "decision_transformer",
    "trajectory_transformer", "graphormer", "whisper", "ast", "modernbert", "gemma3n", "realm",
    "ernie_m", "retribert", "xlm_prophetnet", "open_llama", "nezha", "transfo_xl", "mctct", "video",
    "llava", "paligemma", "fuyu", "depth", "cvt", "pvt", "focalnet", "mobilevitv2", "swiftformer",
    "levit", "van", "vit_hybrid", "efficientformer", "detr", "yolos", "nystromformer", "yoso",
    "mra", "vision_encoder_decoder", "git", "funnel", "canine", "big_bird", "speech_to_text",
    "speecht5", "speech_encoder_decoder", "swin2sr", "upernet", "vitmatte", "sam", "seggpt",
    "imagegpt", "mgp_str", "blip", "text_encoder_decoder", "longformer", "xlnet", "patchtst",
    "vilt", "visual_bert", "lxmert", "bridgetower", "patchtsmixer", "time_series_transformer",
    "informer", "autoformer", "pix2struct", "layout_encoders", "rwkv", "maskformer", "oneformer",
    "tapas", "jukebox", "kosmos2", "clap", "idefics", "vits", "flava", "pop2piano", "perceiver",
    "fastspeech2_conformer", "tvp", "tvlt", "rag", "cpmant", "reformer", "mega", "clvp",
    "gptsan_japanese", "qdqbert"
)

__all__ = ["Backbone", "registered_model_types", "load_all", "FAMILIES"]


def _names():
    from keras_models.models._index import NAMES

    return NAMES


def __getattr__(name):
    module = _names().get(name)
    if module is not None:
        value = getattr(importlib.import_module(module), name)
    elif not name.startswith("__") and importlib.util.find_spec(f"{__name__}.{name}") is not None:
        value = importlib.import_module(f"{__name__}.{name}")  # a family or helper package
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(_names()))

"""Every encoder family built on the shared encoder (importing this registers them)."""

from keras_models.models.encoder import albert, bert_like, deberta, distilbert, electra, esm, mpnet, roberta_like, roformer
from keras_models.models.encoder import deberta_v1, luke, splinter, xmod
from keras_models.models.encoder.backbone import EncoderBackbone

_MODULES = (roberta_like, bert_like, electra, albert, distilbert, roformer, esm, mpnet, deberta)
_MODULES += (deberta_v1, xmod, splinter, luke)
__all__ = ["EncoderBackbone"] + [n for m in _MODULES for n in m.__all__]
globals().update({n: getattr(m, n) for m in _MODULES for n in m.__all__})

# ConvBERT, XLM / FlauBERT, MobileBERT (own modules, registered like the others).
from keras_models.models.encoder import convbert, mobilebert, xlm  # noqa: E402

_MODULES_B = (convbert, xlm, mobilebert)
__all__ += [n for m in _MODULES_B for n in m.__all__]
globals().update({n: getattr(m, n) for m in _MODULES_B for n in m.__all__})

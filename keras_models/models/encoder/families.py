"""Every encoder family built on the shared encoder (importing this registers them)."""

from keras_models.models.encoder import (
    albert,
    bert_generation,
    bert_like,
    convbert,
    deberta,
    deberta_v1,
    distilbert,
    dpr,
    electra,
    esm,
    fnet,
    ibert,
    layoutlm,
    luke,
    markuplm,
    mobilebert,
    mpnet,
    roberta_like,
    roc_bert,
    roformer,
    splinter,
    squeezebert,
    xlm,
    xmod,
)
from keras_models.models.encoder.backbone import EncoderBackbone

_MODULES = (roberta_like, bert_like, electra, albert, distilbert, roformer, esm, mpnet, deberta,
            deberta_v1, xmod, splinter, luke, convbert, xlm, mobilebert, dpr, layoutlm, fnet,
            ibert, bert_generation, roc_bert, squeezebert, markuplm)
__all__ = ["EncoderBackbone"] + [n for m in _MODULES for n in m.__all__]
globals().update({n: getattr(m, n) for m in _MODULES for n in m.__all__})

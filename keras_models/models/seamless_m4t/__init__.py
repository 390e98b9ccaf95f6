"""SeamlessM4T and v2: NLLB-like text encoder / decoder and a Conformer speech encoder (text and speech to
text), the text-to-unit model and the unit HiFi-GAN vocoder (speech output)."""

from keras_models.models.seamless_m4t.backbone import (SeamlessM4TBackbone, SeamlessM4TSpec, SeamlessM4Tv2Backbone,
                                                       SeamlessM4Tv2Spec)
from keras_models.models.seamless_m4t.tasks import SeamlessM4TSeq2SeqLM, SeamlessM4Tv2Seq2SeqLM

__all__ = ["SeamlessM4TBackbone", "SeamlessM4TSpec", "SeamlessM4TSeq2SeqLM", "SeamlessM4Tv2Backbone",
           "SeamlessM4Tv2Spec", "SeamlessM4Tv2Seq2SeqLM"]

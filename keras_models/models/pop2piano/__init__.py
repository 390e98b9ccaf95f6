from keras_models.models.pop2piano.backbone import Pop2PianoBackbone, Pop2PianoSeq2SeqLM, Pop2PianoSpec
from keras_models.models.pop2piano.features import Pop2PianoFeatureExtractor
from keras_models.models.pop2piano.tokenizer import Pop2PianoTokenizer

__all__ = ["Pop2PianoBackbone", "Pop2PianoSeq2SeqLM", "Pop2PianoSpec", "Pop2PianoFeatureExtractor",
           "Pop2PianoTokenizer"]

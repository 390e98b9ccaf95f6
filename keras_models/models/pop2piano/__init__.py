from keras_models.models.pop2piano.backbone import Pop2PianoBackbone, Pop2PianoSeq2SeqLM, Pop2PianoSpec

__all__ = ["Pop2PianoBackbone", "Pop2PianoSeq2SeqLM", "Pop2PianoSpec"]

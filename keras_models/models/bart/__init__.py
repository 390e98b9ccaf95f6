from keras_models.models.bart.backbone import BartBackbone
from keras_models.models.bart.tasks import BartQuestionAnswerer, BartSeq2SeqLM, BartTextClassifier

__all__ = ["BartBackbone", "BartSeq2SeqLM", "BartTextClassifier", "BartQuestionAnswerer"]
from keras_models.models.bart.led import LEDBackbone, LEDQuestionAnswerer, LEDSeq2SeqLM

__all__ += ["LEDBackbone", "LEDSeq2SeqLM", "LEDQuestionAnswerer"]
from keras_models.models.bart.pegasus_x import PegasusXBackbone, PegasusXSeq2SeqLM

__all__ += ["PegasusXBackbone", "PegasusXSeq2SeqLM"]
from keras_models.models.bart.fsmt import FSMTBackbone, FSMTSeq2SeqLM

__all__ += ["FSMTBackbone", "FSMTSeq2SeqLM"]
from keras_models.models.bart.nllb_moe import NllbMoeBackbone, NllbMoeSeq2SeqLM

__all__ += ["NllbMoeBackbone", "NllbMoeSeq2SeqLM"]
from keras_models.models.bart.bigbird_pegasus import (BigBirdPegasusBackbone, BigBirdPegasusQuestionAnswerer,
                                                      BigBirdPegasusSeq2SeqLM, BigBirdPegasusTextClassifier)

__all__ += ["BigBirdPegasusBackbone", "BigBirdPegasusSeq2SeqLM", "BigBirdPegasusTextClassifier",
            "BigBirdPegasusQuestionAnswerer"]

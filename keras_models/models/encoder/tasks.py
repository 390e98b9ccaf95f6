"""Family task classes: each family declares ``class <Family><Task>(Base)`` with the
``@family_task`` decorator, which registers it for its backbone (task name, Transformers
architectures) and as Keras-serialisable.

BERT's own head names are the generic classes' defaults (``MaskedLM`` also loads
``...ForPreTraining``); the RoBERTa-shaped families share the bases below (``lm_head.*`` and the
``classifier.dense`` -> ``classifier.out_proj`` classifier).
"""

import keras

from keras_models.models.registry import register_task
from keras_models.tasks.text import MaskedLM, TextClassifier


def family_task(backbone_cls, task, *architectures):
    """Register a family's task class for ``backbone_cls`` under ``task`` (e.g. ``"MaskedLM"``),
    loading the Transformers ``architectures``; the class becomes Keras-serialisable."""

    def wrap(cls):
        cls = register_task(backbone_cls, task, architectures)(cls)
        return keras.saving.register_keras_serializable(package="keras_models")(cls)

    return wrap


class RobertaShapedMaskedLM(MaskedLM):
    """RoBERTa's MLM head names (``lm_head.*``, exact gelu)."""

    hf_dense = "lm_head.dense"
    hf_norm = "lm_head.layer_norm"
    hf_bias = "lm_head.bias"
    head_activation = "gelu"  # RoBERTa-shaped LM heads use exact gelu
    hf_decoder = "lm_head.decoder"
    hf_head_patterns = ("lm_head.*",)


class RobertaShapedTextClassifier(TextClassifier):
    """RoBERTa's classifier (``classifier.dense`` -> ``classifier.out_proj``, no pooler)."""

    hf_inner = ("classifier.dense", False)
    hf_out = "classifier.out_proj"
    input_dropout = True


class ClassifierDenseOutProj(TextClassifier):
    """``classifier.dense`` -> ``classifier.out_proj`` with input dropout (ELECTRA-shaped
    classifiers; families set ``inner_activation``)."""

    hf_inner = ("classifier.dense", False)
    hf_out = "classifier.out_proj"
    input_dropout = True

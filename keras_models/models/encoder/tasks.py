"""Family task classes from tables: each family lists its heads' HF names, nothing else.

``define_tasks(namespace, backbone_cls, "XLMRoberta", ROBERTA_HEADS)`` creates and registers
``XLMRobertaMaskedLM``, ``XLMRobertaTextClassifier``, ... as subclasses of the generic text tasks
with the given class attributes (HF tensor names, head activation), and puts them in
``namespace`` (the family module's globals) so they are public as ``km.models.<Name>``.
"""

import keras

from keras_models.models.registry import register_task
from keras_models.tasks.embedder import TextEmbedder
from keras_models.tasks.text import MaskedLM, QuestionAnswerer, TextClassifier, TokenClassifier

GENERIC = {
    "MaskedLM": (MaskedLM, ("ForMaskedLM",)),
    "TextClassifier": (TextClassifier, ("ForSequenceClassification",)),
    "TokenClassifier": (TokenClassifier, ("ForTokenClassification",)),
    "QuestionAnswerer": (QuestionAnswerer, ("ForQuestionAnswering",)),
    "TextEmbedder": (TextEmbedder, ("Model",)),
}

# BERT's own head names are the generic classes' defaults.
BERT_HEADS = {
    "MaskedLM": dict(extra_architectures=("ForPreTraining",)),
    "TextClassifier": {},
    "TokenClassifier": {},
    "QuestionAnswerer": {},
    "TextEmbedder": {},
}

ROBERTA_HEADS = {
    "MaskedLM": dict(hf_dense="lm_head.dense", hf_norm="lm_head.layer_norm", hf_bias="lm_head.bias",
                     head_activation="gelu",  # RoBERTa-shaped LM heads use exact gelu
                     hf_decoder="lm_head.decoder", hf_head_patterns=("lm_head.*",)),
    "TextClassifier": dict(hf_inner=("classifier.dense", False), hf_out="classifier.out_proj",
                           input_dropout=True),
    "TokenClassifier": {},
    "QuestionAnswerer": {},
    "TextEmbedder": {},
}


def define_tasks(namespace, backbone_cls, name, heads, classes=None):
    """Create, register and publish ``{name}{task}`` for every ``task: attrs`` in ``heads``.

    ``attrs`` are class attributes; ``extra_architectures`` adds HF architecture suffixes (e.g.
    ``ForPreTraining``) and ``base`` overrides the generic base class. ``classes`` lets a family
    name its own base classes for task names outside ``GENERIC``.
    """
    made = []
    for task, attrs in heads.items():
        attrs = dict(attrs)
        base, suffixes = (classes or {}).get(task) or GENERIC[task]
        base = attrs.pop("base", base)
        suffixes = tuple(suffixes) + tuple(attrs.pop("extra_architectures", ()))
        archs = tuple(name + s for s in suffixes)
        cls = type(f"{name}{task}", (base,), {"__module__": namespace["__name__"], **attrs})
        cls = register_task(backbone_cls, task, archs)(cls)
        cls = keras.saving.register_keras_serializable(package="keras_models")(cls)
        namespace[cls.__name__] = cls
        made.append(cls.__name__)
    return made

"""Multiple choice: score each of ``num_choices`` candidate sequences, as Transformers'
``*ForMultipleChoice`` models do.

Every token input is ``(batch, num_choices, seq)``; the task flattens them to
``(batch * num_choices, seq)``, runs the backbone and a one-unit summary head on each row, and
returns logits ``(batch, num_choices)``. The default loss is sparse categorical cross-entropy over
the choices (labels: the index of the right choice).

A family's multiple-choice class is ``class <Family>MultipleChoice(MultipleChoice, ...)``: the
head is the family's text-classification head builder with one output unit (``MultipleChoice``
first in the bases, the family's ``TextClassifier`` after it, so its ``call`` / head names are
reused), or ``MultipleChoice`` alone with the head names set where Transformers' multiple-choice
head differs from its sequence classifier's (RoBERTa: BERT's pooler; ELECTRA: the sequence
summary; MRA: ``pre_classifier`` + relu).
"""

import keras
from keras import ops

from keras_models.errors import ConfigError, InputError
from keras_models.preprocessing.text import TextClassifierPreprocessor
from keras_models.tasks.text import TOKENIZER_FILES, TextClassifier, _with_pre, sparse_ce


class MultipleChoicePreprocessor(TextClassifierPreprocessor):
    """``(prompt, [choice, ...])`` samples -> token arrays ``(batch, num_choices, seq)``: each
    choice is tokenized as the pair ``(prompt, choice)``, as Transformers users tokenize
    ``[[prompt, choice], ...]`` for ``*ForMultipleChoice``. Every sample needs the same number of
    choices."""

    def features(self, x):
        samples = [x] if isinstance(x, tuple) and len(x) == 2 and isinstance(x[0], str) else list(x)
        counts = set()
        texts, pairs = [], []
        for i, sample in enumerate(samples):
            if not (isinstance(sample, (tuple, list)) and len(sample) == 2 and isinstance(sample[0], str)
                    and isinstance(sample[1], (list, tuple)) and sample[1]):
                raise InputError(f"MultipleChoicePreprocessor: sample {i} must be (prompt, [choice, ...]), "
                                 f"got {sample!r}")
            counts.add(len(sample[1]))
            texts += [sample[0]] * len(sample[1])
            pairs += [str(c) for c in sample[1]]
        if len(counts) > 1:
            raise InputError(f"MultipleChoicePreprocessor: samples have different numbers of choices {sorted(counts)}")
        n = counts.pop()
        return {k: v.reshape(len(samples), n, v.shape[-1]) for k, v in self.tokenize(texts, pairs).items()}


def _flatten_choices(value, rank):
    """(batch, choices, ...) -> (batch * choices, ...) for a per-choice input (rank ``rank``)."""
    if len(value.shape) != rank:
        return value
    rest = tuple(d if d is not None else ops.shape(value)[i + 2] for i, d in enumerate(value.shape[2:]))
    return ops.reshape(value, (-1,) + rest)


@keras.saving.register_keras_serializable(package="keras_models")
class MultipleChoice(TextClassifier):
    """Multiple choice over ``(batch, num_choices, seq)`` token inputs -> logits
    ``(batch, num_choices)`` (Transformers' ``*ForMultipleChoice``; the pipeline-less task has no
    Transformers task name, so the class name follows the architecture suffix).

    Built on the family's sequence-classification head with ``num_classes=1`` (BERT's default:
    ``pooler.dense`` -> tanh -> dropout -> ``classifier``). ``dropout`` overrides the
    checkpoint's; ``activation`` the head's inner activation.
    """

    task_name = "MultipleChoice"

    def __init__(self, backbone, dropout=None, activation=None, preprocessor=None, **kwargs):
        for key in ("num_classes", "id2label"):  # fixed: one score per choice
            value = kwargs.pop(key, None)
            if key == "num_classes" and value not in (None, 1):
                raise ConfigError(f"{type(self).__name__}: num_classes={value!r}; a multiple-choice head "
                                  "scores each choice with one unit (num_classes=1)")
        if activation is not None:
            self.inner_activation = activation
        self.activation = activation
        super().__init__(backbone, num_classes=1, dropout=dropout, preprocessor=preprocessor, **kwargs)

    @classmethod
    def task_config_from_hf(cls, hf, head_from_checkpoint, num_classes=None, **kwargs):
        if num_classes not in (None, 1):
            raise ConfigError(f"{cls.__name__}: num_classes={num_classes!r}; a multiple-choice head scores "
                              "each choice with one unit (num_classes=1)")
        if hf.get("classifier_dropout") is not None:
            kwargs.setdefault("dropout", hf["classifier_dropout"])
        return kwargs

    def task_config_to_hf(self):
        return {}

    def get_config(self):
        c = super().get_config()
        for key in ("num_classes", "id2label"):
            c.pop(key, None)
        c["activation"] = self.activation
        return c

    def default_loss(self):  # labels: the index of the right choice, (batch,)
        return sparse_ce()

    @classmethod
    def preprocessor_from_preset(cls, folder, hf, **kw):
        if not any((folder / f).is_file() for f in TOKENIZER_FILES) and not list(folder.glob("*.model")):
            return None
        from keras_models.tokenizers import Tokenizer

        return MultipleChoicePreprocessor(Tokenizer.from_preset(folder), **_with_pre(kw))

    def build_from_dummy(self):
        if not self.built or not self.weights:
            from keras_models.layers.init import build_symbolically

            dummy = {k: v[:, None] for k, v in self.backbone.dummy_inputs().items()}
            build_symbolically(self, dummy)
        return self

    def call(self, inputs, training=False):
        if not isinstance(inputs, dict):
            inputs = {"input_ids": inputs}
        if "input_ids" not in inputs:
            raise InputError(f"{type(self).__name__}: inputs need input_ids (batch, num_choices, seq); "
                             f"got {sorted(inputs)}")
        ids = inputs["input_ids"]
        if len(ids.shape) != 3:
            raise InputError(f"{type(self).__name__}: input_ids must be (batch, num_choices, seq), got shape "
                             f"{tuple(ids.shape)}")
        num_choices = ids.shape[1] if ids.shape[1] is not None else ops.shape(ids)[1]
        flat = {k: _flatten_choices(v, 3) for k, v in inputs.items()}
        logits = super().call(flat, training=training)  # (batch * choices, 1)
        return ops.reshape(logits, (-1, num_choices))


__all__ = ["MultipleChoice", "MultipleChoicePreprocessor"]

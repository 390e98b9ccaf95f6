"""Generic text tasks. Families subclass them and set the HF tensor names of their heads.

The generic classes are the public entry points (``km.TextClassifier.from_preset(...)``): they
resolve the family's own subclass from config.json.
"""


import keras
from keras import ops

from keras_models.presets.weight_map import TRANSPOSE, Rule
from keras_models.tasks.heads import ClassificationHead, MaskedLMHead
from keras_models.tasks.task import Task, labelled_task_kwargs, labels_to_hf
from keras_models.backend_choice import switch_on

# A first-token classifier reads only position 0 of the last hidden state, so the backbone's last
# block computes only that position (queries from it, keys / values from every position): about a
# sixth of the layer-FLOPs of a 6-layer encoder, in predict and in fit; the logits are the same up
# to float summation order. ``KM_FIRST_TOKEN_ONLY=0`` (or FIRST_TOKEN_ONLY[0] = False) computes the
# full last layer.
FIRST_TOKEN_ONLY = [switch_on("KM_FIRST_TOKEN_ONLY")]


def _dense_rules(name, dense, base=False):
    out = [Rule(f"{name}.weight", dense.kernel, TRANSPOSE, base=base)]
    if dense.use_bias:
        out.append(Rule(f"{name}.bias", dense.bias, base=base))
    return out


# A folder with any of these carries a tokenizer (tokenizer_config.json alone: ByT5, whose bytes are
# the vocabulary; the others are the files each tokenizer format reads).
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "vocab.json", "merges.txt",
                   "spiece.model", "sentencepiece.bpe.model", "tokenizer.model", "prophetnet.tokenizer",
                   "source.spm", "bpe.codes", "dict.txt", "vocab-src.json", "vocab-tgt.json")


def _text_preprocessor(folder, hf, kind, sequence_length=None, **_):
    """The family-agnostic text preprocessor ``kind`` over the folder's tokenizer (None when the
    folder ships no tokenizer files; a broken tokenizer raises)."""
    if not any((folder / f).is_file() for f in TOKENIZER_FILES) and not list(folder.glob("*.model")):
        return None
    from keras_models.preprocessing import text as text_pre
    from keras_models.tokenizers import Tokenizer

    tokenizer = Tokenizer.from_preset(folder)
    return getattr(text_pre, kind)(tokenizer, sequence_length=sequence_length)


def sparse_ce(ignore_class=None):
    """Cross-entropy on logits averaged over the labels that count (weight > 0, not
    ``ignore_class``), as Transformers' CrossEntropyLoss(ignore_index=-100): Keras' default
    divides by every position, so padding would shrink the loss."""
    return keras.losses.SparseCategoricalCrossentropy(from_logits=True, ignore_class=ignore_class,
                                                      reduction="mean_with_sample_weight")


def _with_pre(kwargs):
    return {k: v for k, v in kwargs.items() if k in ("sequence_length",)}


@keras.saving.register_keras_serializable(package="keras_models")
class MaskedLM(Task):
    task_name = "MaskedLM"
    hf_dense = "cls.predictions.transform.dense"
    hf_norm = "cls.predictions.transform.LayerNorm"
    hf_bias = "cls.predictions.bias"
    hf_decoder = "cls.predictions.decoder"  # weight tied to word embeddings unless untied
    hf_head_patterns = ("cls.*",)
    # The head's activation (None: the backbone's hidden_act) and the backbone attribute giving
    # its width (None: hidden_size; factorised models use their embedding width).
    head_activation = None
    head_width_attr = None

    def __init__(self, backbone, preprocessor=None, tie_word_embeddings=True, **kwargs):
        super().__init__(backbone, preprocessor=preprocessor, **kwargs)
        self.tie_word_embeddings = tie_word_embeddings
        b = backbone
        width = getattr(b, self.head_width_attr) if self.head_width_attr else None
        self.head = MaskedLMHead(
            b.hidden_size, b.vocab_size, hidden_act=self.head_activation or b.hidden_act,
            layer_norm_eps=b.layer_norm_eps, projection_size=width,
            tied=tie_word_embeddings, name="mlm_head", dtype=b.dtype_policy,
            kernel_initializer=keras.initializers.TruncatedNormal(stddev=b.initializer_range),
        )

    @classmethod
    def task_config_from_hf(cls, hf, head_from_checkpoint, **kwargs):
        kwargs.setdefault("tie_word_embeddings", hf.get("tie_word_embeddings", True))
        return kwargs

    def task_config_to_hf(self):
        return {"tie_word_embeddings": self.tie_word_embeddings}

    def default_loss(self):  # labels: token ids; -100 (Transformers' convention) is ignored
        return sparse_ce(ignore_class=-100)

    def get_config(self):
        config = super().get_config()
        config["tie_word_embeddings"] = self.tie_word_embeddings
        return config

    @classmethod
    def preprocessor_from_preset(cls, folder, hf, **kw):
        return _text_preprocessor(folder, hf, "MaskedLMPreprocessor", **_with_pre(kw))

    def call(self, inputs, training=False):
        h = self.backbone(inputs, training=training)
        return self.head(h, self.backbone.token_embedding.embeddings)

    def head_rules(self):
        h = self.head
        r = [
            *_dense_rules(self.hf_dense, h.dense),
            Rule(f"{self.hf_norm}.weight", h.norm.gamma, base=False),
            Rule(f"{self.hf_norm}.bias", h.norm.beta, base=False),
            Rule(self.hf_bias, h.bias, base=False),
            # Transformers saves decoder.bias (the same values as bias) only for untied heads.
            Rule(f"{self.hf_decoder}.bias", h.bias, base=False, optional=True,
                 export=not self.tie_word_embeddings),
        ]
        if self.tie_word_embeddings:
            r.append(Rule(f"{self.hf_decoder}.weight", self.backbone.token_embedding.embeddings,
                          base=False, optional=True, export=False))
        else:
            r.append(Rule(f"{self.hf_decoder}.weight", h.decoder, base=False))
        return r


class _LabelledTask(Task):
    """Tasks with ``num_classes`` and ``id2label`` read from / written to config.json."""

    @classmethod
    def task_config_from_hf(cls, hf, head_from_checkpoint, num_classes=None, **kwargs):
        kwargs = labelled_task_kwargs(hf, num_classes, head_from_checkpoint, kwargs)
        if hf.get("classifier_dropout") is not None:
            kwargs.setdefault("dropout", hf["classifier_dropout"])
        return kwargs

    def task_config_to_hf(self):
        return labels_to_hf(self.id2label, self.num_classes)

    def get_config(self):
        c = super().get_config()
        c.update(num_classes=self.num_classes, id2label=self.id2label, dropout=self.dropout)
        return c

    ignore_label = None  # a label value the default loss skips

    def default_loss(self):
        return sparse_ce(ignore_class=self.ignore_label)

    def default_metrics(self):
        return [keras.metrics.SparseCategoricalAccuracy(name="accuracy")]


@keras.saving.register_keras_serializable(package="keras_models")
class TextClassifier(_LabelledTask):
    """Sequence classification on the first ([CLS]) token.

    ``hf_inner`` names the dense+tanh layer applied before the classifier (BERT's pooler,
    base-relative; RoBERTa's ``classifier.dense``); ``hf_out`` names the output layer.
    """

    task_name = "TextClassifier"
    hf_inner = ("pooler.dense", True)  # (name, base-relative?) or None
    hf_out = "classifier"
    hf_head_patterns = ("classifier.*",)
    input_dropout = False
    inner_activation = "tanh"

    def __init__(self, backbone, num_classes=2, id2label=None, dropout=None, preprocessor=None,
                 **kwargs):
        super().__init__(backbone, preprocessor=preprocessor, **kwargs)
        self.num_classes = num_classes
        self.id2label = {int(k): v for k, v in id2label.items()} if id2label else None
        self.dropout = backbone.dropout_rate if dropout is None else dropout
        self.head = ClassificationHead(
            backbone.hidden_size, num_classes, inner_dense=self.hf_inner is not None,
            activation=self.inner_activation or backbone.hidden_act, dropout=self.dropout,
            input_dropout=self.input_dropout, name="classifier_head",
            dtype=backbone.dtype_policy,
            kernel_initializer=keras.initializers.TruncatedNormal(stddev=backbone.initializer_range),
        )

    @classmethod
    def preprocessor_from_preset(cls, folder, hf, **kw):
        return _text_preprocessor(folder, hf, "TextClassifierPreprocessor", **_with_pre(kw))

    def pool(self, hidden, inputs):
        return hidden[:, 0]

    def call(self, inputs, training=False):
        if not isinstance(inputs, dict):
            inputs = {"input_ids": inputs}
        if self._first_token_only():
            h = self.backbone(inputs, training=training, query_rows=1)
        else:
            h = self.backbone(inputs, training=training)
        return self.head(self.pool(h, inputs), training=training)

    def _first_token_only(self):
        """Whether the backbone's last block may compute only the first position: this head reads
        nothing else (the base ``pool``), the backbone offers it (``first_rows_only``) and the
        switch ``KM_FIRST_TOKEN_ONLY`` (:data:`FIRST_TOKEN_ONLY`) is on."""
        offers = getattr(self.backbone, "first_rows_only", None)
        return (FIRST_TOKEN_ONLY[0] and type(self).pool is TextClassifier.pool
                and offers is not None and offers())

    def head_rules(self):
        r = []
        if self.hf_inner is not None:
            name, base = self.hf_inner
            r += _dense_rules(name, self.head.dense, base=base)
        return r + _dense_rules(self.hf_out, self.head.out)

@keras.saving.register_keras_serializable(package="keras_models")
class TokenClassifier(_LabelledTask):
    task_name = "TokenClassifier"
    ignore_label = -100  # sub-word continuations and padding, as Transformers labels them
    hf_out = "classifier"
    hf_head_patterns = ("classifier.*",)

    def __init__(self, backbone, num_classes=2, id2label=None, dropout=None, preprocessor=None, **kwargs):
        super().__init__(backbone, preprocessor=preprocessor, **kwargs)
        self.num_classes = num_classes
        self.id2label = {int(k): v for k, v in id2label.items()} if id2label else None
        self.dropout = backbone.dropout_rate if dropout is None else dropout
        self.head = ClassificationHead(
            backbone.hidden_size, num_classes, inner_dense=False, dropout=self.dropout,
            name="token_head", dtype=backbone.dtype_policy,
            kernel_initializer=keras.initializers.TruncatedNormal(stddev=backbone.initializer_range),
        )

    @classmethod
    def preprocessor_from_preset(cls, folder, hf, **kw):
        return _text_preprocessor(folder, hf, "TokenClassifierPreprocessor", **_with_pre(kw))

    def call(self, inputs, training=False):
        if not isinstance(inputs, dict):
            inputs = {"input_ids": inputs}
        return self.head(self.backbone(inputs, training=training), training=training)

    def head_rules(self):
        return _dense_rules(self.hf_out, self.head.out)


@keras.saving.register_keras_serializable(package="keras_models")
class QuestionAnswerer(Task):
    """Extractive QA: returns ``{"start_logits", "end_logits"}``, each (batch, seq)."""

    task_name = "QuestionAnswerer"
    hf_out = "qa_outputs"
    hf_head_patterns = ("qa_outputs.*",)

    def __init__(self, backbone, preprocessor=None, **kwargs):
        super().__init__(backbone, preprocessor=preprocessor, **kwargs)
        self.qa = keras.layers.Dense(
            2, name="qa_outputs", dtype=backbone.dtype_policy,
            kernel_initializer=keras.initializers.TruncatedNormal(stddev=backbone.initializer_range),
        )

    @classmethod
    def preprocessor_from_preset(cls, folder, hf, **kw):
        return _text_preprocessor(folder, hf, "TextClassifierPreprocessor", **_with_pre(kw))

    def default_loss(self):  # labels: {"start_logits": start index, "end_logits": end index}
        return {"start_logits": sparse_ce(), "end_logits": sparse_ce()}

    def call(self, inputs, training=False):
        if not isinstance(inputs, dict):
            inputs = {"input_ids": inputs}
        logits = self.qa(self.backbone(inputs, training=training))
        return {"start_logits": logits[..., 0], "end_logits": logits[..., 1]}

    def head_rules(self):
        return _dense_rules(self.hf_out, self.qa)


__all__ = ["sparse_ce", "MaskedLM", "TextClassifier", "TokenClassifier", "QuestionAnswerer", "ops"]

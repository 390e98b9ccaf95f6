"""XLNet's tasks.

* MaskedLM = XLNetLMHeadModel's logits (``lm_loss``: the token table, tied unless
  ``tie_word_embeddings`` is false, plus a bias) on the content stream, every position seeing the
  whole (unpadded) input; permutation language modelling (``perm_mask`` / ``target_mapping``) and
  XLNet's generation are not implemented;
* TextClassifier = XLNetForSequenceClassification: ``sequence_summary`` (``summary_type``: the
  last token, whatever the padding, as in Transformers; or first / mean / cls_index = last)
  -> dense + ``summary_activation`` -> ``logits_proj``;
* TokenClassifier (``classifier``) and QuestionAnswerer (XLNetForQuestionAnsweringSimple,
  ``qa_outputs``).
"""

import keras
from keras import ops

from keras_models.models.encoder.tasks import family_task
from keras_models.models.xlnet.backbone import XLNetBackbone
from keras_models.presets.weight_map import TRANSPOSE, Rule
from keras_models.tasks.task import Task
from keras_models.tasks.text import (QuestionAnswerer, TextClassifier, TokenClassifier, _text_preprocessor,
                                     _with_pre, sparse_ce)


@family_task(XLNetBackbone, "MaskedLM", "XLNetLMHeadModel")
class XLNetLMHead(Task):
    task_name = "MaskedLM"
    hf_head_patterns = ("lm_loss.*",)

    def __init__(self, backbone, preprocessor=None, tie_word_embeddings=True, **kwargs):
        super().__init__(backbone, preprocessor=preprocessor, **kwargs)
        self.tie_word_embeddings = tie_word_embeddings
        b = backbone
        self.decoder = None
        if not tie_word_embeddings:
            self.decoder = self.add_weight(name="lm_loss_kernel", shape=(b.vocab_size, b.hidden_size),
                                           initializer=keras.initializers.TruncatedNormal(stddev=b.initializer_range))
        self.bias = self.add_weight(name="lm_loss_bias", shape=(b.vocab_size,), initializer="zeros")

    @classmethod
    def task_config_from_hf(cls, hf, head_from_checkpoint, **kwargs):
        kwargs.setdefault("tie_word_embeddings", hf.get("tie_word_embeddings", True))
        return kwargs

    def task_config_to_hf(self):
        return {"tie_word_embeddings": self.tie_word_embeddings}

    @classmethod
    def preprocessor_from_preset(cls, folder, hf, **kw):
        return _text_preprocessor(folder, hf, "MaskedLMPreprocessor", **_with_pre(kw))

    def default_loss(self):
        return sparse_ce(ignore_class=-100)

    def call(self, inputs, training=False):
        h = self.backbone(inputs, training=training)
        table = self.backbone.token_embedding.embeddings if self.decoder is None else self.decoder
        return ops.matmul(h, ops.transpose(ops.cast(table, h.dtype))) + ops.cast(self.bias, h.dtype)

    def head_rules(self):
        r = [Rule("lm_loss.bias", self.bias, base=False)]
        if self.decoder is None:
            r.append(Rule("lm_loss.weight", self.backbone.token_embedding.embeddings, base=False, optional=True,
                          export=False))
        else:
            r.append(Rule("lm_loss.weight", self.decoder, base=False))
        return r

    def get_config(self):
        config = super().get_config()
        config["tie_word_embeddings"] = self.tie_word_embeddings
        return config


@family_task(XLNetBackbone, "TextClassifier", "XLNetForSequenceClassification")
class XLNetTextClassifier(TextClassifier):
    hf_inner = ("sequence_summary.summary", False)
    hf_out = "logits_proj"
    hf_head_patterns = ("sequence_summary.*", "logits_proj.*")

    def __init__(self, backbone, num_classes=2, id2label=None, dropout=None, **kwargs):
        dropout = backbone.summary_last_dropout if dropout is None else dropout
        super().__init__(backbone, num_classes=num_classes, id2label=id2label, dropout=dropout, **kwargs)

    @property
    def inner_activation(self):
        return self.backbone.summary_activation or "linear"

    def pool(self, hidden, inputs):
        kind = self.backbone.summary_type
        if kind == "first":
            return hidden[:, 0]
        if kind == "mean":
            return ops.mean(hidden, axis=1)
        return hidden[:, -1]  # "last", and "cls_index" without an index


@family_task(XLNetBackbone, "TokenClassifier", "XLNetForTokenClassification")
class XLNetTokenClassifier(TokenClassifier):
    pass


@family_task(XLNetBackbone, "QuestionAnswerer", "XLNetForQuestionAnsweringSimple")
class XLNetQuestionAnswerer(QuestionAnswerer):
    pass


__all__ = ["XLNetLMHead", "XLNetTextClassifier", "XLNetTokenClassifier", "XLNetQuestionAnswerer"]

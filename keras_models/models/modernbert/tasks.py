"""ModernBERT's task heads. Every head starts with Transformers' ``head`` (dense -> activation ->
LayerNorm: ``classifier_bias``, ``classifier_activation``, ``norm_bias``); the MLM head then
projects on the token embeddings (tied unless ``tie_word_embeddings`` is false, bias
``decoder_bias``); the classifiers end in ``classifier``. Sequence classification pools the
first token or the masked mean of the hidden states (``classifier_pooling``)."""

import keras
from keras import ops

from keras_models.layers.activations import get_activation
from keras_models.layers.vision_embeddings import dense_rules, norm_rules
from keras_models.models.encoder.tasks import family_task
from keras_models.models.modernbert.backbone import ModernBertBackbone
from keras_models.presets.weight_map import Rule
from keras_models.tasks.embedder import TextEmbedder
from keras_models.tasks.task import Task
from keras_models.tasks.text import MaskedLM, QuestionAnswerer, TextClassifier, TokenClassifier

_ser = keras.saving.register_keras_serializable(package="keras_models")


@_ser
class ModernBertPredictionHead(keras.layers.Layer):
    """dense (bias: ``dense_bias``) -> activation -> LayerNorm (bias: ``norm_bias``)."""

    def __init__(self, hidden_size, activation="gelu", layer_norm_eps=1e-5, dense_bias=False, norm_bias=False,
                 kernel_initializer="glorot_uniform", **kwargs):
        super().__init__(**kwargs)
        self.hidden_size, self.activation, self.layer_norm_eps = hidden_size, activation, layer_norm_eps
        self.dense_bias, self.norm_bias = dense_bias, norm_bias
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.act = get_activation(activation)
        self.dense = keras.layers.Dense(hidden_size, use_bias=dense_bias, kernel_initializer=self.kernel_initializer,
                                        name="dense", dtype=self.dtype_policy)
        self.norm = keras.layers.LayerNormalization(epsilon=layer_norm_eps, center=norm_bias, name="norm",
                                                    dtype=self.dtype_policy)

    def build(self, input_shape):
        self.dense.build(input_shape)
        self.norm.build(tuple(input_shape[:-1]) + (self.hidden_size,))
        self.built = True

    def call(self, x):
        return self.norm(self.act(self.dense(x)))

    def rules(self, prefix="head"):
        return dense_rules(f"{prefix}.dense", self.dense, base=False) + norm_rules(f"{prefix}.norm", self.norm, base=False)

    def get_config(self):
        c = super().get_config()
        c.update(hidden_size=self.hidden_size, activation=self.activation, layer_norm_eps=self.layer_norm_eps,
                 dense_bias=self.dense_bias, norm_bias=self.norm_bias,
                 kernel_initializer=keras.initializers.serialize(self.kernel_initializer))
        return c


def _prediction_head(backbone):
    return ModernBertPredictionHead(
        backbone.hidden_size, activation=backbone.classifier_activation, layer_norm_eps=backbone.layer_norm_eps,
        dense_bias=backbone.classifier_bias, norm_bias=backbone.norm_bias, name="prediction_head",
        dtype=backbone.dtype_policy,
        kernel_initializer=keras.initializers.TruncatedNormal(stddev=backbone.initializer_range),
    )


def _as_dict(inputs):
    return inputs if isinstance(inputs, dict) else {"input_ids": inputs}


@_ser
class ModernBertLMHead(keras.layers.Layer):
    """The prediction head, then logits against the token embeddings (``tied``) or an own decoder
    matrix, plus a vocabulary bias when ``decoder_bias``."""

    def __init__(self, vocab_size, tied=True, decoder_bias=True, head=None, **kwargs):
        super().__init__(**kwargs)
        self.vocab_size, self.tied, self.use_decoder_bias = vocab_size, tied, decoder_bias
        self.head = ModernBertPredictionHead(**head, name="head", dtype=self.dtype_policy)

    def build(self, input_shape):
        self.head.build(input_shape)
        hidden = self.head.hidden_size
        if not self.tied:
            self.decoder = self.add_weight(name="decoder", shape=(self.vocab_size, hidden),
                                           initializer=self.head.kernel_initializer)
        self.bias = (self.add_weight(name="bias", shape=(self.vocab_size,), initializer="zeros")
                     if self.use_decoder_bias else None)
        self.built = True

    def call(self, x, embeddings=None):
        h = self.head(x)
        table = embeddings if self.tied else self.decoder
        logits = ops.matmul(h, ops.transpose(ops.cast(table, h.dtype)))
        return logits if self.bias is None else logits + ops.cast(self.bias, h.dtype)

    def get_config(self):
        c = super().get_config()
        head = self.head.get_config()
        c.update(vocab_size=self.vocab_size, tied=self.tied, decoder_bias=self.use_decoder_bias,
                 head={k: head[k] for k in ("hidden_size", "activation", "layer_norm_eps", "dense_bias",
                                            "norm_bias", "kernel_initializer")})
        return c


@family_task(ModernBertBackbone, "MaskedLM", "ModernBertForMaskedLM")
class ModernBertMaskedLM(MaskedLM):
    """``decoder(head(hidden))``: the decoder is the token embedding table unless untied."""

    hf_head_patterns = ("head.*", "decoder.*")

    def __init__(self, backbone, preprocessor=None, tie_word_embeddings=True, **kwargs):
        Task.__init__(self, backbone, preprocessor=preprocessor, **kwargs)  # MaskedLM's BERT head is not built
        self.tie_word_embeddings = tie_word_embeddings
        b = backbone
        head = dict(hidden_size=b.hidden_size, activation=b.classifier_activation, layer_norm_eps=b.layer_norm_eps,
                    dense_bias=b.classifier_bias, norm_bias=b.norm_bias,
                    kernel_initializer=keras.initializers.TruncatedNormal(stddev=b.initializer_range))
        self.head = ModernBertLMHead(b.vocab_size, tied=tie_word_embeddings, decoder_bias=b.decoder_bias, head=head,
                                     name="mlm_head", dtype=b.dtype_policy)

    def head_rules(self):
        h = self.head
        r = h.head.rules()
        if h.bias is not None:
            r.append(Rule("decoder.bias", h.bias, base=False))
        if self.tie_word_embeddings:
            r.append(Rule("decoder.weight", self.backbone.token_embedding.embeddings, base=False, optional=True,
                          export=False))
        else:
            r.append(Rule("decoder.weight", h.decoder, base=False))
        return r


class _HeadThenClassifier:
    """Mixin for the labelled heads: ``head`` (dense, act, LayerNorm) before the generic head, whose
    dropout and ``classifier`` output layer follow; the dropout defaults to ``classifier_dropout``."""

    hf_head_patterns = ("head.*", "classifier.*")

    def __init__(self, backbone, dropout=None, **kwargs):
        super().__init__(backbone, dropout=backbone.classifier_dropout if dropout is None else dropout, **kwargs)
        self.prediction_head = _prediction_head(backbone)

    def head_rules(self):
        return self.prediction_head.rules() + super().head_rules()


@family_task(ModernBertBackbone, "TextClassifier", "ModernBertForSequenceClassification")
class ModernBertTextClassifier(_HeadThenClassifier, TextClassifier):
    """``classifier(dropout(head(pool(hidden))))``, pooling the first token or the masked mean."""

    hf_inner = None  # the generic head is dropout -> classifier

    def pool(self, hidden, inputs):
        pooled = super().pool(hidden, inputs)
        if self.backbone.classifier_pooling == "mean":
            mask = inputs.get("attention_mask")
            if mask is None:
                pooled = ops.mean(hidden, axis=1)
            else:
                m = ops.cast(mask, hidden.dtype)[..., None]
                pooled = ops.sum(hidden * m, axis=1) / ops.sum(m, axis=1)
        return self.prediction_head(pooled)


@family_task(ModernBertBackbone, "TokenClassifier", "ModernBertForTokenClassification")
class ModernBertTokenClassifier(_HeadThenClassifier, TokenClassifier):
    def call(self, inputs, training=False):
        h = self.prediction_head(self.backbone(_as_dict(inputs), training=training))
        return self.head(h, training=training)


@family_task(ModernBertBackbone, "QuestionAnswerer", "ModernBertForQuestionAnswering")
class ModernBertQuestionAnswerer(QuestionAnswerer):
    """``classifier(dropout(head(hidden)))`` split into start / end logits."""

    hf_out = "classifier"
    hf_head_patterns = ("head.*", "classifier.*")

    def __init__(self, backbone, preprocessor=None, dropout=None, **kwargs):
        super().__init__(backbone, preprocessor=preprocessor, **kwargs)
        self.dropout = backbone.classifier_dropout if dropout is None else dropout
        self.prediction_head = _prediction_head(backbone)
        self.head_dropout = keras.layers.Dropout(self.dropout, dtype=backbone.dtype_policy)

    def call(self, inputs, training=False):
        h = self.prediction_head(self.backbone(_as_dict(inputs), training=training))
        logits = self.qa(self.head_dropout(h, training=training))
        return {"start_logits": logits[..., 0], "end_logits": logits[..., 1]}

    def head_rules(self):
        return self.prediction_head.rules() + super().head_rules()

    def get_config(self):
        c = super().get_config()
        c["dropout"] = self.dropout
        return c


@family_task(ModernBertBackbone, "TextEmbedder", "ModernBertModel")
class ModernBertTextEmbedder(TextEmbedder):
    pass


__all__ = [
    "ModernBertPredictionHead", "ModernBertLMHead", "ModernBertMaskedLM", "ModernBertTextClassifier", "ModernBertTokenClassifier",
    "ModernBertQuestionAnswerer", "ModernBertTextEmbedder",
]

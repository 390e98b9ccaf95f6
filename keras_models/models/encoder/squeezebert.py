"""SqueezeBERT (model_type ``squeezebert``): BERT whose every projection is a grouped 1x1 convolution.

Queries, keys and values (``q_groups`` / ``k_groups`` / ``v_groups``), the attention output
(``post_attention_groups``), the intermediate (``intermediate_groups``) and output
(``output_groups``) projections are block-diagonal linear maps (:class:`GroupedDense`), read from
Transformers' ``Conv1d(kernel_size=1, groups=g)`` weights (out, in/g, 1). The blocks' LayerNorms
use eps 1e-12 whatever ``layer_norm_eps`` says (Transformers' SqueezeBertLayerNorm default);
``layer_norm_eps`` applies to the embedding LayerNorm. The embedding width must equal the hidden size.
"""

from dataclasses import dataclass

import keras
from keras import ops

from keras_models.errors import ConfigError
from keras_models.layers.activations import get_activation
from keras_models.layers.conv_attention import GroupedDense
from keras_models.models.encoder.backbone import BERT_NAMES, EncoderBackbone, EncoderSpec, norm_rules
from keras_models.models.encoder.tasks import family_task
from keras_models.models.registry import register_backbone
from keras_models.presets.weight_map import Chain, Reshape, Rule, Transpose
from keras_models.spec import const, dim
from keras_models.tasks.embedder import TextEmbedder
from keras_models.tasks.text import MaskedLM, QuestionAnswerer, TextClassifier, TokenClassifier

BLOCK_NORM_EPS = 1e-12
GROUP_KEYS = ("q_groups", "k_groups", "v_groups", "post_attention_groups", "intermediate_groups", "output_groups")


@dataclass(frozen=True, kw_only=True)
class SqueezeBertSpec(EncoderSpec):
    """SqueezeBertConfig: BERT's keys, ``embedding_size`` and the six group counts."""

    embedding_size: int | None = dim("embedding_size", 768)
    embedding_projection: bool | None = const(False)
    q_groups: int = dim("q_groups", 4)
    k_groups: int = dim("k_groups", 4)
    v_groups: int = dim("v_groups", 4)
    post_attention_groups: int = dim("post_attention_groups", 1)
    intermediate_groups: int = dim("intermediate_groups", 4)
    output_groups: int = dim("output_groups", 4)

    def validate(self, source="config.json"):
        super().validate(source)
        if self.embedding_size != self.hidden_size:
            raise ConfigError(f"{source}: embedding_size={self.embedding_size} must equal hidden_size="
                              f"{self.hidden_size} (SqueezeBERT normalises embeddings at the hidden size)")
        widths = dict(q_groups=(self.hidden_size, self.hidden_size), k_groups=(self.hidden_size, self.hidden_size),
                      v_groups=(self.hidden_size, self.hidden_size),
                      post_attention_groups=(self.hidden_size, self.hidden_size),
                      intermediate_groups=(self.hidden_size, self.intermediate_size),
                      output_groups=(self.intermediate_size, self.hidden_size))
        for key, (n_in, n_out) in widths.items():
            g = getattr(self, key)
            if n_in % g or n_out % g:
                raise ConfigError(f"{source}: {key}={g} does not divide the layer's widths {n_in} -> {n_out}")


@keras.saving.register_keras_serializable(package="keras_models")
class SqueezeBertBlock(keras.layers.Layer):
    """Post-norm BERT block with grouped projections (``groups``: the six counts in GROUP_KEYS order)."""

    def __init__(self, hidden_size, num_heads, intermediate_size, groups, hidden_act="gelu", dropout=0.0,
                 attention_dropout=0.0, kernel_initializer="glorot_uniform", **kwargs):
        super().__init__(**kwargs)
        self.hidden_size, self.num_heads, self.intermediate_size = hidden_size, num_heads, intermediate_size
        self.groups, self.hidden_act = tuple(groups), hidden_act
        self.dropout_rate, self.attention_dropout = dropout, attention_dropout
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        common = dict(kernel_initializer=self.kernel_initializer, dtype=self.dtype_policy)
        names = ("query", "key", "value", "post_attention", "intermediate", "output_dense")
        units = (hidden_size,) * 4 + (intermediate_size, hidden_size)
        for name, n, g in zip(names, units, self.groups):
            setattr(self, name, GroupedDense(n, g, name=name, **common))
        self.attention_norm = keras.layers.LayerNormalization(epsilon=BLOCK_NORM_EPS, name="attention_norm",
                                                              dtype=self.dtype_policy)
        self.output_norm = keras.layers.LayerNormalization(epsilon=BLOCK_NORM_EPS, name="output_norm",
                                                           dtype=self.dtype_policy)
        self.act = get_activation(hidden_act)
        self.dropout = keras.layers.Dropout(dropout, dtype=self.dtype_policy)
        self.attention_drop = keras.layers.Dropout(attention_dropout, dtype=self.dtype_policy)

    def build(self, input_shape):
        inner = tuple(input_shape[:-1]) + (self.intermediate_size,)
        for layer in (self.query, self.key, self.value, self.post_attention, self.intermediate,
                      self.attention_norm, self.output_norm):
            layer.build(input_shape)
        self.output_dense.build(inner)
        self.built = True

    def _heads(self, x):
        b, t = ops.shape(x)[0], ops.shape(x)[1]
        return ops.transpose(ops.reshape(x, (b, t, self.num_heads, self.hidden_size // self.num_heads)), (0, 2, 1, 3))

    def call(self, x, bias=None, rope=None, training=False):
        q, k, v = self._heads(self.query(x)), self._heads(self.key(x)), self._heads(self.value(x))
        scores = ops.matmul(q, ops.transpose(k, (0, 1, 3, 2))) / ops.cast(
            (self.hidden_size // self.num_heads) ** 0.5, x.dtype)
        if bias is not None:
            scores = scores + ops.cast(bias, scores.dtype)
        probs = self.attention_drop(ops.softmax(scores, axis=-1), training=training)
        context = ops.transpose(ops.matmul(probs, v), (0, 2, 1, 3))
        context = ops.reshape(context, ops.shape(x))
        h = self.attention_norm(x + self.dropout(self.post_attention(context), training=training))
        out = self.dropout(self.output_dense(self.act(self.intermediate(h))), training=training)
        return self.output_norm(h + out)

    def get_config(self):
        config = super().get_config()
        config.update(hidden_size=self.hidden_size, num_heads=self.num_heads, intermediate_size=self.intermediate_size,
                      groups=list(self.groups), hidden_act=self.hidden_act, dropout=self.dropout_rate,
                      attention_dropout=self.attention_dropout,
                      kernel_initializer=keras.initializers.serialize(self.kernel_initializer))
        return config


def conv_rules(name, dense):
    """A grouped 1x1 Conv1d (out, in/g, 1) <-> GroupedDense kernel (g, in/g, out/g) and bias."""
    g, gi, go = dense.kernel.shape
    op = Chain(Reshape((g * go, gi, 1), (g, go, gi)), Transpose((0, 2, 1)))
    return [Rule(f"{name}.weight", dense.kernel, op), Rule(f"{name}.bias", dense.bias)]


@keras.saving.register_keras_serializable(package="keras_models")
@register_backbone("squeezebert")
class SqueezeBertBackbone(EncoderBackbone):
    spec_cls = SqueezeBertSpec
    base_model_prefix = "transformer"
    hf_architecture = "SqueezeBertModel"
    hf_model_type = "squeezebert"
    hf_names = {**BERT_NAMES, "layer": "encoder.layers.{i}."}
    verified_backends = ("jax", "torch", "tensorflow")

    def make_block(self, index, init):
        return SqueezeBertBlock(self.hidden_size, self.num_heads, self.intermediate_size,
                                [getattr(self, k) for k in GROUP_KEYS], hidden_act=self.hidden_act,
                                dropout=self.dropout_rate, attention_dropout=self.attention_dropout,
                                kernel_initializer=init, name=f"block_{index}", dtype=self.dtype_policy)

    def block_rules(self, prefix, block):
        r = []
        for name, dense in (("attention.query", block.query), ("attention.key", block.key),
                            ("attention.value", block.value), ("post_attention.conv1d", block.post_attention),
                            ("intermediate.conv1d", block.intermediate), ("output.conv1d", block.output_dense)):
            r += conv_rules(prefix + name, dense)
        return r + norm_rules(prefix + "post_attention.layernorm", block.attention_norm) + norm_rules(
            prefix + "output.layernorm", block.output_norm)


@family_task(SqueezeBertBackbone, "MaskedLM", "SqueezeBertForMaskedLM")
class SqueezeBertMaskedLM(MaskedLM):
    pass


@family_task(SqueezeBertBackbone, "TextClassifier", "SqueezeBertForSequenceClassification")
class SqueezeBertTextClassifier(TextClassifier):
    pass


@family_task(SqueezeBertBackbone, "TokenClassifier", "SqueezeBertForTokenClassification")
class SqueezeBertTokenClassifier(TokenClassifier):
    pass


@family_task(SqueezeBertBackbone, "QuestionAnswerer", "SqueezeBertForQuestionAnswering")
class SqueezeBertQuestionAnswerer(QuestionAnswerer):
    pass


@family_task(SqueezeBertBackbone, "TextEmbedder", "SqueezeBertModel")
class SqueezeBertTextEmbedder(TextEmbedder):
    pass


__all__ = ["SqueezeBertBackbone", "SqueezeBertMaskedLM", "SqueezeBertTextClassifier", "SqueezeBertTokenClassifier",
           "SqueezeBertQuestionAnswerer", "SqueezeBertTextEmbedder"]

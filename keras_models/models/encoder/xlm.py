"""XLM and FlauBERT: the cross-lingual LM encoder under its own config keys and tensor names.

Differences from BERT, each a named switch or table entry:

* ``num_languages`` (config.json ``n_langs`` when ``use_lang_emb``): a language embedding added
  for the optional ``langs`` input; ``token_type_ids``, when given, are looked up in the *word*
  embeddings (no token-type table);
* ``sinusoidal_embeddings``: the position table starts as the fixed interleaved sin/cos table
  (checkpoints store it, so loading reads it like any weight);
* hidden states are zeroed at padded positions after the embeddings and after every block; without
  an ``attention_mask`` the mask is ``position < number of non-pad tokens``;
* the feed-forward width is ``4 * emb_dim``, the activation exact gelu or relu (``gelu_activation``);
* FlauBERT adds ``pre_norm`` (pre-norm blocks, no final norm) and ``layerdrop`` (training only).

Heads: ``XLMWithLMHeadModel`` (a bias over the tied word embeddings), the sequence-summary
classifier, the token classifier and the "simple" span QA head (``XLMForQuestionAnsweringSimple``).
"""

import keras
import numpy as np
from keras import ops

from keras_models.errors import ConfigError
from keras_models.layers.activations import get_activation
from keras_models.models.encoder.backbone import REQUIRED, EncoderBackbone, dense_rules, norm_rules, read_hf_keys
from keras_models.models.encoder.tasks import define_tasks
from keras_models.models.registry import register_backbone
from keras_models.presets.weight_map import Rule
from keras_models.tasks.task import Task
from keras_models.tasks.text import MaskedLM, QuestionAnswerer, TextClassifier, TokenClassifier

_ser = keras.saving.register_keras_serializable(package="keras_models")

XLM_KEYS = {
    "vocab_size": ("vocab_size", REQUIRED),
    "hidden_size": ("emb_dim", 2048),
    "num_layers": ("n_layers", 12),
    "num_heads": ("n_heads", 16),
    "max_position_embeddings": ("max_position_embeddings", 512),
    "layer_norm_eps": ("layer_norm_eps", 1e-12),
    "dropout": ("dropout", 0.1),
    "attention_dropout": ("attention_dropout", 0.1),
    "pad_token_id": ("pad_token_id", 2),
    "initializer_range": ("init_std", 0.02),
    "sinusoidal_embeddings": ("sinusoidal_embeddings", False),
}


@_ser
class XLMSinusoidal(keras.initializers.Initializer):
    """XLM's fixed position table: channel j of position p is sin (j even) or cos (j odd) of
    ``p / 10000 ** (2 * (j // 2) / dim)``."""

    def __call__(self, shape, dtype=None):
        n, d = shape
        j = np.arange(d)
        angles = np.arange(n)[:, None] / np.power(10000.0, 2 * (j // 2) / d)[None, :]
        table = np.where(j % 2 == 0, np.sin(angles), np.cos(angles))
        return ops.convert_to_tensor(table, dtype or "float32")


@_ser
@register_backbone("xlm")
class XLMBackbone(EncoderBackbone):
    base_model_prefix = "transformer"
    hf_architecture = "XLMModel"
    hf_model_type = "xlm"
    hf_ignore = ("*position_ids",)
    hf_keys = XLM_KEYS
    verified_backends = ("jax", "torch", "tensorflow")

    def __init__(self, vocab_size, hidden_size, num_layers, num_heads, intermediate_size=None,
                 hidden_act="gelu", num_languages=0, sinusoidal_embeddings=False, layerdrop=0.0,
                 type_vocab_size=0, pad_token_id=2, **kwargs):
        self.num_languages, self.sinusoidal_embeddings, self.layerdrop = num_languages, sinusoidal_embeddings, layerdrop
        super().__init__(vocab_size, hidden_size, num_layers, num_heads, intermediate_size or 4 * hidden_size,
                         hidden_act=hidden_act, type_vocab_size=type_vocab_size, pad_token_id=pad_token_id, **kwargs)
        common = dict(dtype=self.dtype_policy)
        if sinusoidal_embeddings:  # the (not yet built) position table starts as the fixed one
            self.position_embedding.embeddings_initializer = XLMSinusoidal()
        init = keras.initializers.TruncatedNormal(stddev=self.initializer_range)
        self.lang_embedding = None
        if num_languages:
            self.lang_embedding = keras.layers.Embedding(num_languages, hidden_size, embeddings_initializer=init,
                                                         name="lang_embedding", **common)
            self.lang_embedding.build((None, None))  # built even when calls pass no ``langs``
        self.layerdrop_seed = keras.random.SeedGenerator(0) if layerdrop else None

    def padding_mask(self, inputs):
        mask = inputs.get("attention_mask")
        if mask is not None:
            return mask
        ids = inputs["input_ids"]
        lengths = ops.sum(ops.cast(ops.not_equal(ids, self.pad_token_id), "int32"), axis=1)
        return ops.cast(ops.arange(ops.shape(ids)[1], dtype="int32")[None, :] < lengths[:, None], "int32")

    def embed(self, inputs, training=False):
        ids = inputs["input_ids"]
        x = self.token_embedding(ids)
        positions = inputs.get("position_ids")
        x = x + self.position_embedding(self.position_ids(ids) if positions is None else positions)
        if self.lang_embedding is not None and inputs.get("langs") is not None:
            x = x + self.lang_embedding(inputs["langs"])
        if inputs.get("token_type_ids") is not None:
            x = x + self.token_embedding(inputs["token_type_ids"])
        return self.embeddings_dropout(self.embeddings_norm_layer(x), training=training)

    def call(self, inputs, training=False):
        if not isinstance(inputs, dict):
            inputs = {"input_ids": inputs}
        inputs = {**inputs, "attention_mask": self.padding_mask(inputs)}
        keep = ops.cast(inputs["attention_mask"], self.compute_dtype)[..., None]
        x = self.embed(inputs, training=training) * keep
        bias = self.attention_bias(inputs, x)
        for index in self.layer_schedule:
            out = self.blocks[index](x, bias, training=training) * keep
            if training and self.layerdrop:
                skip = keras.random.uniform((), seed=self.layerdrop_seed) < self.layerdrop
                out = ops.where(skip, x, out)
            x = out
        return x

    # --- HF conversion ------------------------------------------------------------------------
    @classmethod
    def config_from_hf(cls, hf):
        for key, ok in (("causal", False), ("is_encoder", True)):
            if hf.get(key, ok) != ok:
                raise ConfigError(f"config.json: {key}={hf[key]!r} is not supported (encoder only)")
        kwargs = read_hf_keys(hf, cls.hf_keys)
        kwargs["hidden_act"] = "gelu" if hf.get("gelu_activation", True) else "relu"
        langs = hf.get("n_langs") or 1
        kwargs["num_languages"] = langs if langs > 1 and hf.get("use_lang_emb", True) else 0
        return kwargs

    def config_to_hf(self):
        config = super().config_to_hf()
        if self.hidden_act not in ("gelu", "relu") or self.intermediate_size != 4 * self.hidden_size:
            raise ConfigError(f"{type(self).__name__}: config.json can only express gelu/relu feed-forwards "
                              "of width 4 * hidden_size")
        config.update(gelu_activation=self.hidden_act == "gelu", n_langs=max(self.num_languages, 1),
                      use_lang_emb=bool(self.num_languages), causal=False, is_encoder=True, asm=False)
        return config

    def weight_rules(self):
        r = [Rule("embeddings.weight", self.token_embedding.embeddings),
             Rule("position_embeddings.weight", self.position_embedding.embeddings)]
        if self.lang_embedding is not None:
            r.append(Rule("lang_embeddings.weight", self.lang_embedding.embeddings))
        r += norm_rules("layer_norm_emb", self.embeddings_norm_layer)
        for i, block in enumerate(self.blocks):
            a = block.attention
            for name, dense in (("q_lin", a.query), ("k_lin", a.key), ("v_lin", a.value), ("out_lin", a.output_dense)):
                r += dense_rules(f"attentions.{i}.{name}", dense)
            r += norm_rules(f"layer_norm1.{i}", block.attention_norm)
            r += dense_rules(f"ffns.{i}.lin1", block.intermediate)
            r += dense_rules(f"ffns.{i}.lin2", block.output_dense)
            r += norm_rules(f"layer_norm2.{i}", block.output_norm)
        return r

    def get_config(self):
        config = super().get_config()
        config.update(num_languages=self.num_languages, sinusoidal_embeddings=self.sinusoidal_embeddings,
                      layerdrop=self.layerdrop)
        return config


@_ser
@register_backbone("flaubert")
class FlaubertBackbone(XLMBackbone):
    hf_architecture = "FlaubertModel"
    hf_model_type = "flaubert"
    hf_keys = {**XLM_KEYS, "norm_first": ("pre_norm", False), "layerdrop": ("layerdrop", 0.0)}
    verified_backends = ("jax", "torch", "tensorflow")


# --- heads --------------------------------------------------------------------------------------
@_ser
class TiedOutputBias(keras.layers.Layer):
    """Logits over the vocabulary: ``h @ table.T + bias`` with the word embeddings as ``table``
    (tied), or its own ``decoder`` table."""

    def __init__(self, vocab_size, hidden_size, tied=True, **kwargs):
        super().__init__(**kwargs)
        self.vocab_size, self.hidden_size, self.tied = vocab_size, hidden_size, tied

    def build(self, input_shape):
        if not self.tied:
            self.decoder = self.add_weight(name="decoder", shape=(self.vocab_size, self.hidden_size))
        self.bias = self.add_weight(name="bias", shape=(self.vocab_size,), initializer="zeros")
        self.built = True

    def call(self, h, embeddings=None):
        table = embeddings if self.tied else self.decoder
        return ops.matmul(h, ops.transpose(ops.cast(table, h.dtype))) + ops.cast(self.bias, h.dtype)

    def get_config(self):
        c = super().get_config()
        c.update(vocab_size=self.vocab_size, hidden_size=self.hidden_size, tied=self.tied)
        return c


class XLMLanguageModel(MaskedLM):
    """``XLMWithLMHeadModel``: ``pred_layer.proj`` over the final hidden states (no transform)."""

    hf_head_patterns = ("pred_layer.*",)

    def __init__(self, backbone, preprocessor=None, tie_word_embeddings=True, **kwargs):
        Task.__init__(self, backbone, preprocessor=preprocessor, **kwargs)  # MaskedLM's head is not built
        self.tie_word_embeddings = tie_word_embeddings
        self.head = TiedOutputBias(backbone.vocab_size, backbone.hidden_size, tied=tie_word_embeddings,
                                   name="pred_layer", dtype=backbone.dtype_policy)

    @classmethod
    def task_config_from_hf(cls, hf, head_from_checkpoint, **kwargs):
        if hf.get("asm"):
            raise ConfigError("config.json: asm=true (adaptive softmax output) is not supported")
        return super().task_config_from_hf(hf, head_from_checkpoint, **kwargs)

    def head_rules(self):
        r = [Rule("pred_layer.proj.bias", self.head.bias, base=False)]
        if self.tie_word_embeddings:
            r.append(Rule("pred_layer.proj.weight", self.backbone.token_embedding.embeddings, base=False,
                          optional=True, export=False))
        else:
            r.append(Rule("pred_layer.proj.weight", self.head.decoder, base=False))
        return r


SUMMARY_TYPES = ("first", "last", "mean", "cls_index")


class XLMSequenceClassifier(TextClassifier):
    """The sequence-summary classifier: pool (``summary_type``), dropout
    (``summary_first_dropout``), project to the classes, optional ``summary_activation``."""

    hf_inner = None
    hf_out = "sequence_summary.summary"
    hf_head_patterns = ("sequence_summary.*",)

    def __init__(self, backbone, summary_type="first", summary_activation=None, **kwargs):
        if summary_type not in SUMMARY_TYPES:
            raise ConfigError(f"summary_type={summary_type!r}: expected one of {SUMMARY_TYPES}")
        super().__init__(backbone, **kwargs)
        self.summary_type, self.summary_activation = summary_type, summary_activation
        self.summary_act = get_activation(summary_activation or "linear")

    @classmethod
    def task_config_from_hf(cls, hf, head_from_checkpoint, **kwargs):
        if not hf.get("summary_use_proj", True) or not hf.get("summary_proj_to_labels", True):
            raise ConfigError("config.json: summary_use_proj / summary_proj_to_labels = false is not supported")
        if hf.get("summary_last_dropout"):
            raise ConfigError("config.json: summary_last_dropout is not supported")
        kwargs.setdefault("summary_type", hf.get("summary_type") or "first")
        kwargs.setdefault("summary_activation", hf.get("summary_activation"))
        kwargs.setdefault("dropout", hf.get("summary_first_dropout", 0.1))
        return super().task_config_from_hf(hf, head_from_checkpoint, **kwargs)

    def task_config_to_hf(self):
        config = super().task_config_to_hf()
        config.update(summary_type=self.summary_type, summary_activation=self.summary_activation,
                      summary_use_proj=True, summary_proj_to_labels=True, summary_first_dropout=self.dropout)
        return config

    def pool(self, hidden, inputs):
        if self.summary_type == "first":
            return hidden[:, 0]
        if self.summary_type == "mean":  # over every position, padding included (as the reference)
            return ops.mean(hidden, axis=1)
        return hidden[:, -1]  # "last"; "cls_index" without an index is the last token too

    def call(self, inputs, training=False):
        return self.summary_act(super().call(inputs, training=training))

    def get_config(self):
        config = super().get_config()
        config.update(summary_type=self.summary_type, summary_activation=self.summary_activation)
        return config


XLM_CLASSES = {
    "MaskedLM": (XLMLanguageModel, ("WithLMHeadModel",)),
    "TextClassifier": (XLMSequenceClassifier, ("ForSequenceClassification",)),
    "TokenClassifier": (TokenClassifier, ("ForTokenClassification",)),
    "QuestionAnswerer": (QuestionAnswerer, ("ForQuestionAnsweringSimple",)),
}
XLM_HEADS = {"MaskedLM": {}, "TextClassifier": {}, "TokenClassifier": {}, "QuestionAnswerer": {}, "TextEmbedder": {}}

__all__ = ["XLMBackbone", "FlaubertBackbone", "XLMSinusoidal", "TiedOutputBias"]
__all__ += define_tasks(globals(), XLMBackbone, "XLM", XLM_HEADS, classes=XLM_CLASSES)
__all__ += define_tasks(globals(), FlaubertBackbone, "Flaubert", XLM_HEADS, classes=XLM_CLASSES)

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

from dataclasses import dataclass

import keras
import numpy as np
from keras import ops

from keras_models.errors import ConfigError
from keras_models.layers.activations import get_activation
from keras_models.models.encoder.backbone import EncoderBackbone, EncoderSpec, dense_rules, norm_rules
from keras_models.models.encoder.tasks import family_task
from keras_models.models.registry import register_backbone
from keras_models.presets.weight_map import Rule
from keras_models.spec import const, dim, hf
from keras_models.tasks.embedder import TextEmbedder
from keras_models.tasks.task import Task
from keras_models.tasks.text import MaskedLM, QuestionAnswerer, TextClassifier, TokenClassifier

_ser = keras.saving.register_keras_serializable(package="keras_models")

@dataclass(frozen=True, kw_only=True)
class XLMSpec(EncoderSpec):
    """XLMConfig. The feed-forward is ``4 * emb_dim`` wide, exact gelu or relu (``gelu_activation``);
    ``n_langs`` > 1 with ``use_lang_emb`` adds a language embedding (``num_languages``)."""

    vocab_size: int = dim("vocab_size", 30145)
    hidden_size: int = dim("emb_dim", 2048)
    num_layers: int = dim("n_layers", 12)
    num_heads: int = dim("n_heads", 16)
    intermediate_size: int | None = const(None, doc="None: 4 * hidden_size")
    hidden_act: str = hf("gelu_activation", "gelu", read=lambda v: "gelu" if v else "relu",
                         write=lambda act: act == "gelu")
    dropout: float = hf("dropout", 0.1)
    attention_dropout: float = hf("attention_dropout", 0.1)
    pad_token_id: int = hf("pad_token_id", 2)
    initializer_range: float = hf("init_std", 0.02)
    type_vocab_size: int = const(0)
    sinusoidal_embeddings: bool = hf("sinusoidal_embeddings", False)
    num_languages: int = const(0, doc="n_langs when > 1 and use_lang_emb, else 0")
    layerdrop: float = const(0.0)

    unsupported = {"causal": (False,), "is_encoder": (True,)}  # encoder only
    hf_constants = {"causal": False, "is_encoder": True, "asm": False}

    @classmethod
    def adjust_from_hf(cls, config, values, source):
        langs = config.get("n_langs") or 1
        values["num_languages"] = langs if langs > 1 and config.get("use_lang_emb", True) else 0
        return values

    def adjust_to_hf(self, out):
        if self.hidden_act not in ("gelu", "relu") or self.intermediate_size not in (None, 4 * self.hidden_size):
            raise ConfigError(f"{type(self).__name__}: config.json can only express gelu/relu feed-forwards "
                              "of width 4 * hidden_size")
        out.update(n_langs=max(self.num_languages, 1), use_lang_emb=bool(self.num_languages))
        return super().adjust_to_hf(out)


@dataclass(frozen=True, kw_only=True)
class FlaubertSpec(XLMSpec):
    norm_first: bool = hf("pre_norm", False)
    layerdrop: float = hf("layerdrop", 0.0)


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
    spec_cls = XLMSpec
    base_model_prefix = "transformer"
    hf_architecture = "XLMModel"
    hf_model_type = "xlm"
    hf_ignore = ("*position_ids",)
    verified_backends = ("jax", "torch", "tensorflow")

    def __init__(self, spec=None, **kwargs):
        super().__init__(spec, **kwargs)
        hidden_size, num_languages = self.hidden_size, self.num_languages
        sinusoidal_embeddings, layerdrop = self.sinusoidal_embeddings, self.layerdrop
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

    def resolve_spec(self, spec):
        return spec if spec.intermediate_size else spec.replace(intermediate_size=4 * spec.hidden_size)

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


@_ser
@register_backbone("flaubert")
class FlaubertBackbone(XLMBackbone):
    spec_cls = FlaubertSpec
    hf_architecture = "FlaubertModel"
    hf_model_type = "flaubert"
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


@family_task(XLMBackbone, "MaskedLM", "XLMWithLMHeadModel")
class XLMMaskedLM(XLMLanguageModel):
    pass


@family_task(XLMBackbone, "TextClassifier", "XLMForSequenceClassification")
class XLMTextClassifier(XLMSequenceClassifier):
    pass


@family_task(XLMBackbone, "TokenClassifier", "XLMForTokenClassification")
class XLMTokenClassifier(TokenClassifier):
    pass


@family_task(XLMBackbone, "QuestionAnswerer", "XLMForQuestionAnsweringSimple")
class XLMQuestionAnswerer(QuestionAnswerer):
    pass


@family_task(XLMBackbone, "TextEmbedder", "XLMModel")
class XLMTextEmbedder(TextEmbedder):
    pass


@family_task(FlaubertBackbone, "MaskedLM", "FlaubertWithLMHeadModel")
class FlaubertMaskedLM(XLMLanguageModel):
    pass


@family_task(FlaubertBackbone, "TextClassifier", "FlaubertForSequenceClassification")
class FlaubertTextClassifier(XLMSequenceClassifier):
    pass


@family_task(FlaubertBackbone, "TokenClassifier", "FlaubertForTokenClassification")
class FlaubertTokenClassifier(TokenClassifier):
    pass


@family_task(FlaubertBackbone, "QuestionAnswerer", "FlaubertForQuestionAnsweringSimple")
class FlaubertQuestionAnswerer(QuestionAnswerer):
    pass


@family_task(FlaubertBackbone, "TextEmbedder", "FlaubertModel")
class FlaubertTextEmbedder(TextEmbedder):
    pass


__all__ = [
    "XLMBackbone", "FlaubertBackbone", "XLMSinusoidal", "TiedOutputBias", "XLMMaskedLM", "XLMTextClassifier",
    "XLMTokenClassifier", "XLMQuestionAnswerer", "XLMTextEmbedder", "FlaubertMaskedLM", "FlaubertTextClassifier",
    "FlaubertTokenClassifier", "FlaubertQuestionAnswerer", "FlaubertTextEmbedder",
]

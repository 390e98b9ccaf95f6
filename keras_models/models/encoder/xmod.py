"""X-MOD: RoBERTa with a bank of per-language bottleneck adapters after each feed-forward.

Inputs may carry ``lang_ids`` (batch,) or (batch, seq): indices into ``languages``; without them the
``default_language`` is used (none set: an error, as in Transformers). Each block's feed-forward
output (after its residual) goes through a LayerNorm (``adapter_layer_norm``: its own; else
``adapter_reuse_layer_norm``: the block's output LayerNorm), the language's adapter and a residual
taken before (``ln_before_adapter=False``) or after that LayerNorm; post-norm blocks then apply
their output LayerNorm. ``pre_norm`` makes the blocks pre-norm with a final ``encoder.LayerNorm``.
"""

from dataclasses import dataclass

import keras
import numpy as np
from keras import ops

from keras_models.errors import ConfigError
from keras_models.layers.encoder_block import EncoderBlock
from keras_models.layers.language_adapters import LanguageAdapters
from keras_models.models.encoder.backbone import dense_rules, norm_rules
from keras_models.models.encoder.tasks import RobertaShapedMaskedLM, RobertaShapedTextClassifier, family_task
from keras_models.models.registry import register_backbone
from keras_models.models.roberta import RobertaBackbone, RobertaSpec
from keras_models.spec import dim, hf
from keras_models.tasks.embedder import TextEmbedder
from keras_models.tasks.text import QuestionAnswerer, TokenClassifier

_ser = keras.saving.register_keras_serializable(package="keras_models")


@_ser
class XmodBlock(EncoderBlock):
    """An encoder block with language adapters after the feed-forward residual."""

    def __init__(self, *args, num_languages=1, adapter_size=None, adapter_layer_norm=False,
                 adapter_reuse_layer_norm=True, ln_before_adapter=True, **kwargs):
        super().__init__(*args, **kwargs)
        self.num_languages, self.adapter_size = num_languages, adapter_size
        self.adapter_layer_norm, self.adapter_reuse_layer_norm = adapter_layer_norm, adapter_reuse_layer_norm
        self.ln_before_adapter = ln_before_adapter
        common = dict(dtype=self.dtype_policy)
        self.adapters = LanguageAdapters(self.hidden_size, adapter_size, num_languages, activation=self.hidden_act,
                                         kernel_initializer=self.kernel_initializer, name="adapters", **common)
        self.adapter_norm = keras.layers.LayerNormalization(epsilon=self.layer_norm_eps, name="adapter_norm",
                                                            **common) if adapter_layer_norm else None

    def build(self, input_shape):
        super().build(input_shape)
        self.adapters.build(input_shape)
        if self.adapter_norm is not None:
            self.adapter_norm.build(input_shape)

    def adapt(self, y, lang_ids, training):
        residual = y
        if self.adapter_norm is not None:
            y = self.adapter_norm(y)
        elif self.adapter_reuse_layer_norm:
            y = self.output_norm(y)
        if self.ln_before_adapter:
            residual = y
        return residual + self.dropout(self.adapters(y, lang_ids), training=training)

    def call(self, x, bias=None, lang_ids=None, training=False):
        if self.norm_first:
            h = x + self.dropout(self.attend(self.attention_norm(x), bias, training=training), training=training)
            f = self.output_dense(self.act(self.intermediate(self.output_norm(h))))
            return self.adapt(h + self.dropout(f, training=training), lang_ids, training)
        h = self.attention_norm(x + self.dropout(self.attend(x, bias, training=training), training=training))
        f = self.output_dense(self.act(self.intermediate(h)))
        return self.output_norm(self.adapt(h + self.dropout(f, training=training), lang_ids, training))

    def get_config(self):
        config = super().get_config()
        config.update(num_languages=self.num_languages, adapter_size=self.adapter_size,
                      adapter_layer_norm=self.adapter_layer_norm,
                      adapter_reuse_layer_norm=self.adapter_reuse_layer_norm,
                      ln_before_adapter=self.ln_before_adapter)
        return config


@dataclass(frozen=True, kw_only=True)
class XmodSpec(RobertaSpec):
    """XmodConfig: RoBERTa's keys plus the adapters'; ``pre_norm`` makes the blocks pre-norm with a
    final LayerNorm (``norm_first`` and ``final_norm``)."""

    vocab_size: int = dim("vocab_size", 30522)
    norm_first: bool = hf("pre_norm", False, read=bool)
    languages: tuple = hf("languages", ("en_XX",))
    default_language: str | None = hf("default_language", None)
    adapter_reduction_factor: int | float = hf("adapter_reduction_factor", 2)
    adapter_layer_norm: bool = hf("adapter_layer_norm", False, read=bool)
    adapter_reuse_layer_norm: bool = hf("adapter_reuse_layer_norm", True, read=bool)
    ln_before_adapter: bool = hf("ln_before_adapter", True, read=bool)

    unsupported = {**RobertaSpec.unsupported, "is_decoder": (False, None), "add_cross_attention": (False, None)}
    hf_constants = {"bos_token_id": 0, "eos_token_id": 2}

    @classmethod
    def adjust_from_hf(cls, config, values, source):
        values["final_norm"] = values.get("norm_first", False)
        return values

    def validate(self, source="config.json"):
        super().validate(source)
        if self.default_language is not None and self.default_language not in self.languages:
            raise ConfigError(f"{source}: default_language={self.default_language!r} has no adapter "
                              f"(languages: {list(self.languages)})")


@_ser
@register_backbone("xmod")
class XmodBackbone(RobertaBackbone):
    spec_cls = XmodSpec
    hf_architecture = "XmodModel"
    hf_model_type = "xmod"
    verified_backends = ("jax", "torch", "tensorflow")
    checkpoint_families = ()

    def set_default_language(self, language):
        """The language used when inputs carry no ``lang_ids``."""
        if language not in self.languages:
            raise ValueError(f"no adapter for {language!r}; languages: {list(self.languages)}")
        self.default_language = language
        self.spec = self.spec.replace(default_language=language)

    def make_block(self, index, init):
        return XmodBlock(
            self.hidden_size, self.num_heads, self.intermediate_size, hidden_act=self.hidden_act,
            layer_norm_eps=self.layer_norm_eps, dropout=self.dropout_rate,
            attention_dropout=self.attention_dropout, norm_first=self.norm_first, kernel_initializer=init,
            name=f"block_{index}", dtype=self.dtype_policy, num_languages=len(self.languages),
            adapter_size=self.hidden_size // self.adapter_reduction_factor,
            adapter_layer_norm=self.adapter_layer_norm, adapter_reuse_layer_norm=self.adapter_reuse_layer_norm,
            ln_before_adapter=self.ln_before_adapter,
        )

    def language_ids(self, inputs):
        ids = inputs.get("lang_ids")
        if ids is not None:
            return ids
        if self.default_language is None:
            raise ValueError("X-MOD needs `lang_ids` in its inputs or a default language "
                             "(`backbone.set_default_language(...)` or config.json default_language)")
        return ops.zeros_like(inputs["input_ids"][:, 0]) + self.languages.index(self.default_language)

    def call(self, inputs, training=False):
        if not isinstance(inputs, dict):
            inputs = {"input_ids": inputs}
        x = self.embed(inputs, training=training)
        bias = self.attention_bias(inputs, x)
        lang_ids = self.language_ids(inputs)
        for index in self.layer_schedule:
            x = self.blocks[index](x, bias, lang_ids=lang_ids, training=training)
        if self.final_norm_layer is not None:
            x = self.final_norm_layer(x)
        return x

    def dummy_inputs(self):
        inputs = super().dummy_inputs()
        inputs["lang_ids"] = np.zeros((1,), "int32")
        return inputs

    def block_rules(self, prefix, block):
        r = super().block_rules(prefix, block)
        for language, down, up in zip(self.languages, block.adapters.down, block.adapters.up):
            r += dense_rules(f"{prefix}output.adapter_modules.{language}.dense1", down)
            r += dense_rules(f"{prefix}output.adapter_modules.{language}.dense2", up)
        if block.adapter_norm is not None:
            r += norm_rules(prefix + "output.adapter_layer_norm", block.adapter_norm)
        return r


@family_task(XmodBackbone, "MaskedLM", "XmodForMaskedLM")
class XmodMaskedLM(RobertaShapedMaskedLM):
    pass


@family_task(XmodBackbone, "TextClassifier", "XmodForSequenceClassification")
class XmodTextClassifier(RobertaShapedTextClassifier):
    pass


@family_task(XmodBackbone, "TokenClassifier", "XmodForTokenClassification")
class XmodTokenClassifier(TokenClassifier):
    pass


@family_task(XmodBackbone, "QuestionAnswerer", "XmodForQuestionAnswering")
class XmodQuestionAnswerer(QuestionAnswerer):
    pass


@family_task(XmodBackbone, "TextEmbedder", "XmodModel")
class XmodTextEmbedder(TextEmbedder):
    pass


__all__ = [
    "XmodBackbone", "XmodBlock", "XmodMaskedLM", "XmodTextClassifier", "XmodTokenClassifier",
    "XmodQuestionAnswerer", "XmodTextEmbedder",
]

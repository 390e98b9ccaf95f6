"""ConvBERT: BERT with mixed attention (``num_attention_heads // head_ratio`` self-attention heads
plus as many span-based dynamic convolution heads, kernel ``conv_kernel_size``), grouped
feed-forward layers (``num_groups``) and ELECTRA-style factorised embeddings (``embedding_size``,
projected by ``embeddings_project`` when it differs from ``hidden_size``)."""

from dataclasses import dataclass

import keras

from keras_models.errors import ConfigError
from keras_models.layers.encoder_block import EncoderBlock
from keras_models.models.encoder.backbone import (
    EncoderBackbone,
    EncoderSpec,
    dense_rules,
    explicit_embedding_size,
    norm_rules,
)
from keras_models.models.encoder.tasks import ClassifierDenseOutProj, family_task
from keras_models.models.registry import register_backbone
from keras_models.presets.weight_map import Chain, Reshape, Rule, Transpose
from keras_models.spec import dim, hf
from keras_models.tasks.embedder import TextEmbedder
from keras_models.tasks.text import MaskedLM, QuestionAnswerer, TokenClassifier


@dataclass(frozen=True, kw_only=True)
class ConvBertSpec(EncoderSpec):
    pad_token_id: int = hf("pad_token_id", 1)
    embedding_size: int | None = dim("embedding_size", 768)
    head_ratio: int = dim("head_ratio", 2)
    conv_kernel_size: int = dim("conv_kernel_size", 9)
    num_groups: int = dim("num_groups", 1)

    def validate(self, source="config.json"):
        super().validate(source)
        if self.conv_kernel_size % 2 == 0:
            raise ConfigError(f"{source}: conv_kernel_size={self.conv_kernel_size}: ConvBERT needs an odd kernel size")

    def adjust_to_hf(self, out):
        return explicit_embedding_size(self, super().adjust_to_hf(out))


@keras.saving.register_keras_serializable(package="keras_models")
@register_backbone("convbert")
class ConvBertBackbone(EncoderBackbone):
    spec_cls = ConvBertSpec
    base_model_prefix = "convbert"
    hf_architecture = "ConvBertModel"
    hf_model_type = "convbert"
    verified_backends = ("jax", "torch", "tensorflow")

    def make_block(self, index, init):
        return EncoderBlock(
            self.hidden_size, self.num_heads, self.intermediate_size, hidden_act=self.hidden_act,
            layer_norm_eps=self.layer_norm_eps, dropout=self.dropout_rate,
            attention_dropout=self.attention_dropout, kernel_initializer=init, name=f"block_{index}",
            dtype=self.dtype_policy, attention_type="mixed_conv", ffn_groups=self.num_groups,
            attention_options=dict(head_ratio=self.head_ratio, conv_kernel_size=self.conv_kernel_size),
        )

    def block_rules(self, prefix, block):
        a, n = block.attention, prefix + "attention.self."
        r = []
        for name, dense in (("query", a.query), ("key", a.key), ("value", a.value),
                            ("conv_kernel_layer", a.conv_kernel), ("conv_out_layer", a.conv_out)):
            r += dense_rules(n + name, dense)
        conv = n + "key_conv_attn_layer."
        # torch Conv1d weights: depthwise (hidden, 1, k) <-> Keras (k, hidden, 1); pointwise
        # (out, hidden, 1) <-> Dense kernel (hidden, out); bias (out, 1) <-> (out,)
        out, hidden = a.all_head_size, self.hidden_size
        r += [Rule(conv + "depthwise.weight", a.key_conv_depthwise.kernel, Transpose((2, 0, 1))),
              Rule(conv + "pointwise.weight", a.key_conv_pointwise.kernel,
                   Chain(Reshape((out, hidden, 1), (out, hidden)), Transpose())),
              Rule(conv + "bias", a.key_conv_bias, Reshape((out, 1), (out,)))]
        r += dense_rules(prefix + "attention.output.dense", a.output_dense)
        r += norm_rules(prefix + "attention.output.LayerNorm", block.attention_norm)
        for name, dense in (("intermediate.dense", block.intermediate), ("output.dense", block.output_dense)):
            if self.num_groups > 1:  # grouped kernels are stored as (groups, in/groups, out/groups)
                r += [Rule(prefix + name + ".weight", dense.kernel), Rule(prefix + name + ".bias", dense.bias)]
            else:
                r += dense_rules(prefix + name, dense)
        r += norm_rules(prefix + "output.LayerNorm", block.output_norm)
        return r


@family_task(ConvBertBackbone, "MaskedLM", "ConvBertForMaskedLM")
class ConvBertMaskedLM(MaskedLM):
    hf_dense = "generator_predictions.dense"
    hf_norm = "generator_predictions.LayerNorm"
    hf_bias = "generator_lm_head.bias"
    hf_decoder = "generator_lm_head"
    head_activation = "gelu"
    head_width_attr = "embedding_dim"
    hf_head_patterns = ("generator_predictions.*", "generator_lm_head.*")


@family_task(ConvBertBackbone, "TextClassifier", "ConvBertForSequenceClassification")
class ConvBertTextClassifier(ClassifierDenseOutProj):
    inner_activation = None


@family_task(ConvBertBackbone, "TokenClassifier", "ConvBertForTokenClassification")
class ConvBertTokenClassifier(TokenClassifier):
    pass


@family_task(ConvBertBackbone, "QuestionAnswerer", "ConvBertForQuestionAnswering")
class ConvBertQuestionAnswerer(QuestionAnswerer):
    pass


@family_task(ConvBertBackbone, "TextEmbedder", "ConvBertModel")
class ConvBertTextEmbedder(TextEmbedder):
    pass


__all__ = [
    "ConvBertBackbone", "ConvBertMaskedLM", "ConvBertTextClassifier", "ConvBertTokenClassifier",
    "ConvBertQuestionAnswerer", "ConvBertTextEmbedder",
]

"""FNet (model_type ``fnet``): BERT with token mixing by Fourier transform instead of attention.

Each block replaces self-attention with the real part of the 2D discrete Fourier transform over
(sequence, hidden) (``keras.ops.fft2``), then BERT's residual LayerNorm and feed-forward. There is no
attention mask: padding tokens take part in the mixing, as in Transformers (whose FNet takes no
``attention_mask``; ours accepts one, for the tokenizer's output and mean pooling, and ignores it in
the blocks). The embedding LayerNorm is followed by a hidden -> hidden ``projection``.
``use_tpu_fourier_optimizations`` computes the same transform with DFT matrices in Transformers;
here both settings use the FFT (equal up to float rounding).
"""

from dataclasses import dataclass

import keras
from keras import ops

from keras_models.layers.activations import get_activation
from keras_models.models.encoder.backbone import BERT_NAMES, EncoderBackbone, EncoderSpec, dense_rules, norm_rules
from keras_models.models.encoder.tasks import family_task
from keras_models.models.registry import register_backbone
from keras_models.spec import const, dim, hf
from keras_models.tasks.embedder import TextEmbedder
from keras_models.tasks.text import MaskedLM, QuestionAnswerer, TextClassifier, TokenClassifier


@dataclass(frozen=True, kw_only=True)
class FNetSpec(EncoderSpec):
    """FNetConfig (no attention heads: ``num_heads`` is fixed at 1)."""

    vocab_size: int = dim("vocab_size", 32000)
    num_heads: int = const(1)
    hidden_act: str = hf("hidden_act", "gelu_new")
    type_vocab_size: int = hf("type_vocab_size", 4)
    pad_token_id: int = hf("pad_token_id", 3)
    attention_dropout: float = const(0.0)
    embedding_projection: bool | None = const(True)

    ignored = ("use_tpu_fourier_optimizations", "tpu_short_seq_length")


@keras.saving.register_keras_serializable(package="keras_models")
class FNetBlock(keras.layers.Layer):
    """LayerNorm(x + Re(FFT2(x))) then BERT's feed-forward with a residual LayerNorm."""

    def __init__(self, hidden_size, intermediate_size, hidden_act="gelu_new", layer_norm_eps=1e-12, dropout=0.0,
                 kernel_initializer="glorot_uniform", **kwargs):
        super().__init__(**kwargs)
        self.hidden_size, self.intermediate_size, self.hidden_act = hidden_size, intermediate_size, hidden_act
        self.layer_norm_eps, self.dropout_rate = layer_norm_eps, dropout
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        common = dict(dtype=self.dtype_policy)
        init = dict(kernel_initializer=self.kernel_initializer)
        self.act = get_activation(hidden_act)
        self.mixing_norm = keras.layers.LayerNormalization(epsilon=layer_norm_eps, name="mixing_norm", **common)
        self.intermediate = keras.layers.Dense(intermediate_size, name="intermediate", **common, **init)
        self.output_dense = keras.layers.Dense(hidden_size, name="output_dense", **common, **init)
        self.output_norm = keras.layers.LayerNormalization(epsilon=layer_norm_eps, name="output_norm", **common)
        self.dropout = keras.layers.Dropout(dropout, **common)

    def build(self, input_shape):
        self.mixing_norm.build(input_shape)
        self.intermediate.build(input_shape)
        self.output_dense.build(tuple(input_shape[:-1]) + (self.intermediate_size,))
        self.output_norm.build(input_shape)
        self.built = True

    def call(self, x, bias=None, rope=None, training=False):
        dtype = x.dtype
        real = ops.cast(x, "float32")
        mixed, _ = ops.fft2((real, ops.zeros_like(real)))  # over (sequence, hidden)
        x = self.mixing_norm(x + ops.cast(mixed, dtype))
        h = self.dropout(self.output_dense(self.act(self.intermediate(x))), training=training)
        return self.output_norm(x + h)

    def get_config(self):
        config = super().get_config()
        config.update(hidden_size=self.hidden_size, intermediate_size=self.intermediate_size,
                      hidden_act=self.hidden_act, layer_norm_eps=self.layer_norm_eps, dropout=self.dropout_rate,
                      kernel_initializer=keras.initializers.serialize(self.kernel_initializer))
        return config


@keras.saving.register_keras_serializable(package="keras_models")
@register_backbone("fnet")
class FNetBackbone(EncoderBackbone):
    spec_cls = FNetSpec
    base_model_prefix = "fnet"
    hf_architecture = "FNetModel"
    hf_model_type = "fnet"
    hf_names = {**BERT_NAMES, "emb_proj": "embeddings.projection"}
    verified_backends = ("jax", "torch", "tensorflow")

    def make_block(self, index, init):
        return FNetBlock(self.hidden_size, self.intermediate_size, hidden_act=self.hidden_act,
                         layer_norm_eps=self.layer_norm_eps, dropout=self.dropout_rate, kernel_initializer=init,
                         name=f"block_{index}", dtype=self.dtype_policy)

    def attention_bias(self, inputs, x):
        return None  # no attention: padding is mixed in, as in Transformers

    def block_rules(self, prefix, block):
        return (norm_rules(prefix + "fourier.output.LayerNorm", block.mixing_norm)
                + dense_rules(prefix + "intermediate.dense", block.intermediate)
                + dense_rules(prefix + "output.dense", block.output_dense)
                + norm_rules(prefix + "output.LayerNorm", block.output_norm))


@family_task(FNetBackbone, "MaskedLM", "FNetForMaskedLM", "FNetForPreTraining")
class FNetMaskedLM(MaskedLM):
    hf_head_patterns = ("cls.*",)


@family_task(FNetBackbone, "TextClassifier", "FNetForSequenceClassification")
class FNetTextClassifier(TextClassifier):
    pass


@family_task(FNetBackbone, "TokenClassifier", "FNetForTokenClassification")
class FNetTokenClassifier(TokenClassifier):
    pass


@family_task(FNetBackbone, "QuestionAnswerer", "FNetForQuestionAnswering")
class FNetQuestionAnswerer(QuestionAnswerer):
    pass


@family_task(FNetBackbone, "TextEmbedder", "FNetModel")
class FNetTextEmbedder(TextEmbedder):
    pass


__all__ = ["FNetBackbone", "FNetMaskedLM", "FNetTextClassifier", "FNetTokenClassifier", "FNetQuestionAnswerer",
           "FNetTextEmbedder"]

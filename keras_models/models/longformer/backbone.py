"""Longformer (``model_type`` "longformer"): RoBERTa's encoder with sliding-window local
attention and global tokens.

Every layer's self-attention is local: a token sees the keys within ``attention_window[layer] // 2``
positions on each side (``attention_window``: one even width, or one per layer) and every global
token; global tokens (``global_attention_mask`` = 1, never on padding) attend to every unpadded key
with their own ``query_global`` / ``key_global`` / ``value_global`` projections
(:class:`keras_models.layers.longformer_attention.LongformerAttention`, computed densely with
additive biases, which equals Transformers' banded computation). Transformers pads inputs to a
multiple of the largest window; padded keys are masked there, so the outputs at real positions do
not depend on it and no padding happens here. Without ``global_attention_mask`` no token is
global, as in Transformers' base model (its classification and QA heads set defaults; see
tasks.py). Embeddings, blocks and names are RoBERTa's under ``longformer.``.
"""

from dataclasses import dataclass

import keras
import numpy as np
from keras import ops

from keras_models.errors import ConfigError
from keras_models.layers.activations import get_activation
from keras_models.layers.longformer_attention import LongformerAttention, longformer_bias
from keras_models.layers.masks import padding_bias
from keras_models.models.encoder.backbone import EncoderBackbone, dense_rules
from keras_models.models.registry import register_backbone
from keras_models.models.roberta import RobertaSpec
from keras_models.spec import dim, hf

_ser = keras.saving.register_keras_serializable(package="keras_models")


def _windows(value):
    if isinstance(value, bool) or not isinstance(value, (int, list, tuple)):
        raise ValueError("expected an even positive int or a list of them")
    return value if isinstance(value, int) else tuple(value)


@dataclass(frozen=True, kw_only=True)
class LongformerSpec(RobertaSpec):
    """LongformerConfig: RoBERTa's keys (Longformer's defaults) + the attention windows."""

    vocab_size: int = dim("vocab_size", 30522)
    attention_window: int | tuple = hf("attention_window", 512, read=_windows,
                                       write=lambda v: v if isinstance(v, int) else list(v),
                                       doc="one even width, or one per layer")
    sep_token_id: int = hf("sep_token_id", 2)

    hf_constants = {"bos_token_id": 0, "eos_token_id": 2}

    def validate(self, source="config.json"):
        super().validate(source)
        windows = self.layer_windows()
        if len(windows) != self.num_layers or any(isinstance(w, bool) or not isinstance(w, int) or w <= 0 or w % 2
                                                  for w in windows):
            raise ConfigError(f"{source}: attention_window={self.attention_window!r}: one positive even width "
                              f"(or one per layer: {self.num_layers}) is needed")

    def layer_windows(self):
        w = self.attention_window
        return [w] * self.num_layers if isinstance(w, int) else list(w)

    def dummy_inputs(self):
        inputs = super().dummy_inputs()
        inputs["global_attention_mask"] = np.zeros_like(inputs["input_ids"])
        return inputs


@_ser
class LongformerBlock(keras.layers.Layer):
    """BERT's post-norm block around :class:`LongformerAttention` (same sub-layer names as
    EncoderBlock, so the encoder's weight map applies)."""

    def __init__(self, hidden_size, num_heads, intermediate_size, hidden_act="gelu", layer_norm_eps=1e-12,
                 dropout=0.0, attention_dropout=0.0, kernel_initializer="glorot_uniform", **kwargs):
        super().__init__(**kwargs)
        self.hidden_size, self.num_heads, self.intermediate_size = hidden_size, num_heads, intermediate_size
        self.hidden_act, self.layer_norm_eps = hidden_act, layer_norm_eps
        self.dropout_rate, self.attention_dropout = dropout, attention_dropout
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.act = get_activation(hidden_act)
        common = dict(dtype=self.dtype_policy)
        init = dict(kernel_initializer=self.kernel_initializer)
        self.attention = LongformerAttention(hidden_size, num_heads, dropout=attention_dropout, name="attention",
                                             **common, **init)
        self.attention_norm = keras.layers.LayerNormalization(epsilon=layer_norm_eps, name="attention_norm", **common)
        self.intermediate = keras.layers.Dense(intermediate_size, name="intermediate", **common, **init)
        self.output_dense = keras.layers.Dense(hidden_size, name="output", **common, **init)
        self.output_norm = keras.layers.LayerNormalization(epsilon=layer_norm_eps, name="output_norm", **common)
        self.dropout = keras.layers.Dropout(dropout, **common)

    def build(self, input_shape):
        self.attention.build(input_shape)
        self.attention_norm.build(input_shape)
        self.intermediate.build(input_shape)
        self.output_dense.build(tuple(input_shape[:-1]) + (self.intermediate_size,))
        self.output_norm.build(input_shape)
        self.built = True

    def call(self, x, bias=None, training=False):
        h = self.attention_norm(x + self.dropout(self.attention(x, bias, training=training), training=training))
        f = self.output_dense(self.act(self.intermediate(h)))
        return self.output_norm(h + self.dropout(f, training=training))

    def get_config(self):
        config = super().get_config()
        config.update(hidden_size=self.hidden_size, num_heads=self.num_heads,
                      intermediate_size=self.intermediate_size, hidden_act=self.hidden_act,
                      layer_norm_eps=self.layer_norm_eps, dropout=self.dropout_rate,
                      attention_dropout=self.attention_dropout,
                      kernel_initializer=keras.initializers.serialize(self.kernel_initializer))
        return config


@_ser
@register_backbone("longformer")
class LongformerBackbone(EncoderBackbone):
    """(batch, seq, hidden) for ``{"input_ids", "attention_mask", "token_type_ids",
    "global_attention_mask"}``."""

    spec_cls = LongformerSpec
    base_model_prefix = "longformer"
    hf_architecture = "LongformerModel"
    hf_model_type = "longformer"
    verified_backends = ("jax", "torch", "tensorflow")

    def make_block(self, index, init):
        return LongformerBlock(
            self.hidden_size, self.num_heads, self.intermediate_size, hidden_act=self.hidden_act,
            layer_norm_eps=self.layer_norm_eps, dropout=self.dropout_rate,
            attention_dropout=self.attention_dropout, kernel_initializer=init, name=f"block_{index}",
            dtype=self.dtype_policy,
        )

    def call(self, inputs, training=False):
        if not isinstance(inputs, dict):
            inputs = {"input_ids": inputs}
        x = self.embed(inputs, training=training)
        mask = inputs.get("attention_mask")
        if mask is None:
            mask = ops.ones_like(inputs["input_ids"])
        glob = inputs.get("global_attention_mask")
        if glob is not None:  # padding tokens are never global
            glob = ops.cast(glob, x.dtype) * ops.cast(mask, x.dtype)
        pad = padding_bias(mask, x.dtype)
        windows = self.spec.layer_windows()
        for index in self.layer_schedule:
            local = longformer_bias(mask, windows[index], glob, x.dtype)
            bias = local if glob is None else {"local": local, "global": pad, "is_global": glob}
            x = self.blocks[index](x, bias, training=training)
        return x

    def block_rules(self, prefix, block):
        r = super().block_rules(prefix, block)
        for name in ("query_global", "key_global", "value_global"):
            r += dense_rules(f"{prefix}attention.self.{name}", getattr(block.attention, name))
        return r


__all__ = ["LongformerSpec", "LongformerBlock", "LongformerBackbone"]

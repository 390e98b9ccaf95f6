"""SeamlessM4T's speech encoder (``speech_encoder.``): a Conformer over SeamlessM4T filter-bank
features, built from the Wav2Vec2-Conformer / Wav2Vec2-BERT pieces.

``feature_projection`` (LayerNorm with ``layer_norm_eps``, Linear), ``speech_encoder_layers``
Conformer blocks (v1: a centred depthwise conv and a batch norm, padded frames zeroed before the
convolutions; v2: Wav2Vec2-BERT's causal conv and LayerNorm, ``relative_key`` distances and
chunked attention: ``speech_encoder_chunk_size`` frames per chunk, each seeing its chunk and
``speech_encoder_left_chunk_num`` chunks before it), ``encoder.layer_norm``
(``layer_norm_eps``), a ReLU ``intermediate_ffn`` added at half weight, ``num_adapter_layers``
sequence-shortening adapter blocks (Wav2Vec2-BERT's :class:`AdapterLayer`) and
``inner_layer_norm``. The blocks' and the adapter's own LayerNorms use eps 1e-5 whatever
``layer_norm_eps`` says, as Transformers builds them.

Masks: Transformers gives every adapter block the mask of the *input* frames and subsamples its
length once (``(L + 2 * (kernel // 2) - kernel) // stride + 1``); the decoder's cross-attention
mask is that same one-step length, whatever the number of adapter blocks (and even without an
adapter). Both are reproduced here (:meth:`SeamlessSpeechEncoder.output_lengths`).
"""

import keras
import numpy as np
from keras import ops

from keras_models.layers.vision_embeddings import dense_rules, norm_rules
from keras_models.models.wav2vec2.conformer import ConformerBlock, FeedForward, relative_sinusoids, rotary_tables
from keras_models.models.wav2vec2_bert.backbone import AdapterLayer, Wav2Vec2BertSpec, adapter_lengths

NEG = float(np.finfo("float32").min)
BLOCK_EPS = 1e-5  # nn.LayerNorm's default: the blocks' and the adapter's norms


def _bias(mask):
    return ops.where(mask, 0.0, NEG)[:, None, None, :]


class SeamlessSpeechEncoder(keras.layers.Layer):
    """``(batch, frames, feature_projection_input_dim)`` features -> ``(batch, frames', hidden)``."""

    def __init__(self, hidden_size, num_layers, num_heads, intermediate_size, feature_projection_input_dim,
                 hidden_act="swish", position_embeddings_type="relative", rotary_embedding_base=10000,
                 conv_depthwise_kernel_size=31, layer_norm_eps=1e-5, add_adapter=True, adaptor_kernel_size=8,
                 adaptor_stride=8, num_adapter_layers=1, dropout=0.0, adaptor_dropout=0.1, conv_norm="batch",
                 left_max_position_embeddings=64, right_max_position_embeddings=8, chunk_size=None, left_chunk_num=128,
                 kernel_initializer="glorot_uniform", **kwargs):
        super().__init__(**kwargs)
        self.hidden_size, self.num_heads, self.input_dim = hidden_size, num_heads, feature_projection_input_dim
        self.position_embeddings_type, self.rotary_embedding_base = position_embeddings_type, rotary_embedding_base
        self.add_adapter, self.kernel, self.stride = add_adapter, adaptor_kernel_size, adaptor_stride
        self.chunk_size, self.left_chunk_num = chunk_size, left_chunk_num
        common = dict(dtype=self.dtype_policy)
        self.projection_norm = keras.layers.LayerNormalization(epsilon=layer_norm_eps, name="projection_norm", **common)
        self.projection = keras.layers.Dense(hidden_size, name="projection", **common)
        self.dropout = keras.layers.Dropout(dropout, **common)
        self.blocks = [ConformerBlock(
            hidden_size, num_heads, intermediate_size, hidden_act, position_embeddings_type,
            conv_depthwise_kernel_size, dropout=dropout, attention_dropout=dropout, activation_dropout=dropout,
            conv_dropout=dropout, kernel_initializer=kernel_initializer, conv_norm=conv_norm,
            layer_norm_eps=BLOCK_EPS, mask_padded_frames=True, left_max_position_embeddings=left_max_position_embeddings,
            right_max_position_embeddings=right_max_position_embeddings, name=f"block_{i}", **common)
            for i in range(num_layers)]
        self.encoder_norm = keras.layers.LayerNormalization(epsilon=layer_norm_eps, name="encoder_norm", **common)
        self.intermediate_ffn = FeedForward(hidden_size, intermediate_size, "relu", 0.0, 0.0, kernel_initializer,
                                            name="intermediate_ffn", **common)
        adapter_spec = Wav2Vec2BertSpec(
            hidden_size=hidden_size, num_heads=num_heads, intermediate_size=intermediate_size,
            layer_norm_eps=BLOCK_EPS, adapter_kernel_size=adaptor_kernel_size, adapter_stride=adaptor_stride,
            adapter_act="relu", attention_dropout=dropout, conformer_conv_dropout=adaptor_dropout,
            hidden_dropout=adaptor_dropout, activation_dropout=adaptor_dropout)
        self.adapter_layers = [AdapterLayer(adapter_spec, kernel_initializer, name=f"adapter_{i}", **common)
                               for i in range(num_adapter_layers if add_adapter else 0)]
        self.inner_layer_norm = keras.layers.LayerNormalization(epsilon=BLOCK_EPS, name="inner_layer_norm", **common)

    def build(self, input_shape=None):
        self.projection_norm.build((None, None, self.input_dim))
        self.projection.build((None, None, self.input_dim))
        h = (None, None, self.hidden_size)
        for layer in self.blocks + [self.encoder_norm, self.intermediate_ffn] + self.adapter_layers + [
                self.inner_layer_norm]:
            layer.build(h)
        self.built = True

    def chunk_mask(self, t):
        """(t, t) bool: each frame attends within its chunk of ``chunk_size`` frames and the
        ``left_chunk_num`` chunks before it (all earlier chunks when negative)."""
        i = ops.arange(t, dtype="int32")
        chunk = i // self.chunk_size
        start = ops.zeros_like(chunk)
        if self.left_chunk_num >= 0:
            start = ops.maximum(chunk - self.left_chunk_num, 0) * self.chunk_size
        end = ops.minimum((chunk + 1) * self.chunk_size, t)
        return ops.logical_and(i[None, :] >= start[:, None], i[None, :] < end[:, None])

    def output_lengths(self, attention_mask):
        """Transformers' subsampled lengths of a (batch, frames) mask: one adapter step."""
        lengths = ops.sum(ops.cast(attention_mask, "int32"), axis=-1)
        return adapter_lengths(lengths, self.kernel, self.stride)

    def call(self, features, attention_mask=None, training=False):
        x = self.dropout(self.projection(self.projection_norm(ops.cast(features, self.compute_dtype))),
                         training=training)
        allowed = frames = None
        t = ops.shape(x)[1]
        if attention_mask is not None:
            frames = ops.cast(attention_mask, "int32") > 0
            x = ops.where(frames[..., None], x, ops.zeros_like(x))
            allowed = frames[:, None, None, :]
        if self.chunk_size is not None:
            chunks = self.chunk_mask(t)[None, None]
            allowed = chunks if allowed is None else ops.logical_and(allowed, chunks)
        bias = None if allowed is None else ops.where(allowed, 0.0, NEG)
        positions = None
        if self.position_embeddings_type == "relative":
            positions = relative_sinusoids(t, self.hidden_size)
        elif self.position_embeddings_type == "rotary":
            positions = rotary_tables(t, self.hidden_size // self.num_heads, self.rotary_embedding_base)
        for block in self.blocks:
            x = block(x, bias=bias, positions=positions, frames=frames, training=training)
        x = self.encoder_norm(x)
        x = x + 0.5 * self.intermediate_ffn(x, training=training)
        lengths = None if attention_mask is None else self.output_lengths(attention_mask)
        for layer in self.adapter_layers:
            bias = None
            if lengths is not None:
                n = (ops.shape(x)[1] + 2 * (self.stride // 2) - self.kernel) // self.stride + 1
                bias = _bias(ops.arange(n, dtype="int32")[None, :] < lengths[:, None])
            x = layer(x, bias=bias, training=training)
        return self.inner_layer_norm(x)

    def rules(self, p):
        r = norm_rules(p + "feature_projection.layer_norm", self.projection_norm)
        r += dense_rules(p + "feature_projection.projection", self.projection)
        for i, b in enumerate(self.blocks):
            r += b.rules(f"{p}encoder.layers.{i}.")
        r += norm_rules(p + "encoder.layer_norm", self.encoder_norm)
        r += self.intermediate_ffn.rules(p + "intermediate_ffn.")
        for i, a in enumerate(self.adapter_layers):
            r += a.rules(f"{p}adapter.layers.{i}.")
        return r + norm_rules(p + "inner_layer_norm", self.inner_layer_norm)


__all__ = ["SeamlessSpeechEncoder"]

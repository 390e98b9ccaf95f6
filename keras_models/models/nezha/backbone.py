"""NEZHA: BERT with functional relative positions (no position embeddings).

Every attention layer adds a fixed sinusoidal table ``R`` indexed by the clipped offset
``clip(j - i, -max_relative_position, max_relative_position)`` on both sides of the product:
scores are ``(q_i . k_j + q_i . R_ij) / sqrt(d)`` and outputs ``sum_j p_ij (v_j + R_ij)``. ``R``
has one row per offset, ``head_dim`` wide, sin in the even and cos in the odd features (Transformers
4.x ``NezhaRelativePositionsEncoding``; nothing of it is stored in checkpoints).

Everything else is the shared encoder (keras_models/models/encoder): BERT's embeddings without the
position table, BERT's blocks and weight names under ``nezha.``, BERT's heads.
"""

from dataclasses import dataclass

import keras
import numpy as np
from keras import ops

from keras_models.errors import ConfigError
from keras_models.layers.encoder_block import EncoderBlock
from keras_models.models.encoder.backbone import EncoderBackbone, EncoderSpec
from keras_models.models.registry import register_backbone
from keras_models.spec import const, dim, hf


def relative_position_table(max_relative_position, depth):
    """(2 * max_relative_position + 1, depth) float32: row r is offset r - max_relative_position,
    sin(offset * w_k) in feature 2k and cos in 2k + 1, w_k = 10000 ** (-2k / depth)."""
    offsets = np.arange(2 * max_relative_position + 1, dtype=np.float32)[:, None]
    freqs = np.exp(np.arange(0, depth, 2, dtype=np.float32) * np.float32(-np.log(10000.0) / depth))
    table = np.zeros((offsets.shape[0], depth), np.float32)
    table[:, 0::2] = np.sin(offsets * freqs)
    table[:, 1::2] = np.cos(offsets * freqs)
    return table


@dataclass(frozen=True, kw_only=True)
class NezhaSpec(EncoderSpec):
    """NezhaConfig (Transformers 4.x): BERT's keys and ``max_relative_position``."""

    vocab_size: int = dim("vocab_size", 21128)
    max_relative_position: int = dim("max_relative_position", 64)
    position_mode: str = const("none")

    def validate(self, source="config.json"):
        super().validate(source)
        if self.max_relative_position < 1:
            raise ConfigError(f"{source}: max_relative_position={self.max_relative_position}: expected >= 1")


@keras.saving.register_keras_serializable(package="keras_models")
class NezhaBlock(EncoderBlock):
    """The encoder block whose self-attention adds the relative table (``relative``: (t, t, d))
    to keys and values."""

    def attend(self, x, bias=None, rope=None, training=False, relative=None):
        if relative is None:
            return super().attend(x, bias, rope, training=training)
        a = self.attention
        q, k, v = (a._split(dense(x), a.num_heads) for dense in (a.query, a.key, a.value))
        rel = ops.cast(relative, q.dtype)
        scores = ops.einsum("bthd,bshd->bhts", q, k) + ops.einsum("bthd,tsd->bhts", q, rel)
        scores = scores * ops.cast(a.head_dim**-0.5, scores.dtype)
        if bias is not None:
            scores = scores + ops.cast(bias, scores.dtype)
        probs = ops.cast(ops.softmax(ops.cast(scores, "float32"), axis=-1), v.dtype)
        probs = a.attention_dropout(probs, training=training)
        out = ops.einsum("bhts,bshd->bthd", probs, v) + ops.einsum("bhts,tsd->bthd", probs, rel)
        b, t = ops.shape(out)[0], ops.shape(out)[1]
        return a.output_dense(ops.reshape(out, (b, t, a.num_heads * a.head_dim)))


@keras.saving.register_keras_serializable(package="keras_models")
@register_backbone("nezha")
class NezhaBackbone(EncoderBackbone):
    spec_cls = NezhaSpec
    base_model_prefix = "nezha"
    hf_architecture = "NezhaModel"
    hf_model_type = "nezha"
    hf_ignore = EncoderBackbone.hf_ignore + ("*relative_positions_encoding.*",)
    verified_backends = ("jax", "torch", "tensorflow")

    def make_block(self, index, init):
        return NezhaBlock(
            self.hidden_size, self.num_heads, self.intermediate_size, hidden_act=self.hidden_act,
            layer_norm_eps=self.layer_norm_eps, dropout=self.dropout_rate,
            attention_dropout=self.attention_dropout, kernel_initializer=init, name=f"block_{index}",
            dtype=self.dtype_policy,
        )

    def relative_positions(self, length):
        """(length, length, head_dim): the table row of each (query i, key j) offset j - i."""
        m = self.max_relative_position
        table = ops.convert_to_tensor(relative_position_table(m, self.head_dim))
        pos = ops.arange(length, dtype="int32")
        offsets = ops.clip(pos[None, :] - pos[:, None], -m, m) + m
        return ops.take(table, offsets, axis=0)

    def call(self, inputs, training=False):
        if not isinstance(inputs, dict):
            inputs = {"input_ids": inputs}
        x = self.embed(inputs, training=training)
        bias = self.attention_bias(inputs, x)
        relative = ops.cast(self.relative_positions(ops.shape(x)[1]), x.dtype)
        for index in self.layer_schedule:
            x = self.blocks[index](x, bias, relative=relative, training=training)
        if self.final_norm_layer is not None:
            x = self.final_norm_layer(x)
        return x

"""Wav2Vec2-Conformer: the Wav2Vec2 conv feature encoder and projection, then Conformer blocks
(half-step FFN, self-attention, convolution module, half-step FFN, LayerNorm) and a final
LayerNorm.

``position_embeddings_type``:

* ``"relative"``: Transformer-XL style attention: sinusoidal embeddings of the relative distances
  ``T-1 ... -(T-1)`` go through ``linear_pos``; scores are ``(q + u) k`` plus the
  distance-shifted ``(q + v) p``, both scaled (``pos_bias_u`` / ``pos_bias_v`` learned per head);
* ``"rotary"``: rotary embeddings applied to the block input before the query/key projections
  (values use the unrotated input), base ``rotary_embedding_base``;
* ``None``: no position information in the attention.

The checkpoint's ``encoder.pos_conv_embed`` is loaded and saved but, as in Transformers, unused.
"""

import math
from dataclasses import dataclass

import keras
import numpy as np
from keras import ops

from keras_models.errors import ConfigError
from keras_models.layers.activations import get_activation
from keras_models.layers.vision_embeddings import dense_rules, norm_rules
from keras_models.models.registry import register_backbone, register_task
from keras_models.models.wav2vec2.backbone import CONV1D_AXES, Wav2Vec2Backbone, Wav2Vec2Spec
from keras_models.presets.weight_map import Rule, Transpose
from keras_models.tasks.audio import AudioClassifier, SpeechRecognizer
from keras_models.spec import const, dim, hf


@dataclass(frozen=True, kw_only=True)
class Wav2Vec2ConformerSpec(Wav2Vec2Spec):
    position_embeddings_type: str = hf("position_embeddings_type", "relative",
                                       doc="'relative', 'rotary' or null (none)")
    rotary_embedding_base: float = hf("rotary_embedding_base", 10000)
    max_source_positions: int = dim("max_source_positions", 5000)
    conv_depthwise_kernel_size: int = dim("conv_depthwise_kernel_size", 31)
    conformer_conv_dropout: float = hf("conformer_conv_dropout", 0.1)
    do_stable_layer_norm: bool = const(True, doc="the encoder ends with a LayerNorm")
    feat_proj_layer_norm: bool = const(True)
    model_type: str = const("wav2vec2-conformer")

    @classmethod
    def adjust_from_hf(cls, config, values, source):
        if "position_embeddings_type" in config and config["position_embeddings_type"] is None:
            values["position_embeddings_type"] = "none"
        return values

    def adjust_to_hf(self, out):
        out = super().adjust_to_hf(out)
        if out.get("position_embeddings_type") == "none":
            out["position_embeddings_type"] = None
        return out

    def validate(self, source="config.json"):
        super().validate(source)
        if self.position_embeddings_type not in ("relative", "rotary", "none"):
            raise ConfigError(f"{source}: position_embeddings_type must be 'relative', 'rotary' or null, got "
                              f"{self.position_embeddings_type!r}")
        if self.conv_depthwise_kernel_size % 2 == 0:
            raise ConfigError(f"{source}: conv_depthwise_kernel_size must be odd, got "
                              f"{self.conv_depthwise_kernel_size}")


def relative_sinusoids(length, width):
    """(2*length - 1, width) float32: interleaved sin/cos of the distances length-1 ... -(length-1)."""
    div = np.exp(np.arange(0, width, 2).astype("float32") * np.float32(-(math.log(10000.0) / width)))
    if isinstance(length, int):  # a concrete length (eager): numpy, no per-shape kernels to compile
        angles = (length - 1 - np.arange(2 * length - 1, dtype="float32"))[:, None] * div[None, :]
        return ops.convert_to_tensor(np.stack([np.sin(angles), np.cos(angles)], -1).reshape(2 * length - 1, width))
    pos = ops.cast(length - 1 - ops.arange(2 * length - 1, dtype="int32"), "float32")
    angles = pos[:, None] * ops.convert_to_tensor(div)[None, :]
    return ops.reshape(ops.stack([ops.sin(angles), ops.cos(angles)], axis=-1), (2 * length - 1, width))


def rotary_tables(length, head_dim, base):
    """cos, sin (length, head_dim) float32 (the frequency half repeated twice)."""
    inv = 1.0 / (np.float32(base) ** (np.arange(0, head_dim, 2).astype("float32") / np.float32(head_dim)))
    if isinstance(length, int):
        emb = np.tile(np.arange(length, dtype="float32")[:, None] * inv.astype("float32")[None, :], (1, 2))
        return ops.convert_to_tensor(np.cos(emb)), ops.convert_to_tensor(np.sin(emb))
    freqs = ops.cast(ops.arange(length, dtype="int32"), "float32")[:, None] * ops.convert_to_tensor(
        inv.astype("float32"))[None, :]
    emb = ops.concatenate([freqs, freqs], axis=-1)
    return ops.cos(emb), ops.sin(emb)


class ConformerAttention(keras.layers.Layer):
    def __init__(self, hidden_size, num_heads, position_embeddings_type="relative", dropout=0.0,
                 kernel_initializer="glorot_uniform", **kwargs):
        super().__init__(**kwargs)
        self.hidden_size, self.num_heads = hidden_size, num_heads
        self.head_dim = hidden_size // num_heads
        self.position_embeddings_type = position_embeddings_type
        dense = dict(kernel_initializer=kernel_initializer, dtype=self.dtype_policy)
        self.linear_q = keras.layers.Dense(hidden_size, name="linear_q", **dense)
        self.linear_k = keras.layers.Dense(hidden_size, name="linear_k", **dense)
        self.linear_v = keras.layers.Dense(hidden_size, name="linear_v", **dense)
        self.linear_out = keras.layers.Dense(hidden_size, name="linear_out", **dense)
        if position_embeddings_type == "relative":
            self.linear_pos = keras.layers.Dense(hidden_size, use_bias=False, name="linear_pos", **dense)
        self.dropout = keras.layers.Dropout(dropout, dtype=self.dtype_policy)

    def build(self, input_shape):
        for d in (self.linear_q, self.linear_k, self.linear_v, self.linear_out):
            d.build(input_shape)
        if self.position_embeddings_type == "relative":
            self.linear_pos.build(input_shape)
            self.pos_bias_u = self.add_weight(name="pos_bias_u", shape=(self.num_heads, self.head_dim),
                                              initializer="zeros")
            self.pos_bias_v = self.add_weight(name="pos_bias_v", shape=(self.num_heads, self.head_dim),
                                              initializer="zeros")
        self.built = True

    def _heads(self, x):
        b, t = ops.shape(x)[0], ops.shape(x)[1]
        return ops.transpose(ops.reshape(x, (b, t, self.num_heads, self.head_dim)), (0, 2, 1, 3))

    def call(self, x, bias=None, positions=None, training=False):
        b, t = ops.shape(x)[0], ops.shape(x)[1]
        qk_in = x
        if self.position_embeddings_type == "rotary":
            cos, sin = positions
            h = ops.reshape(x, (b, t, self.num_heads, self.head_dim))
            half = self.head_dim // 2
            rot = ops.concatenate([-h[..., half:], h[..., :half]], axis=-1)
            h = h * ops.cast(cos[:, None, :], h.dtype) + rot * ops.cast(sin[:, None, :], h.dtype)
            qk_in = ops.reshape(h, (b, t, self.hidden_size))
        q, k, v = self._heads(self.linear_q(qk_in)), self._heads(self.linear_k(qk_in)), self._heads(self.linear_v(x))
        scale = self.head_dim ** -0.5
        if self.position_embeddings_type == "relative":
            p = self.linear_pos(ops.cast(positions, x.dtype))  # (2t-1, hidden)
            p = ops.transpose(ops.reshape(p, (-1, self.num_heads, self.head_dim)), (1, 2, 0))  # (h, d, 2t-1)
            bd = ops.matmul(q + ops.cast(self.pos_bias_v, q.dtype)[None, :, None, :], p[None])  # (b, h, t, 2t-1)
            i = ops.arange(t, dtype="int32")
            idx = (t - 1) - i[:, None] + i[None, :]  # key j of query i sits at column t-1-i+j
            idx = ops.broadcast_to(idx[None, None], ops.shape(bd)[:2] + (t, t))
            bd = ops.take_along_axis(bd, idx, axis=-1)
            q = q + ops.cast(self.pos_bias_u, q.dtype)[None, :, None, :]
            scores = (ops.matmul(q, ops.transpose(k, (0, 1, 3, 2))) + bd) * scale
        else:
            scores = ops.matmul(q, ops.transpose(k, (0, 1, 3, 2))) * scale
        scores = ops.cast(scores, "float32")
        if bias is not None:
            scores = scores + bias
        probs = ops.cast(ops.softmax(scores, axis=-1), v.dtype)
        probs = self.dropout(probs, training=training)
        out = ops.reshape(ops.transpose(ops.matmul(probs, v), (0, 2, 1, 3)), (b, t, self.hidden_size))
        return self.linear_out(out)


class ConformerBlock(keras.layers.Layer):
    def __init__(self, hidden_size, num_heads, intermediate_size, hidden_act="gelu", position_embeddings_type="relative",
                 depthwise_kernel_size=31, dropout=0.0, attention_dropout=0.0, activation_dropout=0.0,
                 conv_dropout=0.0, kernel_initializer="glorot_uniform", **kwargs):
        super().__init__(**kwargs)
        common = dict(dtype=self.dtype_policy)
        dense = dict(kernel_initializer=kernel_initializer, **common)
        self.hidden_size = hidden_size

        def ln(name):
            return keras.layers.LayerNormalization(epsilon=1e-5, name=name, **common)

        self.ffn1_layer_norm, self.ffn2_layer_norm = ln("ffn1_layer_norm"), ln("ffn2_layer_norm")
        self.self_attn_layer_norm, self.final_layer_norm = ln("self_attn_layer_norm"), ln("final_layer_norm")
        self.conv_layer_norm = ln("conv_layer_norm")
        self.ffn1_in = keras.layers.Dense(intermediate_size, name="ffn1_in", **dense)
        self.ffn1_out = keras.layers.Dense(hidden_size, name="ffn1_out", **dense)
        self.ffn2_in = keras.layers.Dense(intermediate_size, name="ffn2_in", **dense)
        self.ffn2_out = keras.layers.Dense(hidden_size, name="ffn2_out", **dense)
        self.self_attn = ConformerAttention(hidden_size, num_heads, position_embeddings_type, attention_dropout,
                                            kernel_initializer=kernel_initializer, name="self_attn", **common)
        self.pointwise_conv1 = keras.layers.Conv1D(2 * hidden_size, 1, use_bias=False, name="pointwise_conv1", **common)
        self.depthwise_conv = keras.layers.DepthwiseConv1D(depthwise_kernel_size, padding="same", use_bias=False,
                                                           name="depthwise_conv", **common)
        self.batch_norm = keras.layers.BatchNormalization(epsilon=1e-5, momentum=0.9, name="batch_norm", **common)
        self.pointwise_conv2 = keras.layers.Conv1D(hidden_size, 1, use_bias=False, name="pointwise_conv2", **common)
        self.act = get_activation(hidden_act)
        self.dropout = keras.layers.Dropout(dropout, **common)
        self.attn_dropout = keras.layers.Dropout(attention_dropout, **common)
        self.act_dropout = keras.layers.Dropout(activation_dropout, **common)
        self.conv_dropout = keras.layers.Dropout(conv_dropout, **common)

    def build(self, input_shape):
        h = (None, None, self.hidden_size)
        for n in (self.ffn1_layer_norm, self.ffn2_layer_norm, self.self_attn_layer_norm, self.final_layer_norm,
                  self.conv_layer_norm, self.ffn1_in, self.ffn2_in, self.self_attn, self.pointwise_conv1):
            n.build(h)
        inter = (None, None, self.ffn1_in.units)
        self.ffn1_out.build(inter)
        self.ffn2_out.build(inter)
        for n in (self.depthwise_conv, self.batch_norm, self.pointwise_conv2):
            n.build(h)
        self.built = True

    def _ffn(self, x, dense_in, dense_out, training):
        h = self.act_dropout(self.act(dense_in(x)), training=training)
        return self.dropout(dense_out(h), training=training)

    def call(self, x, bias=None, positions=None, training=False):
        x = x + 0.5 * self._ffn(self.ffn1_layer_norm(x), self.ffn1_in, self.ffn1_out, training)
        h = self.self_attn(self.self_attn_layer_norm(x), bias=bias, positions=positions, training=training)
        x = x + self.attn_dropout(h, training=training)
        h = self.pointwise_conv1(self.conv_layer_norm(x))
        h = h[..., :self.hidden_size] * ops.sigmoid(h[..., self.hidden_size:])
        h = self.act(self.batch_norm(self.depthwise_conv(h), training=training))
        x = x + self.conv_dropout(self.pointwise_conv2(h), training=training)
        x = x + 0.5 * self._ffn(self.ffn2_layer_norm(x), self.ffn2_in, self.ffn2_out, training)
        return self.final_layer_norm(x)


@keras.saving.register_keras_serializable(package="keras_models")
@register_backbone("wav2vec2-conformer")
class Wav2Vec2ConformerBackbone(Wav2Vec2Backbone):
    spec_cls = Wav2Vec2ConformerSpec
    verified_backends = ("jax", "torch", "tensorflow")
    base_model_prefix = "wav2vec2_conformer"
    hf_architecture = "Wav2Vec2ConformerModel"
    hf_ignore = ("*num_batches_tracked", "*embed_positions.inv_freq")

    def make_block(self, i, init):
        s = self.spec
        return ConformerBlock(s.hidden_size, s.num_heads, s.intermediate_size, s.hidden_act,
                              s.position_embeddings_type, s.conv_depthwise_kernel_size, dropout=s.hidden_dropout,
                              attention_dropout=s.attention_dropout, activation_dropout=s.activation_dropout,
                              conv_dropout=s.conformer_conv_dropout, kernel_initializer=init, name=f"block_{i}",
                              dtype=self.dtype_policy)

    def encode(self, x, bias=None, training=False):
        s = self.spec
        x = self.encoder_dropout(x, training=training)
        t = ops.shape(x)[1]
        positions = None
        if s.position_embeddings_type == "relative":
            positions = relative_sinusoids(t, s.hidden_size)
        elif s.position_embeddings_type == "rotary":
            positions = rotary_tables(t, s.hidden_size // s.num_heads, s.rotary_embedding_base)
        for block in self.blocks:
            x = block(x, bias=bias, positions=positions, training=training)
        return self.encoder_norm(x)

    def block_rules(self, p, b):
        r = []
        a = b.self_attn
        for name, dense in (("ffn1.intermediate_dense", b.ffn1_in), ("ffn1.output_dense", b.ffn1_out),
                            ("ffn2.intermediate_dense", b.ffn2_in), ("ffn2.output_dense", b.ffn2_out),
                            ("self_attn.linear_q", a.linear_q), ("self_attn.linear_k", a.linear_k),
                            ("self_attn.linear_v", a.linear_v), ("self_attn.linear_out", a.linear_out)):
            r += dense_rules(p + name, dense)
        if a.position_embeddings_type == "relative":
            r += dense_rules(p + "self_attn.linear_pos", a.linear_pos)
            r += [Rule(p + "self_attn.pos_bias_u", a.pos_bias_u), Rule(p + "self_attn.pos_bias_v", a.pos_bias_v)]
        for name, norm in (("ffn1_layer_norm", b.ffn1_layer_norm), ("ffn2_layer_norm", b.ffn2_layer_norm),
                           ("self_attn_layer_norm", b.self_attn_layer_norm), ("final_layer_norm", b.final_layer_norm),
                           ("conv_module.layer_norm", b.conv_layer_norm), ("conv_module.batch_norm", b.batch_norm)):
            r += norm_rules(p + name, norm)
        c = p + "conv_module."
        r += [Rule(c + "pointwise_conv1.weight", b.pointwise_conv1.kernel, Transpose(CONV1D_AXES)),
              Rule(c + "pointwise_conv2.weight", b.pointwise_conv2.kernel, Transpose(CONV1D_AXES)),
              Rule(c + "depthwise_conv.weight", b.depthwise_conv.kernel, Transpose((2, 0, 1)))]
        return r


_ser = keras.saving.register_keras_serializable(package="keras_models")


@_ser
@register_task(Wav2Vec2ConformerBackbone, "SpeechRecognizer", ("Wav2Vec2ConformerForCTC",))
class Wav2Vec2ConformerSpeechRecognizer(SpeechRecognizer):
    pass


@_ser
@register_task(Wav2Vec2ConformerBackbone, "AudioClassifier", ("Wav2Vec2ConformerForSequenceClassification",))
class Wav2Vec2ConformerAudioClassifier(AudioClassifier):
    pass


__all__ = ["Wav2Vec2ConformerSpec", "Wav2Vec2ConformerBackbone", "Wav2Vec2ConformerSpeechRecognizer", "Wav2Vec2ConformerAudioClassifier"]

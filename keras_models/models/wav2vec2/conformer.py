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
    """Conformer self-attention. ``position_embeddings_type``: ``"relative"`` (Transformer-XL
    distances through ``linear_pos``, with ``pos_bias_u``/``pos_bias_v``), ``"rotary"`` (applied to
    the query/key input), ``"relative_key"`` (a learned table of distances clamped to
    ``-left .. right``, dotted with the query and added to the scores) or anything else for none."""

    def __init__(self, hidden_size, num_heads, position_embeddings_type="relative", dropout=0.0,
                 kernel_initializer="glorot_uniform", left=64, right=8, **kwargs):
        super().__init__(**kwargs)
        self.hidden_size, self.num_heads = hidden_size, num_heads
        self.head_dim = hidden_size // num_heads
        self.position_embeddings_type = position_embeddings_type
        self.relative_key, self.left, self.right = position_embeddings_type == "relative_key", left, right
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
        if self.relative_key:
            self.distance_embedding = self.add_weight(name="distance_embedding",
                                                      shape=(self.left + self.right + 1, self.head_dim))
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
        elif self.relative_key:
            i = ops.arange(t, dtype="int32")
            dist = ops.clip(i[None, :] - i[:, None], -self.left, self.right) + self.left
            emb = ops.cast(ops.take(self.distance_embedding, dist, axis=0), q.dtype)  # (t, t, d)
            rel = ops.einsum("bhld,lrd->bhlr", q, emb)
            scores = (ops.matmul(q, ops.transpose(k, (0, 1, 3, 2))) + rel) * scale
        else:
            scores = ops.matmul(q, ops.transpose(k, (0, 1, 3, 2))) * scale
        scores = ops.cast(scores, "float32")
        if bias is not None:
            scores = scores + bias
        probs = ops.cast(ops.softmax(scores, axis=-1), v.dtype)
        probs = self.dropout(probs, training=training)
        out = ops.reshape(ops.transpose(ops.matmul(probs, v), (0, 2, 1, 3)), (b, t, self.hidden_size))
        return self.linear_out(out)

    def rules(self, p):
        r = []
        for name in ("linear_q", "linear_k", "linear_v", "linear_out"):
            r += dense_rules(p + name, getattr(self, name))
        if self.position_embeddings_type == "relative":
            r += dense_rules(p + "linear_pos", self.linear_pos)
            r += [Rule(p + "pos_bias_u", self.pos_bias_u), Rule(p + "pos_bias_v", self.pos_bias_v)]
        if self.relative_key:
            r.append(Rule(p + "distance_embedding.weight", self.distance_embedding))
        return r


class FeedForward(keras.layers.Layer):
    """Dense, activation, dropout, Dense, dropout (``intermediate_dense`` / ``output_dense``)."""

    def __init__(self, hidden_size, intermediate_size, act="swish", dropout=0.0, activation_dropout=0.0,
                 kernel_initializer="glorot_uniform", **kwargs):
        super().__init__(**kwargs)
        dense = dict(kernel_initializer=kernel_initializer, dtype=self.dtype_policy)
        self.hidden_size, self.act_name = hidden_size, act
        self.intermediate_dense = keras.layers.Dense(intermediate_size, name="intermediate_dense", **dense)
        self.output_dense = keras.layers.Dense(hidden_size, name="output_dense", **dense)
        self.act = get_activation(act)
        self.act_dropout = keras.layers.Dropout(activation_dropout, dtype=self.dtype_policy)
        self.dropout = keras.layers.Dropout(dropout, dtype=self.dtype_policy)

    def build(self, input_shape):
        self.intermediate_dense.build((None, None, self.hidden_size))
        self.output_dense.build((None, None, self.intermediate_dense.units))
        self.built = True

    def call(self, x, training=False):
        h = self.act_dropout(self.act(self.intermediate_dense(x)), training=training)
        return self.dropout(self.output_dense(h), training=training)

    def rules(self, p):
        return dense_rules(p + "intermediate_dense", self.intermediate_dense) + dense_rules(p + "output_dense",
                                                                                          self.output_dense)


class ConformerBlock(keras.layers.Layer):
    """Half-step FFN, self-attention, convolution module, half-step FFN, LayerNorm.

    ``conv_norm="batch"`` (Wav2Vec2-Conformer, SeamlessM4T): a centred ("same") depthwise conv, then a
    batch norm and the activation. ``conv_norm="layer"`` (Wav2Vec2-BERT, SeamlessM4Tv2): the depthwise
    conv is causal (left padding), then a LayerNorm and the activation. ``mask_padded_frames`` (None:
    as ``conv_norm == "layer"``): padded frames (``frames`` False) are zeroed before the convolutions.
    """

    def __init__(self, hidden_size, num_heads, intermediate_size, hidden_act="gelu", position_embeddings_type="relative",
                 depthwise_kernel_size=31, dropout=0.0, attention_dropout=0.0, activation_dropout=0.0,
                 conv_dropout=0.0, kernel_initializer="glorot_uniform", conv_norm="batch", layer_norm_eps=1e-5,
                 left_max_position_embeddings=64, right_max_position_embeddings=8, mask_padded_frames=None,
                 **kwargs):
        super().__init__(**kwargs)
        self.mask_padded_frames = conv_norm == "layer" if mask_padded_frames is None else bool(mask_padded_frames)
        if conv_norm not in ("batch", "layer"):
            raise ValueError(f"ConformerBlock: conv_norm must be 'batch' or 'layer', got {conv_norm!r}")
        common = dict(dtype=self.dtype_policy)
        self.hidden_size, self.kernel, self.conv_norm = hidden_size, depthwise_kernel_size, conv_norm

        def ln(name):
            return keras.layers.LayerNormalization(epsilon=layer_norm_eps, name=name, **common)

        def ffn(name):
            return FeedForward(hidden_size, intermediate_size, hidden_act, dropout, activation_dropout,
                               kernel_initializer, name=name, **common)

        self.ffn1_layer_norm, self.ffn1 = ln("ffn1_layer_norm"), ffn("ffn1")
        self.self_attn_layer_norm = ln("self_attn_layer_norm")
        self.self_attn = ConformerAttention(hidden_size, num_heads, position_embeddings_type, attention_dropout,
                                            kernel_initializer=kernel_initializer, left=left_max_position_embeddings,
                                            right=right_max_position_embeddings, name="self_attn", **common)
        self.conv_layer_norm = ln("conv_layer_norm")
        self.pointwise_conv1 = keras.layers.Conv1D(2 * hidden_size, 1, use_bias=False, name="pointwise_conv1", **common)
        self.depthwise_conv = keras.layers.DepthwiseConv1D(
            depthwise_kernel_size, padding="same" if conv_norm == "batch" else "valid", use_bias=False,
            name="depthwise_conv", **common)
        if conv_norm == "batch":
            self.depthwise_norm = keras.layers.BatchNormalization(epsilon=1e-5, momentum=0.9, name="batch_norm",
                                                                  **common)
        else:
            self.depthwise_norm = ln("depthwise_layer_norm")
        self.pointwise_conv2 = keras.layers.Conv1D(hidden_size, 1, use_bias=False, name="pointwise_conv2", **common)
        self.ffn2_layer_norm, self.ffn2 = ln("ffn2_layer_norm"), ffn("ffn2")
        self.final_layer_norm = ln("final_layer_norm")
        self.act = get_activation(hidden_act)
        self.attn_dropout = keras.layers.Dropout(attention_dropout, **common)
        self.conv_dropout = keras.layers.Dropout(conv_dropout, **common)

    def build(self, input_shape):
        h = (None, None, self.hidden_size)
        for n in (self.ffn1_layer_norm, self.ffn1, self.self_attn_layer_norm, self.self_attn, self.conv_layer_norm,
                  self.pointwise_conv1, self.depthwise_conv, self.depthwise_norm, self.pointwise_conv2,
                  self.ffn2_layer_norm, self.ffn2, self.final_layer_norm):
            n.build(h)
        self.built = True

    def call(self, x, bias=None, positions=None, frames=None, training=False):
        x = x + 0.5 * self.ffn1(self.ffn1_layer_norm(x), training=training)
        h = self.self_attn(self.self_attn_layer_norm(x), bias=bias, positions=positions, training=training)
        x = x + self.attn_dropout(h, training=training)
        h = self.conv_layer_norm(x)
        if frames is not None and self.mask_padded_frames:
            h = ops.where(frames[..., None], h, ops.zeros_like(h))
        h = self.pointwise_conv1(h)
        h = h[..., :self.hidden_size] * ops.sigmoid(h[..., self.hidden_size:])
        if self.conv_norm == "batch":
            h = self.act(self.depthwise_norm(self.depthwise_conv(h), training=training))
        else:
            h = self.depthwise_conv(ops.pad(h, ((0, 0), (self.kernel - 1, 0), (0, 0))))  # causal
            h = self.act(self.depthwise_norm(h))
        x = x + self.conv_dropout(self.pointwise_conv2(h), training=training)
        x = x + 0.5 * self.ffn2(self.ffn2_layer_norm(x), training=training)
        return self.final_layer_norm(x)

    def rules(self, p):
        """Transformers' names under ``p`` (a ``...layers.{i}.`` prefix)."""
        r = self.ffn1.rules(p + "ffn1.") + self.ffn2.rules(p + "ffn2.") + self.self_attn.rules(p + "self_attn.")
        c = p + "conv_module."
        norm_name = c + ("batch_norm" if self.conv_norm == "batch" else "depthwise_layer_norm")
        for name, norm in ((p + "ffn1_layer_norm", self.ffn1_layer_norm), (p + "ffn2_layer_norm", self.ffn2_layer_norm),
                           (p + "self_attn_layer_norm", self.self_attn_layer_norm),
                           (p + "final_layer_norm", self.final_layer_norm), (c + "layer_norm", self.conv_layer_norm),
                           (norm_name, self.depthwise_norm)):
            r += norm_rules(name, norm)
        r += [Rule(c + "pointwise_conv1.weight", self.pointwise_conv1.kernel, Transpose(CONV1D_AXES)),
              Rule(c + "pointwise_conv2.weight", self.pointwise_conv2.kernel, Transpose(CONV1D_AXES)),
              Rule(c + "depthwise_conv.weight", self.depthwise_conv.kernel, Transpose((2, 0, 1)))]
        return r


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
        return b.rules(p)


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

"""WavLM: the Wav2Vec2 encoder with a gated relative position bias in every attention layer.

The bias is a table of ``num_buckets`` learned values per head, looked up by the bucketed
distance between query and key frames (exact buckets for short distances, logarithmic ones up to
``max_bucket_distance``; separate halves for keys before and after the query). Only the first
layer owns the table; the bias it computes is handed to every later layer. Each layer scales it
per query frame and head by a gate computed from its own input (``gru_rel_pos_linear`` and
``gru_rel_pos_const``). Everything else (conv feature encoder, projection, position conv,
post-norm or ``do_stable_layer_norm`` blocks) is :class:`Wav2Vec2Backbone`.
"""

import math
from dataclasses import dataclass

import keras
import numpy as np
from keras import ops

from keras_models.layers.vision_embeddings import dense_rules
from keras_models.models.registry import register_backbone, register_task
from keras_models.models.wav2vec2.backbone import SpeechAttention, SpeechEncoderLayer, Wav2Vec2Backbone, Wav2Vec2Spec
from keras_models.presets.weight_map import Rule
from keras_models.tasks.audio import AudioClassifier, SpeechRecognizer
from keras_models.spec import const, dim


@dataclass(frozen=True, kw_only=True)
class WavLMSpec(Wav2Vec2Spec):
    num_buckets: int = dim("num_buckets", 320)
    max_bucket_distance: int = dim("max_bucket_distance", 800)
    feat_proj_layer_norm: bool = const(True)
    model_type: str = const("wavlm")


def relative_position_buckets(length, num_buckets, max_distance):
    """(length, length) int32 bucket of key ``j`` relative to query ``i`` (Transformers' WavLM rule)."""
    if isinstance(length, int):  # a concrete length (eager): numpy, no per-shape kernels to compile
        pos = np.arange(length, dtype="int32")
        rel = pos[None, :] - pos[:, None]
        half = num_buckets // 2
        dist, max_exact = np.abs(rel), half // 2
        far = np.log(np.maximum(dist, 1).astype("float32") / np.float32(max_exact))
        far = (far / np.float32(math.log(max_distance / max_exact)) * np.float32(half - max_exact)).astype("int32")
        far = np.minimum(max_exact + far, half - 1)
        return ops.convert_to_tensor((rel > 0).astype("int32") * half + np.where(dist < max_exact, dist, far))
    pos = ops.arange(length, dtype="int32")
    rel = pos[None, :] - pos[:, None]
    half = num_buckets // 2
    buckets = ops.cast(rel > 0, "int32") * half
    dist = ops.abs(rel)
    max_exact = half // 2
    far = ops.log(ops.cast(ops.maximum(dist, 1), "float32") / max_exact)
    far = far / math.log(max_distance / max_exact) * (half - max_exact)
    far = ops.minimum(max_exact + ops.cast(far, "int32"), half - 1)
    return buckets + ops.where(dist < max_exact, dist, far)


class WavLMAttention(SpeechAttention):
    """Self-attention plus the gated relative position bias; ``has_relative_position_bias``
    (the first layer) owns the bucket table ``rel_attn_embed`` (num_buckets, heads)."""

    def __init__(self, hidden_size, num_heads, dropout=0.0, num_buckets=320, max_distance=800,
                 has_relative_position_bias=False, **kwargs):
        super().__init__(hidden_size, num_heads, dropout, **kwargs)
        self.num_buckets, self.max_distance = num_buckets, max_distance
        self.has_relative_position_bias = has_relative_position_bias
        self.gru_rel_pos_linear = keras.layers.Dense(8, name="gru_rel_pos_linear", dtype=self.dtype_policy)

    def build(self, input_shape):
        super().build(input_shape)
        self.gru_rel_pos_linear.build((None, self.head_dim))
        self.gru_rel_pos_const = self.add_weight(name="gru_rel_pos_const", shape=(1, self.num_heads, 1, 1),
                                                 initializer="ones")
        if self.has_relative_position_bias:
            self.rel_attn_embed = self.add_weight(name="rel_attn_embed", shape=(self.num_buckets, self.num_heads),
                                                  initializer=keras.initializers.RandomNormal(stddev=0.02))

    def compute_bias(self, length):
        """(1, heads, length, length) float32 position bias."""
        buckets = relative_position_buckets(length, self.num_buckets, self.max_distance)
        values = ops.take(ops.cast(self.rel_attn_embed, "float32"), buckets, axis=0)  # (t, t, heads)
        return ops.transpose(values, (2, 0, 1))[None]

    def call(self, x, bias=None, position_bias=None, training=False):
        if position_bias is None:
            position_bias = self.compute_bias(ops.shape(x)[1])
        b, t = ops.shape(x)[0], ops.shape(x)[1]
        heads = ops.transpose(ops.reshape(x, (b, t, self.num_heads, self.head_dim)), (0, 2, 1, 3))
        g = ops.reshape(self.gru_rel_pos_linear(heads), (b, self.num_heads, t, 2, 4))
        g = ops.sigmoid(ops.cast(ops.sum(g, axis=-1), "float32"))
        gate_a, gate_b = g[..., :1], g[..., 1:]
        gate = gate_a * (gate_b * ops.cast(self.gru_rel_pos_const, "float32") - 1.0) + 2.0  # (b, h, t, 1)
        gated = gate * position_bias
        full = gated if bias is None else gated + bias
        return super().call(x, bias=full, training=training), position_bias

    def get_config(self):
        c = super().get_config()
        c.update(hidden_size=self.hidden_size, num_heads=self.num_heads, num_buckets=self.num_buckets,
                 max_distance=self.max_distance, has_relative_position_bias=self.has_relative_position_bias)
        return c


class WavLMEncoderLayer(SpeechEncoderLayer):
    """A WavLM block: Wav2Vec2's post-norm or (``pre_norm``) pre-norm block around WavLM's
    attention, which also returns the ungated position bias for the next layer."""

    def __init__(self, hidden_size, num_heads, intermediate_size, hidden_act="gelu", layer_norm_eps=1e-5,
                 pre_norm=False, dropout=0.0, attention_dropout=0.0, activation_dropout=0.0, num_buckets=320,
                 max_distance=800, has_relative_position_bias=False, kernel_initializer="glorot_uniform", **kwargs):
        attention = WavLMAttention(hidden_size, num_heads, attention_dropout, num_buckets, max_distance,
                                   has_relative_position_bias, kernel_initializer=kernel_initializer,
                                   name="attention", dtype=kwargs.get("dtype"))
        super().__init__(hidden_size, num_heads, intermediate_size, hidden_act, layer_norm_eps, pre_norm, dropout,
                         attention_dropout, activation_dropout, kernel_initializer, attention=attention, **kwargs)

    def call(self, x, bias=None, position_bias=None, training=False):
        if self.pre_norm:
            h, position_bias = self.attention(self.layer_norm(x), bias=bias, position_bias=position_bias,
                                              training=training)
            x = x + self.dropout(h, training=training)
            return x + self.feed_forward(self.final_layer_norm(x), training), position_bias
        h, position_bias = self.attention(x, bias=bias, position_bias=position_bias, training=training)
        x = self.layer_norm(x + self.dropout(h, training=training))
        return self.final_layer_norm(x + self.feed_forward(x, training)), position_bias


@keras.saving.register_keras_serializable(package="keras_models")
@register_backbone("wavlm")
class WavLMBackbone(Wav2Vec2Backbone):
    spec_cls = WavLMSpec
    verified_backends = ("jax", "torch", "tensorflow")
    base_model_prefix = "wavlm"
    hf_architecture = "WavLMModel"

    def make_block(self, i, init):
        s = self.spec
        return WavLMEncoderLayer(s.hidden_size, s.num_heads, s.intermediate_size, s.hidden_act, s.layer_norm_eps,
                                 pre_norm=s.do_stable_layer_norm, dropout=s.hidden_dropout,
                                 attention_dropout=s.attention_dropout, activation_dropout=s.activation_dropout,
                                 num_buckets=s.num_buckets, max_distance=s.max_bucket_distance,
                                 has_relative_position_bias=(i == 0), kernel_initializer=init, name=f"block_{i}",
                                 dtype=self.dtype_policy)

    def encode(self, x, bias=None, training=False):
        x = x + self.pos_conv(x)
        if not self.spec.do_stable_layer_norm:
            x = self.encoder_norm(x)
        x = self.encoder_dropout(x, training=training)
        position_bias = None
        for block in self.blocks:
            x, position_bias = block(x, bias=bias, position_bias=position_bias, training=training)
        if self.spec.do_stable_layer_norm:
            x = self.encoder_norm(x)
        return x

    def block_rules(self, p, b):
        a = b.attention
        r = super().block_rules(p, b)
        r += dense_rules(p + "attention.gru_rel_pos_linear", a.gru_rel_pos_linear)
        r.append(Rule(p + "attention.gru_rel_pos_const", a.gru_rel_pos_const))
        if a.has_relative_position_bias:
            r.append(Rule(p + "attention.rel_attn_embed.weight", a.rel_attn_embed))
        return r


_ser = keras.saving.register_keras_serializable(package="keras_models")


@_ser
@register_task(WavLMBackbone, "SpeechRecognizer", ("WavLMForCTC",))
class WavLMSpeechRecognizer(SpeechRecognizer):
    pass


@_ser
@register_task(WavLMBackbone, "AudioClassifier", ("WavLMForSequenceClassification",))
class WavLMAudioClassifier(AudioClassifier):
    pass


__all__ = ["WavLMSpec", "WavLMBackbone", "WavLMSpeechRecognizer", "WavLMAudioClassifier"]

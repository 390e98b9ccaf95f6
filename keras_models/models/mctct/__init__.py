"""M-CTC-T (``mctct``, removed from Transformers 5; Transformers 4.x ``models/deprecated/mctct``):
a speech encoder over log-mel ``input_features`` (batch, frames, input_feat_per_channel *
input_channels) with a CTC head.

* The features are scaled by one learned scalar and shifted by another (Transformers'
  ``MCTCTLayerNorm``), zero-padded by ``sum(conv_kernel // 2)`` frames on both sides and subsampled
  by the convolutions (valid, ``conv_stride``), each followed by a GLU over its channels.
* Post-norm BERT-like blocks without biases in the attention / MLP projections; the query is
  divided by ``sqrt(attention_head_dim)`` and the scores get a relative term ``q_i . D[P - 1 + j - i]``
  from a learned ``(2 P - 1, head_dim)`` distance table (``P = max_position_embeddings``; zero for
  frames further apart than ``P - 1``).
* ``attention_mask`` (over the input frames) becomes a frame mask of the subsampled length
  (Transformers' ``_get_feature_vector_attention_mask``); masked keys get the dtype's minimum.
"""

from dataclasses import dataclass

import keras
from keras import ops

from keras_models.errors import ConfigError
from keras_models.layers.activations import get_activation
from keras_models.layers.vision_embeddings import dense_rules, norm_rules
from keras_models.models.backbone import SpecBackbone
from keras_models.models.registry import register_backbone, register_task
from keras_models.presets.weight_map import Rule, Transpose
from keras_models.spec import Spec, dim, hf
from keras_models.tasks.audio import SpeechRecognizer

_ser = keras.saving.register_keras_serializable(package="keras_models")
NEG = -3.4028234663852886e38


@dataclass(frozen=True, kw_only=True)
class MCTCTSpec(Spec):
    vocab_size: int = dim("vocab_size", 8065)
    hidden_size: int = dim("hidden_size", 1536)
    num_layers: int = dim("num_hidden_layers", 36)
    intermediate_size: int = dim("intermediate_size", 6144)
    num_heads: int = dim("num_attention_heads", 4)
    head_dim: int = dim("attention_head_dim", 384)
    max_position_embeddings: int = dim("max_position_embeddings", 920)
    layer_norm_eps: float = hf("layer_norm_eps", 1e-5)
    hidden_act: str = hf("hidden_act", "relu")
    conv_glu_dim: int = hf("conv_glu_dim", 1)
    num_conv_layers: int = dim("num_conv_layers", 1)
    conv_kernel: tuple = hf("conv_kernel", (7,))
    conv_stride: tuple = hf("conv_stride", (3,))
    conv_channels: tuple | None = hf("conv_channels", None)
    input_feat_per_channel: int = dim("input_feat_per_channel", 80)
    input_channels: int = dim("input_channels", 1)
    pad_token_id: int | None = hf("pad_token_id", 1)
    initializer_range: float = hf("initializer_range", 0.02)

    unsupported = {"conv_glu_dim": (1,)}

    def validate(self, source="config.json"):
        if self.conv_glu_dim != 1:
            raise ConfigError(f"{source}: conv_glu_dim={self.conv_glu_dim!r}: only 1 (GLU over channels) is supported")
        if self.num_heads * self.head_dim != self.hidden_size:
            raise ConfigError(f"{source}: num_attention_heads * attention_head_dim = {self.num_heads * self.head_dim} "
                              f"must equal hidden_size={self.hidden_size}")
        for key in ("conv_kernel", "conv_stride"):
            v = getattr(self, key)
            if len(v) != self.num_conv_layers or not all(isinstance(x, int) and not isinstance(x, bool) and x > 0
                                                         for x in v):
                raise ConfigError(f"{source}: {key}={list(v)!r} must be num_conv_layers={self.num_conv_layers} "
                                  "positive integers")
        if self.num_conv_layers > 1:
            ch = self.conv_channels
            if ch is None or len(ch) < self.num_conv_layers or not all(
                    isinstance(x, int) and not isinstance(x, bool) and x > 0 and x % 2 == 0 for x in ch):
                raise ConfigError(f"{source}: conv_channels={ch!r} must list {self.num_conv_layers} even positive "
                                  "widths when num_conv_layers > 1")
        try:
            get_activation(self.hidden_act)
        except Exception as e:
            raise ConfigError(f"{source}: hidden_act={self.hidden_act!r} is not supported") from e

    def conv_shapes(self):
        """(in_channels, out_channels, kernel, stride) of each convolution, as Transformers builds them."""
        out = []
        for i, (k, s) in enumerate(zip(self.conv_kernel, self.conv_stride)):
            cin = self.input_feat_per_channel * self.input_channels if i == 0 else self.conv_channels[i]
            cout = self.conv_channels[i] if i < self.num_conv_layers - 1 else 2 * self.hidden_size
            out.append((cin, cout, k, s))
        return out


@_ser
class MCTCTBlock(keras.layers.Layer):
    def __init__(self, hidden_size, num_heads, head_dim, intermediate_size, max_positions, eps, act, **kwargs):
        super().__init__(**kwargs)
        self.hidden_size, self.num_heads, self.head_dim = hidden_size, num_heads, head_dim
        self.intermediate_size, self.max_positions, self.eps, self.act = intermediate_size, max_positions, eps, act
        d = self.dtype_policy

        def dense(units, name):
            return keras.layers.Dense(units, use_bias=False, name=name, dtype=d)

        self.query, self.key, self.value = dense(num_heads * head_dim, "query"), dense(num_heads * head_dim, "key"), \
            dense(num_heads * head_dim, "value")
        self.attn_out, self.inter, self.out = dense(hidden_size, "attn_out"), dense(intermediate_size, "inter"), \
            dense(hidden_size, "out")
        self.attn_norm = keras.layers.LayerNormalization(epsilon=eps, name="attn_norm", dtype=d)
        self.out_norm = keras.layers.LayerNormalization(epsilon=eps, name="out_norm", dtype=d)
        self.act_fn = get_activation(act)

    def build(self, input_shape=None):
        h = self.hidden_size
        self.distance = self.add_weight(name="distance_embedding", shape=(2 * self.max_positions - 1, self.head_dim),
                                        initializer=keras.initializers.RandomNormal(stddev=0.02))
        for layer, width in ((self.query, h), (self.key, h), (self.value, h), (self.attn_out, h),
                             (self.attn_norm, h), (self.inter, h), (self.out, self.intermediate_size),
                             (self.out_norm, h)):
            layer.build((None, None, width))
        self.built = True

    def call(self, x, bias):
        b, t = ops.shape(x)[0], x.shape[1]
        n, dh, p = self.num_heads, self.head_dim, self.max_positions

        def split(v):
            return ops.transpose(ops.reshape(v, (b, t, n, dh)), (0, 2, 1, 3))

        q = split(self.query(x) / ops.cast(dh**0.5, x.dtype))
        k, v = split(self.key(x)), split(self.value(x))
        scores = ops.einsum("bhid,bhjd->bhij", q, k)
        # relative term: q_i . D[P - 1 + j - i] where that row exists, else 0
        rows = ops.arange(t, dtype="int32")[None, :] - ops.arange(t, dtype="int32")[:, None] + (p - 1)
        inside = ops.logical_and(rows >= 0, rows < 2 * p - 1)
        table = ops.take(self.distance, ops.clip(rows, 0, 2 * p - 2), axis=0)  # (t, t, dh)
        rel = ops.einsum("bhid,ijd->bhij", q, ops.cast(table, q.dtype))
        scores = scores + ops.where(inside[None, None], rel, ops.zeros_like(rel))
        if bias is not None:
            scores = scores + ops.cast(bias, scores.dtype)
        probs = ops.softmax(ops.cast(scores, "float32"), axis=-1)
        ctx = ops.einsum("bhij,bhjd->bhid", ops.cast(probs, v.dtype), v)
        ctx = ops.reshape(ops.transpose(ctx, (0, 2, 1, 3)), (b, t, n * dh))
        h = self.attn_norm(self.attn_out(ctx) + x)
        return self.out_norm(self.out(self.act_fn(self.inter(h))) + h)

    def get_config(self):
        c = super().get_config()
        c.update(hidden_size=self.hidden_size, num_heads=self.num_heads, head_dim=self.head_dim,
                 intermediate_size=self.intermediate_size, max_positions=self.max_positions, eps=self.eps,
                 act=self.act)
        return c


@_ser
@register_backbone("mctct")
class MCTCTBackbone(SpecBackbone):
    """Last hidden state (batch, subsampled frames, hidden) of ``{"input_features"[,
    "attention_mask"]}``."""

    spec_cls = MCTCTSpec
    base_model_prefix = "mctct"
    hf_architecture = "MCTCTModel"
    verified_backends = ("jax", "torch", "tensorflow")

    def __init__(self, spec=None, **kwargs):
        super().__init__(spec, **kwargs)
        s, d = self.spec, self.dtype_policy
        self.hidden_size, self.num_layers, self.initializer_range = s.hidden_size, s.num_layers, s.initializer_range
        self.convs = [keras.layers.Conv1D(cout, k, strides=st, padding="valid", name=f"conv_{i}", dtype=d)
                      for i, (_, cout, k, st) in enumerate(s.conv_shapes())]
        self.blocks = [MCTCTBlock(s.hidden_size, s.num_heads, s.head_dim, s.intermediate_size,
                                  s.max_position_embeddings, s.layer_norm_eps, s.hidden_act, name=f"layer_{i}",
                                  dtype=d) for i in range(s.num_layers)]

    def dummy_inputs(self):
        import numpy as np

        s = self.spec
        frames = sum(s.conv_kernel) + 2
        return {"input_features": np.zeros((1, frames, s.input_feat_per_channel * s.input_channels), "float32"),
                "attention_mask": np.ones((1, frames), "int32")}

    def build(self, input_shape=None):
        self.scale = self.add_weight(name="input_scale", shape=(1,), initializer="ones")
        self.shift = self.add_weight(name="input_shift", shape=(1,), initializer="zeros")
        for conv, (cin, _, _, _) in zip(self.convs, self.spec.conv_shapes()):
            conv.build((None, None, cin))
        for block in self.blocks:
            block.build((None, None, self.hidden_size))
        self.built = True

    def output_lengths(self, lengths):
        for k, s in zip(self.spec.conv_kernel, self.spec.conv_stride):
            lengths = (lengths + 2 * (k // 2) - (k - 1) - 1) // s + 1
        return lengths

    def call(self, inputs, training=False):
        if not isinstance(inputs, dict):
            inputs = {"input_features": inputs}
        x = ops.convert_to_tensor(inputs["input_features"])
        x = x * ops.cast(self.scale, x.dtype) + ops.cast(self.shift, x.dtype)
        pad = sum(k // 2 for k in self.spec.conv_kernel)
        x = ops.pad(x, ((0, 0), (pad, pad), (0, 0)))
        for conv in self.convs:
            x = conv(x)
            half = x.shape[-1] // 2
            x = x[..., :half] * ops.sigmoid(x[..., half:])
        bias = None
        mask = inputs.get("attention_mask")
        if mask is not None:
            lengths = self.output_lengths(ops.sum(ops.cast(mask, "int32"), axis=-1))
            frames = ops.arange(x.shape[1], dtype="int32")[None, :] < lengths[:, None]
            bias = ops.where(frames, 0.0, NEG)[:, None, None, :]
        for block in self.blocks:
            x = block(x, bias)
        return x

    def weight_rules(self):
        p = "encoder."
        r = [Rule(p + "layer_norm.singleton_weight", self.scale), Rule(p + "layer_norm.singleton_bias", self.shift)]
        for i, conv in enumerate(self.convs):
            r += [Rule(f"{p}conv.conv_layers.{i}.weight", conv.kernel, Transpose((2, 1, 0))),
                  Rule(f"{p}conv.conv_layers.{i}.bias", conv.bias)]
        for i, b in enumerate(self.blocks):
            q = f"{p}layers.{i}."
            for name in ("query", "key", "value"):
                r += dense_rules(f"{q}attention.self.{name}", getattr(b, name))
            r.append(Rule(f"{q}attention.self.distance_embedding.weight", b.distance))
            r += dense_rules(q + "attention.output.dense", b.attn_out) + norm_rules(q + "attention.output.LayerNorm",
                                                                                   b.attn_norm)
            r += dense_rules(q + "intermediate.dense", b.inter) + dense_rules(q + "output.dense", b.out)
            r += norm_rules(q + "output.LayerNorm", b.out_norm)
        return r


@_ser
@register_task(MCTCTBackbone, "SpeechRecognizer", ("MCTCTForCTC",))
class MCTCTSpeechRecognizer(SpeechRecognizer):
    hf_out = "ctc_head"
    hf_head_patterns = ("ctc_head.*",)


__all__ = ["MCTCTSpec", "MCTCTBackbone", "MCTCTBlock", "MCTCTSpeechRecognizer"]

"""Wav2Vec2-BERT: a Conformer speech encoder over SeamlessM4T log-mel filter banks
(``input_features`` (batch, frames, 160): 80 mel bins, two frames stacked; ``attention_mask``
(batch, frames)).

A LayerNorm and a Linear project the features; Conformer blocks follow (half-step FFN,
self-attention, a convolution module with a causal depthwise conv and a LayerNorm where
Wav2Vec2-Conformer has a batch norm, half-step FFN, LayerNorm). ``position_embeddings_type``:

* ``"relative_key"`` (the default): a learned table of clamped distances
  ``-left_max_position_embeddings .. right_max_position_embeddings`` per head dimension; the query
  dotted with the embedding of each key's distance is added to the (scaled) scores, scaled too;
* ``"relative"`` / ``"rotary"``: as Wav2Vec2-Conformer (conformer.py);
* ``None``: no position information.

Optional after the encoder: ``use_intermediate_ffn_before_adapter`` (a ReLU FFN added at half
weight) and ``add_adapter``: a projection to ``output_hidden_size`` when it differs, then
``num_adapter_layers`` blocks that shorten the sequence by ``adapter_stride`` (strided conv + GLU on
both the residual and the attention branch, self-attention without positions, FFN with
``adapter_act``).
"""

from dataclasses import dataclass

import keras
import numpy as np
from keras import ops

from keras_models.errors import ConfigError
from keras_models.layers.vision_embeddings import dense_rules, norm_rules
from keras_models.models.backbone import SpecBackbone
from keras_models.models.registry import register_backbone
from keras_models.models.wav2vec2.backbone import CONV1D_AXES
from keras_models.models.wav2vec2.conformer import (ConformerAttention, ConformerBlock, FeedForward, relative_sinusoids,
                                                    rotary_tables)
from keras_models.presets.weight_map import Rule, Transpose
from keras_models.spec import Spec, const, dim, hf

NEG = float(np.finfo("float32").min)
POSITION_TYPES = ("relative_key", "relative", "rotary", "none")


@dataclass(frozen=True, kw_only=True)
class Wav2Vec2BertSpec(Spec):
    hidden_size: int = dim("hidden_size", 1024)
    num_layers: int = dim("num_hidden_layers", 24)
    num_heads: int = dim("num_attention_heads", 16)
    intermediate_size: int = dim("intermediate_size", 4096)
    feature_projection_input_dim: int = dim("feature_projection_input_dim", 160)
    hidden_act: str = hf("hidden_act", "swish")
    layer_norm_eps: float = hf("layer_norm_eps", 1e-5)
    position_embeddings_type: str = hf("position_embeddings_type", "relative_key",
                                       doc="'relative_key', 'relative', 'rotary' or null (none)")
    rotary_embedding_base: float = hf("rotary_embedding_base", 10000)
    max_source_positions: int = dim("max_source_positions", 5000)
    left_max_position_embeddings: int = hf("left_max_position_embeddings", 64)
    right_max_position_embeddings: int = hf("right_max_position_embeddings", 8)
    conv_depthwise_kernel_size: int = dim("conv_depthwise_kernel_size", 31)
    add_adapter: bool = hf("add_adapter", False)
    adapter_kernel_size: int = dim("adapter_kernel_size", 3)
    adapter_stride: int = dim("adapter_stride", 2)
    num_adapter_layers: int = hf("num_adapter_layers", 1)
    adapter_act: str = hf("adapter_act", "relu")
    use_intermediate_ffn_before_adapter: bool = hf("use_intermediate_ffn_before_adapter", False)
    output_hidden_size: int | None = hf("output_hidden_size", None, doc="null: hidden_size")
    hidden_dropout: float = hf("hidden_dropout", 0.0)
    attention_dropout: float = hf("attention_dropout", 0.0)
    activation_dropout: float = hf("activation_dropout", 0.0)
    feat_proj_dropout: float = hf("feat_proj_dropout", 0.0)
    conformer_conv_dropout: float = hf("conformer_conv_dropout", 0.1)
    initializer_range: float = hf("initializer_range", 0.02)
    model_type: str = const("wav2vec2-bert")

    unsupported = {"use_weighted_layer_sum": (False, None)}

    @classmethod
    def adjust_from_hf(cls, config, values, source):
        if "position_embeddings_type" in config and config["position_embeddings_type"] is None:
            values["position_embeddings_type"] = "none"
        return values

    def adjust_to_hf(self, out):
        if out.get("position_embeddings_type") == "none":
            out["position_embeddings_type"] = None
        return out

    @property
    def out_size(self):
        return self.output_hidden_size or self.hidden_size

    def validate(self, source="config.json"):
        if self.position_embeddings_type not in POSITION_TYPES:
            raise ConfigError(f"{source}: position_embeddings_type must be 'relative_key', 'relative', 'rotary' or "
                              f"null, got {self.position_embeddings_type!r}")
        if self.hidden_size % self.num_heads:
            raise ConfigError(f"{source}: hidden_size {self.hidden_size} is not a multiple of "
                              f"num_attention_heads {self.num_heads}")
        if self.add_adapter and self.out_size % self.num_heads:
            raise ConfigError(f"{source}: output_hidden_size {self.out_size} is not a multiple of "
                              f"num_attention_heads {self.num_heads}")
        if self.conv_depthwise_kernel_size % 2 == 0:
            raise ConfigError(f"{source}: conv_depthwise_kernel_size must be odd, got "
                              f"{self.conv_depthwise_kernel_size}")
        for key in ("conv_depthwise_kernel_size", "adapter_kernel_size", "adapter_stride"):
            if getattr(self, key) > 4096:
                raise ConfigError(f"{source}: {key} must be at most 4096, got {getattr(self, key)}")
        for key in ("left_max_position_embeddings", "right_max_position_embeddings", "num_adapter_layers"):
            v = getattr(self, key)
            if not isinstance(v, int) or isinstance(v, bool) or v < 0 or v >= 2**20:
                raise ConfigError(f"{source}: {key} must be a non-negative integer, got {v!r}")
        if self.use_intermediate_ffn_before_adapter and not self.add_adapter:
            raise ConfigError(f"{source}: use_intermediate_ffn_before_adapter is true but add_adapter is false")

    def dummy_inputs(self):
        return {"input_features": np.zeros((1, 4, self.feature_projection_input_dim), "float32"),
                "attention_mask": np.ones((1, 4), "int32")}


def adapter_lengths(lengths, kernel, stride):
    """Frames one adapter layer keeps of ``lengths`` (Transformers' rule, padding kernel // 2)."""
    return (lengths + 2 * (kernel // 2) - kernel) // stride + 1


def _bias(mask):
    return ops.where(mask, 0.0, NEG)[:, None, None, :]


class AdapterLayer(keras.layers.Layer):
    """One sequence-shortening adapter block (strided conv + GLU branches, attention, FFN)."""

    def __init__(self, spec, kernel_initializer="glorot_uniform", **kwargs):
        super().__init__(**kwargs)
        s = spec
        d = self.dim = s.out_size
        self.kernel, self.stride = s.adapter_kernel_size, s.adapter_stride
        common = dict(dtype=self.dtype_policy)

        def ln(name):
            return keras.layers.LayerNormalization(epsilon=s.layer_norm_eps, name=name, **common)

        def conv(name):
            return keras.layers.Conv1D(2 * d, self.kernel, strides=self.stride, padding="valid", name=name, **common)

        self.residual_layer_norm, self.residual_conv = ln("residual_layer_norm"), conv("residual_conv")
        self.self_attn_layer_norm, self.self_attn_conv = ln("self_attn_layer_norm"), conv("self_attn_conv")
        self.self_attn = ConformerAttention(d, s.num_heads, "none", dropout=s.attention_dropout,
                                           kernel_initializer=kernel_initializer, name="self_attn", **common)
        self.attn_dropout = keras.layers.Dropout(s.conformer_conv_dropout, **common)
        self.ffn_layer_norm = ln("ffn_layer_norm")
        self.ffn = FeedForward(d, s.intermediate_size, s.adapter_act, s.hidden_dropout, s.activation_dropout,
                               kernel_initializer, name="ffn", **common)

    def build(self, input_shape):
        h = (None, None, self.dim)
        for n in (self.residual_layer_norm, self.residual_conv, self.self_attn_layer_norm, self.self_attn_conv,
                  self.self_attn, self.ffn_layer_norm, self.ffn):
            n.build(h)
        self.built = True

    def _glu_conv(self, conv, x):
        pad = self.stride // 2  # Transformers pads by stride // 2 (its length rule uses kernel // 2)
        h = conv(ops.pad(x, ((0, 0), (pad, pad), (0, 0))))
        return h[..., :self.dim] * ops.sigmoid(h[..., self.dim:])

    def call(self, x, bias=None, training=False):
        residual = self._glu_conv(self.residual_conv, self.residual_layer_norm(x))
        h = self._glu_conv(self.self_attn_conv, self.self_attn_layer_norm(x))
        h = self.self_attn(h, bias=bias, training=training)
        x = self.attn_dropout(h, training=training) + residual
        return x + self.ffn(self.ffn_layer_norm(x), training=training)

    def rules(self, p):
        r = self.self_attn.rules(p + "self_attn.")
        for name in ("residual_conv", "self_attn_conv"):
            conv = getattr(self, name)
            r += [Rule(p + name + ".weight", conv.kernel, Transpose(CONV1D_AXES)), Rule(p + name + ".bias", conv.bias)]
        for name in ("residual_layer_norm", "self_attn_layer_norm", "ffn_layer_norm"):
            r += norm_rules(p + name, getattr(self, name))
        return r + self.ffn.rules(p + "ffn.")


@keras.saving.register_keras_serializable(package="keras_models")
@register_backbone("wav2vec2-bert")
class Wav2Vec2BertBackbone(SpecBackbone):
    spec_cls = Wav2Vec2BertSpec
    verified_backends = ("jax", "torch", "tensorflow")
    base_model_prefix = "wav2vec2_bert"
    hf_architecture = "Wav2Vec2BertModel"
    hf_ignore = ("*embed_positions.inv_freq", "*embed_positions.pe")
    hf_known_unused = ("*masked_spec_embed",)

    def __init__(self, spec=None, **kwargs):
        super().__init__(spec=spec, **kwargs)
        s = self.spec
        self.hidden_size, self.num_layers, self.initializer_range = s.hidden_size, s.num_layers, s.initializer_range
        init = keras.initializers.TruncatedNormal(stddev=s.initializer_range)
        common = dict(dtype=self.dtype_policy)
        self.projection_norm = keras.layers.LayerNormalization(epsilon=s.layer_norm_eps, name="projection_norm",
                                                               **common)
        self.projection = keras.layers.Dense(s.hidden_size, name="projection", **common)
        self.projection_dropout = keras.layers.Dropout(s.feat_proj_dropout, **common)
        self.encoder_dropout = keras.layers.Dropout(s.hidden_dropout, **common)
        self.blocks = [ConformerBlock(
            s.hidden_size, s.num_heads, s.intermediate_size, s.hidden_act, s.position_embeddings_type,
            s.conv_depthwise_kernel_size, dropout=s.hidden_dropout, attention_dropout=s.attention_dropout,
            activation_dropout=s.activation_dropout, conv_dropout=s.conformer_conv_dropout, kernel_initializer=init,
            conv_norm="layer", layer_norm_eps=s.layer_norm_eps, left_max_position_embeddings=s.left_max_position_embeddings,
            right_max_position_embeddings=s.right_max_position_embeddings, name=f"block_{i}", **common)
            for i in range(s.num_layers)]
        self.intermediate_ffn = (FeedForward(s.hidden_size, s.intermediate_size, "relu", s.hidden_dropout,
                                             s.activation_dropout, init, name="intermediate_ffn", **common)
                                 if s.use_intermediate_ffn_before_adapter else None)
        self.adapter_proj = self.adapter_proj_norm = None
        self.adapter_layers = []
        if s.add_adapter:
            if s.out_size != s.hidden_size:
                self.adapter_proj = keras.layers.Dense(s.out_size, name="adapter_proj", **common)
                self.adapter_proj_norm = keras.layers.LayerNormalization(epsilon=s.layer_norm_eps,
                                                                         name="adapter_proj_norm", **common)
            self.adapter_layers = [AdapterLayer(s, init, name=f"adapter_{i}", **common)
                                   for i in range(s.num_adapter_layers)]

    def build(self, input_shape=None):
        s = self.spec
        self.projection_norm.build((None, None, s.feature_projection_input_dim))
        self.projection.build((None, None, s.feature_projection_input_dim))
        h = (None, None, s.hidden_size)
        for b in self.blocks:
            b.build(h)
        if self.intermediate_ffn is not None:
            self.intermediate_ffn.build(h)
        if self.adapter_proj is not None:
            self.adapter_proj.build(h)
            self.adapter_proj_norm.build((None, None, s.out_size))
        for a in self.adapter_layers:
            a.build((None, None, s.out_size))
        self.built = True

    def dummy_inputs(self):
        return self.spec.dummy_inputs()

    def frame_mask(self, attention_mask, frames):
        """(batch, frames) bool: the output frames made from real input frames (after the adapter)."""
        lengths = ops.sum(ops.cast(attention_mask, "int32"), axis=-1)
        if self.spec.add_adapter:
            for _ in range(self.spec.num_adapter_layers):
                lengths = adapter_lengths(lengths, self.spec.adapter_kernel_size, self.spec.adapter_stride)
        return ops.arange(frames, dtype="int32")[None, :] < ops.cast(lengths, "int32")[:, None]

    def call(self, inputs, training=False):
        s = self.spec
        if isinstance(inputs, dict):
            feats, attention_mask = inputs["input_features"], inputs.get("attention_mask")
        else:
            feats, attention_mask = inputs, None
        feats = ops.cast(feats, self.compute_dtype)
        x = self.projection_dropout(self.projection(self.projection_norm(feats)), training=training)
        bias = frames = None
        if attention_mask is not None:
            frames = ops.cast(attention_mask, "int32") > 0
            x = ops.where(frames[..., None], x, ops.zeros_like(x))
            bias = _bias(frames)
        x = self.encoder_dropout(x, training=training)
        t = ops.shape(x)[1]
        positions = None
        if s.position_embeddings_type == "relative":
            positions = relative_sinusoids(t, s.hidden_size)
        elif s.position_embeddings_type == "rotary":
            positions = rotary_tables(t, s.hidden_size // s.num_heads, s.rotary_embedding_base)
        for block in self.blocks:
            x = block(x, bias=bias, positions=positions, frames=frames, training=training)
        if self.intermediate_ffn is not None:
            x = x + 0.5 * self.intermediate_ffn(x, training=training)
        if s.add_adapter:
            if self.adapter_proj is not None:
                x = self.adapter_proj_norm(self.adapter_proj(x))
            lengths = None if attention_mask is None else ops.sum(ops.cast(attention_mask, "int32"), axis=-1)
            for layer in self.adapter_layers:
                bias = None
                if lengths is not None:
                    lengths = adapter_lengths(lengths, s.adapter_kernel_size, s.adapter_stride)
                    pad = s.adapter_stride // 2
                    n = (ops.shape(x)[1] + 2 * pad - s.adapter_kernel_size) // s.adapter_stride + 1
                    bias = _bias(ops.arange(n, dtype="int32")[None, :] < lengths[:, None])
                x = layer(x, bias=bias, training=training)
        return x

    def weight_rules(self):
        r = norm_rules("feature_projection.layer_norm", self.projection_norm)
        r += dense_rules("feature_projection.projection", self.projection)
        for i, b in enumerate(self.blocks):
            r += b.rules(f"encoder.layers.{i}.")
        if self.intermediate_ffn is not None:
            r += self.intermediate_ffn.rules("intermediate_ffn.")
        if self.adapter_proj is not None:
            r += dense_rules("adapter.proj", self.adapter_proj) + norm_rules("adapter.proj_layer_norm",
                                                                             self.adapter_proj_norm)
        for i, a in enumerate(self.adapter_layers):
            r += a.rules(f"adapter.layers.{i}.")
        return r


__all__ = ["Wav2Vec2BertSpec", "Wav2Vec2BertBackbone", "adapter_lengths"]

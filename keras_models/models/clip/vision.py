"""Vision towers of CLIP-like dual encoders: patch embedding (+ a class token) + position
embeddings, pre-norm :class:`~keras_models.layers.vision_block.VisionBlock` layers, and a pooled
feature.

* CLIP (and Chinese-CLIP): class token, bias-free patch convolution, a LayerNorm before the
  blocks (``pre_layrnorm``); the last hidden state is the blocks' output and the pooled feature is
  ``post_layernorm`` of the class token.
* SigLIP: no class token, ``post_layernorm`` over every token, and an attention-pooling head
  (one learned probe attending over the tokens, LayerNorm, MLP; :class:`AttentionPoolingHead`).

Input: ``pixel_values`` (batch, height, width, channels). Output: (batch, tokens, hidden).
"""

from dataclasses import dataclass

import keras
import numpy as np
from keras import ops

from keras_models.errors import ConfigError
from keras_models.layers.activations import get_activation
from keras_models.layers.vision_block import VisionBlock
from keras_models.layers.vision_embeddings import PatchEmbedding, conv_rules, dense_rules, norm_rules
from keras_models.models.backbone import SpecBackbone
from keras_models.models.registry import register_backbone
from keras_models.presets.weight_map import TRANSPOSE, Rule
from keras_models.spec import Spec, const, dim, hf

_ser = keras.saving.register_keras_serializable(package="keras_models")
_ALL = ("jax", "torch", "tensorflow")


def _square(v):
    if isinstance(v, (list, tuple)):
        if len(v) != 2 or v[0] != v[1]:
            raise ValueError(f"only square sizes are supported, got {v}")
        return int(v[0])
    return v


@dataclass(frozen=True, kw_only=True)
class CLIPVisionSpec(Spec):
    hidden_size: int = dim("hidden_size", 768)
    intermediate_size: int = dim("intermediate_size", 3072)
    num_layers: int = dim("num_hidden_layers", 12)
    num_heads: int = dim("num_attention_heads", 12)
    num_channels: int = dim("num_channels", 3)
    image_size: int = hf("image_size", 224, read=_square, dim=True)
    patch_size: int = hf("patch_size", 32, read=_square, dim=True)
    hidden_act: str = hf("hidden_act", "quick_gelu")
    layer_norm_eps: float = hf("layer_norm_eps", 1e-5)
    attention_dropout: float = hf("attention_dropout", 0.0)
    projection_dim: int | None = hf("projection_dim", 512, doc="read by CLIPVisionModelWithProjection")
    initializer_range: float = hf("initializer_range", 0.02)
    class_token: bool = const(True)
    patch_bias: bool = const(False)
    pre_norm: bool = const(True, doc="LayerNorm before the blocks")
    post_norm: str = const("pooled", doc="'pooled': on the pooled token only; 'all': on every token")
    use_head: bool = const(False, doc="attention-pooling head (SigLIP)")

    def validate(self, source="config.json"):
        if self.hidden_size % self.num_heads:
            raise ConfigError(f"{source}: hidden_size={self.hidden_size} is not divisible by "
                              f"num_attention_heads={self.num_heads}")
        if self.image_size % self.patch_size:
            raise ConfigError(f"{source}: image_size={self.image_size} is not a multiple of "
                              f"patch_size={self.patch_size}")

    def dummy_inputs(self):
        return {"pixel_values": np.zeros((1, self.image_size, self.image_size, self.num_channels), "float32")}


@dataclass(frozen=True, kw_only=True)
class SiglipVisionSpec(CLIPVisionSpec):
    patch_size: int = hf("patch_size", 16, read=_square, dim=True)
    hidden_act: str = hf("hidden_act", "gelu_pytorch_tanh")
    layer_norm_eps: float = hf("layer_norm_eps", 1e-6)
    use_head: bool = hf("vision_use_head", True)
    projection_dim: int | None = const(None)
    initializer_range: float = const(0.02)
    class_token: bool = const(False)
    patch_bias: bool = const(True)
    pre_norm: bool = const(False)
    post_norm: str = const("all")


@_ser
class AttentionPoolingHead(keras.layers.Layer):
    """One learned probe attends over the tokens (fused q/k/v input projection, as
    ``torch.nn.MultiheadAttention`` stores it), then LayerNorm and an MLP with a residual."""

    def __init__(self, hidden_size, num_heads, intermediate_size, hidden_act, layer_norm_eps, **kwargs):
        super().__init__(**kwargs)
        self.hidden_size, self.num_heads, self.intermediate_size = hidden_size, num_heads, intermediate_size
        self.hidden_act, self.layer_norm_eps = hidden_act, layer_norm_eps
        common = dict(dtype=self.dtype_policy)
        self.out_proj = keras.layers.Dense(hidden_size, name="out_proj", **common)
        self.norm = keras.layers.LayerNormalization(epsilon=layer_norm_eps, name="layernorm", **common)
        self.fc1 = keras.layers.Dense(intermediate_size, name="fc1", **common)
        self.fc2 = keras.layers.Dense(hidden_size, name="fc2", **common)
        self.act = get_activation(hidden_act)

    def build(self, input_shape):
        d = self.hidden_size
        self.probe = self.add_weight(name="probe", shape=(1, 1, d), initializer="glorot_uniform")
        self.in_kernel = self.add_weight(name="in_kernel", shape=(d, 3 * d), initializer="glorot_uniform")
        self.in_bias = self.add_weight(name="in_bias", shape=(3 * d,), initializer="zeros")
        for layer in (self.out_proj, self.norm, self.fc1):
            layer.build((None, None, d))
        self.fc2.build((None, None, self.intermediate_size))
        self.built = True

    def call(self, x):
        d, h = self.hidden_size, self.num_heads
        b, n = ops.shape(x)[0], ops.shape(x)[1]
        w, bias = ops.cast(self.in_kernel, x.dtype), ops.cast(self.in_bias, x.dtype)
        q = ops.matmul(ops.cast(self.probe, x.dtype), w[:, :d]) + bias[:d]
        k = ops.matmul(x, w[:, d:2 * d]) + bias[d:2 * d]
        v = ops.matmul(x, w[:, 2 * d:]) + bias[2 * d:]
        q = ops.reshape(q, (1, 1, h, d // h))
        k, v = (ops.reshape(t, (b, n, h, d // h)) for t in (k, v))
        scores = ops.einsum("bqhd,bkhd->bhqk", ops.broadcast_to(q, (b, 1, h, d // h)), k) * (d // h) ** -0.5
        probs = ops.cast(ops.softmax(ops.cast(scores, "float32"), axis=-1), x.dtype)
        pooled = self.out_proj(ops.reshape(ops.einsum("bhqk,bkhd->bqhd", probs, v), (b, 1, d)))
        pooled = pooled + self.fc2(self.act(self.fc1(self.norm(pooled))))
        return pooled[:, 0]

    def rules(self, p):
        return [Rule(p + "probe", self.probe), Rule(p + "attention.in_proj_weight", self.in_kernel, TRANSPOSE),
                Rule(p + "attention.in_proj_bias", self.in_bias), *dense_rules(p + "attention.out_proj", self.out_proj),
                *norm_rules(p + "layernorm", self.norm), *dense_rules(p + "mlp.fc1", self.fc1),
                *dense_rules(p + "mlp.fc2", self.fc2)]

    def get_config(self):
        c = super().get_config()
        c.update(hidden_size=self.hidden_size, num_heads=self.num_heads, intermediate_size=self.intermediate_size,
                 hidden_act=self.hidden_act, layer_norm_eps=self.layer_norm_eps)
        return c


class VisionTower(SpecBackbone):
    base_model_prefix = "vision_model"
    hf_ignore = ("*position_ids",)

    def __init__(self, spec=None, **kwargs):
        super().__init__(spec, **kwargs)
        s = self.spec
        self.hidden_size = s.hidden_size
        self.grid = s.image_size // s.patch_size
        self.num_prefix_tokens = int(s.class_token)
        init = keras.initializers.TruncatedNormal(stddev=s.initializer_range)
        common = dict(dtype=self.dtype_policy)
        self.patch_embedding = PatchEmbedding(s.hidden_size, s.patch_size, s.num_channels, use_bias=s.patch_bias,
                                              kernel_initializer=init, name="patch_embedding", **common)
        norm = dict(epsilon=s.layer_norm_eps, **common)
        self.pre_norm = keras.layers.LayerNormalization(name="pre_norm", **norm) if s.pre_norm else None
        self.blocks = [
            VisionBlock(s.hidden_size, s.num_heads, s.intermediate_size, hidden_act=s.hidden_act,
                        layer_norm_eps=s.layer_norm_eps, attention_dropout=s.attention_dropout,
                        kernel_initializer=init, name=f"block_{i}", **common)
            for i in range(s.num_layers)
        ]
        self.post_norm = keras.layers.LayerNormalization(name="post_norm", **norm)
        self.head = (AttentionPoolingHead(s.hidden_size, s.num_heads, s.intermediate_size, s.hidden_act,
                                          s.layer_norm_eps, name="head", **common) if s.use_head else None)

    def build(self, input_shape=None):
        s, d = self.spec, self.spec.hidden_size
        init = keras.initializers.TruncatedNormal(stddev=s.initializer_range)
        self.class_embedding = self.add_weight(name="class_embedding", shape=(d,), initializer=init) if s.class_token else None
        self.position_embedding = self.add_weight(name="position_embedding",
                                                  shape=(self.grid * self.grid + self.num_prefix_tokens, d),
                                                  initializer=init)
        self.patch_embedding.build((None, None, None, s.num_channels))
        for layer in [self.pre_norm, *self.blocks, self.post_norm, self.head]:
            if layer is not None:
                layer.build((None, None, d))
        self.built = True

    def call(self, inputs, training=False):
        pixels = inputs["pixel_values"] if isinstance(inputs, dict) else inputs
        x = self.patch_embedding(pixels)
        b, gh, gw = ops.shape(x)[0], x.shape[1], x.shape[2]
        if (gh, gw) != (self.grid, self.grid):
            raise ValueError(f"pixel_values of {gh * self.spec.patch_size}x{gw * self.spec.patch_size} pixels: "
                             f"this model takes {self.spec.image_size}x{self.spec.image_size}")
        x = ops.reshape(x, (b, gh * gw, self.hidden_size))
        if self.class_embedding is not None:
            cls = ops.broadcast_to(ops.reshape(ops.cast(self.class_embedding, x.dtype), (1, 1, -1)), (b, 1, self.hidden_size))
            x = ops.concatenate([cls, x], axis=1)
        x = x + ops.expand_dims(ops.cast(self.position_embedding, x.dtype), 0)
        if self.pre_norm is not None:
            x = self.pre_norm(x)
        for block in self.blocks:
            x = block(x, training=training)
        return self.post_norm(x) if self.spec.post_norm == "all" else x

    def pooled(self, hidden, inputs=None):
        """The pooled image feature (before the dual encoder's projection)."""
        if self.head is not None:
            return self.head(hidden)
        if self.spec.post_norm == "all":
            return hidden[:, 0]
        return self.post_norm(hidden[:, 0])

    def weight_rules(self):
        r = conv_rules("embeddings.patch_embedding", self.patch_embedding.projection)
        r.append(Rule("embeddings.position_embedding.weight", self.position_embedding))
        if self.class_embedding is not None:
            r.append(Rule("embeddings.class_embedding", self.class_embedding))
        if self.pre_norm is not None:
            r += norm_rules("pre_layrnorm", self.pre_norm)
        for i, b in enumerate(self.blocks):
            p = f"encoder.layers.{i}."
            a = b.attention
            for name, dense in (("self_attn.q_proj", a.query), ("self_attn.k_proj", a.key),
                                ("self_attn.v_proj", a.value), ("self_attn.out_proj", a.output_dense),
                                ("mlp.fc1", b.fc1), ("mlp.fc2", b.fc2)):
                r += dense_rules(p + name, dense)
            r += norm_rules(p + "layer_norm1", b.norm1) + norm_rules(p + "layer_norm2", b.norm2)
        r += norm_rules("post_layernorm", self.post_norm)
        if self.head is not None:
            r += self.head.rules("head.")
        return r


@_ser
@register_backbone("clip_vision_model")
class CLIPVisionBackbone(VisionTower):
    spec_cls = CLIPVisionSpec
    hf_architecture = "CLIPVisionModel"
    verified_backends = _ALL


@_ser
@register_backbone("siglip_vision_model")
class SiglipVisionBackbone(VisionTower):
    spec_cls = SiglipVisionSpec
    hf_architecture = "SiglipVisionModel"
    verified_backends = _ALL


__all__ = ["CLIPVisionSpec", "SiglipVisionSpec", "AttentionPoolingHead", "VisionTower",
           "CLIPVisionBackbone", "SiglipVisionBackbone"]

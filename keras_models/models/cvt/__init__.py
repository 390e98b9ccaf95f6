"""CvT (Convolutional vision Transformer), channels_last.

Each stage: a strided convolution token embedding + LayerNorm, then pre-norm transformer layers
whose query / key / value come from depthwise conv + BatchNorm projections of the token map
(key and value strided by ``stride_kv``), followed by linear projections. Scores are scaled by
``embed_dim ** -0.5`` (the whole width, as the original implementation does). A stage with
``cls_token`` prepends a learned token that bypasses the convolutions.
Output: the last stage's map (batch, h, w, embed_dim[-1]); ``feature_maps`` = every stage's map;
``encode`` also returns the final [CLS] token (batch, 1, C) or None.
:class:`CvtImageClassifier`: LayerNorm of the [CLS] token (or of every position when the last
stage has none), mean over tokens, linear head.
"""

from dataclasses import dataclass

import keras
import numpy as np
from keras import ops

from keras_models.errors import ConfigError
from keras_models.layers.activations import get_activation
from keras_models.layers.vision_embeddings import dense_rules, norm_rules
from keras_models.models.backbone import SpecBackbone
from keras_models.models.registry import register_backbone, register_task
from keras_models.models.vision_hier import TorchConv, attend, batch_norm, layer_norm, merge_heads, split_heads
from keras_models.models.vit.backbone import pixel_values_of
from keras_models.presets.weight_map import Rule
from keras_models.spec import Spec, dim, hf
from keras_models.tasks.image_classifier import ImageClassifier

_ser = keras.saving.register_keras_serializable(package="keras_models")


@_ser
class CvtLayer(keras.layers.Layer):
    def __init__(self, dim, num_heads, kernel_size, padding_q, padding_kv, stride_q, stride_kv, qkv_bias, mlp_ratio,
                 with_cls, **kwargs):
        super().__init__(**kwargs)
        self.dim, self.num_heads, self.kernel_size = dim, num_heads, kernel_size
        self.padding_q, self.padding_kv, self.stride_q, self.stride_kv = padding_q, padding_kv, stride_q, stride_kv
        self.qkv_bias, self.mlp_ratio, self.with_cls = qkv_bias, mlp_ratio, with_cls
        common = dict(dtype=self.dtype_policy)
        self.convs, self.bns, self.projs = {}, {}, {}
        for n, pad, stride in (("query", padding_q, stride_q), ("key", padding_kv, stride_kv),
                               ("value", padding_kv, stride_kv)):
            self.convs[n] = TorchConv(dim, kernel_size, strides=stride, padding=pad, use_bias=False, depthwise=True,
                                      name=f"{n}_conv", **common)
            self.bns[n] = batch_norm(f"{n}_bn", **common)
            self.projs[n] = keras.layers.Dense(dim, use_bias=qkv_bias, name=f"{n}_proj", **common)
        self.out = keras.layers.Dense(dim, name="out", **common)
        self.fc1 = keras.layers.Dense(int(dim * mlp_ratio), name="fc1", **common)
        self.fc2 = keras.layers.Dense(dim, name="fc2", **common)
        self.norm1 = layer_norm("norm1", **common)
        self.norm2 = layer_norm("norm2", **common)
        self.act = get_activation("gelu")

    def call(self, x, height, width, training=False):
        h = self.norm1(x)
        if self.with_cls:
            cls, h = h[:, :1], h[:, 1:]
        grid = ops.reshape(h, (-1, height, width, self.dim))
        qkv = []
        for n in ("query", "key", "value"):
            t = self.bns[n](self.convs[n](grid), training=training)
            t = ops.reshape(t, (-1, t.shape[1] * t.shape[2], self.dim))
            if self.with_cls:
                t = ops.concatenate([cls, t], axis=1)
            qkv.append(split_heads(self.projs[n](t), self.num_heads))
        ctx = merge_heads(attend(*qkv, scale=self.dim ** -0.5))
        x = x + self.out(ctx)
        return x + self.fc2(self.act(self.fc1(self.norm2(x))))

    def rules(self, p):
        r = []
        for n in ("query", "key", "value"):
            q = f"{p}attention.attention.convolution_projection_{n}.convolution_projection."
            r += self.convs[n].rules(q + "convolution") + norm_rules(q + "normalization", self.bns[n])
            r += dense_rules(f"{p}attention.attention.projection_{n}", self.projs[n])
        r += dense_rules(p + "attention.output.dense", self.out)
        r += dense_rules(p + "intermediate.dense", self.fc1) + dense_rules(p + "output.dense", self.fc2)
        return r + norm_rules(p + "layernorm_before", self.norm1) + norm_rules(p + "layernorm_after", self.norm2)

    def get_config(self):
        c = super().get_config()
        c.update(dim=self.dim, num_heads=self.num_heads, kernel_size=self.kernel_size, padding_q=self.padding_q,
                 padding_kv=self.padding_kv, stride_q=self.stride_q, stride_kv=self.stride_kv, qkv_bias=self.qkv_bias,
                 mlp_ratio=self.mlp_ratio, with_cls=self.with_cls)
        return c


@dataclass(frozen=True, kw_only=True)
class CvtSpec(Spec):
    num_channels: int = dim("num_channels", 3)
    patch_sizes: tuple = hf("patch_sizes", (7, 3, 3))
    patch_stride: tuple = hf("patch_stride", (4, 2, 2))
    patch_padding: tuple = hf("patch_padding", (2, 1, 1))
    embed_dim: tuple = hf("embed_dim", (64, 192, 384))
    num_heads: tuple = hf("num_heads", (1, 3, 6))
    depth: tuple = hf("depth", (1, 2, 10))
    mlp_ratio: tuple = hf("mlp_ratio", (4.0, 4.0, 4.0))
    qkv_bias: tuple = hf("qkv_bias", (True, True, True))
    cls_token: tuple = hf("cls_token", (False, False, True))
    qkv_projection_method: tuple = hf("qkv_projection_method", ("dw_bn", "dw_bn", "dw_bn"))
    kernel_qkv: tuple = hf("kernel_qkv", (3, 3, 3))
    padding_kv: tuple = hf("padding_kv", (1, 1, 1))
    stride_kv: tuple = hf("stride_kv", (2, 2, 2))
    padding_q: tuple = hf("padding_q", (1, 1, 1))
    stride_q: tuple = hf("stride_q", (1, 1, 1))
    initializer_range: float = hf("initializer_range", 0.02)

    def validate(self, source="config.json"):
        n = len(self.depth)
        for key in ("patch_sizes", "patch_stride", "patch_padding", "embed_dim", "num_heads", "mlp_ratio", "qkv_bias",
                    "cls_token", "qkv_projection_method", "kernel_qkv", "padding_kv", "stride_kv", "padding_q",
                    "stride_q"):
            if len(getattr(self, key)) < n:
                raise ConfigError(f"{source}: {key} has {len(getattr(self, key))} entries, depth has {n}")
        if any(m != "dw_bn" for m in self.qkv_projection_method[:n]):
            raise ConfigError(f"{source}: qkv_projection_method={list(self.qkv_projection_method)} is not "
                              "implemented (only 'dw_bn', the only one Transformers can run)")
        if any(self.cls_token[:n - 1]) and len(set(self.embed_dim[:n])) > 1:
            raise ConfigError(f"{source}: cls_token is only supported on the last stage (its size is embed_dim[-1])")

    def dummy_inputs(self):
        return {"pixel_values": np.zeros((1, 32, 32, self.num_channels), "float32")}


@_ser
@register_backbone("cvt")
class CvtBackbone(SpecBackbone):
    spec_cls = CvtSpec
    base_model_prefix = "cvt"
    hf_architecture = "CvtModel"
    hf_ignore = ("*num_batches_tracked",)
    verified_backends = ("jax", "torch", "tensorflow")  # tests/vision/test_vision_hier.py

    def __init__(self, spec=None, **kwargs):
        super().__init__(spec, **kwargs)
        s, common = self.spec, dict(dtype=self.dtype_policy)
        self.initializer_range = s.initializer_range
        self.embeds, self.embed_norms, self.stages = [], [], []
        for i in range(len(s.depth)):
            self.embeds.append(TorchConv(s.embed_dim[i], s.patch_sizes[i], strides=s.patch_stride[i],
                                         padding=s.patch_padding[i], name=f"embed_{i}", **common))
            self.embed_norms.append(layer_norm(f"embed_norm_{i}", **common))
            self.stages.append([CvtLayer(s.embed_dim[i], s.num_heads[i], s.kernel_qkv[i], s.padding_q[i],
                                         s.padding_kv[i], s.stride_q[i], s.stride_kv[i], s.qkv_bias[i], s.mlp_ratio[i],
                                         s.cls_token[i], name=f"stage_{i}_layer_{j}", **common)
                                for j in range(s.depth[i])])
        self.cls_tokens = {}

    def build(self, input_shape=None):
        for i, has in enumerate(self.spec.cls_token):
            if has:
                self.cls_tokens[i] = self.add_weight(name=f"cls_token_{i}", shape=(1, 1, self.spec.embed_dim[-1]),
                                                     initializer=keras.initializers.TruncatedNormal(stddev=0.02))
        self.built = True

    def encode(self, inputs, training=False):
        """(every stage's map, the last stage's [CLS] token or None)."""
        x = pixel_values_of(inputs)
        maps, cls = [], None
        for i, (embed, norm, layers) in enumerate(zip(self.embeds, self.embed_norms, self.stages)):
            x = norm(embed(x))
            h, w, c = x.shape[1], x.shape[2], x.shape[3]
            t = ops.reshape(x, (-1, h * w, c))
            cls = None
            if i in self.cls_tokens:
                tok = ops.cast(self.cls_tokens[i], t.dtype)
                t = ops.concatenate([ops.broadcast_to(tok, (ops.shape(t)[0], 1, c)), t], axis=1)
            for layer in layers:
                t = layer(t, height=h, width=w, training=training)
            if i in self.cls_tokens:
                cls, t = t[:, :1], t[:, 1:]
            x = ops.reshape(t, (-1, h, w, c))
            maps.append(x)
        return maps, cls

    def call(self, inputs, training=False):
        return self.encode(inputs, training=training)[0][-1]

    def feature_maps(self, inputs, training=False):
        return self.encode(inputs, training=training)[0]

    def pooled(self, hidden):
        return ops.mean(hidden, axis=(1, 2))

    def weight_rules(self):
        r = []
        for i, (embed, norm, layers) in enumerate(zip(self.embeds, self.embed_norms, self.stages)):
            p = f"encoder.stages.{i}."
            r += embed.rules(p + "embedding.convolution_embeddings.projection")
            r += norm_rules(p + "embedding.convolution_embeddings.normalization", norm)
            if i in self.cls_tokens:
                r.append(Rule(p + "cls_token", self.cls_tokens[i]))
            for j, layer in enumerate(layers):
                r += layer.rules(f"{p}layers.{j}.")
        return r


@_ser
@register_task(CvtBackbone, "ImageClassifier", ("CvtForImageClassification",))
class CvtImageClassifier(ImageClassifier):
    pooling = "backbone"
    hf_head_patterns = ("classifier.*", "layernorm.*")

    def __init__(self, backbone, **kwargs):
        super().__init__(backbone, **kwargs)
        self.head_norm = layer_norm("head_norm", dtype=backbone.dtype_policy)

    def call(self, inputs, training=False):
        if training and self.augmentation is not None:
            pixels = inputs["pixel_values"] if isinstance(inputs, dict) else inputs
            inputs = {"pixel_values": self.augmentation(pixels, training=True)}
        maps, cls = self.backbone.encode(inputs, training=training)
        x = maps[-1]
        seq = cls if cls is not None else ops.reshape(x, (-1, x.shape[1] * x.shape[2], x.shape[3]))
        pooled = ops.mean(self.head_norm(seq), axis=1)
        return self.out(self.drop(pooled, training=training))

    def head_rules(self):
        return norm_rules("layernorm", self.head_norm, base=False) + super().head_rules()


__all__ = ["CvtBackbone", "CvtImageClassifier"]

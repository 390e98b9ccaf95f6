"""LeViT, channels_last input.

Stem: four stride-2 conv + BatchNorm layers with hardswish between them (a 16x reduction). Then
stages of residual attention (linear layers followed by BatchNorm, hardswish before the output
projection, a learned per-head bias indexed by the absolute (dy, dx) offset between positions)
and residual MLPs (2x, BatchNorm'd linears, hardswish); between stages an attention-subsample
layer whose queries come from every ``stride``-th position (no residual), then an MLP. Widths
and heads of the subsample layers follow Transformers' ``down_ops`` (derived from ``key_dim`` and
``hidden_sizes``). The token grid is fixed by ``image_size // patch_size`` (the biases are
learned for it), so the input must be ``image_size`` pixels square.
Output: (batch, tokens, hidden_sizes[-1]); ``pooled`` = mean over tokens; ``feature_maps`` =
each stage's (batch, r, r, C) grid.
:class:`LevitImageClassifier`: BatchNorm + linear on the mean token; the distilled variant
(``LevitForImageClassificationWithTeacher``) averages a second, distillation head.
"""

import itertools
from dataclasses import dataclass

import keras
import numpy as np
from keras import ops

from keras_models.errors import ConfigError, InputError
from keras_models.layers.vision_embeddings import dense_rules, norm_rules
from keras_models.models.backbone import SpecBackbone
from keras_models.models.registry import register_backbone, register_task
from keras_models.models.vision_hier import TorchConv, attend, batch_norm, merge_heads
from keras_models.models.vit.backbone import pixel_values_of
from keras_models.presets.weight_map import Rule
from keras_models.spec import Spec, dim, hf
from keras_models.tasks.image_classifier import ImageClassifier

_ser = keras.saving.register_keras_serializable(package="keras_models")


def _bias_index(res_q, res_k, stride):
    """(queries, keys) index of each pair's |offset| in the learned bias table, in Transformers'
    first-seen order."""
    offsets, idx = {}, []
    for p in itertools.product(range(res_q), range(res_q)):
        for q in itertools.product(range(res_k), range(res_k)):
            off = (abs(p[0] * stride - q[0]), abs(p[1] * stride - q[1]))
            idx.append(offsets.setdefault(off, len(offsets)))
    return np.asarray(idx, "int32").reshape(res_q * res_q, res_k * res_k), len(offsets)


@_ser
class LinearBN(keras.layers.Layer):
    """Linear (no bias) + BatchNorm over the channels."""

    def __init__(self, units, **kwargs):
        super().__init__(**kwargs)
        self.units = units
        self.dense = keras.layers.Dense(units, use_bias=False, name="dense", dtype=self.dtype_policy)
        self.norm = batch_norm("norm", dtype=self.dtype_policy)

    def call(self, x, training=False):
        return self.norm(self.dense(x), training=training)

    def rules(self, p):
        return dense_rules(p + "linear", self.dense) + norm_rules(p + "batch_norm", self.norm)

    def get_config(self):
        c = super().get_config()
        c.update(units=self.units)
        return c


@_ser
class LevitAttentionLayer(keras.layers.Layer):
    """Attention with a learned offset bias; ``stride`` > 1: the subsampling variant (queries from
    every stride-th position, keys / values from all, output width ``out_dim``)."""

    def __init__(self, out_dim, key_dim, num_heads, attention_ratio, resolution, stride=1, **kwargs):
        super().__init__(**kwargs)
        self.out_dim, self.key_dim, self.num_heads = out_dim, key_dim, num_heads
        self.attention_ratio, self.resolution, self.stride = attention_ratio, resolution, stride
        self.resolution_out = (resolution - 1) // stride + 1
        common = dict(dtype=self.dtype_policy)
        v = attention_ratio * key_dim
        if stride == 1:
            self.qkv = LinearBN(num_heads * (2 * key_dim + v), name="qkv", **common)
        else:
            self.kv = LinearBN(num_heads * (key_dim + v), name="kv", **common)
            self.q = LinearBN(num_heads * key_dim, name="q", **common)
        self.proj = LinearBN(out_dim, name="proj", **common)
        self.index, self.num_offsets = _bias_index(self.resolution_out, resolution, stride)

    def build(self, input_shape):
        self.biases = self.add_weight(name="biases", shape=(self.num_heads, self.num_offsets), initializer="zeros")
        self.built = True

    def call(self, x, training=False):
        h, k, v = self.num_heads, self.key_dim, self.attention_ratio * self.key_dim
        n = x.shape[1]
        if self.stride == 1:
            t = ops.reshape(self.qkv(x, training=training), (-1, n, h, 2 * k + v))
            q, key, val = t[..., :k], t[..., k:2 * k], t[..., 2 * k:]
        else:
            t = ops.reshape(self.kv(x, training=training), (-1, n, h, k + v))
            key, val = t[..., :k], t[..., k:]
            r, s = self.resolution, self.stride
            sub = ops.reshape(x, (-1, r, r, x.shape[-1]))[:, ::s, ::s]
            sub = ops.reshape(sub, (-1, self.resolution_out ** 2, x.shape[-1]))
            q = ops.reshape(self.q(sub, training=training), (-1, self.resolution_out ** 2, h, k))
        q, key, val = (ops.transpose(a, (0, 2, 1, 3)) for a in (q, key, val))
        bias = ops.take(ops.cast(self.biases, q.dtype), ops.convert_to_tensor(self.index), axis=1)
        out = merge_heads(attend(q, key, val, k ** -0.5, bias[None]))
        return self.proj(ops.hard_silu(out), training=training)

    def rules(self, p):
        r = [Rule(p + "attention_biases", self.biases)] + self.proj.rules(p + "projection.")
        if self.stride == 1:
            return r + self.qkv.rules(p + "queries_keys_values.")
        return r + self.kv.rules(p + "keys_values.") + self.q.rules(p + "queries.")

    def get_config(self):
        c = super().get_config()
        c.update(out_dim=self.out_dim, key_dim=self.key_dim, num_heads=self.num_heads,
                 attention_ratio=self.attention_ratio, resolution=self.resolution, stride=self.stride)
        return c


@_ser
class LevitMLP(keras.layers.Layer):
    def __init__(self, dim, hidden, **kwargs):
        super().__init__(**kwargs)
        self.dim, self.hidden = dim, hidden
        self.up = LinearBN(hidden, name="up", dtype=self.dtype_policy)
        self.down = LinearBN(dim, name="down", dtype=self.dtype_policy)

    def call(self, x, training=False):
        return self.down(ops.hard_silu(self.up(x, training=training)), training=training)

    def rules(self, p):
        return self.up.rules(p + "linear_up.") + self.down.rules(p + "linear_down.")

    def get_config(self):
        c = super().get_config()
        c.update(dim=self.dim, hidden=self.hidden)
        return c


@dataclass(frozen=True, kw_only=True)
class LevitSpec(Spec):
    ignored = ("down_ops", "drop_path_rate")

    image_size: int = dim("image_size", 224)
    num_channels: int = dim("num_channels", 3)
    kernel_size: int = dim("kernel_size", 3)
    stride: int = dim("stride", 2)
    padding: int = hf("padding", 1)
    patch_size: int = dim("patch_size", 16)
    hidden_sizes: tuple = hf("hidden_sizes", (128, 256, 384))
    num_attention_heads: tuple = hf("num_attention_heads", (4, 8, 12))
    depths: tuple = hf("depths", (4, 4, 4))
    key_dim: tuple = hf("key_dim", (16, 16, 16))
    mlp_ratio: tuple = hf("mlp_ratio", (2, 2, 2))
    attention_ratio: tuple = hf("attention_ratio", (2, 2, 2))
    initializer_range: float = hf("initializer_range", 0.02)

    def validate(self, source="config.json"):
        if len(self.depths) != 3 or len(self.hidden_sizes) < 3:
            raise ConfigError(f"{source}: LeViT has 3 stages (Transformers derives two subsample steps from "
                              f"key_dim and hidden_sizes), got depths={list(self.depths)}")

    def down_ops(self, i):
        """(key_dim, heads, attention_ratio, mlp_ratio, stride) of the subsample after stage ``i``."""
        return self.key_dim[0], self.hidden_sizes[i] // self.key_dim[0], 4, 2, 2

    def dummy_inputs(self):
        return {"pixel_values": np.zeros((1, self.image_size, self.image_size, self.num_channels), "float32")}


@_ser
@register_backbone("levit")
class LevitBackbone(SpecBackbone):
    spec_cls = LevitSpec
    base_model_prefix = "levit"
    hf_architecture = "LevitModel"
    hf_ignore = ("*num_batches_tracked", "*attention_bias_idxs")
    verified_backends = ("jax", "torch", "tensorflow")  # tests/vision/test_vision_hier.py

    def __init__(self, spec=None, **kwargs):
        super().__init__(spec, **kwargs)
        s, common = self.spec, dict(dtype=self.dtype_policy)
        self.initializer_range = s.initializer_range
        d0 = s.hidden_sizes[0]
        self.stem = [(TorchConv(d0 // f, s.kernel_size, strides=s.stride, padding=s.padding, use_bias=False,
                                name=f"stem_conv_{i}", **common), batch_norm(f"stem_norm_{i}", **common))
                     for i, f in enumerate((8, 4, 2, 1))]
        res = s.image_size // s.patch_size
        self.resolutions, self.stages = [], []
        for i in range(3):
            d, layers = s.hidden_sizes[i], []
            for j in range(s.depths[i]):
                layers.append(("attn", LevitAttentionLayer(d, s.key_dim[i], s.num_attention_heads[i],
                                                           s.attention_ratio[i], res, name=f"stage_{i}_attn_{j}",
                                                           **common)))
                if s.mlp_ratio[i] > 0:
                    layers.append(("mlp", LevitMLP(d, d * s.mlp_ratio[i], name=f"stage_{i}_mlp_{j}", **common)))
            if i < 2:
                kd, heads, ar, mr, st = s.down_ops(i)
                sub = LevitAttentionLayer(s.hidden_sizes[i + 1], kd, heads, ar, res, stride=st,
                                          name=f"stage_{i}_subsample", **common)
                layers.append(("sub", sub))
                res = sub.resolution_out
                if mr > 0:
                    layers.append(("mlp", LevitMLP(s.hidden_sizes[i + 1], s.hidden_sizes[i + 1] * mr,
                                                   name=f"stage_{i}_subsample_mlp", **common)))
            self.stages.append(layers)
            self.resolutions.append(res)

    def build(self, input_shape=None):
        self.built = True  # sub-layers build on their first (symbolic) call

    def stage_outputs(self, inputs, training=False):
        x = pixel_values_of(inputs)
        for i, (conv, norm) in enumerate(self.stem):
            x = norm(conv(x), training=training)
            if i < 3:
                x = ops.hard_silu(x)
        res = self.spec.image_size // self.spec.patch_size
        if x.shape[1] != res or x.shape[2] != res:
            raise InputError(f"pixel_values: LeViT's attention biases are learned for image_size "
                             f"{self.spec.image_size} ({res}x{res} tokens), got {x.shape[1]}x{x.shape[2]} tokens")
        t = ops.reshape(x, (-1, res * res, x.shape[-1]))
        outs = []
        for layers, r in zip(self.stages, self.resolutions):
            for kind, layer in layers:
                t = layer(t, training=training) if kind == "sub" else t + layer(t, training=training)
            outs.append(t)
        return outs

    def call(self, inputs, training=False):
        return self.stage_outputs(inputs, training=training)[-1]

    def feature_maps(self, inputs, training=False):
        return [ops.reshape(t, (-1, r, r, t.shape[-1]))
                for t, r in zip(self.stage_outputs(inputs, training=training), self.resolutions)]

    def pooled(self, hidden):
        return ops.mean(hidden, axis=1)

    def weight_rules(self):
        r = []
        for i, (conv, norm) in enumerate(self.stem):
            p = f"patch_embeddings.embedding_layer_{i + 1}."
            r += conv.rules(p + "convolution") + norm_rules(p + "batch_norm", norm)
        for i, layers in enumerate(self.stages):
            for j, (kind, layer) in enumerate(layers):
                p = f"encoder.stages.{i}.layers.{j}."
                r += layer.rules(p if kind == "sub" else p + "module.")
        return r


@_ser
@register_task(LevitBackbone, "ImageClassifier", ("LevitForImageClassification",
                                                   "LevitForImageClassificationWithTeacher"))
class LevitImageClassifier(ImageClassifier):
    pooling = "backbone"
    distilled_architectures = ("LevitForImageClassificationWithTeacher",)
    hf_head_patterns = ("classifier.*", "classifier_distill.*")

    def __init__(self, backbone, **kwargs):
        super().__init__(backbone, **kwargs)
        common = dict(dtype=backbone.dtype_policy)
        self.head_norm = batch_norm("head_norm", **common)
        if self.distilled:  # the distillation Dense is ImageClassifier's ``dist_out``
            self.dist_norm = batch_norm("dist_norm", **common)

    def call(self, inputs, training=False):
        if training and self.augmentation is not None:
            pixels = inputs["pixel_values"] if isinstance(inputs, dict) else inputs
            inputs = {"pixel_values": self.augmentation(pixels, training=True)}
        pooled = self.drop(ops.mean(self.backbone(inputs, training=training), axis=1), training=training)
        logits = self.out(self.head_norm(pooled, training=training))
        if self.distilled:
            logits = (logits + self.dist_out(self.dist_norm(pooled, training=training))) / 2
        return logits

    def head_rules(self):
        r = norm_rules("classifier.batch_norm", self.head_norm, base=False)
        r += dense_rules("classifier.linear", self.out, base=False)
        if self.distilled:
            r += norm_rules("classifier_distill.batch_norm", self.dist_norm, base=False)
            r += dense_rules("classifier_distill.linear", self.dist_out, base=False)
        return r


__all__ = ["LevitBackbone", "LevitImageClassifier", "LevitAttentionLayer", "LevitMLP", "LinearBN"]

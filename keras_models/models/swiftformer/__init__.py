"""SwiftFormer (efficient additive attention), channels_last.

A two-conv stem (stride 4), then stages of conv encoder blocks (depthwise 3x3 + BN, 1x1 MLP,
layer scale) ending in one SwiftFormer block: a local conv representation, efficient additive
attention over the tokens (L2-normalised query and key; a global query, the sum of query rows
weighted by ``softmax(q w_g / sqrt(d))`` taken over a size-1 axis as Transformers does, i.e.
weights of 1; ``final(proj(global * key) + query)``), and a BatchNorm'd 1x1 MLP, both with
optional layer scales. Between stages: a strided conv + BatchNorm.
Output: the last stage's map (batch, h, w, embed_dims[-1]); ``feature_maps`` = every stage's map.
:class:`SwiftFormerImageClassifier`: BatchNorm, spatial mean, average of the ``head`` and
``dist_head`` linear layers (Transformers' ``SwiftFormerForImageClassification``).
"""

from dataclasses import dataclass

import keras
import numpy as np
from keras import ops

from keras_models.layers.activations import get_activation
from keras_models.layers.vision_embeddings import dense_rules, norm_rules
from keras_models.models.backbone import SpecBackbone
from keras_models.models.registry import register_backbone, register_task
from keras_models.models.vision_hier import TorchConv, batch_norm, conv1x1_rules, run_stem_and_stages, two_conv_stem
from keras_models.models.vit.backbone import pixel_values_of
from keras_models.presets.weight_map import Reshape, Rule
from keras_models.spec import Spec, dim, hf
from keras_models.tasks.image_classifier import ImageClassifier

_ser = keras.saving.register_keras_serializable(package="keras_models")


def _scale_rule(name, variable):
    n = variable.shape[0]
    return Rule(name, variable, Reshape((n, 1, 1), (n,)))


@_ser
class ConvMixer(keras.layers.Layer):
    """x + scale * pw2(act(pw1(BN(dw3x3(x))))) (SwiftFormer's conv encoder / local representation)."""

    def __init__(self, dim, hidden, eps=1e-5, **kwargs):
        super().__init__(**kwargs)
        self.dim, self.hidden, self.eps = dim, hidden, eps
        common = dict(dtype=self.dtype_policy)
        self.dw = TorchConv(dim, 3, padding=1, depthwise=True, name="dw", **common)
        self.norm = batch_norm("norm", epsilon=eps, **common)
        self.pw1 = keras.layers.Dense(hidden, name="pw1", **common)
        self.pw2 = keras.layers.Dense(dim, name="pw2", **common)
        self.act = get_activation("gelu")

    def build(self, input_shape):
        self.scale = self.add_weight(name="scale", shape=(self.dim,), initializer="ones")
        self.built = True

    def call(self, x, training=False):
        y = self.pw2(self.act(self.pw1(self.norm(self.dw(x), training=training))))
        return x + y * ops.cast(self.scale, y.dtype)

    def rules(self, p):
        return (self.dw.rules(p + "depth_wise_conv") + norm_rules(p + "norm", self.norm)
                + conv1x1_rules(p + "point_wise_conv1", self.pw1) + conv1x1_rules(p + "point_wise_conv2", self.pw2)
                + [_scale_rule(p + "layer_scale", self.scale)])

    def get_config(self):
        c = super().get_config()
        c.update(dim=self.dim, hidden=self.hidden, eps=self.eps)
        return c


@_ser
class SwiftFormerBlock(keras.layers.Layer):
    def __init__(self, dim, mlp_ratio=4, hidden_act="gelu", layer_scale=1e-5, eps=1e-5, **kwargs):
        super().__init__(**kwargs)
        self.dim, self.mlp_ratio, self.hidden_act, self.layer_scale, self.eps = dim, mlp_ratio, hidden_act, layer_scale, eps
        common = dict(dtype=self.dtype_policy)
        self.local = ConvMixer(dim, dim, eps, name="local", **common)
        self.to_query = keras.layers.Dense(dim, name="to_query", **common)
        self.to_key = keras.layers.Dense(dim, name="to_key", **common)
        self.proj = keras.layers.Dense(dim, name="proj", **common)
        self.final = keras.layers.Dense(dim, name="final", **common)
        self.mlp_norm = batch_norm("mlp_norm", epsilon=eps, **common)
        self.fc1 = keras.layers.Dense(int(dim * mlp_ratio), name="fc1", **common)
        self.fc2 = keras.layers.Dense(dim, name="fc2", **common)
        self.act = get_activation(hidden_act)

    def build(self, input_shape):
        self.w_g = self.add_weight(name="w_g", shape=(self.dim, 1), initializer="random_normal")
        if self.layer_scale is not None:
            init = keras.initializers.Constant(self.layer_scale)
            self.scale1 = self.add_weight(name="scale1", shape=(self.dim,), initializer=init)
            self.scale2 = self.add_weight(name="scale2", shape=(self.dim,), initializer=init)
        self.built = True

    def attention(self, x):
        def l2(t):
            return t / ops.maximum(ops.sqrt(ops.sum(t * t, axis=-1, keepdims=True)), 1e-12)

        q, k = l2(self.to_query(x)), l2(self.to_key(x))
        w = ops.matmul(q, ops.cast(self.w_g, q.dtype)) * self.dim ** -0.5  # (batch, tokens, 1)
        w = ops.exp(w - ops.max(w, axis=-1, keepdims=True))
        w = w / ops.sum(w, axis=-1, keepdims=True)  # softmax over the last (size-1) axis, as Transformers
        g = ops.sum(w * q, axis=1, keepdims=True)
        return self.final(self.proj(g * k) + q)

    def call(self, x, training=False):
        x = self.local(x, training=training)
        h, w, c = x.shape[1], x.shape[2], x.shape[3]
        res = ops.reshape(self.attention(ops.reshape(x, (-1, h * w, c))), (-1, h, w, c))
        mlp = lambda t: self.fc2(self.act(self.fc1(self.mlp_norm(t, training=training))))  # noqa: E731
        if self.layer_scale is not None:
            x = x + res * ops.cast(self.scale1, res.dtype)
            y = mlp(x)
            return x + y * ops.cast(self.scale2, y.dtype)
        x = x + res
        return x + mlp(x)

    def rules(self, p):
        r = self.local.rules(p + "local_representation.")
        for n in ("to_query", "to_key", "proj", "final"):
            r += dense_rules(p + "attn." + n, getattr(self, n))
        r.append(Rule(p + "attn.w_g", self.w_g))
        r += norm_rules(p + "linear.norm1", self.mlp_norm)
        r += conv1x1_rules(p + "linear.fc1", self.fc1) + conv1x1_rules(p + "linear.fc2", self.fc2)
        if self.layer_scale is not None:
            r += [_scale_rule(p + "layer_scale_1", self.scale1), _scale_rule(p + "layer_scale_2", self.scale2)]
        return r

    def get_config(self):
        c = super().get_config()
        c.update(dim=self.dim, mlp_ratio=self.mlp_ratio, hidden_act=self.hidden_act, layer_scale=self.layer_scale,
                 eps=self.eps)
        return c


@dataclass(frozen=True, kw_only=True)
class SwiftFormerSpec(Spec):
    ignored = ("image_size",)

    num_channels: int = dim("num_channels", 3)
    depths: tuple = hf("depths", (3, 3, 6, 4))
    embed_dims: tuple = hf("embed_dims", (48, 56, 112, 220))
    mlp_ratio: int = hf("mlp_ratio", 4)
    downsamples: tuple = hf("downsamples", (True, True, True, True))
    hidden_act: str = hf("hidden_act", "gelu")
    down_patch_size: int = dim("down_patch_size", 3)
    down_stride: int = dim("down_stride", 2)
    down_pad: int = hf("down_pad", 1)
    use_layer_scale: bool = hf("use_layer_scale", True)
    layer_scale_init_value: float = hf("layer_scale_init_value", 1e-5)
    batch_norm_eps: float = hf("batch_norm_eps", 1e-5)
    initializer_range: float = hf("initializer_range", 0.02)

    def dummy_inputs(self):
        return {"pixel_values": np.zeros((1, 32, 32, self.num_channels), "float32")}


@_ser
@register_backbone("swiftformer")
class SwiftFormerBackbone(SpecBackbone):
    spec_cls = SwiftFormerSpec
    base_model_prefix = "swiftformer"
    hf_architecture = "SwiftFormerModel"
    hf_ignore = ("*num_batches_tracked",)
    verified_backends = ("jax", "torch", "tensorflow")  # tests/vision/test_vision_hier.py

    def __init__(self, spec=None, **kwargs):
        super().__init__(spec, **kwargs)
        s, common = self.spec, dict(dtype=self.dtype_policy)
        self.initializer_range = s.initializer_range
        eps, d = s.batch_norm_eps, s.embed_dims
        self.stem = two_conv_stem(d[0], eps, **common)
        scale = s.layer_scale_init_value if s.use_layer_scale else None
        self.stages, self.downs, self.network_index = [], {}, []
        k = 0
        for i, depth in enumerate(s.depths):
            blocks = [ConvMixer(d[i], int(s.mlp_ratio * d[i]), eps, name=f"stage_{i}_block_{j}", **common)
                      for j in range(depth - 1)]
            blocks.append(SwiftFormerBlock(d[i], s.mlp_ratio, s.hidden_act, scale, eps, name=f"stage_{i}_block_{depth - 1}",
                                           **common))
            self.stages.append(blocks)
            self.network_index.append(k)
            k += 1
            if i < len(s.depths) - 1 and (s.downsamples[i] or d[i] != d[i + 1]):
                self.downs[i] = (k, TorchConv(d[i + 1], s.down_patch_size, strides=s.down_stride, padding=s.down_pad,
                                              name=f"down_{i}", **common),
                                 batch_norm(f"down_norm_{i}", epsilon=eps, **common))
                k += 1

    def build(self, input_shape=None):
        self.built = True  # sub-layers build on their first (symbolic) call

    def stage_outputs(self, inputs, training=False):
        return run_stem_and_stages(self.stem, self.stages, self.downs, pixel_values_of(inputs), training)[1]

    def call(self, inputs, training=False):
        return self.stage_outputs(inputs, training=training)[-1]

    def feature_maps(self, inputs, training=False):
        return self.stage_outputs(inputs, training=training)

    def pooled(self, hidden):
        return ops.mean(hidden, axis=(1, 2))

    def weight_rules(self):
        c1, n1, c2, n2 = self.stem
        p = "patch_embed.patch_embedding."
        r = c1.rules(p + "0") + norm_rules(p + "1", n1) + c2.rules(p + "3") + norm_rules(p + "4", n2)
        for i, blocks in enumerate(self.stages):
            for j, b in enumerate(blocks):
                r += b.rules(f"encoder.network.{self.network_index[i]}.blocks.{j}.")
            if i in self.downs:
                k, conv, norm = self.downs[i]
                r += conv.rules(f"encoder.network.{k}.proj") + norm_rules(f"encoder.network.{k}.norm", norm)
        return r


@_ser
@register_task(SwiftFormerBackbone, "ImageClassifier", ("SwiftFormerForImageClassification",))
class SwiftFormerImageClassifier(ImageClassifier):
    pooling = "backbone"
    hf_head_patterns = ("head.*", "dist_head.*", "norm.*")

    def __init__(self, backbone, **kwargs):
        super().__init__(backbone, **kwargs)
        common = dict(dtype=backbone.dtype_policy)
        self.head_norm = batch_norm("head_norm", epsilon=backbone.spec.batch_norm_eps, **common)
        self.dist_head = keras.layers.Dense(self.num_classes, name="dist_head", **common)

    def call(self, inputs, training=False):
        if training and self.augmentation is not None:
            pixels = inputs["pixel_values"] if isinstance(inputs, dict) else inputs
            inputs = {"pixel_values": self.augmentation(pixels, training=True)}
        h = self.head_norm(self.backbone(inputs, training=training), training=training)
        pooled = self.drop(ops.mean(h, axis=(1, 2)), training=training)
        return (self.out(pooled) + self.dist_head(pooled)) / 2

    def head_rules(self):
        return (norm_rules("norm", self.head_norm, base=False) + dense_rules("head", self.out, base=False)
                + dense_rules("dist_head", self.dist_head, base=False))


__all__ = ["SwiftFormerBackbone", "SwiftFormerImageClassifier", "SwiftFormerBlock", "ConvMixer"]

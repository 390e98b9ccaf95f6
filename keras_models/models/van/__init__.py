"""VAN (Visual Attention Network; removed from Transformers 5), channels_last.

Stages of an overlapping strided conv + BatchNorm embedding, then layers of
x + s1 * spatial_attention(BN(x)) and x + s2 * MLP(BN(x)), and a LayerNorm at the stage end.
Spatial attention: 1x1 conv + activation, large-kernel attention (depthwise 5x5, depthwise 7x7
dilated by 3, 1x1 conv) multiplying its own input, 1x1 conv, plus its (normalised) input. MLP: 1x1 conv,
depthwise 3x3, activation, 1x1 conv. Checkpoints carry a final ``layernorm`` that the model
never applies (ignored, as Transformers 4 computes it).
Output: the last stage's map (batch, h, w, C); ``pooled`` = mean over space; ``feature_maps`` =
every stage's map.
"""

from dataclasses import dataclass

import keras
import numpy as np
from keras import ops

from keras_models.layers.activations import get_activation
from keras_models.layers.vision_embeddings import norm_rules
from keras_models.models.backbone import SpecBackbone
from keras_models.models.registry import register_backbone, register_task
from keras_models.models.vision_hier import TorchConv, batch_norm, conv1x1_rules, layer_norm
from keras_models.models.vit.backbone import pixel_values_of
from keras_models.presets.weight_map import Rule
from keras_models.spec import Spec, dim, hf
from keras_models.tasks.image_classifier import ImageClassifier

_ser = keras.saving.register_keras_serializable(package="keras_models")


@_ser
class VanLayer(keras.layers.Layer):
    def __init__(self, dim, mlp_ratio=4, hidden_act="gelu", layer_scale=1e-2, **kwargs):
        super().__init__(**kwargs)
        self.dim, self.mlp_ratio, self.hidden_act, self.layer_scale = dim, mlp_ratio, hidden_act, layer_scale
        common = dict(dtype=self.dtype_policy)
        self.norm1 = batch_norm("norm1", **common)
        self.norm2 = batch_norm("norm2", **common)
        self.pre = keras.layers.Dense(dim, name="pre", **common)
        self.dw = TorchConv(dim, 5, padding=2, depthwise=True, name="dw", **common)
        self.dw_dilated = TorchConv(dim, 7, padding=9, dilation=3, depthwise=True, name="dw_dilated", **common)
        self.pw = keras.layers.Dense(dim, name="pw", **common)
        self.post = keras.layers.Dense(dim, name="post", **common)
        hidden = dim * mlp_ratio
        self.fc1 = keras.layers.Dense(hidden, name="fc1", **common)
        self.mlp_dw = TorchConv(hidden, 3, padding=1, depthwise=True, name="mlp_dw", **common)
        self.fc2 = keras.layers.Dense(dim, name="fc2", **common)
        self.act = get_activation(hidden_act)

    def build(self, input_shape):
        init = keras.initializers.Constant(self.layer_scale)
        self.scale1 = self.add_weight(name="scale1", shape=(self.dim,), initializer=init)
        self.scale2 = self.add_weight(name="scale2", shape=(self.dim,), initializer=init)
        self.built = True

    def call(self, x, training=False):
        n = self.norm1(x, training=training)
        h = self.act(self.pre(n))
        h = self.post(h * self.pw(self.dw_dilated(self.dw(h)))) + n
        x = x + h * ops.cast(self.scale1, h.dtype)
        y = self.fc2(self.act(self.mlp_dw(self.fc1(self.norm2(x, training=training)))))
        return x + y * ops.cast(self.scale2, y.dtype)

    def rules(self, p):
        a = p + "attention."
        r = norm_rules(p + "pre_normomalization", self.norm1) + norm_rules(p + "post_normalization", self.norm2)
        r += conv1x1_rules(a + "pre_projection.conv", self.pre)
        r += self.dw.rules(a + "attention_layer.attention.depth_wise")
        r += self.dw_dilated.rules(a + "attention_layer.attention.depth_wise_dilated")
        r += conv1x1_rules(a + "attention_layer.attention.point_wise", self.pw)
        r += conv1x1_rules(a + "post_projection", self.post)
        r += conv1x1_rules(p + "mlp.in_dense", self.fc1) + self.mlp_dw.rules(p + "mlp.depth_wise")
        r += conv1x1_rules(p + "mlp.out_dense", self.fc2)
        return r + [Rule(p + "attention_scaling.weight", self.scale1), Rule(p + "mlp_scaling.weight", self.scale2)]

    def get_config(self):
        c = super().get_config()
        c.update(dim=self.dim, mlp_ratio=self.mlp_ratio, hidden_act=self.hidden_act, layer_scale=self.layer_scale)
        return c


@dataclass(frozen=True, kw_only=True)
class VanSpec(Spec):
    ignored = ("image_size", "drop_path_rate", "dropout_rate")

    num_channels: int = dim("num_channels", 3)
    patch_sizes: tuple = hf("patch_sizes", (7, 3, 3, 3))
    strides: tuple = hf("strides", (4, 2, 2, 2))
    hidden_sizes: tuple = hf("hidden_sizes", (64, 128, 320, 512))
    depths: tuple = hf("depths", (3, 3, 12, 3))
    mlp_ratios: tuple = hf("mlp_ratios", (8, 8, 4, 4))
    hidden_act: str = hf("hidden_act", "gelu")
    layer_norm_eps: float = hf("layer_norm_eps", 1e-6)
    layer_scale_init_value: float = hf("layer_scale_init_value", 1e-2)
    initializer_range: float = hf("initializer_range", 0.02)

    def dummy_inputs(self):
        return {"pixel_values": np.zeros((1, 32, 32, self.num_channels), "float32")}


@_ser
@register_backbone("van")
class VanBackbone(SpecBackbone):
    spec_cls = VanSpec
    base_model_prefix = "van"
    hf_architecture = "VanModel"
    hf_ignore = ("*num_batches_tracked", "layernorm.*", "van.layernorm.*")
    verified_backends = ("jax", "torch", "tensorflow")  # tests/vision/test_vision_removed.py

    def __init__(self, spec=None, **kwargs):
        super().__init__(spec, **kwargs)
        s, common = self.spec, dict(dtype=self.dtype_policy)
        self.initializer_range = s.initializer_range
        n = len(s.depths)
        self.embeds = [TorchConv(s.hidden_sizes[i], s.patch_sizes[i], strides=s.strides[i],
                                 padding=s.patch_sizes[i] // 2, name=f"embed_{i}", **common) for i in range(n)]
        self.embed_norms = [batch_norm(f"embed_norm_{i}", **common) for i in range(n)]
        self.stages = [[VanLayer(s.hidden_sizes[i], s.mlp_ratios[i], s.hidden_act, s.layer_scale_init_value,
                                 name=f"stage_{i}_layer_{j}", **common) for j in range(s.depths[i])] for i in range(n)]
        self.stage_norms = [layer_norm(f"stage_norm_{i}", epsilon=s.layer_norm_eps, **common) for i in range(n)]

    def build(self, input_shape=None):
        self.built = True  # sub-layers build on their first (symbolic) call

    def stage_outputs(self, inputs, training=False):
        x = pixel_values_of(inputs)
        outs = []
        for embed, enorm, layers, snorm in zip(self.embeds, self.embed_norms, self.stages, self.stage_norms):
            x = enorm(embed(x), training=training)
            for layer in layers:
                x = layer(x, training=training)
            x = snorm(x)
            outs.append(x)
        return outs

    def call(self, inputs, training=False):
        return self.stage_outputs(inputs, training=training)[-1]

    def feature_maps(self, inputs, training=False):
        return self.stage_outputs(inputs, training=training)

    def pooled(self, hidden):
        return ops.mean(hidden, axis=(1, 2))

    def weight_rules(self):
        r = []
        for i, (embed, enorm, layers, snorm) in enumerate(zip(self.embeds, self.embed_norms, self.stages,
                                                               self.stage_norms)):
            p = f"encoder.stages.{i}."
            r += embed.rules(p + "embeddings.convolution") + norm_rules(p + "embeddings.normalization", enorm)
            for j, layer in enumerate(layers):
                r += layer.rules(f"{p}layers.{j}.")
            r += norm_rules(p + "normalization", snorm)
        return r


@_ser
@register_task(VanBackbone, "ImageClassifier", ("VanForImageClassification",))
class VanImageClassifier(ImageClassifier):
    pooling = "backbone"


__all__ = ["VanBackbone", "VanImageClassifier", "VanLayer"]

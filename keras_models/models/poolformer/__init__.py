"""PoolFormer (MetaFormer with average-pooling token mixing), channels_last.

Stages of [overlapping patch-embedding conv] + blocks: x + s1 * (avgpool(GN(x)) - GN(x)),
x + s2 * MLP(GN(x)) with 1x1 convs (as Dense on channels_last), GroupNorm with one group.
Output: the last stage's map (batch, h, w, C). The classifier's head owns a final GroupNorm
(``norm.*`` in checkpoints) applied before the spatial mean.
"""

from dataclasses import dataclass

import keras
import numpy as np
from keras import ops

from keras_models.layers.activations import get_activation
from keras_models.layers.vision_embeddings import conv_rules, norm_rules
from keras_models.models.backbone import Backbone
from keras_models.models.registry import register_backbone, register_task
from keras_models.models.vit.backbone import pixel_values_of
from keras_models.presets.weight_map import Reshape, Rule
from keras_models.spec import Spec, dim, hf
from keras_models.tasks.image_classifier import ImageClassifier

_ser = keras.saving.register_keras_serializable(package="keras_models")


def avg_pool_exclude_pad(x, pool):
    """Stride-1 average pool with ``pool // 2`` zero padding not counted (count_include_pad=False)."""
    p = pool // 2
    h, w = x.shape[1], x.shape[2]
    summed = ops.average_pool(ops.pad(x, ((0, 0), (p, p), (p, p), (0, 0))), pool, strides=1, padding="valid")
    ones = np.pad(np.ones((h, w), np.float32), p)
    counts = np.lib.stride_tricks.sliding_window_view(ones, (pool, pool)).sum((-1, -2)) / (pool * pool)
    return summed / ops.cast(ops.convert_to_tensor(counts[None, :, :, None]), summed.dtype)


@_ser
class PoolFormerBlock(keras.layers.Layer):
    def __init__(self, dim, pool_size=3, mlp_ratio=4.0, hidden_act="gelu", layer_scale=1e-5, **kwargs):
        super().__init__(**kwargs)
        self.dim, self.pool_size, self.mlp_ratio, self.hidden_act, self.layer_scale = dim, pool_size, mlp_ratio, hidden_act, layer_scale
        common = dict(dtype=self.dtype_policy)
        self.norm1 = keras.layers.GroupNormalization(1, epsilon=1e-5, name="norm1", **common)
        self.norm2 = keras.layers.GroupNormalization(1, epsilon=1e-5, name="norm2", **common)
        self.fc1 = keras.layers.Dense(int(dim * mlp_ratio), name="fc1", **common)
        self.fc2 = keras.layers.Dense(dim, name="fc2", **common)
        self.act = get_activation(hidden_act)

    def build(self, input_shape):
        for layer in (self.norm1, self.norm2, self.fc1):
            layer.build((None, None, None, self.dim))
        self.fc2.build((None, None, None, int(self.dim * self.mlp_ratio)))
        init = keras.initializers.Constant(self.layer_scale or 1.0)
        self.scale1 = self.add_weight(name="scale1", shape=(self.dim,), initializer=init) if self.layer_scale else None
        self.scale2 = self.add_weight(name="scale2", shape=(self.dim,), initializer=init) if self.layer_scale else None
        self.built = True

    def call(self, x):
        y = self.norm1(x)
        y = avg_pool_exclude_pad(y, self.pool_size) - y
        x = x + (y * ops.cast(self.scale1, y.dtype) if self.scale1 is not None else y)
        y = self.fc2(self.act(self.fc1(self.norm2(x))))
        return x + (y * ops.cast(self.scale2, y.dtype) if self.scale2 is not None else y)

    def get_config(self):
        c = super().get_config()
        c.update(dim=self.dim, pool_size=self.pool_size, mlp_ratio=self.mlp_ratio, hidden_act=self.hidden_act,
                 layer_scale=self.layer_scale)
        return c


@dataclass(frozen=True, kw_only=True)
class PoolFormerSpec(Spec):
    hidden_sizes: tuple = hf("hidden_sizes", (64, 128, 320, 512))
    depths: tuple = hf("depths", (2, 2, 6, 2))
    patch_sizes: tuple = hf("patch_sizes", (7, 3, 3, 3))
    strides: tuple = hf("strides", (4, 2, 2, 2))
    padding: tuple = hf("padding", (2, 1, 1, 1))
    num_channels: int = dim("num_channels", 3)
    pool_size: int = dim("pool_size", 3)
    mlp_ratio: float = hf("mlp_ratio", 4.0)
    hidden_act: str = hf("hidden_act", "gelu")
    layer_scale: float | None = hf("layer_scale_init_value", 1e-5, doc="None when use_layer_scale is false")

    @classmethod
    def adjust_from_hf(cls, config, values, source):
        if not config.get("use_layer_scale", True):
            values["layer_scale"] = None
        return values

    def adjust_to_hf(self, out):
        out.update(num_encoder_blocks=len(self.depths), use_layer_scale=bool(self.layer_scale),
                   layer_scale_init_value=self.layer_scale or 1e-5)
        return out


@_ser
@register_backbone("poolformer")
class PoolFormerBackbone(Backbone):
    spec_cls = PoolFormerSpec
    verified_backends = ("jax", "torch", "tensorflow")  # parity tests pass on all three
    base_model_prefix = "poolformer"
    hf_architecture = "PoolFormerModel"

    def __init__(self, hidden_sizes, depths, patch_sizes, strides, padding, num_channels=3, pool_size=3,
                 mlp_ratio=4.0, hidden_act="gelu", layer_scale=1e-5, **kwargs):
        super().__init__(**kwargs)
        self.hidden_sizes, self.depths = list(hidden_sizes), list(depths)
        self.patch_sizes, self.strides, self.padding = list(patch_sizes), list(strides), list(padding)
        self.num_channels, self.pool_size, self.mlp_ratio = num_channels, pool_size, mlp_ratio
        self.hidden_act, self.layer_scale = hidden_act, layer_scale
        common = dict(dtype=self.dtype_policy)
        self.embeds = [keras.layers.Conv2D(d, k, strides=s, name=f"embed_{i}", **common)
                       for i, (d, k, s) in enumerate(zip(hidden_sizes, patch_sizes, strides))]
        self.stages = [[PoolFormerBlock(d, pool_size, mlp_ratio, hidden_act, layer_scale, name=f"stage_{i}_block_{j}",
                                        **common) for j in range(n)] for i, (d, n) in enumerate(zip(hidden_sizes, depths))]

    def dummy_inputs(self):
        return {"pixel_values": np.zeros((1, 32, 32, self.num_channels), "float32")}

    def stage_outputs(self, inputs):
        x = pixel_values_of(inputs)
        outs = []
        for embed, pad, blocks in zip(self.embeds, self.padding, self.stages):
            x = embed(ops.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0))) if pad else x)
            for b in blocks:
                x = b(x)
            outs.append(x)
        return outs

    def call(self, inputs, training=False):
        return self.stage_outputs(inputs)[-1]

    def feature_maps(self, inputs):
        return self.stage_outputs(inputs)

    def weight_rules(self):
        r = []
        for i, (embed, blocks) in enumerate(zip(self.embeds, self.stages)):
            r += conv_rules(f"encoder.patch_embeddings.{i}.projection", embed)
            for j, b in enumerate(blocks):
                p = f"encoder.block.{i}.{j}."
                r += norm_rules(p + "before_norm", b.norm1) + norm_rules(p + "after_norm", b.norm2)
                for name, dense in (("output.conv1", b.fc1), ("output.conv2", b.fc2)):
                    k = dense.kernel.shape
                    r.append(Rule(p + name + ".weight", dense.kernel, _Conv1x1(k)))
                    r.append(Rule(p + name + ".bias", dense.bias))
                if b.scale1 is not None:
                    r += [Rule(p + "layer_scale_1", b.scale1), Rule(p + "layer_scale_2", b.scale2)]
        return r

    def get_config(self):
        c = super().get_config()
        c.update({k: getattr(self, k) for k in self.spec_cls.field_names()})
        return c


def _Conv1x1(kernel_shape):
    """torch 1x1 Conv2d weight (out, in, 1, 1) <-> Dense kernel (in, out)."""
    from keras_models.presets.weight_map import Chain, Transpose

    cin, cout = kernel_shape
    return Chain(Reshape((cout, cin, 1, 1), (cout, cin)), Transpose())


@_ser
@register_task(PoolFormerBackbone, "ImageClassifier", ("PoolFormerForImageClassification",))
class PoolFormerImageClassifier(ImageClassifier):
    pooling = "backbone"
    hf_head_patterns = ("classifier.*", "norm.*")

    def __init__(self, backbone, **kwargs):
        super().__init__(backbone, **kwargs)
        self.head_norm = keras.layers.GroupNormalization(1, epsilon=1e-5, name="head_norm", dtype=backbone.dtype_policy)

    def pool(self, hidden):
        return ops.mean(self.head_norm(hidden), axis=(1, 2))

    def head_rules(self):
        return norm_rules("norm", self.head_norm, base=False) + super().head_rules()


__all__ = ["PoolFormerBackbone", "PoolFormerImageClassifier"]

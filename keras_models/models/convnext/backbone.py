"""ConvNeXT and ConvNeXT V2 (channels_last).

patchify conv + LayerNorm, then stages of [LayerNorm + 2x2 stride-2 conv] (from the second stage)
and ConvNeXT blocks. V2 differs by named fields: ``grn=True`` and no layer scale.
Output: the last stage's feature map (batch, H/32, W/32, C); ``pooled`` = LayerNorm(mean over
space); ``feature_maps`` = every stage's output.
"""

from dataclasses import dataclass

import keras
import numpy as np
from keras import ops

from keras_models.layers.conv_blocks import ConvNeXtBlock
from keras_models.layers.vision_embeddings import conv_rules, dense_rules, norm_rules
from keras_models.models.backbone import Backbone
from keras_models.models.registry import register_backbone
from keras_models.models.vit.backbone import pixel_values_of
from keras_models.presets.weight_map import Reshape, Rule
from keras_models.spec import Spec, const, dim, hf


@dataclass(frozen=True, kw_only=True)
class ConvNextSpec(Spec):
    hidden_sizes: tuple = hf("hidden_sizes", (96, 192, 384, 768))
    depths: tuple = hf("depths", (3, 3, 9, 3))
    num_channels: int = dim("num_channels", 3)
    patch_size: int = dim("patch_size", 4)
    hidden_act: str = hf("hidden_act", "gelu")
    layer_scale: float | None = hf("layer_scale_init_value", 1e-6, write=lambda v: v or 0.0)
    grn: bool = const(False, doc="global response normalisation (V2)")
    layer_norm_eps: float = hf("layer_norm_eps", 1e-12)
    image_size: int = hf("image_size", 224)
    initializer_range: float = hf("initializer_range", 0.02)

    def adjust_to_hf(self, out):
        out["num_stages"] = len(self.depths)
        return out


@dataclass(frozen=True, kw_only=True)
class ConvNextV2Spec(ConvNextSpec):
    layer_scale: float | None = const(None)
    grn: bool = const(True)


@keras.saving.register_keras_serializable(package="keras_models")
@register_backbone("convnext")
class ConvNextBackbone(Backbone):
    spec_cls = ConvNextSpec
    verified_backends = ("jax", "torch", "tensorflow")  # parity tests pass on all three
    base_model_prefix = "convnext"
    hf_architecture = "ConvNextModel"
    model_type = "convnext"

    def __init__(self, hidden_sizes, depths, num_channels=3, patch_size=4, hidden_act="gelu",
                 layer_scale=1e-6, grn=False, layer_norm_eps=1e-12, image_size=224,
                 initializer_range=0.02, **kwargs):
        super().__init__(**kwargs)
        self.hidden_sizes, self.depths = list(hidden_sizes), list(depths)
        self.num_channels, self.patch_size, self.hidden_act = num_channels, patch_size, hidden_act
        self.layer_scale, self.grn, self.layer_norm_eps = layer_scale, grn, layer_norm_eps
        self.image_size, self.initializer_range = image_size, initializer_range
        common = dict(dtype=self.dtype_policy)
        self.stem = keras.layers.Conv2D(hidden_sizes[0], patch_size, strides=patch_size, name="stem", **common)
        self.stem_norm = keras.layers.LayerNormalization(epsilon=1e-6, name="stem_norm", **common)
        self.downsample = []
        self.stages = []
        for i, (dim, depth) in enumerate(zip(hidden_sizes, depths)):
            if i > 0:
                self.downsample.append((
                    keras.layers.LayerNormalization(epsilon=1e-6, name=f"down_norm_{i}", **common),
                    keras.layers.Conv2D(dim, 2, strides=2, name=f"down_conv_{i}", **common),
                ))
            else:
                self.downsample.append(None)
            self.stages.append([ConvNeXtBlock(dim, hidden_act, layer_scale=layer_scale, grn=grn,
                                              name=f"stage_{i}_block_{j}", **common) for j in range(depth)])
        self.final_norm = keras.layers.LayerNormalization(epsilon=layer_norm_eps, name="final_norm", **common)

    def dummy_inputs(self):
        return {"pixel_values": np.zeros((1, 32, 32, self.num_channels), "float32")}

    def stage_outputs(self, inputs):
        x = self.stem_norm(self.stem(pixel_values_of(inputs)))
        outs = []
        for down, blocks in zip(self.downsample, self.stages):
            if down is not None:
                x = down[1](down[0](x))
            for b in blocks:
                x = b(x)
            outs.append(x)
        return outs

    def call(self, inputs, training=False):
        return self.stage_outputs(inputs)[-1]

    def feature_maps(self, inputs):
        return self.stage_outputs(inputs)

    def pooled(self, hidden):
        return self.final_norm(ops.mean(hidden, axis=(1, 2)))

    def build(self, input_shape=None):
        # the blocks build on their first call; the pooling norm is only used by ``pooled``
        self.final_norm.build((None, self.hidden_sizes[-1]))
        self.built = True

    def weight_rules(self):
        r = conv_rules("embeddings.patch_embeddings", self.stem) + norm_rules("embeddings.layernorm", self.stem_norm)
        for i, (down, blocks) in enumerate(zip(self.downsample, self.stages)):
            p = f"encoder.stages.{i}."
            if down is not None:
                r += norm_rules(p + "downsampling_layer.0", down[0]) + conv_rules(p + "downsampling_layer.1", down[1])
            for j, b in enumerate(blocks):
                q = f"{p}layers.{j}."
                r += conv_rules(q + "dwconv", b.dwconv) + norm_rules(q + "layernorm", b.norm)
                r += dense_rules(q + "pwconv1", b.pwconv1) + dense_rules(q + "pwconv2", b.pwconv2)
                if b.gamma is not None:
                    r.append(Rule(q + "layer_scale_parameter", b.gamma))
                if b.grn_layer is not None:
                    d = b.grn_layer.dim
                    r.append(Rule(q + "grn.weight", b.grn_layer.gamma, Reshape((1, 1, 1, d), (d,))))
                    r.append(Rule(q + "grn.bias", b.grn_layer.beta, Reshape((1, 1, 1, d), (d,))))
        return r + norm_rules("layernorm", self.final_norm)

    def get_config(self):
        c = super().get_config()
        c.update({k: getattr(self, k) for k in self.spec_cls.field_names()})
        return c


@keras.saving.register_keras_serializable(package="keras_models")
@register_backbone("convnextv2")
class ConvNextV2Backbone(ConvNextBackbone):
    base_model_prefix = "convnextv2"
    hf_architecture = "ConvNextV2Model"
    model_type = "convnextv2"
    spec_cls = ConvNextV2Spec

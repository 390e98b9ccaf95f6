"""FocalNet (focal modulation networks), channels_last.

A Swin-like pyramid where attention is replaced by focal modulation: a linear layer gives a
query, a context and ``focal_level + 1`` gates; the context goes through ``focal_level`` stacked
depthwise convolutions (kernel ``focal_window + 2 k``) + GELU, each level (and a global average
of the last one) weighted by its gate and summed; a 1x1 convolution of that sum modulates the
query. Options: ``use_post_layernorm`` (norms after the modulation / MLP instead of before),
``use_post_layernorm_in_modulation``, ``normalize_modulator``, ``use_layerscale``,
``use_conv_embed`` (overlapping conv stem and downsampling). Stages downsample by a stride-2
patch embedding + LayerNorm between them.
Output: (batch, tokens, C) of the last stage after the final LayerNorm (Transformers'
last_hidden_state); ``pooled`` = mean over tokens; ``feature_maps`` = each stage's
(batch, h, w, C) before downsampling.
"""

from dataclasses import dataclass

import keras
import numpy as np
from keras import ops

from keras_models.layers.activations import get_activation
from keras_models.layers.vision_embeddings import dense_rules, norm_rules
from keras_models.models.backbone import SpecBackbone
from keras_models.models.registry import register_backbone, register_task
from keras_models.models.vision_hier import TorchConv, conv1x1_rules, layer_norm, pad_to_multiple
from keras_models.models.vit.backbone import pixel_values_of
from keras_models.presets.weight_map import Rule
from keras_models.spec import Spec, dim, hf
from keras_models.tasks.image_classifier import ImageClassifier

_ser = keras.saving.register_keras_serializable(package="keras_models")


@_ser
class FocalModulationLayer(keras.layers.Layer):
    def __init__(self, dim, focal_level, focal_window, mlp_ratio=4.0, hidden_act="gelu", layer_norm_eps=1e-5,
                 post_norm=False, post_norm_in_modulation=False, normalize_modulator=False, layer_scale=None,
                 **kwargs):
        super().__init__(**kwargs)
        self.dim, self.focal_level, self.focal_window = dim, focal_level, focal_window
        self.mlp_ratio, self.hidden_act, self.layer_norm_eps = mlp_ratio, hidden_act, layer_norm_eps
        self.post_norm, self.post_norm_in_modulation = post_norm, post_norm_in_modulation
        self.normalize_modulator, self.layer_scale = normalize_modulator, layer_scale
        common = dict(dtype=self.dtype_policy)
        self.norm1 = layer_norm("norm1", epsilon=layer_norm_eps, **common)
        self.norm2 = layer_norm("norm2", epsilon=layer_norm_eps, **common)
        self.proj_in = keras.layers.Dense(2 * dim + focal_level + 1, name="proj_in", **common)
        self.focal = [TorchConv(dim, 2 * k + focal_window, padding=(2 * k + focal_window) // 2, use_bias=False,
                                depthwise=True, name=f"focal_{k}", **common) for k in range(focal_level)]
        self.proj_ctx = keras.layers.Dense(dim, name="proj_ctx", **common)
        self.mod_norm = layer_norm("mod_norm", epsilon=layer_norm_eps, **common) if post_norm_in_modulation else None
        self.proj_out = keras.layers.Dense(dim, name="proj_out", **common)
        self.fc1 = keras.layers.Dense(int(dim * mlp_ratio), name="fc1", **common)
        self.fc2 = keras.layers.Dense(dim, name="fc2", **common)
        self.act = get_activation(hidden_act)
        self.gelu = get_activation("gelu")

    def build(self, input_shape):
        if self.layer_scale is not None:
            init = keras.initializers.Constant(self.layer_scale)
            self.gamma_1 = self.add_weight(name="gamma_1", shape=(self.dim,), initializer=init)
            self.gamma_2 = self.add_weight(name="gamma_2", shape=(self.dim,), initializer=init)
        self.built = True

    def modulate(self, x):
        d, n = self.dim, self.focal_level
        y = self.proj_in(x)
        q, ctx, gates = y[..., :d], y[..., d:2 * d], y[..., 2 * d:]
        total = 0
        for k, conv in enumerate(self.focal):
            ctx = self.gelu(conv(ctx))
            total = total + ctx * gates[..., k:k + 1]
        glob = self.gelu(ops.mean(ctx, axis=(1, 2), keepdims=True))
        total = total + glob * gates[..., n:]
        if self.normalize_modulator:
            total = total / (n + 1)
        out = q * self.proj_ctx(total)
        if self.mod_norm is not None:
            out = self.mod_norm(out)
        return self.proj_out(out)

    def _scaled(self, y, gamma):
        return y * ops.cast(gamma, y.dtype) if self.layer_scale is not None else y

    def call(self, x):
        if self.post_norm:
            x = x + self._scaled(self.norm1(self.modulate(x)), getattr(self, "gamma_1", None))
            return x + self._scaled(self.norm2(self.fc2(self.act(self.fc1(x)))), getattr(self, "gamma_2", None))
        x = x + self._scaled(self.modulate(self.norm1(x)), getattr(self, "gamma_1", None))
        return x + self._scaled(self.fc2(self.act(self.fc1(self.norm2(x)))), getattr(self, "gamma_2", None))

    def rules(self, p):
        m = p + "modulation."
        r = norm_rules(p + "norm1", self.norm1) + norm_rules(p + "norm2", self.norm2)
        r += dense_rules(m + "projection_in", self.proj_in) + conv1x1_rules(m + "projection_context", self.proj_ctx)
        r += dense_rules(m + "projection_out", self.proj_out)
        for k, conv in enumerate(self.focal):
            r += conv.rules(f"{m}focal_layers.{k}.0")
        if self.mod_norm is not None:
            r += norm_rules(m + "layernorm", self.mod_norm)
        r += dense_rules(p + "mlp.fc1", self.fc1) + dense_rules(p + "mlp.fc2", self.fc2)
        if self.layer_scale is not None:
            r += [Rule(p + "gamma_1", self.gamma_1), Rule(p + "gamma_2", self.gamma_2)]
        return r

    def get_config(self):
        c = super().get_config()
        c.update(dim=self.dim, focal_level=self.focal_level, focal_window=self.focal_window, mlp_ratio=self.mlp_ratio,
                 hidden_act=self.hidden_act, layer_norm_eps=self.layer_norm_eps, post_norm=self.post_norm,
                 post_norm_in_modulation=self.post_norm_in_modulation,
                 normalize_modulator=self.normalize_modulator, layer_scale=self.layer_scale)
        return c


@dataclass(frozen=True, kw_only=True)
class FocalNetSpec(Spec):
    ignored = ("hidden_sizes", "encoder_stride", "image_size")

    num_channels: int = dim("num_channels", 3)
    patch_size: int = dim("patch_size", 4)
    embed_dim: int = dim("embed_dim", 96)
    use_conv_embed: bool = hf("use_conv_embed", False)
    depths: tuple = hf("depths", (2, 2, 6, 2))
    focal_levels: tuple = hf("focal_levels", (2, 2, 2, 2))
    focal_windows: tuple = hf("focal_windows", (3, 3, 3, 3))
    hidden_act: str = hf("hidden_act", "gelu")
    mlp_ratio: float = hf("mlp_ratio", 4.0)
    use_layerscale: bool = hf("use_layerscale", False)
    layerscale_value: float = hf("layerscale_value", 1e-4)
    use_post_layernorm: bool = hf("use_post_layernorm", False)
    use_post_layernorm_in_modulation: bool = hf("use_post_layernorm_in_modulation", False)
    normalize_modulator: bool = hf("normalize_modulator", False)
    layer_norm_eps: float = hf("layer_norm_eps", 1e-5)
    initializer_range: float = hf("initializer_range", 0.02)

    def dummy_inputs(self):
        return {"pixel_values": np.zeros((1, 32, 32, self.num_channels), "float32")}


@_ser
@register_backbone("focalnet")
class FocalNetBackbone(SpecBackbone):
    spec_cls = FocalNetSpec
    base_model_prefix = "focalnet"
    hf_architecture = "FocalNetModel"
    hf_ignore = ("embeddings.mask_token",)
    verified_backends = ("jax", "torch", "tensorflow")  # tests/vision/test_vision_hier.py

    def __init__(self, spec=None, **kwargs):
        super().__init__(spec, **kwargs)
        s, common = self.spec, dict(dtype=self.dtype_policy)
        self.initializer_range = s.initializer_range
        n = len(s.depths)
        dims = [s.embed_dim * 2 ** i for i in range(n)]
        self.num_features = dims[-1]
        if s.use_conv_embed:
            self.stem = TorchConv(dims[0], 7, strides=4, padding=2, name="stem", **common)
        else:
            self.stem = TorchConv(dims[0], s.patch_size, strides=s.patch_size, name="stem", **common)
        self.stem_norm = layer_norm("stem_norm", epsilon=s.layer_norm_eps, **common)
        self.stages = [[FocalModulationLayer(dims[i], s.focal_levels[i], s.focal_windows[i], s.mlp_ratio, s.hidden_act,
                                             s.layer_norm_eps, s.use_post_layernorm,
                                             s.use_post_layernorm_in_modulation, s.normalize_modulator,
                                             s.layerscale_value if s.use_layerscale else None,
                                             name=f"stage_{i}_layer_{j}", **common) for j in range(s.depths[i])]
                       for i in range(n)]
        k, st, pd = (3, 2, 1) if s.use_conv_embed else (2, 2, 0)
        self.downs = [TorchConv(dims[i + 1], k, strides=st, padding=pd, name=f"down_{i}", **common) for i in range(n - 1)]
        self.down_norms = [layer_norm(f"down_norm_{i}", epsilon=s.layer_norm_eps, **common) for i in range(n - 1)]
        self.final_norm = layer_norm("final_norm", epsilon=s.layer_norm_eps, **common)

    def stage_outputs(self, inputs):
        x = self.stem_norm(self.stem(pad_to_multiple(pixel_values_of(inputs), self.spec.patch_size)))
        outs = []
        for i, layers in enumerate(self.stages):
            for layer in layers:
                x = layer(x)
            outs.append(x)
            if i < len(self.downs):
                x = self.down_norms[i](self.downs[i](pad_to_multiple(x, 2)))
        return outs

    def call(self, inputs, training=False):
        x = self.stage_outputs(inputs)[-1]
        return self.final_norm(ops.reshape(x, (-1, x.shape[1] * x.shape[2], x.shape[3])))

    def feature_maps(self, inputs):
        return self.stage_outputs(inputs)

    def pooled(self, hidden):
        return ops.mean(hidden, axis=1)

    def weight_rules(self):
        r = self.stem.rules("embeddings.patch_embeddings.projection") + norm_rules("embeddings.norm", self.stem_norm)
        for i, layers in enumerate(self.stages):
            for j, layer in enumerate(layers):
                r += layer.rules(f"encoder.stages.{i}.layers.{j}.")
            if i < len(self.downs):
                r += self.downs[i].rules(f"encoder.stages.{i}.downsample.projection")
                r += norm_rules(f"encoder.stages.{i}.downsample.norm", self.down_norms[i])
        return r + norm_rules("layernorm", self.final_norm)


@_ser
@register_task(FocalNetBackbone, "ImageClassifier", ("FocalNetForImageClassification",))
class FocalNetImageClassifier(ImageClassifier):
    pooling = "backbone"


__all__ = ["FocalNetBackbone", "FocalNetImageClassifier", "FocalModulationLayer"]

"""BEiT and Data2Vec-Vision (DiT checkpoints use model_type "beit"): a ViT without key bias,
with layer scale, optional absolute positions, relative position bias (per layer and/or shared)
and mean pooling + LayerNorm instead of a final norm (``use_mean_pooling``)."""

from dataclasses import dataclass

import keras
from keras import ops

from keras_models.layers.image_relative_bias import RelativePositionBias
from keras_models.models.registry import register_backbone
from keras_models.models.vit.backbone import ViTBackbone, ViTSpec, pixel_values_of
from keras_models.presets.weight_map import Reshape, Rule
from keras_models.spec import const, hf


@dataclass(frozen=True, kw_only=True)
class BeitSpec(ViTSpec):
    layer_scale: float | None = hf("layer_scale_init_value", 0.1, read=lambda v: v if v > 0 else None,
                                   write=lambda v: v or 0.0, doc="<= 0: no layer scale")
    absolute_positions: bool = hf("use_absolute_position_embeddings", False)
    layer_relative_bias: bool = hf("use_relative_position_bias", False)
    shared_relative_bias: bool = hf("use_shared_relative_position_bias", False)
    mean_pooling: bool = hf("use_mean_pooling", True)
    mask_token: bool = hf("use_mask_token", False)
    key_bias: bool = const(False)
    qkv_bias: bool = const(True, doc="query and value biases; never a key bias")
    model_type: str = const("beit")


@dataclass(frozen=True, kw_only=True)
class Data2VecVisionSpec(BeitSpec):
    model_type: str = const("data2vec-vision")


@keras.saving.register_keras_serializable(package="keras_models")
@register_backbone("beit")
class BeitBackbone(ViTBackbone):
    spec_cls = BeitSpec
    verified_backends = ("jax", "torch", "tensorflow")  # parity tests pass on all three
    checkpoint_families = ("DiT",)  # checkpoint-only rows (docs/models.md)
    base_model_prefix = "beit"
    hf_architecture = "BeitModel"
    hf_ignore = ("*relative_position_index",)
    hf_known_unused = ()
    hf_names = {**ViTBackbone.hf_names, "scale1": "lambda_1", "scale2": "lambda_2"}

    def __init__(self, *args, layer_relative_bias=False, shared_relative_bias=False, mean_pooling=True,
                 **kwargs):
        kwargs.setdefault("key_bias", False)
        kwargs.setdefault("absolute_positions", False)
        super().__init__(*args, **kwargs)
        self.layer_relative_bias, self.shared_relative_bias = layer_relative_bias, shared_relative_bias
        self.mean_pooling = mean_pooling
        common = dict(dtype=self.dtype_policy)
        rel = lambda name: RelativePositionBias(self.grid, self.num_heads, name=name, **common)  # noqa: E731
        self.layer_biases = [rel(f"rel_bias_{i}") for i in range(self.num_layers)] if layer_relative_bias else None
        self.shared_bias = rel("shared_rel_bias") if shared_relative_bias else None

    def build(self, input_shape=None):
        super().build(input_shape)
        for b in (self.layer_biases or []) + ([self.shared_bias] if self.shared_bias else []):
            b.build()
        self.built = True

    def call(self, inputs, training=False):
        x, grid = self.embed(pixel_values_of(inputs), training=training)
        shared = self.shared_bias.bias_for(grid) if self.shared_bias is not None else None
        for i, block in enumerate(self.blocks):
            bias = shared
            if self.layer_biases is not None:
                own = self.layer_biases[i].bias_for(grid)
                bias = own if bias is None else bias + own
            x = block(x, bias, training=training)
        return x if self.mean_pooling else self.final_norm(x)

    def pooled(self, hidden):
        if self.mean_pooling:
            return self.final_norm(ops.mean(hidden[:, 1:], axis=1))
        return hidden[:, 0]

    def weight_rules(self):
        table = "relative_position_bias.relative_position_bias_table"
        rules = []
        for r in super().weight_rules():
            if r.hf.startswith("layernorm."):
                if self.mean_pooling:  # the pooler's norm: absent from pooler-less base checkpoints
                    r = Rule(r.hf.replace("layernorm.", "pooler.layernorm."), r.variable, optional=True)
            elif r.hf == "embeddings.mask_token":
                d = self.hidden_size
                r = Rule(r.hf, r.variable, Reshape((1, 1, d), (1, d)))
            rules.append(r)
        for i, b in enumerate(self.layer_biases or []):
            rules.append(Rule(f"encoder.layer.{i}.attention.attention.{table}", b.table))
        if self.shared_bias is not None:
            rules.append(Rule(f"encoder.{table}", self.shared_bias.table))
        return rules

    def get_config(self):
        c = super().get_config()
        c.update(layer_relative_bias=self.layer_relative_bias,
                 shared_relative_bias=self.shared_relative_bias, mean_pooling=self.mean_pooling)
        return c


@keras.saving.register_keras_serializable(package="keras_models")
@register_backbone("data2vec-vision")
class Data2VecVisionBackbone(BeitBackbone):
    spec_cls = Data2VecVisionSpec
    base_model_prefix = "data2vec_vision"
    hf_architecture = "Data2VecVisionModel"


__all__ = ["BeitSpec", "Data2VecVisionSpec", "BeitBackbone", "Data2VecVisionBackbone"]

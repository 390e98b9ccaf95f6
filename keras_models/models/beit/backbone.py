"""BEiT and Data2Vec-Vision (DiT checkpoints use model_type "beit"): a ViT without key bias,
with layer scale, optional absolute positions, relative position bias (per layer and/or shared)
and mean pooling + LayerNorm instead of a final norm (``use_mean_pooling``)."""

import keras
from keras import ops

from keras_models.layers.image_relative_bias import RelativePositionBias
from keras_models.models.registry import register_backbone
from keras_models.models.vit.backbone import ViTBackbone, pixel_values_of
from keras_models.presets.weight_map import Reshape, Rule


@keras.saving.register_keras_serializable(package="keras_models")
@register_backbone("beit")
class BeitBackbone(ViTBackbone):
    verified_backends = ("jax", "torch", "tensorflow")  # parity tests pass on all three
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

    @classmethod
    def config_from_hf(cls, hf):
        c = super().config_from_hf(hf)
        ls = hf.get("layer_scale_init_value", 0.1)
        c.update(layer_scale=ls if ls and ls > 0 else None,
                 absolute_positions=hf.get("use_absolute_position_embeddings", False),
                 layer_relative_bias=hf.get("use_relative_position_bias", False),
                 shared_relative_bias=hf.get("use_shared_relative_position_bias", False),
                 mean_pooling=hf.get("use_mean_pooling", True), mask_token=hf.get("use_mask_token", False),
                 key_bias=False)
        return c

    def config_to_hf(self):
        c = super().config_to_hf()
        c.update(layer_scale_init_value=self.layer_scale or 0.0, use_absolute_position_embeddings=self.absolute_positions,
                 use_relative_position_bias=self.layer_relative_bias,
                 use_shared_relative_position_bias=self.shared_relative_bias, use_mean_pooling=self.mean_pooling,
                 use_mask_token=self.mask_token)
        return c

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
    base_model_prefix = "data2vec_vision"
    hf_architecture = "Data2VecVisionModel"


__all__ = ["BeitBackbone", "Data2VecVisionBackbone"]

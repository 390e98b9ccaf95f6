"""Vision transformer backbone: patch embedding + [CLS] (+ distillation / register tokens) +
position embeddings (bicubic-interpolated to any resolution) + pre-norm blocks + final norm.

One implementation for ViT, DeiT, ViT-MSN, DINOv2 and DINOv2-with-registers; their differences are
named fields (``distillation_token``, ``num_register_tokens``, ``layer_scale``, ``mlp``,
``interpolate_antialias``, ``mask_token``) and, for checkpoint names, the ``hf_names`` table.
Input: ``pixel_values`` (batch, height, width, channels). Output: (batch, tokens, hidden).
"""

from dataclasses import dataclass

import keras
import numpy as np
from keras import ops

from keras_models.layers.vision_block import VisionBlock
from keras_models.layers.vision_embeddings import PatchEmbedding, conv_rules, dense_rules, norm_rules, resize_grid
from keras_models.models.backbone import Backbone
from keras_models.models.registry import register_backbone
from keras_models.presets.weight_map import Rule
from keras_models.spec import Spec, const, dim, hf


def pixel_values_of(inputs):
    return inputs["pixel_values"] if isinstance(inputs, dict) else inputs


def _pair(v):
    return tuple(v) if isinstance(v, (list, tuple)) else (v, v)


def one_or_pair(v):
    """config.json form of a size: an int when square, else [h, w]."""
    h, w = _pair(v)
    return h if h == w else [h, w]


@dataclass(frozen=True, kw_only=True)
class ViTSpec(Spec):
    image_size: tuple = hf("image_size", (224, 224), read=_pair, write=one_or_pair)
    patch_size: tuple = hf("patch_size", (16, 16), read=_pair, write=one_or_pair)
    hidden_size: int = dim("hidden_size", 768)
    num_layers: int = dim("num_hidden_layers", 12)
    num_heads: int = dim("num_attention_heads", 12)
    intermediate_size: int = dim("intermediate_size", 3072)
    num_channels: int = dim("num_channels", 3)
    hidden_act: str = hf("hidden_act", "gelu")
    layer_norm_eps: float = hf("layer_norm_eps", 1e-12, doc="ViT-MSN's default is 1e-6 (adjust_from_hf)")
    qkv_bias: bool = hf("qkv_bias", True)
    dropout: float = hf("hidden_dropout_prob", 0.0)
    attention_dropout: float = hf("attention_probs_dropout_prob", 0.0)
    initializer_range: float = hf("initializer_range", 0.02)
    model_type: str = hf("model_type", "vit", doc="'vit' or 'vit_msn' (the classifier's checkpoint names)")
    distillation_token: bool = const(False, doc="a distillation token after [CLS] (DeiT)")
    num_register_tokens: int = const(0)
    layer_scale: float | None = const(None)
    mlp: str = const("plain", doc="'plain' or 'swiglu'")
    interpolate_antialias: bool = const(False)
    mask_token: bool = const(False)
    key_bias: bool = const(True)
    absolute_positions: bool = const(True)

    @classmethod
    def adjust_from_hf(cls, config, values, source):
        if values.get("model_type") == "vit_msn" and config.get("layer_norm_eps") is None:
            values["layer_norm_eps"] = 1e-6  # ViTMSNConfig's default
        return values


@keras.saving.register_keras_serializable(package="keras_models")
@register_backbone("vit", "vit_msn")
class ViTBackbone(Backbone):
    spec_cls = ViTSpec
    verified_backends = ("jax", "torch", "tensorflow")  # parity tests pass on all three
    base_model_prefix = "vit"
    hf_architecture = "ViTModel"
    hf_known_unused = ("*pooler.dense.*",)
    # our block sub-layer -> HF name inside ``encoder.layer.{i}``
    hf_names = {"query": "attention.attention.query", "key": "attention.attention.key",
                "value": "attention.attention.value", "output": "attention.output.dense",
                "norm1": "layernorm_before", "norm2": "layernorm_after",
                "fc1": "intermediate.dense", "fc2": "output.dense",
                "scale1": None, "scale2": None}

    def __init__(self, image_size, patch_size, hidden_size, num_layers, num_heads, intermediate_size,
                 num_channels=3, hidden_act="gelu", layer_norm_eps=1e-12, qkv_bias=True,
                 distillation_token=False, num_register_tokens=0, layer_scale=None, mlp="plain",
                 interpolate_antialias=False, mask_token=False, key_bias=True, absolute_positions=True,
                 dropout=0.0, attention_dropout=0.0,
                 initializer_range=0.02, model_type="vit", **kwargs):
        super().__init__(**kwargs)
        self.image_size, self.patch_size = _pair(image_size), _pair(patch_size)
        self.hidden_size, self.num_layers, self.num_heads = hidden_size, num_layers, num_heads
        self.intermediate_size, self.num_channels, self.hidden_act = intermediate_size, num_channels, hidden_act
        self.layer_norm_eps, self.qkv_bias = layer_norm_eps, qkv_bias
        self.distillation_token, self.num_register_tokens = distillation_token, num_register_tokens
        self.layer_scale, self.mlp, self.interpolate_antialias = layer_scale, mlp, interpolate_antialias
        self.mask_token, self.key_bias, self.absolute_positions = mask_token, key_bias, absolute_positions
        self.dropout_rate, self.attention_dropout = dropout, attention_dropout
        self.initializer_range, self.model_type = initializer_range, model_type
        init = keras.initializers.TruncatedNormal(stddev=initializer_range)
        common = dict(dtype=self.dtype_policy)
        self.grid = (self.image_size[0] // self.patch_size[0], self.image_size[1] // self.patch_size[1])
        self.patch_embedding = PatchEmbedding(hidden_size, self.patch_size, num_channels,
                                              kernel_initializer=init, name="patch_embedding", **common)
        self.blocks = [
            VisionBlock(hidden_size, num_heads, intermediate_size, hidden_act=hidden_act,
                        layer_norm_eps=layer_norm_eps, qkv_bias=qkv_bias, key_bias=key_bias, mlp=mlp,
                        layer_scale=layer_scale, dropout=dropout, attention_dropout=attention_dropout,
                        kernel_initializer=init, name=f"block_{i}", **common)
            for i in range(num_layers)
        ]
        self.final_norm = keras.layers.LayerNormalization(epsilon=layer_norm_eps, name="final_norm", **common)
        self.dropout = keras.layers.Dropout(dropout, **common)

    @property
    def num_prefix_tokens(self):
        return 1 + int(self.distillation_token) + self.num_register_tokens

    def build(self, input_shape):
        init = keras.initializers.TruncatedNormal(stddev=self.initializer_range)
        d = self.hidden_size
        n_pos = self.grid[0] * self.grid[1] + 1 + int(self.distillation_token)
        self.cls_token = self.add_weight(name="cls_token", shape=(1, 1, d), initializer=init)
        self.dist_token = (self.add_weight(name="dist_token", shape=(1, 1, d), initializer=init)
                           if self.distillation_token else None)
        self.register_tokens = (self.add_weight(name="register_tokens", shape=(1, self.num_register_tokens, d),
                                                initializer="zeros") if self.num_register_tokens else None)
        self.mask_embedding = (self.add_weight(name="mask_token", shape=(1, d), initializer="zeros")
                               if self.mask_token else None)
        self.position_embedding = (self.add_weight(name="position_embedding", shape=(1, n_pos, d), initializer=init)
                                   if self.absolute_positions else None)
        self.patch_embedding.build((None, None, None, self.num_channels))
        for b in self.blocks:
            b.build((None, None, d))
        self.final_norm.build((None, None, d))
        self.built = True

    def dummy_inputs(self):
        return {"pixel_values": np.zeros((1,) + self.image_size + (self.num_channels,), "float32")}

    # --- forward ------------------------------------------------------------------------------
    def positions(self, gh, gw):
        """Position embeddings for a gh x gw patch grid: (1, prefix + gh*gw, hidden)."""
        n_cls = 1 + int(self.distillation_token)
        pos = self.position_embedding
        if pos is None or (gh, gw) == self.grid:
            return pos
        h, w = self.grid
        grid = ops.reshape(pos[:, n_cls:], (1, h, w, self.hidden_size))
        grid = resize_grid(grid, gh, gw, antialias=self.interpolate_antialias)
        return ops.concatenate([pos[:, :n_cls], ops.reshape(grid, (1, gh * gw, self.hidden_size))], axis=1)

    def embed(self, pixel_values, training=False):
        x = self.patch_embedding(pixel_values)
        b, gh, gw = ops.shape(x)[0], x.shape[1], x.shape[2]
        x = ops.reshape(x, (b, gh * gw, self.hidden_size))
        prefix = [self.cls_token] + ([self.dist_token] if self.dist_token is not None else [])
        prefix = [ops.broadcast_to(ops.cast(t, x.dtype), (b, 1, self.hidden_size)) for t in prefix]
        x = ops.concatenate(prefix + [x], axis=1)
        if self.position_embedding is not None:
            x = x + ops.cast(self.positions(gh, gw), x.dtype)
        if self.register_tokens is not None:
            reg = ops.broadcast_to(ops.cast(self.register_tokens, x.dtype),
                                   (b, self.num_register_tokens, self.hidden_size))
            x = ops.concatenate([x[:, :1], reg, x[:, 1:]], axis=1)
        return self.dropout(x, training=training), (gh, gw)

    def call(self, inputs, training=False):
        x, _ = self.embed(pixel_values_of(inputs), training=training)
        for block in self.blocks:
            x = block(x, training=training)
        return self.final_norm(x)

    def feature_maps(self, inputs, out_indices=None):
        """Multi-scale-style features: the patch tokens after each selected block (default: every
        block; the last is final-normed), as (batch, grid_h, grid_w, hidden) maps."""
        x, (gh, gw) = self.embed(pixel_values_of(inputs))
        out_indices = range(self.num_layers) if out_indices is None else out_indices
        outs = []
        for i, block in enumerate(self.blocks):
            x = block(x)
            if i in out_indices:
                h = self.final_norm(x) if i == self.num_layers - 1 else x
                outs.append(ops.reshape(h[:, self.num_prefix_tokens:], (-1, gh, gw, self.hidden_size)))
        return outs

    # --- HF conversion (config.json: ViTSpec) -------------------------------------------------
    def block_names(self):
        return self.hf_names

    def embedding_rules(self):
        r = [Rule("embeddings.cls_token", self.cls_token),
             *conv_rules("embeddings.patch_embeddings.projection", self.patch_embedding.projection)]
        if self.position_embedding is not None:
            r.append(Rule("embeddings.position_embeddings", self.position_embedding))
        if self.dist_token is not None:
            r.append(Rule("embeddings.distillation_token", self.dist_token))
        if self.register_tokens is not None:
            r.append(Rule("embeddings.register_tokens", self.register_tokens))
        if self.mask_embedding is not None:
            r.append(Rule("embeddings.mask_token", self.mask_embedding))
        return r

    def weight_rules(self):
        r = self.embedding_rules()
        n = self.block_names()
        for i, b in enumerate(self.blocks):
            p = f"encoder.layer.{i}."
            a = b.attention
            for ours, dense in (("query", a.query), ("key", a.key), ("value", a.value), ("output", a.output_dense),
                                ("fc1", b.fc1), ("fc2", b.fc2)):
                rules = dense_rules(p + n[ours], dense)
                r += rules[:1] if ours == "key" and not self.key_bias else rules
            r += norm_rules(p + n["norm1"], b.norm1) + norm_rules(p + n["norm2"], b.norm2)
            for ours, scale in (("scale1", b.scale1), ("scale2", b.scale2)):
                if scale is not None:
                    r.append(Rule(p + n[ours], scale.gamma))
        return r + norm_rules("layernorm", self.final_norm)

    def get_config(self):
        c = super().get_config()
        c.update(image_size=list(self.image_size), patch_size=list(self.patch_size),
                 hidden_size=self.hidden_size, num_layers=self.num_layers, num_heads=self.num_heads,
                 intermediate_size=self.intermediate_size, num_channels=self.num_channels,
                 hidden_act=self.hidden_act, layer_norm_eps=self.layer_norm_eps, qkv_bias=self.qkv_bias,
                 distillation_token=self.distillation_token, num_register_tokens=self.num_register_tokens,
                 layer_scale=self.layer_scale, mlp=self.mlp, interpolate_antialias=self.interpolate_antialias,
                 mask_token=self.mask_token, key_bias=self.key_bias, absolute_positions=self.absolute_positions,
                 dropout=self.dropout_rate,
                 attention_dropout=self.attention_dropout, initializer_range=self.initializer_range,
                 model_type=self.model_type)
        return c


__all__ = ["ViTSpec", "ViTBackbone", "pixel_values_of", "one_or_pair"]

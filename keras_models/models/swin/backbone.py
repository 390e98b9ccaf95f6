"""Swin Transformer (channels_last): patch embedding (+ optional absolute positions), stages of
shifted-window blocks with patch merging between them, final LayerNorm.
Output: (batch, tokens, C) of the last stage, like Transformers' last_hidden_state;
``pooled`` = mean over tokens; ``feature_maps`` = each stage's (batch, h, w, C) before merging."""

from dataclasses import dataclass

import keras
import numpy as np
from keras import ops

from keras_models.layers.vision_embeddings import PatchEmbedding, conv_rules, dense_rules, norm_rules, resize_grid
from keras_models.layers.window_attention import PatchMerging, SwinBlock
from keras_models.models.backbone import Backbone
from keras_models.models.registry import register_backbone
from keras_models.models.vit.backbone import pixel_values_of
from keras_models.presets.weight_map import Rule
from keras_models.spec import Spec, dim, hf


@dataclass(frozen=True, kw_only=True)
class SwinSpec(Spec):
    embed_dim: int = dim("embed_dim", 96)
    depths: tuple = hf("depths", (2, 2, 6, 2))
    num_heads: tuple = hf("num_heads", (3, 6, 12, 24))
    window_size: int = dim("window_size", 7)
    image_size: int = dim("image_size", 224)
    patch_size: int = dim("patch_size", 4)
    num_channels: int = dim("num_channels", 3)
    mlp_ratio: float = hf("mlp_ratio", 4.0)
    qkv_bias: bool = hf("qkv_bias", True)
    hidden_act: str = hf("hidden_act", "gelu")
    layer_norm_eps: float = hf("layer_norm_eps", 1e-5)
    absolute_positions: bool = hf("use_absolute_embeddings", False)
    dropout: float = hf("hidden_dropout_prob", 0.0)
    attention_dropout: float = hf("attention_probs_dropout_prob", 0.0)
    initializer_range: float = hf("initializer_range", 0.02)


@keras.saving.register_keras_serializable(package="keras_models")
@register_backbone("swin")
class SwinBackbone(Backbone):
    spec_cls = SwinSpec
    verified_backends = ("jax", "torch", "tensorflow")  # parity tests pass on all three
    base_model_prefix = "swin"
    hf_architecture = "SwinModel"
    hf_ignore = ("*relative_position_index",)
    hf_known_unused = ("*pooler*",)

    def __init__(self, embed_dim, depths, num_heads, window_size=7, image_size=224, patch_size=4, num_channels=3,
                 mlp_ratio=4.0, qkv_bias=True, hidden_act="gelu", layer_norm_eps=1e-5, absolute_positions=False,
                 dropout=0.0, attention_dropout=0.0, initializer_range=0.02, **kwargs):
        super().__init__(**kwargs)
        self.embed_dim, self.depths, self.num_heads = embed_dim, list(depths), list(num_heads)
        self.window_size, self.image_size, self.patch_size = window_size, image_size, patch_size
        self.num_channels, self.mlp_ratio, self.qkv_bias, self.hidden_act = num_channels, mlp_ratio, qkv_bias, hidden_act
        self.layer_norm_eps, self.absolute_positions = layer_norm_eps, absolute_positions
        self.dropout_rate, self.attention_dropout, self.initializer_range = dropout, attention_dropout, initializer_range
        common = dict(dtype=self.dtype_policy)
        self.patch_embedding = PatchEmbedding(embed_dim, patch_size, num_channels, name="patch_embedding", **common)
        self.embed_norm = keras.layers.LayerNormalization(epsilon=1e-5, name="embed_norm", **common)
        self.stages, self.merges = [], []
        for i, (depth, heads) in enumerate(zip(depths, num_heads)):
            dim = embed_dim * 2**i
            self.stages.append([self.make_block(i, j, dim, heads, **common) for j in range(depth)])
            self.merges.append(self.make_merge(dim, name=f"merge_{i}", **common) if i < len(depths) - 1 else None)
        self.num_features = embed_dim * 2 ** (len(depths) - 1)
        self.final_norm = keras.layers.LayerNormalization(epsilon=layer_norm_eps, name="final_norm", **common)

    def make_block(self, stage, index, dim, heads, **common):
        ws = self.window_size
        return SwinBlock(dim, heads, ws, 0 if index % 2 == 0 else ws // 2, mlp_ratio=self.mlp_ratio,
                         hidden_act=self.hidden_act, layer_norm_eps=self.layer_norm_eps, qkv_bias=self.qkv_bias,
                         dropout=self.dropout_rate, attention_dropout=self.attention_dropout,
                         name=f"stage_{stage}_block_{index}", **common)

    def make_merge(self, dim, **kwargs):
        return PatchMerging(dim, **kwargs)

    def build(self, input_shape=None):
        self.grid = (self.image_size // self.patch_size,) * 2
        self.position_embedding = (
            self.add_weight(name="position_embedding", shape=(1, self.grid[0] * self.grid[1], self.embed_dim),
                            initializer="zeros") if self.absolute_positions else None)
        self.final_norm.build((None, None, self.num_features))
        self.built = True

    def dummy_inputs(self):
        return {"pixel_values": np.zeros((1, self.image_size, self.image_size, self.num_channels), "float32")}

    def stage_outputs(self, inputs, training=False):
        x = pixel_values_of(inputs)
        p = self.patch_size
        h, w = x.shape[1], x.shape[2]
        if h % p or w % p:
            x = ops.pad(x, ((0, 0), (0, (p - h % p) % p), (0, (p - w % p) % p), (0, 0)))
        x = self.embed_norm(self.patch_embedding(x))
        if self.position_embedding is not None:
            gh, gw = x.shape[1], x.shape[2]
            pos = ops.reshape(self.position_embedding, (1,) + self.grid + (self.embed_dim,))
            x = x + ops.cast(resize_grid(pos, gh, gw), x.dtype)
        outs = []
        for blocks, merge in zip(self.stages, self.merges):
            for b in blocks:
                x = b(x, training=training)
            outs.append(x)
            if merge is not None:
                x = merge(x)
        return outs

    def call(self, inputs, training=False):
        x = self.stage_outputs(inputs, training=training)[-1]
        return self.final_norm(ops.reshape(x, (-1, x.shape[1] * x.shape[2], self.num_features)))

    def feature_maps(self, inputs):
        return self.stage_outputs(inputs)

    def pooled(self, hidden):
        return ops.mean(hidden, axis=1)

    def weight_rules(self):
        r = conv_rules("embeddings.patch_embeddings.projection", self.patch_embedding.projection)
        r += norm_rules("embeddings.norm", self.embed_norm)
        if self.position_embedding is not None:
            r.append(Rule("embeddings.position_embeddings", self.position_embedding))
        for i, (blocks, merge) in enumerate(zip(self.stages, self.merges)):
            for j, b in enumerate(blocks):
                r += self.block_rules(f"encoder.layers.{i}.blocks.{j}.", b)
            if merge is not None:
                q = f"encoder.layers.{i}.downsample."
                r += norm_rules(q + "norm", merge.norm) + dense_rules(q + "reduction", merge.reduction)
        return r + norm_rules("layernorm", self.final_norm)

    def block_rules(self, p, b):
        a = b.attention
        r = []
        for name, dense in (("attention.self.query", a.query), ("attention.self.key", a.key),
                            ("attention.self.value", a.value), ("attention.output.dense", a.output_dense),
                            ("intermediate.dense", b.fc1), ("output.dense", b.fc2)):
            r += dense_rules(p + name, dense)
        r += norm_rules(p + "layernorm_before", b.norm1) + norm_rules(p + "layernorm_after", b.norm2)
        r.append(Rule(p + "attention.self.relative_position_bias_table", b.table))
        return r

    def get_config(self):
        c = super().get_config()
        c.update(embed_dim=self.embed_dim, depths=self.depths, num_heads=self.num_heads,
                 window_size=self.window_size, image_size=self.image_size, patch_size=self.patch_size,
                 num_channels=self.num_channels, mlp_ratio=self.mlp_ratio, qkv_bias=self.qkv_bias,
                 hidden_act=self.hidden_act, layer_norm_eps=self.layer_norm_eps,
                 absolute_positions=self.absolute_positions, dropout=self.dropout_rate,
                 attention_dropout=self.attention_dropout, initializer_range=self.initializer_range)
        return c


class SwinFeatureBackbone(SwinBackbone):
    """Swin as Transformers' ``SwinBackbone`` builds it (the feature tower of UperNet, MaskFormer,
    Mask2Former and OneFormer): every stage keeps its window and shift, even where the feature map
    is smaller than the window (the classification model shrinks them there)."""

    def make_block(self, stage, index, dim, heads, **common):
        ws = self.window_size
        return SwinBlock(dim, heads, ws, 0 if index % 2 == 0 else ws // 2, mlp_ratio=self.mlp_ratio,
                         hidden_act=self.hidden_act, layer_norm_eps=self.layer_norm_eps, qkv_bias=self.qkv_bias,
                         dropout=self.dropout_rate, attention_dropout=self.attention_dropout, fixed_window=True,
                         name=f"stage_{stage}_block_{index}", **common)


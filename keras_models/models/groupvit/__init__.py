"""GroupViT: a CLIP text tower and a grouping vision transformer, projected by small MLPs.

Vision tower (:class:`GroupViTVisionBackbone`, ``groupvit_vision_model``): biased patch
convolution, LayerNorm, learned positions; then stages. A stage appends its learned group tokens
(plus, after the first, a token-mixing MLP of the previous stage's group tokens) to the image
tokens, runs pre-norm transformer blocks over both, then (when it has group tokens) assigns the
image tokens to its groups: the groups are mixed to ``num_output_groups`` tokens, attend to the
image tokens, and each image token is hard-assigned to its best group (one-hot of a softmax over
the groups, as at inference in Transformers: no Gumbel noise), the groups' new features being the
normalised assignment times the values. The output is the final LayerNorm of the last stage's
tokens (batch, groups, hidden); the pooled feature is their mean.

Text tower: CLIP's (``groupvit_text_model``). Each pooled feature is projected by
Linear -> BatchNorm -> ReLU -> Linear (``projection_intermediate_dim``, ``projection_dim``); the
scores are CLIP's. ``segmentation_logits`` (``output_segmentation``) are not computed.
"""

from dataclasses import dataclass

import keras
import numpy as np
from keras import ops

from keras_models.errors import ConfigError
from keras_models.layers.activations import get_activation
from keras_models.layers.attention import Attention
from keras_models.layers.vision_block import VisionBlock
from keras_models.layers.vision_embeddings import PatchEmbedding, conv_rules, dense_rules, norm_rules
from keras_models.models.backbone import SpecBackbone
from keras_models.models.clip.dual import CLIPSpec, DualEncoderBackbone
from keras_models.models.clip.text import CLIPTextSpec, TextTower
from keras_models.models.clip.vision import _square
from keras_models.models.registry import register_backbone, register_task
from keras_models.presets.weight_map import Rule, mount
from keras_models.spec import Spec, const, dim, hf, tower
from keras_models.tasks.zero_shot_image_classifier import ZeroShotImageClassifier

_ser = keras.saving.register_keras_serializable(package="keras_models")
_ALL = ("jax", "torch", "tensorflow")


@dataclass(frozen=True, kw_only=True)
class GroupViTTextSpec(CLIPTextSpec):
    hidden_size: int = dim("hidden_size", 256)
    intermediate_size: int = dim("intermediate_size", 1024)
    num_heads: int = dim("num_attention_heads", 4)
    projection_dim: int | None = const(None)


@_ser
@register_backbone("groupvit_text_model")
class GroupViTTextBackbone(TextTower):
    spec_cls = GroupViTTextSpec
    hf_architecture = "GroupViTTextModel"
    verified_backends = _ALL


def _pair(v):
    return tuple(v) if isinstance(v, (list, tuple)) else (v, v)


@dataclass(frozen=True, kw_only=True)
class GroupViTVisionSpec(Spec):
    hidden_size: int = dim("hidden_size", 384)
    intermediate_size: int = dim("intermediate_size", 1536)
    num_layers: int = dim("num_hidden_layers", 12, doc="written back only: the stages' depths decide")
    depths: tuple = hf("depths", (6, 3, 3))
    num_group_tokens: tuple = hf("num_group_tokens", (64, 8, 0))
    num_output_groups: tuple = hf("num_output_groups", (64, 8, 8))
    num_heads: int = dim("num_attention_heads", 6)
    image_size: int = hf("image_size", 224, read=_square, dim=True)
    patch_size: int = hf("patch_size", 16, read=_square, dim=True)
    num_channels: int = dim("num_channels", 3)
    hidden_act: str = hf("hidden_act", "gelu")
    layer_norm_eps: float = hf("layer_norm_eps", 1e-5)
    attention_dropout: float = hf("attention_dropout", 0.0)
    assign_eps: float = hf("assign_eps", 1.0)
    assign_mlp_ratio: tuple = hf("assign_mlp_ratio", (0.5, 4), read=_pair)
    initializer_range: float = hf("initializer_range", 0.02)

    def validate(self, source="config.json"):
        if not len(self.depths) == len(self.num_group_tokens) == len(self.num_output_groups):
            raise ConfigError(f"{source}: depths, num_group_tokens and num_output_groups must have one entry per "
                              f"stage, got {list(self.depths)}, {list(self.num_group_tokens)}, "
                              f"{list(self.num_output_groups)}")
        if self.hidden_size % self.num_heads:
            raise ConfigError(f"{source}: hidden_size={self.hidden_size} is not divisible by "
                              f"num_attention_heads={self.num_heads}")
        if self.image_size % self.patch_size:
            raise ConfigError(f"{source}: image_size={self.image_size} is not a multiple of "
                              f"patch_size={self.patch_size}")
        for i in range(1, len(self.depths)):
            if self.num_group_tokens[i] and self.num_group_tokens[i - 1] != self.num_output_groups[i - 1]:
                raise ConfigError(f"{source}: stage {i} mixes the previous stage's num_group_tokens="
                                  f"{self.num_group_tokens[i - 1]} group tokens as num_output_groups="
                                  f"{self.num_output_groups[i - 1]}: they must be equal")

    def dummy_inputs(self):
        return {"pixel_values": np.zeros((1, self.image_size, self.image_size, self.num_channels), "float32")}


@_ser
class TokenMLP(keras.layers.Layer):
    """fc1 -> activation -> fc2, over the channels (``mix_tokens=False``) or over the tokens."""

    def __init__(self, intermediate, output, hidden_act, mix_tokens=False, **kwargs):
        super().__init__(**kwargs)
        self.intermediate, self.output_size = intermediate, output
        self.hidden_act, self.mix_tokens = hidden_act, mix_tokens
        self.fc1 = keras.layers.Dense(intermediate, name="fc1", dtype=self.dtype_policy)
        self.fc2 = keras.layers.Dense(output, name="fc2", dtype=self.dtype_policy)
        self.act = get_activation(hidden_act)

    def call(self, x):
        if self.mix_tokens:
            return ops.transpose(self.fc2(self.act(self.fc1(ops.transpose(x, (0, 2, 1))))), (0, 2, 1))
        return self.fc2(self.act(self.fc1(x)))

    def rules(self, p):
        return dense_rules(p + "fc1", self.fc1) + dense_rules(p + "fc2", self.fc2)

    def get_config(self):
        return {**super().get_config(), "intermediate": self.intermediate, "output": self.output_size,
                "hidden_act": self.hidden_act, "mix_tokens": self.mix_tokens}


@_ser
class TokenAssign(keras.layers.Layer):
    """Transformers' ``GroupViTTokenAssign``: (image tokens, group tokens) -> new group tokens."""

    def __init__(self, s, num_group_tokens, num_output_groups, **kwargs):
        super().__init__(**kwargs)
        self.s, self.num_group_tokens, self.num_output_groups = s, num_group_tokens, num_output_groups
        d, common = s.hidden_size, dict(dtype=self.dtype_policy)
        ln = dict(epsilon=s.layer_norm_eps, **common)
        tokens_dim, channels_dim = (int(r * d) for r in s.assign_mlp_ratio)
        self.norm_tokens = keras.layers.LayerNormalization(name="norm_tokens", **ln)
        self.mlp_inter = TokenMLP(tokens_dim, num_output_groups, s.hidden_act, mix_tokens=True, name="mlp_inter",
                                  **common)
        self.norm_post_tokens = keras.layers.LayerNormalization(name="norm_post_tokens", **ln)
        self.norm_x = keras.layers.LayerNormalization(name="norm_x", **ln)
        self.cross_attn = Attention(d, s.num_heads, name="attn", **common)
        self.cross_norm2 = keras.layers.LayerNormalization(name="norm2", **ln)
        self.cross_mlp = TokenMLP(s.intermediate_size, d, s.hidden_act, name="mlp", **common)
        self.cross_norm_post = keras.layers.LayerNormalization(name="norm_post", **ln)
        self.assign_q, self.assign_k, self.assign_v, self.assign_proj = (
            keras.layers.Dense(d, name=n, **common) for n in ("q_proj", "k_proj", "v_proj", "proj"))
        self.norm_new_x = keras.layers.LayerNormalization(name="norm_new_x", **ln)
        self.mlp_channels = TokenMLP(channels_dim, d, s.hidden_act, name="mlp_channels", **common)

    def call(self, image_tokens, group_tokens):
        image_tokens = self.norm_x(image_tokens)
        groups = self.norm_post_tokens(self.mlp_inter(self.norm_tokens(group_tokens)))
        groups = groups + self.cross_attn(groups, context=image_tokens)
        groups = self.cross_norm_post(groups + self.cross_mlp(self.cross_norm2(groups)))
        raw = ops.matmul(self.assign_q(groups), ops.transpose(self.assign_k(image_tokens), (0, 2, 1)))
        raw = raw * self.s.hidden_size ** -0.5  # (batch, groups, image tokens)
        soft = ops.softmax(raw, axis=-2)  # each image token over the groups
        best = ops.one_hot(ops.argmax(soft, axis=-2), self.num_output_groups, dtype=soft.dtype)
        hard = ops.transpose(best, (0, 2, 1))
        attn = hard - soft + soft  # Transformers' straight-through form, kept for equal rounding
        attn = attn / (ops.sum(attn, axis=-1, keepdims=True) + self.s.assign_eps)
        new = self.assign_proj(ops.matmul(attn, self.assign_v(image_tokens))) + groups
        return new + self.mlp_channels(self.norm_new_x(new))

    def rules(self, p):
        a = self.cross_attn
        r = norm_rules(p + "norm_tokens", self.norm_tokens) + self.mlp_inter.rules(p + "mlp_inter.")
        r += norm_rules(p + "norm_post_tokens", self.norm_post_tokens) + norm_rules(p + "norm_x", self.norm_x)
        for n, layer in (("q_proj", a.query), ("k_proj", a.key), ("v_proj", a.value), ("out_proj", a.output_dense)):
            r += dense_rules(p + "pre_assign_attn.attn." + n, layer)
        r += norm_rules(p + "pre_assign_attn.norm2", self.cross_norm2)
        r += self.cross_mlp.rules(p + "pre_assign_attn.mlp.")
        r += norm_rules(p + "pre_assign_attn.norm_post", self.cross_norm_post)
        for n, layer in (("q_proj", self.assign_q), ("k_proj", self.assign_k), ("v_proj", self.assign_v),
                         ("proj", self.assign_proj)):
            r += dense_rules(p + "assign." + n, layer)
        return r + norm_rules(p + "norm_new_x", self.norm_new_x) + self.mlp_channels.rules(p + "mlp_channels.")


@_ser
class GroupingStage(keras.layers.Layer):
    """(image tokens, previous group tokens) -> (image or group tokens, this stage's group tokens)."""

    def __init__(self, s, index, **kwargs):
        super().__init__(**kwargs)
        self.s, self.index = s, index
        d, common = s.hidden_size, dict(dtype=self.dtype_policy)
        self.num_groups = s.num_group_tokens[index]
        prev = s.num_output_groups[index - 1] if index else 0
        self.blocks = [VisionBlock(d, s.num_heads, s.intermediate_size, hidden_act=s.hidden_act,
                                   layer_norm_eps=s.layer_norm_eps, attention_dropout=s.attention_dropout,
                                   name=f"block_{j}", **common) for j in range(s.depths[index])]
        self.assign = (TokenAssign(s, self.num_groups, s.num_output_groups[index], name="downsample", **common)
                       if self.num_groups else None)
        self.projector_norm = self.projector = None
        if self.num_groups and prev:
            self.projector_norm = keras.layers.LayerNormalization(epsilon=s.layer_norm_eps, name="projector_norm",
                                                                  **common)
            self.projector = TokenMLP(d // 2, self.num_groups, s.hidden_act, mix_tokens=True, name="projector",
                                      **common)

    def build(self, input_shape):
        self.group_token = (self.add_weight(name="group_token", shape=(1, self.num_groups, self.s.hidden_size),
                                            initializer="zeros") if self.num_groups else None)
        self.built = True

    def call(self, x, prev_groups, training=False):
        if not self.num_groups:
            for block in self.blocks:
                x = block(x, training=training)
            return x, x[:, :0]
        shape = (ops.shape(x)[0], self.num_groups, ops.shape(x)[-1])
        groups = ops.broadcast_to(ops.cast(self.group_token, x.dtype), shape)
        if self.projector is not None:
            groups = groups + self.projector(self.projector_norm(prev_groups))
        n = ops.shape(x)[1]
        both = ops.concatenate([x, groups], axis=1)
        for block in self.blocks:
            both = block(both, training=training)
        x, groups = both[:, :n], both[:, n:]
        return self.assign(x, groups), groups

    def rules(self, p):
        r = []
        if self.group_token is not None:
            r.append(Rule(p + "group_token", self.group_token))
        for j, b in enumerate(self.blocks):
            q, a = f"{p}layers.{j}.", b.attention
            for n, layer in (("self_attn.q_proj", a.query), ("self_attn.k_proj", a.key),
                             ("self_attn.v_proj", a.value), ("self_attn.out_proj", a.output_dense),
                             ("mlp.fc1", b.fc1), ("mlp.fc2", b.fc2)):
                r += dense_rules(q + n, layer)
            r += norm_rules(q + "layer_norm1", b.norm1) + norm_rules(q + "layer_norm2", b.norm2)
        if self.assign is not None:
            r += self.assign.rules(p + "downsample.")
        if self.projector is not None:
            r += norm_rules(p + "group_projector.0", self.projector_norm)
            r += self.projector.rules(p + "group_projector.1.")
        return r


@_ser
@register_backbone("groupvit_vision_model")
class GroupViTVisionBackbone(SpecBackbone):
    """(batch, last stage's groups, hidden), LayerNorm-ed; ``pooled`` = the mean over the groups."""

    spec_cls = GroupViTVisionSpec
    base_model_prefix = "vision_model"
    hf_architecture = "GroupViTVisionModel"
    hf_ignore = ("*position_ids",)
    verified_backends = _ALL

    def __init__(self, spec=None, **kwargs):
        super().__init__(spec, **kwargs)
        s, common = self.spec, dict(dtype=self.dtype_policy)
        self.hidden_size = s.hidden_size
        self.grid = s.image_size // s.patch_size
        self.patch_embedding = PatchEmbedding(s.hidden_size, s.patch_size, s.num_channels, use_bias=True,
                                              name="patch_embedding", **common)
        self.embed_norm = keras.layers.LayerNormalization(epsilon=s.layer_norm_eps, name="embed_norm", **common)
        self.stages = [GroupingStage(s, i, name=f"stage_{i}", **common) for i in range(len(s.depths))]
        self.final_norm = keras.layers.LayerNormalization(epsilon=s.layer_norm_eps, name="final_norm", **common)

    def build(self, input_shape=None):
        s = self.spec
        self.position_embedding = self.add_weight(name="position_embedding",
                                                  shape=(1, self.grid * self.grid, s.hidden_size),
                                                  initializer=keras.initializers.TruncatedNormal(stddev=0.02))
        self.patch_embedding.build((None, None, None, s.num_channels))
        self.embed_norm.build((None, None, s.hidden_size))
        self.built = True

    def call(self, inputs, training=False):
        pixels = inputs["pixel_values"] if isinstance(inputs, dict) else inputs
        x = self.patch_embedding(pixels)
        b, gh, gw = ops.shape(x)[0], x.shape[1], x.shape[2]
        if (gh, gw) != (self.grid, self.grid):
            raise ValueError(f"pixel_values of {gh * self.spec.patch_size}x{gw * self.spec.patch_size} pixels: "
                             f"this model takes {self.spec.image_size}x{self.spec.image_size}")
        x = self.embed_norm(ops.reshape(x, (b, gh * gw, self.hidden_size)))
        x = x + ops.cast(self.position_embedding, x.dtype)
        groups = x[:, :0]
        for stage in self.stages:
            x, groups = stage(x, groups, training=training)
        return self.final_norm(x)

    def pooled(self, hidden, inputs=None):
        return ops.mean(hidden, axis=1)

    def weight_rules(self):
        r = conv_rules("embeddings.patch_embeddings.projection", self.patch_embedding.projection)
        r += norm_rules("embeddings.layernorm", self.embed_norm)
        r.append(Rule("embeddings.position_embeddings", self.position_embedding))
        for i, stage in enumerate(self.stages):
            r += stage.rules(f"encoder.stages.{i}.")
        return r + norm_rules("layernorm", self.final_norm)


@_ser
class ProjectionMLP(keras.layers.Layer):
    """Linear -> BatchNorm (running statistics at inference) -> ReLU -> Linear."""

    def __init__(self, intermediate, output, **kwargs):
        super().__init__(**kwargs)
        self.intermediate, self.output_size = intermediate, output
        common = dict(dtype=self.dtype_policy)
        self.dense0 = keras.layers.Dense(intermediate, name="dense0", **common)
        self.norm = keras.layers.BatchNormalization(epsilon=1e-5, momentum=0.9, name="norm", **common)
        self.dense1 = keras.layers.Dense(output, name="dense1", **common)

    def build(self, input_shape):
        self.dense0.build(input_shape)
        self.norm.build((None, self.intermediate))
        self.dense1.build((None, self.intermediate))
        self.built = True

    def call(self, x, training=False):
        return self.dense1(ops.relu(self.norm(self.dense0(x), training=training)))

    def rules(self, p):
        return (dense_rules(p + ".0", self.dense0, base=False) + norm_rules(p + ".1", self.norm, base=False)
                + dense_rules(p + ".3", self.dense1, base=False))

    def get_config(self):
        return {**super().get_config(), "intermediate": self.intermediate, "output": self.output_size}


@dataclass(frozen=True, kw_only=True)
class GroupViTSpec(CLIPSpec):
    text_config: dict = tower("text_config", "groupvit_text_model")
    vision_config: dict = tower("vision_config", "groupvit_vision_model")
    mlp_projection_dim: int = dim("projection_dim", 256)
    projection_intermediate_dim: int = dim("projection_intermediate_dim", 4096)
    projection_dim: int | None = const(None, doc="no linear projections: see mlp_projection_dim")


@_ser
@register_backbone("groupvit")
class GroupViTBackbone(DualEncoderBackbone):
    spec_cls = GroupViTSpec
    hf_architecture = "GroupViTModel"
    hf_ignore = ("*position_ids", "*token_type_ids", "*num_batches_tracked")
    verified_backends = _ALL

    def __init__(self, spec=None, **kwargs):
        super().__init__(spec, **kwargs)
        s, common = self.spec, dict(dtype=self.dtype_policy)
        self.text_projection = ProjectionMLP(s.projection_intermediate_dim, s.mlp_projection_dim,
                                             name="text_projection", **common)
        self.visual_projection = ProjectionMLP(s.projection_intermediate_dim, s.mlp_projection_dim,
                                               name="visual_projection", **common)

    def weight_rules(self):
        r = mount(self.text_model.weight_rules(), "text_model.")
        r += mount(self.vision_model.weight_rules(), "vision_model.")
        return r + self.text_projection.rules("text_projection") + self.visual_projection.rules("visual_projection")


@_ser
@register_task(GroupViTBackbone, "ZeroShotImageClassifier", ("GroupViTModel",))
class GroupViTZeroShotImageClassifier(ZeroShotImageClassifier):
    pass


__all__ = ["GroupViTTextSpec", "GroupViTTextBackbone", "GroupViTVisionSpec", "TokenMLP", "TokenAssign",
           "GroupingStage", "GroupViTVisionBackbone", "ProjectionMLP", "GroupViTSpec", "GroupViTBackbone",
           "GroupViTZeroShotImageClassifier"]

"""Swin Transformer V2: Swin with cosine window attention (learned, clamped logit scale), a
continuous position-bias MLP, residual post-norm blocks and norm-after patch merging; all are
named switches of :class:`~keras_models.layers.window_attention.SwinBlock`.

Window sizes are fixed at construction from ``image_size`` like Transformers: a stage whose map
(at the checkpoint resolution) is no larger than ``window_size`` uses a window of its size and no
shift, at every input resolution."""

from dataclasses import dataclass

import keras

from keras_models.errors import ConfigError
from keras_models.layers.vision_embeddings import dense_rules, norm_rules
from keras_models.layers.window_attention import PatchMerging, SwinBlock
from keras_models.models.registry import register_backbone
from keras_models.models.swin.backbone import SwinBackbone, SwinSpec
from keras_models.presets.weight_map import TRANSPOSE, Reshape, Rule
from keras_models.spec import const, hf

# Transformers' Swinv2SelfAttention adds the shifted-window mask twice (-100 each): -200 in all.
SWINV2_SHIFT_MASK = -200.0


@dataclass(frozen=True, kw_only=True)
class Swinv2Spec(SwinSpec):
    # Transformers' Swinv2 cannot run absolute positions either (its table has one position too many)
    unsupported = {"use_absolute_embeddings": (False,)}

    pretrained_window_sizes: tuple = hf("pretrained_window_sizes", (0, 0, 0, 0))
    shift_mask_value: float = const(SWINV2_SHIFT_MASK)


@keras.saving.register_keras_serializable(package="keras_models")
@register_backbone("swinv2")
class Swinv2Backbone(SwinBackbone):
    spec_cls = Swinv2Spec
    base_model_prefix = "swinv2"
    hf_architecture = "Swinv2Model"
    verified_backends = ("jax", "torch", "tensorflow")

    def __init__(self, *args, pretrained_window_sizes=(0, 0, 0, 0), shift_mask_value=SWINV2_SHIFT_MASK, **kwargs):
        if kwargs.get("absolute_positions"):
            raise ConfigError("swinv2: use_absolute_embeddings=True is not supported (Transformers' Swinv2 "
                              "cannot run it either: its table has one position too many)")
        self._pretrained_window_sizes = list(pretrained_window_sizes)
        self._shift_mask_value = shift_mask_value
        super().__init__(*args, **kwargs)

    @property
    def pretrained_window_sizes(self):
        return self._pretrained_window_sizes

    def make_block(self, stage, index, dim, heads, **common):
        grid = (self.image_size // self.patch_size) // 2**stage
        ws = min(grid, self.window_size)
        shift = 0 if index % 2 == 0 or grid <= ws else self.window_size // 2
        pws = self._pretrained_window_sizes[stage] if stage < len(self._pretrained_window_sizes) else 0
        return SwinBlock(dim, heads, ws, shift, mlp_ratio=self.mlp_ratio, hidden_act=self.hidden_act,
                         layer_norm_eps=self.layer_norm_eps, qkv_bias=self.qkv_bias, dropout=self.dropout_rate,
                         attention_dropout=self.attention_dropout, cosine_attention=True,
                         continuous_position_bias=True, pretrained_window_size=pws, res_post_norm=True,
                         fixed_window=True, shift_mask_value=self._shift_mask_value,
                         name=f"stage_{stage}_block_{index}", **common)

    def make_merge(self, dim, **kwargs):
        return PatchMerging(dim, norm_after=True, **kwargs)

    def block_rules(self, p, b):
        a = b.attention
        s = p + "attention.self."
        r = dense_rules(s + "query", a.query) + [Rule(s + "key.weight", a.key.kernel, TRANSPOSE)]
        r += dense_rules(s + "value", a.value) + dense_rules(p + "attention.output.dense", a.output_dense)
        r += dense_rules(p + "intermediate.dense", b.fc1) + dense_rules(p + "output.dense", b.fc2)
        r += norm_rules(p + "layernorm_before", b.norm1) + norm_rules(p + "layernorm_after", b.norm2)
        h = b.num_heads
        r.append(Rule(s + "logit_scale", b.logit_scale, Reshape((h, 1, 1), (h,))))
        r += dense_rules(s + "continuous_position_bias_mlp.0", b.cpb_fc1)
        r += dense_rules(s + "continuous_position_bias_mlp.2", b.cpb_fc2)
        return r

    def get_config(self):
        c = super().get_config()
        c.update(pretrained_window_sizes=self._pretrained_window_sizes, shift_mask_value=self._shift_mask_value)
        return c


__all__ = ["Swinv2Spec", "Swinv2Backbone"]

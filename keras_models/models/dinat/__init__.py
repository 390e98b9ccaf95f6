"""NAT and DiNAT (neighborhood attention transformers), channels_last.

A stride-4 stem of two 3x3 stride-2 convolutions + LayerNorm, then stages of pre-norm blocks whose
attention is 2-D neighborhood attention (:mod:`keras_models.layers.neighborhood_attention`: a
``kernel_size`` window per query, relative position bias) -- dilated per block in DiNAT
(``dilations``, one list per stage) -- with a 3x3 stride-2 convolution + LayerNorm between stages,
optional layer scale (``layer_scale_init_value`` > 0), final LayerNorm.

Output: (batch, h, w, C) of the last stage after the final LayerNorm (Transformers'
``last_hidden_state``, which is channels_last already); ``pooled`` = mean over positions.
``feature_maps`` = the ``out_features`` / ``out_indices`` maps (``stem`` = the embedding, ``stageN``
= stage N before downsampling), channels_last; from a ``NatBackbone`` / ``DinatBackbone``
checkpoint each goes through its ``hidden_states_norms`` LayerNorm, as Transformers' backbone
returns them, and calling the model returns the last of them (such a checkpoint has no final norm).
"""

from dataclasses import dataclass

import keras
import numpy as np
from keras import ops

from keras_models.errors import ConfigError
from keras_models.layers.vision_block import VisionBlock
from keras_models.layers.vision_embeddings import dense_rules, norm_rules
from keras_models.models.backbone import SpecBackbone
from keras_models.models.registry import register_backbone, register_task
from keras_models.models.vision_hier import TorchConv, layer_norm
from keras_models.models.vit.backbone import pixel_values_of
from keras_models.presets.weight_map import Rule
from keras_models.spec import Spec, const, dim, hf
from keras_models.tasks.image_classifier import ImageClassifier

_ser = keras.saving.register_keras_serializable(package="keras_models")

DINAT_DILATIONS = ((1, 8, 1), (1, 4, 1, 4), (1, 2, 1, 2, 1, 2), (1, 1, 1, 1, 1))  # Transformers' default


def _nested_ints(value):
    return tuple(tuple(int(d) for d in row) for row in value)


@dataclass(frozen=True, kw_only=True)
class NatSpec(Spec):
    """NatConfig / DinatConfig (Transformers' defaults). ``out_indices`` (0 = the stem) come from
    ``out_indices`` or ``out_features``; ``feature_norms`` from ``architectures`` (a
    ``NatBackbone`` / ``DinatBackbone`` checkpoint)."""

    embed_dim: int = dim("embed_dim", 64)
    depths: tuple = hf("depths", (3, 4, 6, 5))
    num_heads: tuple = hf("num_heads", (2, 4, 8, 16))
    kernel_size: int = dim("kernel_size", 7)
    num_channels: int = dim("num_channels", 3)
    mlp_ratio: float = hf("mlp_ratio", 3.0)
    qkv_bias: bool = hf("qkv_bias", True)
    hidden_act: str = hf("hidden_act", "gelu")
    layer_norm_eps: float = hf("layer_norm_eps", 1e-5)
    layer_scale_init_value: float = hf("layer_scale_init_value", 0.0)
    dropout: float = hf("hidden_dropout_prob", 0.0)
    attention_dropout: float = hf("attention_probs_dropout_prob", 0.0)
    initializer_range: float = hf("initializer_range", 0.02)
    out_indices: tuple | None = hf("out_indices", None)
    dilations: tuple | None = const(None, doc="NAT: no dilation")
    feature_norms: bool = const(False, doc="a NatBackbone / DinatBackbone checkpoint (from architectures)")

    unsupported = {"patch_size": (4, [4, 4])}  # Transformers implements only the stride-4 stem
    backbone_architectures = ("NatBackbone",)

    @classmethod
    def adjust_from_hf(cls, config, values, source):
        n = len(values.get("depths", cls.depths))
        names = ["stem"] + [f"stage{i}" for i in range(1, n + 1)]
        if config.get("out_indices") is None and config.get("out_features") is not None:
            feats = config["out_features"]
            bad = [f for f in feats if f not in names] if isinstance(feats, list) else feats
            if bad:
                raise ConfigError(f"{source}: out_features {bad!r} are not among the stages {names}")
            values["out_indices"] = tuple(names.index(f) for f in feats)
        if any(a in cls.backbone_architectures for a in config.get("architectures") or ()):
            values["feature_norms"] = True
        return values

    def validate(self, source="config.json"):
        n = len(self.depths)
        if n < 1 or len(self.num_heads) != n:
            raise ConfigError(f"{source}: num_heads={list(self.num_heads)} needs one entry per stage "
                              f"(depths={list(self.depths)})")
        for i, heads in enumerate(self.num_heads):
            if heads < 1 or (self.embed_dim * 2 ** i) % heads:
                raise ConfigError(f"{source}: num_heads[{i}]={heads} must divide stage {i + 1}'s width "
                                  f"{self.embed_dim * 2 ** i} (embed_dim * 2^{i})")
        if self.kernel_size % 2 == 0:
            raise ConfigError(f"{source}: kernel_size={self.kernel_size}: neighborhood attention needs an odd kernel")
        if self.dilations is not None:
            if len(self.dilations) != n or any(len(row) != d for row, d in zip(self.dilations, self.depths)):
                raise ConfigError(f"{source}: dilations={[list(r) for r in self.dilations]} needs one value per "
                                  f"layer of each stage (depths={list(self.depths)})")
            if any(d < 1 for row in self.dilations for d in row):
                raise ConfigError(f"{source}: dilations must be >= 1, got {[list(r) for r in self.dilations]}")
        if self.out_indices is not None and any(not 0 <= i <= n for i in self.out_indices):
            raise ConfigError(f"{source}: out_indices={list(self.out_indices)} must name stages 0..{n} (0 = stem)")

    def adjust_to_hf(self, out):
        if self.out_indices is not None:
            names = ["stem"] + [f"stage{i}" for i in range(1, len(self.depths) + 1)]
            out["out_features"] = [names[i] for i in self.out_indices]
        return out

    def dummy_inputs(self):
        return {"pixel_values": np.zeros((1, 32, 32, self.num_channels), "float32")}

    def stage_dilations(self):
        return self.dilations or tuple((1,) * d for d in self.depths)


@dataclass(frozen=True, kw_only=True)
class DinatSpec(NatSpec):
    dilations: tuple | None = hf("dilations", None, read=_nested_ints)
    backbone_architectures = ("DinatBackbone",)

    @classmethod
    def adjust_from_hf(cls, config, values, source):
        values = super().adjust_from_hf(config, values, source)
        if values.get("dilations") is None:
            values["dilations"] = DINAT_DILATIONS
        return values


@_ser
@register_backbone("nat")
class NatBackbone(SpecBackbone):
    spec_cls = NatSpec
    base_model_prefix = "nat"
    hf_architecture = "NatModel"
    verified_backends = ("jax", "torch", "tensorflow")  # tests/vision/test_dinat.py

    def __init__(self, spec=None, **kwargs):
        super().__init__(spec, **kwargs)
        s, common = self.spec, dict(dtype=self.dtype_policy)
        self.initializer_range = s.initializer_range
        n = len(s.depths)
        dims = [s.embed_dim * 2 ** i for i in range(n)]
        self.num_features = dims[-1]
        self.stem = [TorchConv(s.embed_dim // 2, 3, strides=2, padding=1, name="stem_conv1", **common),
                     TorchConv(s.embed_dim, 3, strides=2, padding=1, name="stem_conv2", **common)]
        self.stem_norm = layer_norm("stem_norm", **common)  # Transformers' default eps, not layer_norm_eps
        scale = s.layer_scale_init_value if s.layer_scale_init_value > 0 else None
        self.stages = [[VisionBlock(dims[i], s.num_heads[i], int(s.mlp_ratio * dims[i]), hidden_act=s.hidden_act,
                                    layer_norm_eps=s.layer_norm_eps, qkv_bias=s.qkv_bias, layer_scale=scale,
                                    dropout=s.dropout, attention_dropout=s.attention_dropout,
                                    neighborhood=(s.kernel_size, dilation), stacked_layer_scale=True,
                                    name=f"stage_{i}_layer_{j}", **common)
                        for j, dilation in enumerate(s.stage_dilations()[i])] for i in range(n)]
        self.downs = [TorchConv(dims[i + 1], 3, strides=2, padding=1, use_bias=False, name=f"down_{i}", **common)
                      for i in range(n - 1)]
        self.down_norms = [layer_norm(f"down_norm_{i}", **common) for i in range(n - 1)]
        self.final_norm = None if s.feature_norms else layer_norm("final_norm", epsilon=s.layer_norm_eps, **common)
        self.out_indices = tuple(s.out_indices) if s.out_indices is not None else (n,)
        widths = [s.embed_dim] + dims
        self.feature_norms = ([layer_norm(f"feature_norm_{i}", **common) for i in self.out_indices]
                              if s.feature_norms else None)
        self._widths = widths

    def build(self, input_shape=None):
        c = self.spec.num_channels
        self.stem[0].build((None, None, None, c))
        self.stem[1].build((None, None, None, self.spec.embed_dim // 2))
        self.stem_norm.build((None, None, None, self.spec.embed_dim))
        for i, blocks in enumerate(self.stages):
            for block in blocks:
                block.build((None, None, None, self._widths[i + 1]))
        for i, (down, norm) in enumerate(zip(self.downs, self.down_norms)):
            down.build((None, None, None, self._widths[i + 1]))
            norm.build((None, None, None, self._widths[i + 2]))
        if self.final_norm is not None:
            self.final_norm.build((None, None, None, self.num_features))
        for norm, i in zip(self.feature_norms or (), self.out_indices):
            norm.build((None, None, None, self._widths[i]))
        self.built = True

    def stage_outputs(self, inputs, training=False):
        """[the embedding, each stage's map before its downsampling] (batch, h, w, C)."""
        x = pixel_values_of(inputs)
        x = self.stem_norm(self.stem[1](self.stem[0](x)))
        outs = [x]
        for i, blocks in enumerate(self.stages):
            for block in blocks:
                x = block(x, training=training)
            outs.append(x)
            if i < len(self.downs):
                x = self.down_norms[i](self.downs[i](x))
        return outs

    def feature_maps(self, inputs, training=False):
        outs = self.stage_outputs(inputs, training=training)
        maps = [outs[i] for i in self.out_indices]
        if self.feature_norms is not None:
            maps = [norm(m) for norm, m in zip(self.feature_norms, maps)]
        return maps

    def call(self, inputs, training=False):
        if self.final_norm is None:
            return self.feature_maps(inputs, training=training)[-1]
        return self.final_norm(self.stage_outputs(inputs, training=training)[-1])

    def pooled(self, hidden):
        return ops.mean(hidden, axis=(1, 2))

    def weight_rules(self):
        r = self.stem[0].rules("embeddings.patch_embeddings.projection.0")
        r += self.stem[1].rules("embeddings.patch_embeddings.projection.1") + norm_rules("embeddings.norm", self.stem_norm)
        for i, blocks in enumerate(self.stages):
            for j, block in enumerate(blocks):
                r += self.block_rules(f"encoder.levels.{i}.layers.{j}.", block)
            if i < len(self.downs):
                r += self.downs[i].rules(f"encoder.levels.{i}.downsample.reduction")
                r += norm_rules(f"encoder.levels.{i}.downsample.norm", self.down_norms[i])
        if self.final_norm is not None:
            r += norm_rules("layernorm", self.final_norm)
        names = ["stem"] + [f"stage{i}" for i in range(1, len(self.stages) + 1)]
        for norm, i in zip(self.feature_norms or (), self.out_indices):
            r += norm_rules(f"hidden_states_norms.{names[i]}", norm, base=False)
        return r

    @staticmethod
    def block_rules(p, block):
        a, r = block.attention, []
        for name, dense in (("attention.self.query", a.query), ("attention.self.key", a.key),
                            ("attention.self.value", a.value), ("attention.output.dense", a.output_dense),
                            ("intermediate.dense", block.fc1), ("output.dense", block.fc2)):
            r += dense_rules(p + name, dense)
        r += norm_rules(p + "layernorm_before", block.norm1) + norm_rules(p + "layernorm_after", block.norm2)
        r.append(Rule(p + "attention.self.rpb", a.rpb))
        if block.layer_scale_weight is not None:
            r.append(Rule(p + "layer_scale_parameters", block.layer_scale_weight))
        return r

    def config_to_hf(self):
        out = super().config_to_hf()
        if self.spec.feature_norms:
            out["architectures"] = [self.spec_cls.backbone_architectures[0]]
        return out


@_ser
@register_backbone("dinat")
class DinatBackbone(NatBackbone):
    spec_cls = DinatSpec
    base_model_prefix = "dinat"
    hf_architecture = "DinatModel"
    verified_backends = ("jax", "torch", "tensorflow")  # tests/vision/test_dinat.py


@_ser
@register_task(NatBackbone, "ImageClassifier", ("NatForImageClassification",))
class NatImageClassifier(ImageClassifier):
    pooling = "backbone"


@_ser
@register_task(DinatBackbone, "ImageClassifier", ("DinatForImageClassification",))
class DinatImageClassifier(ImageClassifier):
    pooling = "backbone"


__all__ = ["NatSpec", "DinatSpec", "NatBackbone", "DinatBackbone", "NatImageClassifier", "DinatImageClassifier"]

"""MaskFormer (model_type ``maskformer``): per-pixel embeddings and a set of query masks.

* Backbone (``backbone_config``, checkpoint prefix ``model.pixel_level_module.encoder.``): a Swin
  (``swin`` / ``maskformer-swin``: Transformers' MaskFormerSwinBackbone, windows kept and padded at
  every resolution, a LayerNorm per stage under ``hidden_states_norms.{i}``) read at all four
  stages, or a ResNet read at its ``out_features`` stages.
* Pixel decoder: an FPN -- a 3x3 conv + GroupNorm(32) + ReLU on the deepest map, then for each
  shallower map a 1x1 conv + GroupNorm lateral, the coarser map added after nearest upsampling and
  a 3x3 conv + GroupNorm + ReLU -- and a 3x3 ``mask_projection`` of the finest level
  (``pixel_decoder_last_hidden_state``, mask_feature_size channels, H/4).
* Transformer module: the deepest map (1x1-projected to the decoder's width when they differ) with
  DETR's normalised sine positions, read by a DETR decoder (``decoder_config``, post-norm layers,
  learned query positions, zero initial queries; ``auxiliary_loss`` LayerNorms every layer's output).

Calling the backbone returns a dict: ``last_hidden_state`` = ``transformer_decoder_last_hidden_state``
(batch, queries, d_model), ``pixel_decoder_last_hidden_state`` (batch, H/4, W/4, mask_feature_size),
``encoder_last_hidden_state`` (the deepest map), ``encoder_hidden_states`` (every backbone map) and
``pixel_decoder_hidden_states`` (the FPN levels, coarse to fine), all channels_last. The task
(:class:`MaskFormerUniversalSegmenter`) adds the class head (``class_predictor``, num_labels + 1)
and the 3-layer ``mask_embedder`` whose query embeddings dot the pixel embeddings.
``pixel_mask`` does not change the outputs (as in Transformers).
"""

import dataclasses
from dataclasses import dataclass

import keras
import numpy as np
from keras import ops

from keras_models.errors import ConfigError
from keras_models.layers.vision_embeddings import conv_rules, dense_rules, norm_rules
from keras_models.models.backbone import SpecBackbone
from keras_models.models.detr.layers import DetrDecoderLayer, sine_positions
from keras_models.models.registry import register_backbone, register_task
from keras_models.models.swin.backbone import SwinBackbone
from keras_models.models.swin.backbone import SwinFeatureBackbone
from keras_models.models.upernet import out_stages
from keras_models.presets.weight_map import Rule
from keras_models.spec import Spec, build_tower, dim, hf, nested
from keras_models.tasks.object_detector import PredictionMLP
from keras_models.tasks.universal_segmenter import UniversalSegmenter, mask_logits

_ser = keras.saving.register_keras_serializable(package="keras_models")
_ALL = ("jax", "torch", "tensorflow")
SWINS = ("swin", "maskformer-swin")
# Transformers' default backbone (MaskFormerConfig without backbone_config): a Swin-B at 384
DEFAULT_SWIN = {"model_type": "swin", "depths": [2, 2, 18, 2], "drop_path_rate": 0.3, "image_size": 384,
                "embed_dim": 128, "num_heads": [4, 8, 16, 32], "window_size": 12,
                "out_features": ["stage1", "stage2", "stage3", "stage4"]}


@dataclass(frozen=True, kw_only=True)
class MaskFormerDecoderSpec(Spec):
    """The DETR config (``decoder_config``) of which MaskFormer uses the decoder."""

    ignored = ("encoder_layers", "encoder_ffn_dim", "encoder_attention_heads", "backbone_config", "use_timm_backbone",
               "backbone", "position_embedding_type", "encoder_layerdrop", "decoder_layerdrop")
    d_model: int = dim("d_model", 256)
    num_queries: int = dim("num_queries", 100)
    decoder_layers: int = dim("decoder_layers", 6)
    decoder_attention_heads: int = dim("decoder_attention_heads", 8)
    decoder_ffn_dim: int = dim("decoder_ffn_dim", 2048)
    activation_function: str = hf("activation_function", "relu")
    auxiliary_loss: bool = hf("auxiliary_loss", False, doc="LayerNorm after every decoder layer (changes outputs)")
    dropout: float = hf("dropout", 0.1)
    attention_dropout: float = hf("attention_dropout", 0.0)
    activation_dropout: float = hf("activation_dropout", 0.0)
    init_std: float = hf("init_std", 0.02)

    def validate(self, source="config.json"):
        if self.d_model % self.decoder_attention_heads or self.d_model % 2:
            raise ConfigError(f"{source}: d_model={self.d_model} must be even and divisible by "
                              f"decoder_attention_heads={self.decoder_attention_heads}")

    def adjust_to_hf(self, out):
        out["model_type"] = "detr"
        return out


@dataclass(frozen=True, kw_only=True)
class MaskFormerSpec(Spec):
    unsupported = {"use_auxiliary_loss": (False, None)}  # logits from the per-layer decoder states
    ignored = ("no_object_weight", "dice_weight", "cross_entropy_weight", "mask_weight", "output_auxiliary_logits",
               "init_xavier_std")

    backbone_config: dict = hf("backbone_config", None, doc="a Swin (swin / maskformer-swin) or ResNet config")
    decoder_config: MaskFormerDecoderSpec = nested("decoder_config", MaskFormerDecoderSpec, required=False)
    fpn_feature_size: int = dim("fpn_feature_size", 256)
    mask_feature_size: int = dim("mask_feature_size", 256)
    use_auxiliary_loss: bool = hf("use_auxiliary_loss", False)
    init_std: float = hf("init_std", 0.02)

    @classmethod
    def adjust_from_hf(cls, config, values, source):
        if values.get("backbone_config") is None:
            values["backbone_config"] = dict(DEFAULT_SWIN)
        if values.get("decoder_config") is None:
            values["decoder_config"] = MaskFormerDecoderSpec.from_hf({}, f"{source} [decoder_config]")
        return values

    def validate(self, source="config.json"):
        b = self.backbone_config
        if not isinstance(b, dict):
            raise ConfigError(f"{source}: backbone_config must be an object, got {type(b).__name__}")
        kind = b.get("model_type")
        if kind not in SWINS + ("resnet",):
            raise ConfigError(f"{source}: backbone_config model_type {kind!r} is not implemented for MaskFormer "
                              f"(supported: {list(SWINS) + ['resnet']})")
        if b.get("use_timm_backbone") or b.get("backbone"):
            raise ConfigError(f"{source}: a timm backbone (backbone / use_timm_backbone) is not implemented for "
                              "MaskFormer")
        stages = tuple(range(1, len(b.get("depths") or (2, 2, 6, 2)) + 1)) if kind in SWINS else \
            out_stages({"depths": (3, 4, 6, 3), **b}, f"{source} [backbone_config]")
        if len(stages) < 2:
            raise ConfigError(f"{source}: backbone_config out_features must name at least two stages (the FPN "
                              f"reads the deepest and the shallower ones), got {stages}")
        if self.fpn_feature_size % 32:
            raise ConfigError(f"{source}: fpn_feature_size={self.fpn_feature_size} must be a multiple of 32 "
                              "(GroupNorm with 32 groups)")

    def adjust_to_hf(self, out):
        out["decoder_config"] = self.decoder_config.to_hf()
        return out

    def dummy_inputs(self):
        c = self.backbone_config.get("num_channels", 3)
        return {"pixel_values": np.zeros((1, 64, 64, c), "float32")}


def nearest_resize(x, out_h, out_w):
    """(batch, h, w, c) -> (batch, out_h, out_w, c), PyTorch's ``interpolate(mode="nearest")``."""
    h, w = int(x.shape[1]), int(x.shape[2])
    if (h, w) == (out_h, out_w):
        return x
    rows = np.minimum(np.floor(np.arange(out_h, dtype=np.float32) * np.float32(h / out_h)).astype("int32"), h - 1)
    cols = np.minimum(np.floor(np.arange(out_w, dtype=np.float32) * np.float32(w / out_w)).astype("int32"), w - 1)
    return ops.take(ops.take(x, ops.convert_to_tensor(rows), axis=1), ops.convert_to_tensor(cols), axis=2)


@_ser
class ConvGroupNorm(keras.layers.Layer):
    """Conv (bias optional) -> GroupNorm(32, eps 1e-5) -> optional ReLU; checkpoint names ``{p}.0`` / ``{p}.1``."""

    def __init__(self, filters, kernel, in_channels, relu=True, bias=False, **kwargs):
        super().__init__(**kwargs)
        self.filters, self.kernel, self.in_channels, self.relu, self.bias = filters, kernel, in_channels, relu, bias
        self.conv = keras.layers.Conv2D(filters, kernel, padding="same", use_bias=bias, name="conv",
                                        dtype=self.dtype_policy)
        self.norm = keras.layers.GroupNormalization(32, epsilon=1e-5, name="norm", dtype=self.dtype_policy)

    def build(self, input_shape=None):
        self.conv.build((None, None, None, self.in_channels))
        self.norm.build((None, None, None, self.filters))
        self.built = True

    def call(self, x):
        x = self.norm(self.conv(x))
        return ops.relu(x) if self.relu else x

    def rules(self, p):
        return conv_rules(p + ".0", self.conv, base=True) + norm_rules(p + ".1", self.norm)

    def get_config(self):
        c = super().get_config()
        c.update(filters=self.filters, kernel=self.kernel, in_channels=self.in_channels, relu=self.relu, bias=self.bias)
        return c


@_ser
@register_backbone("maskformer")
class MaskFormerBackbone(SpecBackbone):
    spec_cls = MaskFormerSpec
    base_model_prefix = "model"
    hf_architecture = "MaskFormerModel"
    hf_ignore = ("*num_batches_tracked", "*relative_position_index", "criterion.empty_weight")
    verified_backends = _ALL  # tests/vision/test_maskformer.py

    def __init__(self, spec=None, **kwargs):
        super().__init__(spec, **kwargs)
        s, common = self.spec, dict(dtype=self.dtype_policy)
        dec = s.decoder_config
        b = s.backbone_config
        self.kind = "swin" if b["model_type"] in SWINS else "resnet"
        if self.kind == "swin":
            tower_args = SwinBackbone.config_from_hf({**b, "model_type": "swin"})
            self.tower = SwinFeatureBackbone(name="encoder", **common, **tower_args)
            n = len(self.tower.depths)
            self.stages = tuple(range(1, n + 1))
            widths = [self.tower.embed_dim * 2 ** i for i in range(n)]
            self.stage_norms = [keras.layers.LayerNormalization(epsilon=1e-5, name=f"hidden_states_norm_{i}", **common)
                                for i in range(n)]
        else:
            self.tower = build_tower({**b}, "encoder", self.dtype_policy)
            self.stages = out_stages({"depths": (3, 4, 6, 3), **b}, "backbone_config")
            widths = list(self.tower.hidden_sizes)
            self.stage_norms = []
        self.stage_widths = widths
        self.channels = [widths[i - 1] for i in self.stages]
        f = s.fpn_feature_size
        self.fpn_stem = ConvGroupNorm(f, 3, self.channels[-1], name="fpn_stem", **common)
        self.fpn_proj, self.fpn_block = [], []
        for i, width in enumerate(self.channels[:-1][::-1]):
            self.fpn_proj.append(ConvGroupNorm(f, 1, width, relu=False, name=f"fpn_{i}_proj", **common))
            self.fpn_block.append(ConvGroupNorm(f, 3, f, name=f"fpn_{i}_block", **common))
        self.mask_projection = keras.layers.Conv2D(s.mask_feature_size, 3, padding="same", name="mask_projection",
                                                   **common)
        self.hidden_size = dec.d_model
        self.input_projection = (keras.layers.Conv2D(dec.d_model, 1, name="input_projection", **common)
                                 if self.channels[-1] != dec.d_model else None)
        self.decoder_layers = [
            DetrDecoderLayer(dec.d_model, dec.decoder_attention_heads, dec.decoder_ffn_dim,
                             activation=dec.activation_function, dropout=dec.dropout,
                             attention_dropout=dec.attention_dropout, activation_dropout=dec.activation_dropout,
                             name=f"decoder_layer_{i}", **common) for i in range(dec.decoder_layers)]
        self.decoder_norm = keras.layers.LayerNormalization(epsilon=1e-5, name="decoder_norm", **common)

    def build(self, input_shape=None):
        s, d = self.spec, self.spec.decoder_config.d_model
        self.tower.build_from_dummy()
        for norm, width in zip(self.stage_norms, self.stage_widths):
            norm.build((None, None, None, width))
        for layer in [self.fpn_stem] + self.fpn_proj + self.fpn_block:
            layer.build()
        self.mask_projection.build((None, None, None, s.fpn_feature_size))
        if self.input_projection is not None:
            self.input_projection.build((None, None, None, self.channels[-1]))
        self.queries = self.add_weight(name="queries_embedder", shape=(s.decoder_config.num_queries, d),
                                       initializer=keras.initializers.RandomNormal(stddev=1.0))
        for layer in self.decoder_layers:
            layer.build((None, None, d))
        self.decoder_norm.build((None, None, d))
        self.built = True

    # --- forward ------------------------------------------------------------------------------
    def backbone_maps(self, pixels, training=False):
        outs = self.tower.stage_outputs({"pixel_values": pixels}, training=False)
        if self.kind == "swin":
            outs = [norm(x) for norm, x in zip(self.stage_norms, outs)]
        return [outs[i - 1] for i in self.stages]

    def pixel_decoder(self, maps):
        """(mask features, FPN levels coarse to fine)."""
        x = self.fpn_stem(maps[-1])
        levels = []
        for proj, block, left in zip(self.fpn_proj, self.fpn_block, maps[:-1][::-1]):
            left = proj(left)
            x = block(nearest_resize(x, left.shape[1], left.shape[2]) + left)
            levels.append(x)
        return self.mask_projection(levels[-1] if levels else x), levels

    def transformer_decoder(self, features, training=False):
        x = self.input_projection(features) if self.input_projection is not None else features
        d = self.hidden_size
        h, w = x.shape[1], x.shape[2]
        pos = sine_positions(ops.ones_like(x[..., 0], dtype="float32"), d // 2, x.dtype)
        b = ops.shape(x)[0]
        memory, pos = ops.reshape(x, (b, h * w, d)), ops.reshape(pos, (b, h * w, d))
        query_pos = ops.zeros_like(memory[:, :1, :]) + ops.cast(self.queries, memory.dtype)[None]
        q = ops.zeros_like(query_pos)
        for layer in self.decoder_layers:
            q = layer(q, query_pos, memory, pos, training=training)
            if self.spec.decoder_config.auxiliary_loss:
                q = self.decoder_norm(q)
        return self.decoder_norm(q)

    def call(self, inputs, training=False):
        pixels = inputs["pixel_values"] if isinstance(inputs, dict) else inputs
        maps = self.backbone_maps(pixels, training=training)
        pixel_embeddings, levels = self.pixel_decoder(maps)
        queries = self.transformer_decoder(maps[-1], training=training)
        return {"last_hidden_state": queries, "transformer_decoder_last_hidden_state": queries,
                "pixel_decoder_last_hidden_state": pixel_embeddings, "encoder_last_hidden_state": maps[-1],
                "encoder_hidden_states": tuple(maps), "pixel_decoder_hidden_states": tuple(levels)}

    # --- HF conversion ------------------------------------------------------------------------
    def weight_rules(self):
        enc = "pixel_level_module.encoder."
        if self.kind == "swin":
            r = [dataclasses.replace(x, hf=enc + "model." + x.hf, aliases=tuple(enc + "model." + a for a in x.aliases))
                 for x in self.tower.weight_rules()]
            for i, norm in enumerate(self.stage_norms):
                r += norm_rules(f"{enc}hidden_states_norms.{i}", norm)
        else:
            r = [dataclasses.replace(x, hf=enc + x.hf, aliases=tuple(enc + a for a in x.aliases))
                 for x in self.tower.weight_rules()]
        p = "pixel_level_module.decoder."
        r += self.fpn_stem.rules(p + "fpn.stem")
        for i, (proj, block) in enumerate(zip(self.fpn_proj, self.fpn_block)):
            r += proj.rules(f"{p}fpn.layers.{i}.proj") + block.rules(f"{p}fpn.layers.{i}.block")
        r += conv_rules(p + "mask_projection", self.mask_projection)
        t = "transformer_module."
        if self.input_projection is not None:
            r += conv_rules(t + "input_projection", self.input_projection)
        r.append(Rule(t + "queries_embedder.weight", self.queries))
        for i, layer in enumerate(self.decoder_layers):
            r += layer.rules(f"{t}decoder.layers.{i}")
        return r + norm_rules(t + "decoder.layernorm", self.decoder_norm)


@_ser
@register_task(MaskFormerBackbone, "UniversalSegmenter", ("MaskFormerForInstanceSegmentation",))
class MaskFormerUniversalSegmenter(UniversalSegmenter):
    """Linear class head (num_labels + "no object") and a 3-layer mask-embedding MLP on the decoder's
    queries, dotted with the pixel decoder's embeddings."""

    loss_kind = "maskformer"  # keras_models.tasks.segmentation_loss

    def __init__(self, backbone, num_classes=2, **kwargs):
        super().__init__(backbone, num_classes=num_classes, **kwargs)
        d, common = backbone.hidden_size, dict(dtype=backbone.dtype_policy)
        self.class_predictor = keras.layers.Dense(num_classes + 1, name="class_predictor", **common)
        self.mask_embedder = PredictionMLP(d, backbone.spec.mask_feature_size, 3, name="mask_embedder", **common)

    def build(self, input_shape=None):
        d = self.backbone.hidden_size
        self.class_predictor.build((None, None, d))
        self.mask_embedder.build((None, None, d))
        self.built = True

    def query_outputs(self, outputs, training=False):
        q = outputs["transformer_decoder_last_hidden_state"]
        return self.class_predictor(q), mask_logits(self.mask_embedder(q), outputs["pixel_decoder_last_hidden_state"])

    def head_rules(self):
        r = dense_rules("class_predictor", self.class_predictor, base=False)
        for i, dense in enumerate(self.mask_embedder.denses):
            r += dense_rules(f"mask_embedder.{i}.0", dense, base=False)
        return r


from keras_models.models.maskformer.mask2former import *  # noqa: E402,F401,F403  (uses ConvGroupNorm above)

__all__ = ["MaskFormerSpec", "MaskFormerDecoderSpec", "MaskFormerBackbone", "MaskFormerUniversalSegmenter",
           "ConvGroupNorm", "nearest_resize", "Mask2FormerSpec", "Mask2FormerBackbone", "Mask2FormerUniversalSegmenter"]

"""LayoutLMv2 and LayoutXLM (model_type ``layoutlmv2``): BERT with box embeddings, a ResNet-FPN
image encoder whose pooled feature map becomes visual tokens, and spatial-aware attention.

* Text embeddings: word + position + token type + the box embeddings concatenated (x0, y0, x1,
  y1 with ``coordinate_size`` each, height and width with ``shape_size`` each), then LayerNorm.
* Visual tokens: ``pixel_values`` (batch, H, W, 3, channels_last, 0..255 in the checkpoint's
  channel order; H and W multiples of 32) are normalised by ``MODEL.PIXEL_MEAN``/``PIXEL_STD``, run
  through detectron2's ResNet (frozen BatchNorm, bottleneck blocks, ``NUM_GROUPS`` x
  ``WIDTH_PER_GROUP`` wide, ``STRIDE_IN_1X1``) and FPN; the stride-4 map ``p2`` is average-pooled
  to ``image_feature_pool_shape`` (torch's adaptive bins), projected to hidden_size, and gets
  positions 0.., boxes of a 1000-wide grid, an optional visual segment embedding and its own
  LayerNorm. They follow the text tokens, always attended.
* Attention: with ``fast_qkv`` one bias-free q/k/v projection plus query and value biases; the
  1D (``has_relative_attention_bias``) and 2D (``has_spatial_attention_bias``: x0 and y1
  offsets) log-bucket biases are added to the scaled scores, shared by all layers.
"""

from dataclasses import dataclass
from typing import ClassVar

import keras
import numpy as np
from keras import ops

from keras_models.errors import ConfigError, InputError
from keras_models.layers.conv_blocks import ConvNormAct
from keras_models.layers.encoder_block import EncoderBlock
from keras_models.layers.masks import padding_bias
from keras_models.layers.vision_embeddings import conv_rules
from keras_models.models.encoder.backbone import EncoderBackbone, EncoderSpec, dense_rules, norm_rules
from keras_models.models.encoder.layoutlm import check_boxes
from keras_models.models.encoder.tasks import family_task
from keras_models.models.layout_encoders.layoutlmv3 import LayoutTables
from keras_models.models.registry import register_backbone
from keras_models.presets.weight_map import TRANSPOSE, Reshape, Rule
from keras_models.spec import dim, hf
from keras_models.tasks.task import Task
from keras_models.tasks.text import QuestionAnswerer, TokenClassifier, TextClassifier

# detectron2's defaults (get_cfg) for the keys the backbone reads, then Transformers' overrides
D2_DEFAULTS = {
    "MODEL.PIXEL_MEAN": (103.53, 116.28, 123.675), "MODEL.PIXEL_STD": (57.375, 57.120, 58.395),
    "MODEL.BACKBONE.NAME": "build_resnet_fpn_backbone", "MODEL.RESNETS.DEPTH": 101,
    "MODEL.RESNETS.NUM_GROUPS": 32, "MODEL.RESNETS.WIDTH_PER_GROUP": 8, "MODEL.RESNETS.STRIDE_IN_1X1": False,
    "MODEL.RESNETS.STEM_OUT_CHANNELS": 64, "MODEL.RESNETS.RES2_OUT_CHANNELS": 256,
    "MODEL.RESNETS.RES5_DILATION": 1, "MODEL.RESNETS.NORM": "FrozenBN",
    "MODEL.RESNETS.DEFORM_ON_PER_STAGE": (False, False, False, False),
    "MODEL.RESNETS.OUT_FEATURES": ("res2", "res3", "res4", "res5"),
    "MODEL.FPN.IN_FEATURES": ("res2", "res3", "res4", "res5"), "MODEL.FPN.OUT_CHANNELS": 256,
    "MODEL.FPN.NORM": "", "MODEL.FPN.FUSE_TYPE": "sum",
}
DEPTHS = {50: (3, 4, 6, 3), 101: (3, 4, 23, 3), 152: (3, 8, 36, 3)}
FROZEN_BN_EPS = 1e-5


def _freeze(value):
    if isinstance(value, dict):
        return tuple(sorted((k, _freeze(v)) for k, v in value.items()))
    if isinstance(value, (list, tuple)):
        return tuple(_freeze(v) for v in value)
    return value


def _thaw(value):
    if isinstance(value, tuple):
        return [_thaw(v) for v in value]
    return value


def _read_d2(value):
    if value is None:
        return None
    if not isinstance(value, dict):
        raise ConfigError(f"detectron2_config_args={value!r}: expected a dict of detectron2 config keys")
    return _freeze(value)


def _write_d2(value):
    return None if value is None else {k: _thaw(v) for k, v in value}


@dataclass(frozen=True, kw_only=True)
class LayoutLMv2Spec(EncoderSpec):
    """LayoutLMv2Config (Transformers' defaults)."""

    max_2d_position_embeddings: int = dim("max_2d_position_embeddings", 1024)
    coordinate_size: int = dim("coordinate_size", 128)
    shape_size: int = dim("shape_size", 128)
    fast_qkv: bool = hf("fast_qkv", True)
    has_relative_attention_bias: bool = hf("has_relative_attention_bias", True)
    rel_pos_bins: int = dim("rel_pos_bins", 32)
    max_rel_pos: int = dim("max_rel_pos", 128)
    has_spatial_attention_bias: bool = hf("has_spatial_attention_bias", True)
    rel_2d_pos_bins: int = dim("rel_2d_pos_bins", 64)
    max_rel_2d_pos: int = dim("max_rel_2d_pos", 256)
    has_visual_segment_embedding: bool = hf("has_visual_segment_embedding", False)
    image_feature_pool_shape: tuple = hf("image_feature_pool_shape", (7, 7, 256), read=tuple, write=list)
    detectron2_config_args: tuple | None = hf("detectron2_config_args", None, read=_read_d2, write=_write_d2)

    hf_constants: ClassVar[dict] = {"convert_sync_batchnorm": True}

    def d2(self):
        """The detectron2 settings the visual backbone reads (defaults filled in)."""
        out = {**D2_DEFAULTS, **(dict(self.detectron2_config_args) if self.detectron2_config_args else {})}
        return {k: _freeze(v) for k, v in out.items()}

    def validate(self, source="config.json"):
        super().validate(source)
        width = 4 * self.coordinate_size + 2 * self.shape_size
        if width != self.hidden_size:
            raise ConfigError(f"{source}: 4 * coordinate_size + 2 * shape_size = {width} must equal "
                              f"hidden_size={self.hidden_size} (the box embeddings are concatenated)")
        if len(self.image_feature_pool_shape) not in (2, 3):
            raise ConfigError(f"{source}: image_feature_pool_shape={list(self.image_feature_pool_shape)} must be "
                              "[rows, columns] or [rows, columns, channels]")
        rows, cols = self.image_feature_pool_shape[:2]
        if rows * cols > self.max_position_embeddings:
            raise ConfigError(f"{source}: image_feature_pool_shape {rows}x{cols} needs {rows * cols} visual "
                              f"positions, more than max_position_embeddings={self.max_position_embeddings}")
        if self.max_2d_position_embeddings < 1001:
            raise ConfigError(f"{source}: max_2d_position_embeddings={self.max_2d_position_embeddings}: the "
                              "visual tokens' boxes reach 1000, so at least 1001 rows are needed")
        d = self.d2()
        checks = {"MODEL.BACKBONE.NAME": "build_resnet_fpn_backbone", "MODEL.RESNETS.NORM": "FrozenBN",
                  "MODEL.RESNETS.RES5_DILATION": 1, "MODEL.FPN.NORM": "", "MODEL.FPN.FUSE_TYPE": "sum",
                  "MODEL.RESNETS.DEFORM_ON_PER_STAGE": (False, False, False, False)}
        for key, want in checks.items():
            if d[key] != want:
                raise ConfigError(f"{source}: detectron2_config_args {key}={_thaw(d[key])!r} is not supported "
                                  f"(only {_thaw(want)!r})")
        if d["MODEL.RESNETS.DEPTH"] not in DEPTHS:
            raise ConfigError(f"{source}: detectron2_config_args MODEL.RESNETS.DEPTH={d['MODEL.RESNETS.DEPTH']} "
                              f"is not supported (bottleneck ResNets: {sorted(DEPTHS)})")
        for key in ("MODEL.RESNETS.OUT_FEATURES", "MODEL.FPN.IN_FEATURES"):
            if tuple(d[key]) != ("res2", "res3", "res4", "res5"):
                raise ConfigError(f"{source}: detectron2_config_args {key}={_thaw(d[key])!r}: only "
                                  "['res2', 'res3', 'res4', 'res5'] is supported")
        fpn = d["MODEL.FPN.OUT_CHANNELS"]
        if len(self.image_feature_pool_shape) == 3 and self.image_feature_pool_shape[2] != fpn:
            raise ConfigError(f"{source}: image_feature_pool_shape channels {self.image_feature_pool_shape[2]} "
                              f"!= detectron2 MODEL.FPN.OUT_CHANNELS={fpn}")
        if len(d["MODEL.PIXEL_MEAN"]) != len(d["MODEL.PIXEL_STD"]):
            raise ConfigError(f"{source}: detectron2 MODEL.PIXEL_MEAN and MODEL.PIXEL_STD differ in length")

    def dummy_inputs(self):
        inputs = super().dummy_inputs()
        inputs["bbox"] = np.zeros(inputs["input_ids"].shape + (4,), "int32")
        inputs["pixel_values"] = np.zeros((inputs["input_ids"].shape[0], 32, 32, 3), "float32")
        return inputs


def _adaptive_matrix(size, out):
    """(out, size) averaging matrix of torch's adaptive average pooling bins."""
    m = np.zeros((out, size), "float32")
    for i in range(out):
        start, end = (i * size) // out, -((-(i + 1) * size) // out)
        m[i, start:end] = 1.0 / (end - start)
    return m


def visual_grid_boxes(rows, cols, max_len=1000):
    """Boxes of a rows x cols grid (row-major) on a max_len-wide page, as Transformers floors them."""
    xs, ys = np.arange(0, max_len * (cols + 1), max_len) // cols, np.arange(0, max_len * (rows + 1), max_len) // rows
    x0, y0 = np.meshgrid(xs[:-1], ys[:-1])
    x1, y1 = np.meshgrid(xs[1:], ys[1:])
    return np.stack([x0, y0, x1, y1], -1).reshape(-1, 4).astype("int32")


@keras.saving.register_keras_serializable(package="keras_models")
class FastQKVBlock(EncoderBlock):
    """An encoder block whose attention uses one bias-free q/k/v projection plus query and value
    biases (LayoutLMv2's ``fast_qkv``)."""

    def __init__(self, hidden_size, num_heads, intermediate_size, **kwargs):
        super().__init__(hidden_size, num_heads, intermediate_size, **kwargs)
        from keras_models.layers.attention import Attention

        self.attention = Attention(hidden_size, num_heads, use_bias=False, output_bias=True, fused_qkv=True,
                                   dropout=self.attention_dropout, name="attention", dtype=self.dtype_policy,
                                   kernel_initializer=self.kernel_initializer)

    def build(self, input_shape):
        super().build(input_shape)
        self.q_bias = self.add_weight(shape=(self.hidden_size,), name="q_bias", initializer="zeros")
        self.v_bias = self.add_weight(shape=(self.hidden_size,), name="v_bias", initializer="zeros")

    def attend(self, x, bias=None, rope=None, training=False, relative=None):
        a = self.attention
        qkv = a.qkv(x)
        h = self.hidden_size
        q = qkv[..., :h] + ops.cast(self.q_bias, x.dtype)
        k = qkv[..., h:2 * h]
        v = qkv[..., 2 * h:] + ops.cast(self.v_bias, x.dtype)
        q, k, v = (a._split(t, a.num_heads) for t in (q, k, v))
        return a.output_dense(a.attend(q, k, v, bias, training=training))


class VisualBackbone(keras.layers.Layer):
    """detectron2's ResNet + FPN (the ``p2`` output), channels_last, frozen BatchNorm."""

    def __init__(self, d2, **kwargs):
        super().__init__(**kwargs)
        c = dict(dtype=self.dtype_policy)
        self.mean = np.asarray(d2["MODEL.PIXEL_MEAN"], "float32")
        self.std = np.asarray(d2["MODEL.PIXEL_STD"], "float32")
        groups, per_group = d2["MODEL.RESNETS.NUM_GROUPS"], d2["MODEL.RESNETS.WIDTH_PER_GROUP"]
        stride_in_1x1 = d2["MODEL.RESNETS.STRIDE_IN_1X1"]

        def unit(filters, k, stride=1, groups=1, act="relu", name=None):
            u = ConvNormAct(filters, k, strides=stride, activation=act, eps=FROZEN_BN_EPS, padding=k // 2,
                            groups=groups, name=name, **c)
            u.norm.trainable = False  # frozen BatchNorm: always the running statistics
            return u

        self.stem = unit(d2["MODEL.RESNETS.STEM_OUT_CHANNELS"], 7, 2, name="stem")
        self.stem.build((None, None, None, len(self.mean)))
        cin, out, bottleneck = d2["MODEL.RESNETS.STEM_OUT_CHANNELS"], d2["MODEL.RESNETS.RES2_OUT_CHANNELS"], \
            groups * per_group
        self.stages, self.widths = [], []
        for s, n in enumerate(DEPTHS[d2["MODEL.RESNETS.DEPTH"]]):
            blocks = []
            for b in range(n):
                stride = 2 if (b == 0 and s > 0) else 1
                blk = {"conv1": unit(bottleneck, 1, stride if stride_in_1x1 else 1, name=f"res{s + 2}_{b}_conv1"),
                       "conv2": unit(bottleneck, 3, 1 if stride_in_1x1 else stride, groups=groups,
                                     name=f"res{s + 2}_{b}_conv2"),
                       "conv3": unit(out, 1, act=None, name=f"res{s + 2}_{b}_conv3")}
                if b == 0 and cin != out:
                    blk["shortcut"] = unit(out, 1, stride, act=None, name=f"res{s + 2}_{b}_shortcut")
                blk["conv1"].build((None, None, None, cin))
                blk["conv2"].build((None, None, None, bottleneck))
                blk["conv3"].build((None, None, None, bottleneck))
                if "shortcut" in blk:
                    blk["shortcut"].build((None, None, None, cin))
                blocks.append(blk)
                cin = out
            self.stages.append(blocks)
            self.widths.append(out)
            out, bottleneck = out * 2, bottleneck * 2
        fpn = d2["MODEL.FPN.OUT_CHANNELS"]
        self.out_channels = fpn
        self.fpn_lateral, self.fpn_output = [], []
        for s, width in enumerate(self.widths):
            lat = keras.layers.Conv2D(fpn, 1, name=f"fpn_lateral{s + 2}", **c)
            lat.build((None, None, None, width))
            o = keras.layers.Conv2D(fpn, 3, name=f"fpn_output{s + 2}", **c)
            o.build((None, None, None, fpn))
            self.fpn_lateral.append(lat)
            self.fpn_output.append(o)

    def call(self, pixels):
        x = (pixels - ops.convert_to_tensor(self.mean, pixels.dtype)) / ops.convert_to_tensor(self.std, pixels.dtype)
        x = self.stem(x)
        x = ops.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)), constant_values=-np.inf)
        x = ops.max_pool(x, 3, strides=2, padding="valid")
        features = []
        for blocks in self.stages:
            for blk in blocks:
                h = blk["conv3"](blk["conv2"](blk["conv1"](x)))
                x = ops.relu(h + (blk["shortcut"](x) if "shortcut" in blk else x))
            features.append(x)
        prev = self.fpn_lateral[-1](features[-1])
        for lat, f in zip(self.fpn_lateral[-2::-1], features[-2::-1]):
            up = ops.repeat(ops.repeat(prev, 2, axis=1), 2, axis=2)
            prev = lat(f) + up
        return self.fpn_output[0](ops.pad(prev, ((0, 0), (1, 1), (1, 1), (0, 0))))

    def weight_rules(self, prefix):
        def unit_rules(name, u):
            return conv_rules(name, u.conv) + [
                Rule(f"{name}.norm.weight", u.norm.gamma), Rule(f"{name}.norm.bias", u.norm.beta),
                Rule(f"{name}.norm.running_mean", u.norm.moving_mean),
                Rule(f"{name}.norm.running_var", u.norm.moving_variance)]

        r = unit_rules(f"{prefix}.bottom_up.stem.conv1", self.stem)
        for s, blocks in enumerate(self.stages):
            for b, blk in enumerate(blocks):
                for key, u in blk.items():
                    r += unit_rules(f"{prefix}.bottom_up.res{s + 2}.{b}.{key}", u)
        for s, (lat, o) in enumerate(zip(self.fpn_lateral, self.fpn_output)):
            r += conv_rules(f"{prefix}.fpn_lateral{s + 2}", lat) + conv_rules(f"{prefix}.fpn_output{s + 2}", o)
        return r


@keras.saving.register_keras_serializable(package="keras_models")
@register_backbone("layoutlmv2")
class LayoutLMv2Backbone(LayoutTables, EncoderBackbone):
    """Inputs: ``input_ids``, ``bbox`` (batch, seq, 4; integers in 0..1000), ``pixel_values``
    (batch, H, W, 3; required), ``attention_mask``, ``token_type_ids``. Output: (batch, seq +
    rows * columns, hidden): the text tokens, then the visual tokens."""

    spec_cls = LayoutLMv2Spec
    base_model_prefix = "layoutlmv2"
    hf_architecture = "LayoutLMv2Model"
    hf_model_type = "layoutlmv2"
    hf_ignore = ("*embeddings.position_ids", "*visual.pixel_mean", "*visual.pixel_std")
    verified_backends = ("jax", "torch", "tensorflow")
    # LayoutXLM: this architecture with XLM-R's tokenizer (LayoutXLMProcessor, tests/models/test_layoutxlm.py)
    checkpoint_families = ("LayoutXLM",)  # checkpoint-only rows (docs/models.md)

    def __init__(self, spec=None, **kwargs):
        super().__init__(spec, **kwargs)
        init = keras.initializers.TruncatedNormal(stddev=self.initializer_range)
        c = dict(dtype=self.dtype_policy)

        rel = {}
        for key, on, bins in (("1d", self.has_relative_attention_bias, self.rel_pos_bins),
                              ("x", self.has_spatial_attention_bias, self.rel_2d_pos_bins),
                              ("y", self.has_spatial_attention_bias, self.rel_2d_pos_bins)):
            if on:
                rel[key] = (bins, f"rel_pos_{key}_bias")
        self.build_layout_tables(init, rel)
        d2 = self.spec.d2()
        self.visual = VisualBackbone(d2, name="visual", **c)
        self.rows, self.cols = self.image_feature_pool_shape[:2]
        self.visual_proj = keras.layers.Dense(self.hidden_size, kernel_initializer=init, name="visual_proj", **c)
        self.visual_proj.build((None, None, self.visual.out_channels))
        self.visual_norm = keras.layers.LayerNormalization(epsilon=self.layer_norm_eps, name="visual_norm", **c)
        self.visual_norm.build((None, None, self.hidden_size))
        self.visual_dropout = keras.layers.Dropout(self.dropout_rate, **c)
        self.visual_segment = (self.add_weight(shape=(self.hidden_size,), name="visual_segment_embedding",
                                               initializer=init) if self.has_visual_segment_embedding else None)
        self.position_embedding.build((None,))

    def make_block(self, index, init):
        if not self.fast_qkv:
            return super().make_block(index, init)
        return FastQKVBlock(self.hidden_size, self.num_heads, self.intermediate_size, hidden_act=self.hidden_act,
                            layer_norm_eps=self.layer_norm_eps, dropout=self.dropout_rate,
                            attention_dropout=self.attention_dropout, kernel_initializer=init,
                            name=f"block_{index}", dtype=self.dtype_policy)

    def box_embeddings(self, bbox):
        t = self.box_tables
        x0, y0, x1, y1 = bbox[..., 0], bbox[..., 1], bbox[..., 2], bbox[..., 3]
        return ops.concatenate([t["x"](x0), t["y"](y0), t["x"](x1), t["y"](y1), t["h"](y1 - y0), t["w"](x1 - x0)],
                               axis=-1)

    def extra_embeddings(self, x, inputs, training=False):
        bbox = inputs.get("bbox")
        if bbox is None:
            bbox = ops.zeros(ops.shape(inputs["input_ids"]) + (4,), "int32")
        return x + self.box_embeddings(ops.cast(bbox, "int32"))

    def visual_embeddings(self, pixels, batch, training=False):
        """(batch, rows * columns, hidden): the visual tokens before the encoder."""
        dtype = self.compute_dtype
        feats = self.visual(ops.cast(pixels, dtype))  # (batch, h, w, channels)
        h, w = feats.shape[1], feats.shape[2]
        pool_h = ops.convert_to_tensor(_adaptive_matrix(h, self.rows), dtype)
        pool_w = ops.convert_to_tensor(_adaptive_matrix(w, self.cols), dtype)
        pooled = ops.einsum("ih,bhwc,jw->bijc", pool_h, feats, pool_w)
        v = self.visual_proj(ops.reshape(pooled, (batch, self.rows * self.cols, self.visual.out_channels)))
        n = self.rows * self.cols
        v = v + self.position_embedding(ops.arange(n, dtype="int32"))[None]
        boxes = ops.convert_to_tensor(visual_grid_boxes(self.rows, self.cols))
        v = v + self.box_embeddings(boxes)[None]
        if self.visual_segment is not None:
            v = v + ops.cast(self.visual_segment, v.dtype)
        return self.visual_dropout(self.visual_norm(v), training=training)

    def encode(self, inputs, training=False):
        """(hidden states (batch, seq + visual, hidden), visual tokens before the encoder)."""
        if not isinstance(inputs, dict):
            raise InputError("LayoutLMv2 takes a dict with input_ids, bbox and pixel_values")
        if inputs.get("pixel_values") is None:
            raise InputError("LayoutLMv2 needs pixel_values (batch, height, width, 3): its visual tokens are "
                             "part of every forward pass")
        ids = inputs["input_ids"]
        batch, length = ops.shape(ids)[0], ops.shape(ids)[1]
        x = self.embed(inputs, training=training)
        v = self.visual_embeddings(inputs["pixel_values"], batch, training=training)
        n = self.rows * self.cols
        x = ops.concatenate([x, ops.cast(v, x.dtype)], axis=1)
        mask = inputs.get("attention_mask")
        mask = ops.ones((batch, length), "int32") if mask is None else ops.cast(mask, "int32")
        mask = ops.concatenate([mask, ops.ones((batch, n), "int32")], axis=1)
        bias = padding_bias(mask, x.dtype)
        if "1d" in self.rel_bias:
            positions = inputs.get("position_ids")
            if positions is None:
                positions = ops.broadcast_to(ops.arange(length, dtype="int32")[None], (batch, length))
            positions = ops.concatenate(
                [ops.cast(positions, "int32"), ops.broadcast_to(ops.arange(n, dtype="int32")[None], (batch, n))], 1)
            bias = bias + self._lookup(self.rel_bias["1d"], positions, self.rel_pos_bins, self.max_rel_pos, x.dtype)
        if "x" in self.rel_bias:
            bbox = inputs.get("bbox")
            bbox = ops.zeros((batch, length, 4), "int32") if bbox is None else ops.cast(bbox, "int32")
            grid = ops.broadcast_to(ops.convert_to_tensor(visual_grid_boxes(self.rows, self.cols))[None], (batch, n, 4))
            bbox = ops.concatenate([bbox, grid], axis=1)
            for key, col in (("x", 0), ("y", 3)):
                bias = bias + self._lookup(self.rel_bias[key], bbox[..., col], self.rel_2d_pos_bins,
                                           self.max_rel_2d_pos, x.dtype)
        for index in self.layer_schedule:
            x = self.blocks[index](x, bias, training=training)
        return x, v

    def call(self, inputs, training=False):
        return self.encode(inputs, training=training)[0]

    def check_host_inputs(self, inputs, where="call"):
        if not isinstance(inputs, dict):
            return
        if isinstance(inputs.get("bbox"), (np.ndarray, list, tuple)):
            check_boxes(inputs["bbox"], self.max_2d_position_embeddings - 1, f"{where}: bbox")
        pixels = inputs.get("pixel_values")
        if pixels is None:
            raise InputError(f"{where}: LayoutLMv2 needs pixel_values (batch, height, width, 3)")
        shape = tuple(pixels.shape)
        if len(shape) != 4 or shape[-1] != len(self.visual.mean) or shape[1] % 32 or shape[2] % 32:
            raise InputError(f"{where}: pixel_values must be (batch, height, width, {len(self.visual.mean)}) "
                             f"channels_last with height and width multiples of 32 (the FPN's strides), got {shape}")

    def __call__(self, inputs, *args, **kwargs):
        self.check_host_inputs(inputs)
        return super().__call__(inputs, *args, **kwargs)

    def block_rules(self, prefix, block):
        if not isinstance(block, FastQKVBlock):
            return super().block_rules(prefix, block)
        n = self.hf_names
        h = self.hidden_size
        r = [Rule(prefix + "attention.self.qkv_linear.weight", block.attention.qkv.kernel, TRANSPOSE),
             Rule(prefix + "attention.self.q_bias", block.q_bias, Reshape((1, 1, h), (h,))),
             Rule(prefix + "attention.self.v_bias", block.v_bias, Reshape((1, 1, h), (h,)))]
        for key, dense in (("attn_out", block.attention.output_dense), ("ffn_in", block.intermediate),
                           ("ffn_out", block.output_dense)):
            r += dense_rules(prefix + n[key], dense)
        r += norm_rules(prefix + n["attn_norm"], block.attention_norm)
        r += norm_rules(prefix + n["ffn_norm"], block.output_norm)
        return r

    def weight_rules(self):
        r = super().weight_rules() + self.layout_rules()
        r += self.visual.weight_rules("visual.backbone")
        r += dense_rules("visual_proj", self.visual_proj) + norm_rules("visual_LayerNorm", self.visual_norm)
        if self.visual_segment is not None:
            r.append(Rule("visual_segment_embedding", self.visual_segment))
        return r


class _Checks:
    """Host checks of the inputs; the preset's processor (page image + words + boxes:
    layoutlmv2_processor.py) and its files on save."""

    def __call__(self, inputs, *args, **kwargs):
        self.backbone.check_host_inputs(inputs)
        return super().__call__(inputs, *args, **kwargs)

    @classmethod
    def preprocessor_from_preset(cls, folder, hf, **kw):
        from keras_models.models.layout_encoders.layoutlmv2_processor import layoutlmv2_processor

        return layoutlmv2_processor(folder, hf, **kw)

    def save_extra_files(self, folder):
        super().save_extra_files(folder)
        image_processor = getattr(self.preprocessor, "image_processor", None)
        if image_processor is not None:
            image_processor.save_pretrained(folder)


@family_task(LayoutLMv2Backbone, "TextClassifier", "LayoutLMv2ForSequenceClassification")
class LayoutLMv2TextClassifier(_Checks, TextClassifier):
    """Document classification: a linear layer over [the [CLS] output, the mean of the visual
    tokens before the encoder, the mean of the visual tokens after it]."""

    def __init__(self, backbone, num_classes=2, id2label=None, dropout=None, preprocessor=None, **kwargs):
        Task.__init__(self, backbone, preprocessor=preprocessor, **kwargs)
        self.num_classes = num_classes
        self.id2label = {int(k): v for k, v in id2label.items()} if id2label else None
        self.dropout = backbone.dropout_rate if dropout is None else dropout
        self.drop = keras.layers.Dropout(self.dropout, dtype=backbone.dtype_policy)
        self.out = keras.layers.Dense(num_classes, name="classifier", dtype=backbone.dtype_policy,
                                      kernel_initializer=keras.initializers.TruncatedNormal(
                                          stddev=backbone.initializer_range))
        self.out.build((None, 3 * backbone.hidden_size))

    def call(self, inputs, training=False):
        hidden, visual = self.backbone.encode(inputs, training=training)
        length = ops.shape(inputs["input_ids"])[1]
        pooled = ops.concatenate([hidden[:, 0], ops.mean(visual, axis=1), ops.mean(hidden[:, length:], axis=1)], -1)
        return self.out(self.drop(pooled, training=training))

    def head_rules(self):
        return dense_rules("classifier", self.out, base=False)


@family_task(LayoutLMv2Backbone, "TokenClassifier", "LayoutLMv2ForTokenClassification")
class LayoutLMv2TokenClassifier(_Checks, TokenClassifier):
    """Labels the text tokens only (the visual tokens are dropped)."""

    def call(self, inputs, training=False):
        hidden = self.backbone(inputs, training=training)
        return self.head(hidden[:, : ops.shape(inputs["input_ids"])[1]], training=training)


@family_task(LayoutLMv2Backbone, "QuestionAnswerer", "LayoutLMv2ForQuestionAnswering")
class LayoutLMv2QuestionAnswerer(_Checks, QuestionAnswerer):
    """Start/end logits over the text tokens. (Transformers' class turns the visual segment
    embedding on whatever the config says; its saved config.json says so too.)"""

    def call(self, inputs, training=False):
        hidden = self.backbone(inputs, training=training)
        logits = self.qa(hidden[:, : ops.shape(inputs["input_ids"])[1]])
        return {"start_logits": logits[..., 0], "end_logits": logits[..., 1]}


__all__ = ["LayoutLMv2Backbone", "LayoutLMv2TextClassifier", "LayoutLMv2TokenClassifier",
           "LayoutLMv2QuestionAnswerer"]

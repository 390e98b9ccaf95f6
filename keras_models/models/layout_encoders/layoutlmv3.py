"""LayoutLMv3 (model_type ``layoutlmv3``): RoBERTa with box embeddings, relative 1D and 2D
attention biases and optional image patches.

* Text embeddings: RoBERTa's sum plus the box embeddings, concatenated rather than summed:
  x0, y0, x1, y1 (``coordinate_size`` each, one x table and one y table) and height, width
  (``shape_size`` each, clipped to 0..1023), before the embedding LayerNorm.
* Image (``visual_embed`` and ``pixel_values`` given, channels_last at ``input_size``): a
  ``patch_size`` convolution, a class token, learned positions and a LayerNorm (eps 1e-6); the
  patches follow the text tokens, every token then goes through one more LayerNorm, and the
  output covers text + 1 + patches positions. Patches get fixed boxes on a 1000-wide grid.
* Attention bias (``has_relative_attention_bias``): T5-style log buckets of the offset between
  token indices (0, 1, 2... for the text, again from 0 for the image tokens), plus, with
  ``has_spatial_attention_bias``, buckets of the x0 offset and of the y1 offset between boxes; each
  a learned per-head table, summed and divided by sqrt(head_dim), shared by all layers.
"""

import math
from dataclasses import dataclass
from typing import ClassVar

import keras
import numpy as np
from keras import ops

from keras_models.errors import ConfigError, InputError
from keras_models.layers.masks import padding_bias
from keras_models.layers.vision_embeddings import conv_rules
from keras_models.models.encoder.backbone import EncoderBackbone, EncoderSpec, dense_rules, norm_rules
from keras_models.models.encoder.layoutlm import LayoutLMPreprocessor, _BoxChecks, check_boxes
from keras_models.models.encoder.tasks import RobertaShapedTextClassifier, family_task
from keras_models.models.registry import register_backbone
from keras_models.presets.weight_map import Rule
from keras_models.spec import const, dim, hf
from keras_models.tasks.heads import ClassificationHead
from keras_models.tasks.task import Task
from keras_models.tasks.text import QuestionAnswerer, TokenClassifier

BOX_LIMIT = 1023  # Transformers clips heights and widths to this


def _square_patch(value):
    if isinstance(value, (list, tuple)):
        if len(value) != 2 or value[0] != value[1]:
            raise ConfigError(f"patch_size={value!r}: only square patches are supported")
        value = value[0]
    return value


@dataclass(frozen=True, kw_only=True)
class LayoutLMv3Spec(EncoderSpec):
    """LayoutLMv3Config (Transformers' defaults)."""

    vocab_size: int = dim("vocab_size", 50265)
    pad_token_id: int = hf("pad_token_id", 1)
    layer_norm_eps: float = hf("layer_norm_eps", 1e-5)
    max_2d_position_embeddings: int = dim("max_2d_position_embeddings", 1024)
    coordinate_size: int = dim("coordinate_size", 128)
    shape_size: int = dim("shape_size", 128)
    has_relative_attention_bias: bool = hf("has_relative_attention_bias", True)
    rel_pos_bins: int = dim("rel_pos_bins", 32)
    max_rel_pos: int = dim("max_rel_pos", 128)
    has_spatial_attention_bias: bool = hf("has_spatial_attention_bias", True)
    rel_2d_pos_bins: int = dim("rel_2d_pos_bins", 64)
    max_rel_2d_pos: int = dim("max_rel_2d_pos", 256)
    visual_embed: bool = hf("visual_embed", True)
    input_size: int = dim("input_size", 224)
    num_channels: int = dim("num_channels", 3)
    patch_size: int = hf("patch_size", 16, read=_square_patch, dim=True)
    position_mode: str = const("padding_offset")

    unsupported = {**EncoderSpec.unsupported, "text_embed": (True, None)}
    hf_constants: ClassVar[dict] = {"bos_token_id": 0, "eos_token_id": 2, "text_embed": True}

    def validate(self, source="config.json"):
        super().validate(source)
        width = 4 * self.coordinate_size + 2 * self.shape_size
        if width != self.hidden_size:
            raise ConfigError(f"{source}: 4 * coordinate_size + 2 * shape_size = {width} must equal "
                              f"hidden_size={self.hidden_size} (the box embeddings are concatenated)")
        if self.visual_embed and self.input_size % self.patch_size:
            raise ConfigError(f"{source}: input_size={self.input_size} is not a multiple of "
                              f"patch_size={self.patch_size}")
        for bins, dist, key in ((self.rel_pos_bins, self.max_rel_pos, "rel_pos_bins"),
                                (self.rel_2d_pos_bins, self.max_rel_2d_pos, "rel_2d_pos_bins")):
            if bins < 4 or dist <= bins // 4:
                raise ConfigError(f"{source}: {key}={bins} with max distance {dist}: need at least 4 buckets "
                                  "and a max distance above a quarter of them")

    def dummy_inputs(self):
        inputs = super().dummy_inputs()
        inputs["bbox"] = np.zeros(inputs["input_ids"].shape + (4,), "int32")
        return inputs  # (the image layers are built in the constructor: no pixel_values needed)


def bucket_table(num_buckets, max_distance):
    """Bucket of every offset in [-max_distance, max_distance] (index offset + max_distance):
    bidirectional log-spaced buckets, computed in float32 as Transformers does."""
    rel = np.arange(-max_distance, max_distance + 1)
    half = num_buckets // 2
    out = (rel > 0).astype(np.int64) * half
    n = np.abs(rel)
    max_exact = half // 2
    ratio = np.maximum(n, 1).astype(np.float32) / np.float32(max_exact)  # (n < max_exact: unused)
    scaled = np.log(ratio) / np.float32(math.log(max_distance / max_exact))
    large = max_exact + (scaled * np.float32(half - max_exact)).astype(np.int64, copy=False)
    large = np.minimum(np.where(n < max_exact, 0, large), half - 1)
    return (out + np.where(n < max_exact, n, large)).astype("int32")


def visual_boxes(size, max_len=1000):
    """The class token's box then one box per patch of a size x size grid (row-major)."""
    xs = np.arange(0, max_len * (size + 1), max_len) // size
    x0, x1 = np.meshgrid(xs[:-1], np.arange(size))[0], np.meshgrid(xs[1:], np.arange(size))[0]
    y0, y1 = x0.T, x1.T
    grid = np.stack([x0, y0, x1, y1], -1).reshape(-1, 4)
    return np.concatenate([[[1, 1, max_len - 1, max_len - 1]], grid]).astype("int32")


class LayoutTables:
    """The layout parts LayoutLMv2 and LayoutLMv3 share: the x / y / height / width box tables and
    the bucketed relative-position bias tables (1D over positions, 2D over box corners)."""

    def build_layout_tables(self, init, rel):
        """``self.box_tables`` and ``self.rel_bias`` (``rel``: key -> (buckets, layer name))."""
        c = dict(dtype=self.dtype_policy)

        def table(width, name):
            t = keras.layers.Embedding(self.max_2d_position_embeddings, width, embeddings_initializer=init,
                                       name=name, **c)
            t.build((None,))
            return t

        self.box_tables = {"x": table(self.coordinate_size, "x_position_embedding"),
                           "y": table(self.coordinate_size, "y_position_embedding"),
                           "h": table(self.shape_size, "h_position_embedding"),
                           "w": table(self.shape_size, "w_position_embedding")}
        self.rel_bias = {}
        for key, (bins, name) in rel.items():
            layer = keras.layers.Dense(self.num_heads, use_bias=False, kernel_initializer=init, name=name, **c)
            layer.build((None, bins))
            self.rel_bias[key] = layer

    def _lookup(self, layer, positions, num_buckets, max_distance, dtype):
        """(batch, heads, n, n) bias of the bucketed offsets positions[j] - positions[i]."""
        offsets = positions[:, None, :] - positions[:, :, None]
        index = ops.clip(offsets, -max_distance, max_distance) + max_distance
        buckets = ops.take(ops.convert_to_tensor(bucket_table(num_buckets, max_distance)), index, axis=0)
        values = ops.take(ops.cast(layer.kernel, dtype), buckets, axis=0)  # (batch, n, n, heads)
        return ops.transpose(values, (0, 3, 1, 2))

    def layout_rules(self):
        names = {"x": "x_position_embeddings", "y": "y_position_embeddings", "h": "h_position_embeddings",
                 "w": "w_position_embeddings"}
        r = [Rule(f"embeddings.{names[k]}.weight", layer.embeddings) for k, layer in self.box_tables.items()]
        hf_names = {"1d": "encoder.rel_pos_bias", "x": "encoder.rel_pos_x_bias", "y": "encoder.rel_pos_y_bias"}
        for key, layer in self.rel_bias.items():
            r += dense_rules(hf_names[key], layer)
        return r


@keras.saving.register_keras_serializable(package="keras_models")
@register_backbone("layoutlmv3")
class LayoutLMv3Backbone(LayoutTables, EncoderBackbone):
    """Inputs: ``input_ids``, ``bbox`` (batch, seq, 4; integers in 0..1000), ``attention_mask``,
    ``token_type_ids`` and optionally ``pixel_values`` (batch, input_size, input_size, channels).
    Output: (batch, seq [+ 1 + patches], hidden)."""

    spec_cls = LayoutLMv3Spec
    base_model_prefix = "layoutlmv3"
    hf_architecture = "LayoutLMv3Model"
    hf_model_type = "layoutlmv3"
    verified_backends = ("jax", "torch", "tensorflow")

    def __init__(self, spec=None, **kwargs):
        super().__init__(spec, **kwargs)
        init = keras.initializers.TruncatedNormal(stddev=self.initializer_range)
        c = dict(dtype=self.dtype_policy)

        rel = {}
        if self.has_relative_attention_bias:
            rel["1d"] = (self.rel_pos_bins, "rel_pos_bias")
            if self.has_spatial_attention_bias:
                rel.update(x=(self.rel_2d_pos_bins, "rel_pos_x_bias"), y=(self.rel_2d_pos_bins, "rel_pos_y_bias"))
        self.build_layout_tables(init, rel)
        if self.visual_embed:
            self.grid = self.input_size // self.patch_size
            self.patch_embed = keras.layers.Conv2D(self.hidden_size, self.patch_size, strides=self.patch_size,
                                                   kernel_initializer=init, name="patch_embed", **c)
            self.patch_embed.build((None, self.input_size, self.input_size, self.num_channels))
            self.cls_token = self.add_weight(shape=(1, 1, self.hidden_size), name="cls_token", initializer="zeros")
            self.pos_embed = self.add_weight(shape=(1, self.grid * self.grid + 1, self.hidden_size),
                                             name="pos_embed", initializer="zeros")
            self.visual_norm = keras.layers.LayerNormalization(epsilon=1e-6, name="visual_norm", **c)
            self.visual_norm.build((None, None, self.hidden_size))
            self.joint_norm = keras.layers.LayerNormalization(epsilon=self.layer_norm_eps, name="joint_norm", **c)
            self.joint_norm.build((None, None, self.hidden_size))

    def extra_embeddings(self, x, inputs, training=False):
        bbox = inputs.get("bbox")
        if bbox is None:
            x0 = y0 = x1 = y1 = ops.zeros_like(ops.cast(inputs["input_ids"], "int32"))
        else:
            bbox = ops.cast(bbox, "int32")
            x0, y0, x1, y1 = bbox[..., 0], bbox[..., 1], bbox[..., 2], bbox[..., 3]
        t = self.box_tables
        parts = [t["x"](x0), t["y"](y0), t["x"](x1), t["y"](y1),
                 t["h"](ops.clip(y1 - y0, 0, BOX_LIMIT)), t["w"](ops.clip(x1 - x0, 0, BOX_LIMIT))]
        return x + ops.concatenate(parts, axis=-1)

    def position_bias(self, positions, bbox, dtype):
        if not self.has_relative_attention_bias:
            return None
        bias = self._lookup(self.rel_bias["1d"], positions, self.rel_pos_bins, self.max_rel_pos, dtype)
        if self.has_spatial_attention_bias:
            bbox = ops.cast(bbox, "int32")
            spatial = (self._lookup(self.rel_bias["x"], bbox[..., 0], self.rel_2d_pos_bins, self.max_rel_2d_pos, dtype)
                       + self._lookup(self.rel_bias["y"], bbox[..., 3], self.rel_2d_pos_bins, self.max_rel_2d_pos,
                                      dtype))
            bias = spatial + bias
        return bias / ops.cast(math.sqrt(self.head_dim), dtype)

    def call(self, inputs, training=False):
        if not isinstance(inputs, dict):
            inputs = {"input_ids": inputs}
        ids = inputs["input_ids"]
        x = self.embed(inputs, training=training)
        batch, length = ops.shape(ids)[0], ops.shape(ids)[1]
        mask = inputs.get("attention_mask")
        mask = ops.ones((batch, length), "int32") if mask is None else ops.cast(mask, "int32")
        bbox = inputs.get("bbox")
        bbox = ops.zeros((batch, length, 4), "int32") if bbox is None else ops.cast(bbox, "int32")
        positions = ops.broadcast_to(ops.arange(length, dtype="int32")[None, :], (batch, length))
        pixels = inputs.get("pixel_values")
        if pixels is not None and self.visual_embed:
            v = self.patch_embed(ops.cast(pixels, x.dtype))
            v = ops.reshape(v, (batch, -1, self.hidden_size))
            cls = ops.broadcast_to(ops.cast(self.cls_token, x.dtype), (batch, 1, self.hidden_size))
            v = self.visual_norm(ops.concatenate([cls, v], axis=1) + ops.cast(self.pos_embed, x.dtype))
            x = self.embeddings_dropout(self.joint_norm(ops.concatenate([x, v], axis=1)), training=training)
            n = self.grid * self.grid + 1
            mask = ops.concatenate([mask, ops.ones((batch, n), "int32")], axis=1)
            visual_pos = ops.broadcast_to(ops.arange(n, dtype="int32")[None, :], (batch, n))
            positions = ops.concatenate([positions, visual_pos], axis=1)
            boxes = ops.broadcast_to(ops.convert_to_tensor(visual_boxes(self.grid))[None], (batch, n, 4))
            bbox = ops.concatenate([bbox, boxes], axis=1)
        bias = padding_bias(mask, x.dtype)
        rel = self.position_bias(positions, bbox, x.dtype)
        if rel is not None:
            bias = bias + rel
        for index in self.layer_schedule:
            x = self.blocks[index](x, bias, training=training)
        return x

    def check_host_inputs(self, inputs, where="call"):
        if not isinstance(inputs, dict):
            return
        if isinstance(inputs.get("bbox"), (np.ndarray, list, tuple)):
            check_boxes(inputs["bbox"], self.max_2d_position_embeddings - 1, f"{where}: bbox")
        pixels = inputs.get("pixel_values")
        if pixels is not None:
            if not self.visual_embed:
                raise InputError(f"{where}: pixel_values given but this checkpoint has visual_embed=false")
            want = (self.input_size, self.input_size, self.num_channels)
            if tuple(pixels.shape[1:]) != want:
                raise InputError(f"{where}: pixel_values must be (batch, {want[0]}, {want[1]}, {want[2]}) "
                                 f"(channels_last, the checkpoint's input_size), got {tuple(pixels.shape)}")

    def __call__(self, inputs, *args, **kwargs):
        self.check_host_inputs(inputs)
        return super().__call__(inputs, *args, **kwargs)

    def weight_rules(self):
        r = super().weight_rules() + self.layout_rules()
        if self.visual_embed:
            r += conv_rules("patch_embed.proj", self.patch_embed)
            r += [Rule("cls_token", self.cls_token), Rule("pos_embed", self.pos_embed)]
            r += norm_rules("norm", self.visual_norm) + norm_rules("LayerNorm", self.joint_norm)
        return r


class LayoutLMv3Preprocessor(LayoutLMPreprocessor):
    """Words with one box each -> ``input_ids``, ``attention_mask`` and ``bbox``, as Transformers'
    LayoutLMv3 tokenizer: each word's box on all its pieces; the [CLS], [SEP] and padding boxes
    from tokenizer_config.json (``cls_token_box``, ``sep_token_box``, ``pad_token_box``; default
    [0, 0, 0, 0])."""

    def __init__(self, tokenizer, sequence_length=None, cls_token_box=(0, 0, 0, 0), sep_token_box=(0, 0, 0, 0),
                 pad_token_box=(0, 0, 0, 0), **kwargs):
        super().__init__(tokenizer, sequence_length=sequence_length, **kwargs)
        self.special_boxes = {"cls": list(cls_token_box), "sep": list(sep_token_box), "pad": list(pad_token_box)}

    def token_boxes(self, encodings, boxes):
        tok = self.tokenizer
        out = np.zeros((len(encodings), len(encodings[0].ids) if encodings else 0, 4), np.int32)
        for i, enc in enumerate(encodings):
            for t, (word, token) in enumerate(zip(enc.word_ids, enc.ids)):
                if word is not None:
                    out[i, t] = boxes[i][word]
                elif not enc.attention_mask[t]:
                    out[i, t] = self.special_boxes["pad"]
                elif token == tok.cls_token_id:
                    out[i, t] = self.special_boxes["cls"]
                else:  # [SEP] and any other special token, as Transformers
                    out[i, t] = self.special_boxes["pad" if token == tok.pad_token_id else "sep"]
        return out


def _v3_preprocessor(folder, hf, sequence_length=None, **_):
    import json

    from keras_models.errors import PresetError
    from keras_models.tasks.text import _text_preprocessor

    plain = _text_preprocessor(folder, hf, "TextPreprocessor", sequence_length=sequence_length)
    if plain is None:
        return None
    boxes = {}
    path = folder / "tokenizer_config.json"
    if path.is_file():
        cfg = json.loads(path.read_text())
        for key in ("cls_token_box", "sep_token_box", "pad_token_box"):
            if cfg.get(key) is not None:
                value = cfg[key]
                if not (isinstance(value, list) and len(value) == 4 and all(isinstance(v, int) for v in value)):
                    raise PresetError(f"{path}: {key}={value!r} must be a list of 4 integers")
                boxes[key] = value
    return LayoutLMv3Preprocessor(plain.tokenizer, sequence_length=sequence_length, **boxes)


def _head(backbone, num_classes, inner, name, dropout):
    return ClassificationHead(
        backbone.hidden_size, num_classes, inner_dense=inner, activation="tanh", dropout=dropout,
        input_dropout=True, name=name, dtype=backbone.dtype_policy,
        kernel_initializer=keras.initializers.TruncatedNormal(stddev=backbone.initializer_range))


def _head_rules(prefix, head):
    if head.dense is None:
        return dense_rules(prefix, head.out, base=False)
    return dense_rules(f"{prefix}.dense", head.dense, base=False) + dense_rules(f"{prefix}.out_proj", head.out,
                                                                                base=False)


@family_task(LayoutLMv3Backbone, "TextClassifier", "LayoutLMv3ForSequenceClassification")
class LayoutLMv3TextClassifier(_BoxChecks, RobertaShapedTextClassifier):
    @classmethod
    def preprocessor_from_preset(cls, folder, hf, **kw):
        return _v3_preprocessor(folder, hf, **kw)


@family_task(LayoutLMv3Backbone, "TokenClassifier", "LayoutLMv3ForTokenClassification")
class LayoutLMv3TokenClassifier(_BoxChecks, TokenClassifier):
    """Labels the text tokens only (image tokens are dropped). Like Transformers, fewer than 10
    classes use one linear layer, 10 or more a dense + tanh + linear head."""

    def __init__(self, backbone, num_classes=2, id2label=None, dropout=None, preprocessor=None, **kwargs):
        Task.__init__(self, backbone, preprocessor=preprocessor, **kwargs)
        self.num_classes = num_classes
        self.id2label = {int(k): v for k, v in id2label.items()} if id2label else None
        self.dropout = backbone.dropout_rate if dropout is None else dropout
        self.head = _head(backbone, num_classes, num_classes >= 10, "token_head", self.dropout)

    @classmethod
    def preprocessor_from_preset(cls, folder, hf, **kw):
        return _v3_preprocessor(folder, hf, **kw)

    def call(self, inputs, training=False):
        if not isinstance(inputs, dict):
            inputs = {"input_ids": inputs}
        hidden = self.backbone(inputs, training=training)
        return self.head(hidden[:, : ops.shape(inputs["input_ids"])[1]], training=training)

    def head_rules(self):
        return _head_rules("classifier", self.head)


@family_task(LayoutLMv3Backbone, "QuestionAnswerer", "LayoutLMv3ForQuestionAnswering")
class LayoutLMv3QuestionAnswerer(_BoxChecks, QuestionAnswerer):
    """Start/end logits from a dense + tanh + linear head over every position (image tokens
    included when ``pixel_values`` are given, as in Transformers)."""

    def __init__(self, backbone, preprocessor=None, **kwargs):
        Task.__init__(self, backbone, preprocessor=preprocessor, **kwargs)
        self.qa = _head(backbone, 2, True, "qa_outputs", backbone.dropout_rate)

    def head_rules(self):
        return _head_rules("qa_outputs", self.qa)


__all__ = ["LayoutLMv3Backbone", "LayoutLMv3Preprocessor", "LayoutLMv3TextClassifier", "LayoutLMv3TokenClassifier",
           "LayoutLMv3QuestionAnswerer"]

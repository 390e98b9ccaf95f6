"""Deformable DETR (model_type ``deformable_detr``), single-stage, with or without box refinement: the
ResNet's (or Swin's, each through SwinBackbone's per-stage LayerNorm) ``out_features`` stages (plus
``num_feature_levels`` - stages extra maps, each a 3x3 stride-2 conv of the previous) projected to
``d_model`` (conv + GroupNorm(32)), flattened together, and a transformer whose attention samples the maps instead of attending to every token.

* Multi-scale deformable attention (:class:`DeformableAttention`): per head, level and point a
  learned offset from the query's reference point (offsets in pixels of the level) and a softmax
  weight over the head's levels x points; the values (masked to 0 on padding) are read by
  bilinear interpolation with zero padding (PyTorch's ``grid_sample``, ``align_corners=False``),
  as Transformers' CPU path computes it.
* Reference points: the encoder's are each token's cell centre over the valid part of its level
  (``valid_ratios``, from ``pixel_mask``), the decoder's ``sigmoid(reference_points(query
  position))``; both are scaled by the valid ratios of every level.
* Positions: the sine embedding with Deformable DETR's half-cell offset (or learned), plus a
  learned ``level_embed`` per level. Object queries: ``query_position_embeddings`` holds
  (position | content) halves. No LayerNorm after the decoder.
* Heads (:class:`DeformableDetrObjectDetector`): sigmoid class logits (``class_embed.0``) and a box
  MLP (``bbox_embed.0``) whose centre is offset by the inverse sigmoid of the reference point.

* ``with_box_refine``: after each decoder layer an MLP (``decoder.bbox_embed.{i}``) moves the
  references, which become boxes (cx, cy, w, h): later layers sample around them, offsets scaled
  by half their size, and the box head is the last layer's MLP.

* ``two_stage`` (with box refinement, as Transformers requires): the queries are the encoder's best
  proposals (two_stage.py): ``enc_output`` + LayerNorm on the encoder's tokens, the proposal heads
  ``decoder.class_embed.{decoder_layers}`` / ``decoder.bbox_embed.{decoder_layers}``, and
  ``pos_trans`` + LayerNorm on the chosen boxes' sine embedding. DETA (deta.py) adds its per-level
  NMS selection (``assign_first_stage``) and ``pix_trans``.

* ``auxiliary_loss`` (training only; outputs unchanged): the backbone also returns every decoder
  layer's state and the references it read (``intermediate_hidden_states`` /
  ``intermediate_reference_points``, 2-d references as boxes of width and height 0.5 when others are
  boxes), and the loss scores each layer but the last with its heads, as Transformers does: the
  shared ``class_embed.0`` (two-stage: the layer's own ``model.decoder.class_embed.{i}``) and
  ``bbox_embed.0`` (box refinement: the layer's ``decoder.bbox_embed.{i}``). As in Transformers,
  the refined references and two-stage proposals pass no gradient back.

timm backbones raise ConfigError.
"""

import dataclasses
from dataclasses import dataclass

import keras
import numpy as np
from keras import ops

from keras_models.errors import ConfigError
from keras_models.layers.conv_blocks import ConvNormAct, conv_norm_rules
from keras_models.layers.vision_embeddings import dense_rules, norm_rules
from keras_models.models.backbone import SpecBackbone
from keras_models.models.detr.backbone import CONV_PREFIX, DetrSpec
from keras_models.models.detr.layers import (DetrAttention, LearnedPositions, _Layer, downsample_mask,
                                             inverse_sigmoid, sine_positions)
from keras_models.models.detr.two_stage import encoder_proposals, proposal_positions, select_proposals
from keras_models.models.registry import register_backbone, register_task
from keras_models.presets.weight_map import Rule
from keras_models.models.swin.backbone import SwinFeatureBackbone
from keras_models.spec import build_tower, const, dim, hf, tower_kwargs
from keras_models.tasks.object_detector import ObjectDetector, PredictionMLP

_ser = keras.saving.register_keras_serializable(package="keras_models")
_ALL = ("jax", "torch", "tensorflow")


def out_stages(bb):
    """0-based indices of the ResNet stages that feed the transformer (``out_features`` /
    ``out_indices``, in stage order; default the last)."""
    n = len(bb.get("depths") or (3, 4, 6, 3))
    names = ["stem"] + [f"stage{i + 1}" for i in range(n)]
    if bb.get("out_features"):
        idx = [names.index(f) for f in bb["out_features"] if f in names]
    elif bb.get("out_indices"):
        idx = [int(i) % (n + 1) for i in bb["out_indices"]]
    else:
        idx = [n]
    return sorted({i - 1 for i in idx if i > 0})


def sample_levels(value, locations, weights, shapes):
    """Bilinear reads of every level at once (PyTorch's ``grid_sample``: ``align_corners=False``,
    zeros outside a map), weighted and summed.

    value (b, heads, tokens, d): the levels' tokens one level after the other; locations (b, q,
    heads, levels, points, 2) as (x, y) in [0, 1] of each level; weights (b, q, heads, levels,
    points) -> (b, q, heads, d). One gather reads the four neighbours of every sample."""
    hs = ops.convert_to_tensor(np.array([h for h, _ in shapes], np.float32)[:, None])
    ws = ops.convert_to_tensor(np.array([w for _, w in shapes], np.float32)[:, None])
    starts = ops.convert_to_tensor(np.cumsum([0] + [h * w for h, w in shapes[:-1]]).astype(np.float32)[:, None])
    x = locations[..., 0] * ws - 0.5
    y = locations[..., 1] * hs - 0.5
    x0, y0 = ops.floor(x), ops.floor(y)
    fx, fy = x - x0, y - y0
    index, weight = [], []
    for dx, dy, w in ((0, 0, (1 - fx) * (1 - fy)), (1, 0, fx * (1 - fy)), (0, 1, (1 - fx) * fy), (1, 1, fx * fy)):
        xi, yi = x0 + dx, y0 + dy
        inside = (xi >= 0) & (xi <= ws - 1) & (yi >= 0) & (yi <= hs - 1)
        index.append(starts + ops.clip(yi, 0, hs - 1) * ws + ops.clip(xi, 0, ws - 1))
        weight.append(w * ops.cast(inside, w.dtype) * weights)
    b, q, heads = ops.shape(value)[0], locations.shape[1] or ops.shape(locations)[1], value.shape[1]
    # (b, q, heads, levels, points, 4) -> (b, heads, q * levels * points * 4)
    index = ops.reshape(ops.transpose(ops.cast(ops.stack(index, axis=-1), "int32"), (0, 2, 1, 3, 4, 5)),
                        (b, heads, -1))
    weight = ops.reshape(ops.transpose(ops.stack(weight, axis=-1), (0, 2, 1, 3, 4, 5)), (b, heads, q, -1, 1))
    picked = ops.take_along_axis(value, ops.broadcast_to(index[..., None], ops.shape(index) + (value.shape[-1],)),
                                 axis=2)
    out = ops.sum(ops.reshape(picked, (b, heads, q, -1, value.shape[-1])) * weight, axis=3)  # (b, heads, q, d)
    return ops.transpose(out, (0, 2, 1, 3))


@_ser
class DeformableAttention(keras.layers.Layer):
    """Multi-scale deformable attention (sampling_offsets, attention_weights, value_proj, output_proj)."""

    def __init__(self, hidden_size, num_heads, num_levels, num_points, **kwargs):
        super().__init__(**kwargs)
        self.hidden_size, self.num_heads, self.num_levels, self.num_points = hidden_size, num_heads, num_levels, num_points
        common = dict(dtype=self.dtype_policy)
        n = num_heads * num_levels * num_points
        self.sampling_offsets = keras.layers.Dense(2 * n, name="sampling_offsets", **common)
        self.attention_weights = keras.layers.Dense(n, name="attention_weights", **common)
        self.value_proj = keras.layers.Dense(hidden_size, name="value_proj", **common)
        self.output_proj = keras.layers.Dense(hidden_size, name="output_proj", **common)

    def build(self, input_shape=None):
        for d in (self.sampling_offsets, self.attention_weights, self.value_proj, self.output_proj):
            d.build((None, None, self.hidden_size))
        self.built = True

    def call(self, query, values, value_mask, reference, shapes):
        """query (b, q, d); values (b, s, d) with value_mask (b, s); reference (b, q, levels, 2) as
        (x, y) in [0, 1] (or (b, q, levels, 4) boxes (cx, cy, w, h)); shapes: the levels' (h, w) ->
        (b, q, d)."""
        b, q = ops.shape(query)[0], query.shape[1] or ops.shape(query)[1]
        heads, levels, points, hd = self.num_heads, self.num_levels, self.num_points, self.hidden_size // self.num_heads
        value = self.value_proj(values) * ops.cast(value_mask, values.dtype)[..., None]
        value = ops.transpose(ops.reshape(value, (b, -1, heads, hd)), (0, 2, 1, 3))  # (b, heads, s, hd)
        offsets = ops.reshape(self.sampling_offsets(query), (b, q, heads, levels, points, 2))
        weights = ops.softmax(ops.reshape(self.attention_weights(query), (b, q, heads, levels * points)), axis=-1)
        weights = ops.reshape(weights, (b, q, heads, levels, points))
        if reference.shape[-1] == 4:  # boxes (refined references): offsets scaled by half the box size
            locations = (reference[:, :, None, :, None, :2]
                         + offsets / points * reference[:, :, None, :, None, 2:] * 0.5)
        else:
            norm = np.array([[w, h] for h, w in shapes], np.float32)
            locations = reference[:, :, None, :, None, :] + offsets / ops.convert_to_tensor(norm)[:, None, :]
        out = sample_levels(value, locations, weights, shapes)
        return self.output_proj(ops.reshape(out, (b, q, self.hidden_size)))

    def rules(self, prefix):
        return [r for n in ("sampling_offsets", "attention_weights", "value_proj", "output_proj")
                for r in dense_rules(f"{prefix}.{n}", getattr(self, n))]

    def get_config(self):
        c = super().get_config()
        c.update(hidden_size=self.hidden_size, num_heads=self.num_heads, num_levels=self.num_levels,
                 num_points=self.num_points)
        return c


@_ser
class DeformableEncoderLayer(_Layer):
    def __init__(self, *args, num_levels=4, num_points=4, **kwargs):
        super().__init__(*args, **kwargs)
        self.num_levels, self.num_points = num_levels, num_points
        self.self_attn = DeformableAttention(self.hidden_size, self.num_heads, num_levels, num_points,
                                             name="self_attn", dtype=self.dtype_policy)
        self.self_attn_layer_norm = self.norm("self_attn_layer_norm")
        self.final_layer_norm = self.norm("final_layer_norm")

    def _sublayers(self):
        return (self.self_attn, self.self_attn_layer_norm, self.final_layer_norm)

    def call(self, x, pos, mask, reference, shapes, training=False):
        x = self.self_attn_layer_norm(x + self.drop(self.self_attn(x + pos, x, mask, reference, shapes=shapes),
                                                    training=training))
        return self.final_layer_norm(x + self.mlp(x, training))

    def rules(self, p):
        return (self.self_attn.rules(f"{p}.self_attn") + norm_rules(f"{p}.self_attn_layer_norm", self.self_attn_layer_norm)
                + self.mlp_rules(p) + norm_rules(f"{p}.final_layer_norm", self.final_layer_norm))

    def get_config(self):
        c = super().get_config()
        c.update(num_levels=self.num_levels, num_points=self.num_points)
        return c


@_ser
class DeformableDecoderLayer(DeformableEncoderLayer):
    """Self-attention over the queries (positions on queries and keys), deformable cross-attention."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.query_attn = DetrAttention(self.hidden_size, self.num_heads, self.attention_dropout, name="query_attn",
                                        dtype=self.dtype_policy)
        self.encoder_attn_layer_norm = self.norm("encoder_attn_layer_norm")

    def _sublayers(self):
        return super()._sublayers() + (self.query_attn, self.encoder_attn_layer_norm)

    def call(self, x, query_pos, memory, mask, reference, shapes, training=False):
        h = x + query_pos
        x = self.self_attn_layer_norm(x + self.drop(self.query_attn(h, h, x, training=training), training=training))
        x = self.encoder_attn_layer_norm(x + self.drop(self.self_attn(x + query_pos, memory, mask, reference, shapes=shapes),
                                                       training=training))
        return self.final_layer_norm(x + self.mlp(x, training))

    def rules(self, p):
        r = self.query_attn.rules(f"{p}.self_attn") + self.self_attn.rules(f"{p}.encoder_attn")
        for name in ("self_attn_layer_norm", "encoder_attn_layer_norm", "final_layer_norm"):
            r += norm_rules(f"{p}.{name}", getattr(self, name))
        return r + self.mlp_rules(p)


def _as_boxes(ref, like):
    """(x, y) references as (x, y, 0.5, 0.5) where ``like`` holds boxes: the box head adds
    ``inverse_sigmoid(0.5)``, exactly 0, to width and height, as it adds nothing to 2-d references."""
    if ref.shape[-1] == like.shape[-1]:
        return ref
    return ops.concatenate([ref, ops.full_like(ref, 0.5)], axis=-1)


def _label_count(value):
    return value if isinstance(value, int) else len(value)


def _label_table(n):
    return {str(i): f"LABEL_{i}" for i in range(n)}


@dataclass(frozen=True, kw_only=True)
class DeformableDetrSpec(DetrSpec):
    backbone_types = ("resnet", "swin")
    timm_backbones = False  # several feature levels of a timm backbone: not implemented
    ignored = DetrSpec.ignored + ("focal_alpha", "return_intermediate",
                                  "max_position_embeddings", "disable_custom_kernels", "auxiliary_loss")
    num_queries: int = dim("num_queries", 300)
    encoder_ffn_dim: int = dim("encoder_ffn_dim", 1024)
    decoder_ffn_dim: int = dim("decoder_ffn_dim", 1024)
    num_feature_levels: int = dim("num_feature_levels", 4)
    encoder_n_points: int = dim("encoder_n_points", 4)
    decoder_n_points: int = dim("decoder_n_points", 4)
    two_stage: bool = hf("two_stage", False, doc="queries from the encoder's best proposals")
    with_box_refine: bool = hf("with_box_refine", False, doc="each decoder layer refines the reference boxes")
    two_stage_num_proposals: int = dim("two_stage_num_proposals", 300, doc="queries of a two-stage model")
    num_labels: int = hf(("id2label", "num_labels"), 2, read=_label_count, write=_label_table,
                         doc="the two-stage proposal class head's width (id2label's size)")
    assign_first_stage: bool = const(False, doc="DETA's per-level NMS choice of the proposals")
    proposal_features: bool = const(False, doc="DETA's pix_trans: the chosen tokens' features join the queries")

    def validate(self, source="config.json"):
        super().validate(source)
        if self.two_stage and not self.with_box_refine:
            raise ConfigError(f"{source}: two_stage=true needs with_box_refine=true (as Transformers requires)")
        if self.d_model % 32:
            raise ConfigError(f"{source}: d_model={self.d_model} must be a multiple of 32 (GroupNorm(32) projections)")
        if isinstance(self.backbone_config, dict) and len(out_stages(self.backbone_config)) > self.num_feature_levels:
            raise ConfigError(f"{source}: backbone_config has more out_features than num_feature_levels="
                              f"{self.num_feature_levels}")


@_ser
@register_backbone("deformable_detr")
class DeformableDetrBackbone(SpecBackbone):
    """Returns ``{"last_hidden_state" (batch, queries, d), "encoder_last_hidden_state" (batch,
    tokens of every level, d), "reference_points" (batch, queries, 2)}``."""

    spec_cls = DeformableDetrSpec
    base_model_prefix = "model"
    hf_architecture = "DeformableDetrModel"
    hf_ignore = ("*num_batches_tracked", "*relative_position_index")
    verified_backends = _ALL  # tests/vision/test_detection.py
    conv_prefix = CONV_PREFIX  # where the ResNet's tensors live
    hf_known_unused = ("model.decoder.class_embed.*",)  # two-stage: the other layers' (auxiliary) class heads

    def __init__(self, spec=None, **kwargs):
        super().__init__(spec, **kwargs)
        s, common = self.spec, dict(dtype=self.dtype_policy)
        d = self.hidden_size = s.d_model
        self.out_stages = out_stages(s.backbone_config)
        if s.backbone_config.get("model_type") == "swin":  # Transformers' SwinBackbone: a LayerNorm per out stage
            _, tower_args = tower_kwargs(s.backbone_config, "backbone_config")
            self.swin = SwinFeatureBackbone(name="conv_encoder", **common, **tower_args)
            self.stage_norms = [keras.layers.LayerNormalization(epsilon=1e-5, name=f"stage_norm_{i}", **common)
                                for i in self.out_stages]
        else:
            self.resnet = build_tower(s.backbone_config, "conv_encoder", self.dtype_policy)
        n_out = len(self.out_stages)
        self.input_proj = [ConvNormAct(d, 1 if i < n_out else 3, 1 if i < n_out else 2, activation=None, use_bias=True,
                                       norm="group", norm_groups=32, name=f"input_proj_{i}", **common)
                           for i in range(s.num_feature_levels)]
        self.learned_positions = (LearnedPositions(d // 2, name="position_embedding", **common)
                                  if s.position_embedding_type == "learned" else None)
        layer = dict(activation=s.activation_function, dropout=s.dropout, attention_dropout=s.attention_dropout,
                     activation_dropout=s.activation_dropout, num_levels=s.num_feature_levels, **common)
        self.encoder_layers = [DeformableEncoderLayer(d, s.encoder_attention_heads, s.encoder_ffn_dim,
                                                      num_points=s.encoder_n_points, name=f"encoder_layer_{i}", **layer)
                               for i in range(s.encoder_layers)]
        self.decoder_layers = [DeformableDecoderLayer(d, s.decoder_attention_heads, s.decoder_ffn_dim,
                                                      num_points=s.decoder_n_points, name=f"decoder_layer_{i}", **layer)
                               for i in range(s.decoder_layers)]
        self.bbox_embed = ([PredictionMLP(d, 4, 3, name=f"bbox_embed_{i}", **common) for i in range(s.decoder_layers)]
                           if s.with_box_refine else [])
        if s.two_stage:  # the proposal heads and projections (two_stage.py)
            norm = dict(epsilon=1e-5, **common)
            self.enc_output = keras.layers.Dense(d, name="enc_output", **common)
            self.enc_output_norm = keras.layers.LayerNormalization(name="enc_output_norm", **norm)
            self.pos_trans = keras.layers.Dense(2 * d, name="pos_trans", **common)
            self.pos_trans_norm = keras.layers.LayerNormalization(name="pos_trans_norm", **norm)
            self.proposal_class = keras.layers.Dense(s.num_labels, name="proposal_class", **common)
            self.proposal_box = PredictionMLP(d, 4, 3, name="proposal_box", **common)
            if s.proposal_features:
                self.pix_trans = keras.layers.Dense(d, name="pix_trans", **common)
                self.pix_trans_norm = keras.layers.LayerNormalization(name="pix_trans_norm", **norm)
        else:
            self.reference_dense = keras.layers.Dense(2, name="reference_points", **common)

    def _two_stage_layers(self):
        names = ["enc_output", "enc_output_norm", "pos_trans", "pos_trans_norm", "proposal_class", "proposal_box"]
        return [getattr(self, n) for n in names + (["pix_trans", "pix_trans_norm"] if self.spec.proposal_features else [])]

    def build(self, input_shape=None):
        s, d = self.spec, self.spec.d_model
        if hasattr(self, "swin"):
            self.swin.build_from_dummy()
            channels = [self.swin.embed_dim * 2 ** i for i in self.out_stages]
            for norm, c in zip(self.stage_norms, channels):
                norm.build((None, None, None, c))
        else:
            self.resnet.build_from_dummy()
            channels = [self.resnet.hidden_sizes[i] for i in self.out_stages]
        for i, proj in enumerate(self.input_proj):
            proj.build((None, None, None, channels[i] if i < len(channels) else (channels[-1] if i == len(channels)
                                                                                 else d)))
        normal = keras.initializers.RandomNormal(stddev=1.0)
        if not s.two_stage:
            self.query_position_embeddings = self.add_weight(name="query_position_embeddings",
                                                             shape=(s.num_queries, 2 * d), initializer=normal)
        self.level_embed = self.add_weight(name="level_embed", shape=(s.num_feature_levels, d), initializer=normal)
        if self.learned_positions is not None:
            self.learned_positions.build()
        for layer in self.encoder_layers + self.decoder_layers:
            layer.build((None, None, d))
        for layer in self._two_stage_layers() if s.two_stage else [self.reference_dense]:
            layer.build((None, None, 2 * d if layer.name.startswith("pos_trans") else d))
        for mlp in self.bbox_embed:
            mlp.build((None, None, d))
        self.built = True

    def dummy_inputs(self):
        return self.spec.dummy_inputs()

    # --- forward ------------------------------------------------------------------------------
    def feature_levels(self, pixels):
        """The projected maps of every level (batch, h, w, d), channels_last."""
        if hasattr(self, "swin"):
            outs = self.swin.stage_outputs({"pixel_values": pixels})
            feats = [norm(outs[i]) for norm, i in zip(self.stage_norms, self.out_stages)]
        else:
            x = self.resnet.stem_output(pixels, training=False)
            feats = []
            for i, layers in enumerate(self.resnet.stages[:self.out_stages[-1] + 1]):
                for layer in layers:
                    x = layer(x, training=False)
                if i in self.out_stages:
                    feats.append(x)
        maps = [proj(f) for proj, f in zip(self.input_proj, feats)]
        for i in range(len(feats), len(self.input_proj)):
            maps.append(self.input_proj[i](feats[-1] if i == len(feats) else maps[-1]))
        return maps

    def call(self, inputs, training=False):
        s, d = self.spec, self.spec.d_model
        pixels = inputs["pixel_values"] if isinstance(inputs, dict) else inputs
        pixel_mask = inputs.get("pixel_mask") if isinstance(inputs, dict) else None
        maps = self.feature_levels(pixels)
        b = ops.shape(maps[0])[0]
        tokens, positions, masks, ratios, shapes, refs = [], [], [], [], [], []
        for level, m in enumerate(maps):
            h, w = m.shape[1], m.shape[2]
            shapes.append((h, w))
            small = (ops.ones_like(m[..., 0], dtype="float32") if pixel_mask is None
                     else downsample_mask(pixel_mask, h, w))
            if self.learned_positions is not None:
                pos = ops.zeros_like(m) + ops.cast(self.learned_positions.grid(h, w), m.dtype)
            else:
                pos = sine_positions(small, d // 2, m.dtype, offset=0.5)
            pos = pos + ops.cast(self.level_embed[level], m.dtype)
            tokens.append(ops.reshape(m, (b, -1, d)))
            positions.append(ops.reshape(pos, (b, -1, d)))
            masks.append(ops.reshape(small, (b, -1)))
            ratio = ops.stack([ops.sum(small[:, 0, :], axis=1) / w, ops.sum(small[:, :, 0], axis=1) / h], axis=-1)
            ratios.append(ratio)  # (b, 2): valid (width, height) fractions
            ys, xs = np.meshgrid(np.arange(h, dtype=np.float32) + 0.5, np.arange(w, dtype=np.float32) + 0.5,
                                 indexing="ij")
            refs.append(ops.stack([ops.convert_to_tensor(xs.reshape(-1))[None] / (ratio[:, 0:1] * w),
                                   ops.convert_to_tensor(ys.reshape(-1))[None] / (ratio[:, 1:2] * h)], axis=-1))
        x, pos, mask = (ops.concatenate(t, axis=1) for t in (tokens, positions, masks))
        ratios = ops.stack(ratios, axis=1)  # (b, levels, 2)
        reference = ops.concatenate(refs, axis=1)[:, :, None] * ratios[:, None]
        for layer in self.encoder_layers:
            x = layer(x, pos, mask, reference, shapes=shapes, training=training)
        memory = x

        if s.two_stage:
            query_pos, hidden, ref = self.proposal_queries(memory, mask, shapes)
        else:
            table = ops.cast(self.query_position_embeddings, memory.dtype)
            zeros = ops.zeros_like(memory[:, :1, :])
            query_pos, hidden = zeros + table[None, :, :d], zeros + table[None, :, d:]
            ref = ops.sigmoid(self.reference_dense(query_pos))
        states, refs_read = [], []
        for i, layer in enumerate(self.decoder_layers):
            scale = ratios if ref.shape[-1] == 2 else ops.concatenate([ratios, ratios], axis=-1)
            last_ref = ref  # the references the last layer reads are the heads' too
            hidden = layer(hidden, query_pos, memory, mask, ref[:, :, None] * scale[:, None], shapes=shapes,
                           training=training)
            states.append(hidden)
            refs_read.append(ref)
            if self.bbox_embed:  # box refinement: each layer moves the references (2 -> 4 coordinates)
                delta = self.bbox_embed[i](hidden)
                if ref.shape[-1] == 2:
                    delta = ops.concatenate([delta[..., :2] + inverse_sigmoid(ref), delta[..., 2:]], axis=-1)
                else:
                    delta = delta + inverse_sigmoid(ref)
                ref = ops.stop_gradient(ops.sigmoid(delta))  # as Transformers: no gradient through the references
        out = {"last_hidden_state": hidden, "encoder_last_hidden_state": memory, "reference_points": last_ref}
        if s.auxiliary_loss:  # every layer's state and the references it read (auxiliary loss)
            out["intermediate_hidden_states"] = ops.stack(states)
            out["intermediate_reference_points"] = ops.stack([_as_boxes(r, last_ref) for r in refs_read])
        return out

    def proposal_queries(self, memory, mask, shapes):
        """Two-stage queries: (position, content, reference boxes (b, proposals, 4))."""
        s, d = self.spec, self.spec.d_model
        features, proposals = encoder_proposals(memory, mask, shapes)
        features = self.enc_output_norm(self.enc_output(features))
        scores = self.proposal_class(features)[..., 0]
        coords = self.proposal_box(features) + proposals
        ids = select_proposals(ops.cast(scores, "float32"), ops.cast(coords, "float32"), shapes,
                               s.two_stage_num_proposals, s.assign_first_stage)
        coords = ops.take_along_axis(coords, ops.broadcast_to(ids[..., None], ops.shape(ids) + (4,)), axis=1)
        coords = ops.stop_gradient(coords)  # as Transformers: the proposals pass no gradient to the decoder
        pos = self.pos_trans_norm(self.pos_trans(ops.cast(proposal_positions(ops.cast(coords, "float32"), d),
                                                          memory.dtype)))
        query_pos, hidden = pos[..., :d], pos[..., d:]
        if s.proposal_features:
            chosen = ops.take_along_axis(features, ops.broadcast_to(ids[..., None], ops.shape(ids) + (d,)), axis=1)
            hidden = hidden + self.pix_trans_norm(self.pix_trans(chosen))
        return query_pos, hidden, ops.sigmoid(coords)

    # --- HF conversion ------------------------------------------------------------------------
    def weight_rules(self):
        if hasattr(self, "swin"):  # SwinBackbone has no final LayerNorm
            r = [dataclasses.replace(rule, hf=self.conv_prefix + rule.hf) for rule in self.swin.weight_rules()
                 if not rule.hf.startswith("layernorm.")]
            for norm, i in zip(self.stage_norms, self.out_stages):
                r += norm_rules(f"{self.conv_prefix}hidden_states_norms.stage{i + 1}", norm)
        else:
            r = [dataclasses.replace(rule, hf=self.conv_prefix + rule.hf) for rule in self.resnet.weight_rules()]
        for i, proj in enumerate(self.input_proj):
            r += conv_norm_rules(f"input_proj.{i}", proj, conv="0", norm="1")
        r.append(Rule("level_embed", self.level_embed))
        if self.spec.two_stage:
            n = self.spec.decoder_layers
            r += dense_rules(f"decoder.class_embed.{n}", self.proposal_class) + self.proposal_box.rules(
                f"decoder.bbox_embed.{n}")
            for name in ("enc_output", "pos_trans") + (("pix_trans",) if self.spec.proposal_features else ()):
                r += dense_rules(name, getattr(self, name)) + norm_rules(f"{name}_norm", getattr(self, f"{name}_norm"))
        else:
            r += [Rule("query_position_embeddings.weight", self.query_position_embeddings)]
            r += dense_rules("reference_points", self.reference_dense)
        if self.learned_positions is not None:
            for ours, name in ((self.learned_positions.rows, "row_embeddings"),
                               (self.learned_positions.cols, "column_embeddings")):
                r.append(Rule(f"position_embedding.{name}.weight", ours,
                              aliases=(f"backbone.position_embedding.{name}.weight",)))
        for i, layer in enumerate(self.encoder_layers):
            r += layer.rules(f"encoder.layers.{i}")
        for i, layer in enumerate(self.decoder_layers):
            r += layer.rules(f"decoder.layers.{i}")
        for i, mlp in enumerate(self.bbox_embed):
            r += mlp.rules(f"decoder.bbox_embed.{i}")
        return r


@_ser
@register_task(DeformableDetrBackbone, "ObjectDetector", ("DeformableDetrForObjectDetection",))
class DeformableDetrObjectDetector(ObjectDetector):
    """Sigmoid class logits and boxes offset by the last decoder layer's references. The
    checkpoint's per-layer class heads are tied (``class_embed.0`` is read; two-stage: the last
    layer's, ``model.decoder.class_embed.{last}``); the box head is ``bbox_embed.0`` or, with box
    refinement, the last layer's refinement MLP (``model.decoder.bbox_embed.{last}``)."""

    no_object_class = False
    hf_head_patterns = ("class_embed.*", "bbox_embed.*", "model.decoder.class_embed.*")
    auxiliary_loss_supported = True

    def __init__(self, backbone, *args, **kwargs):
        super().__init__(backbone, *args, **kwargs)
        spec = backbone.spec
        # two-stage: the other decoder layers' own class heads (model.decoder.class_embed.{i}), read
        # only for the auxiliary loss; the others share class_embed.0
        self.aux_class_heads = []
        if spec.two_stage and spec.auxiliary_loss and not self.loss_unsupported:
            self.aux_class_heads = [keras.layers.Dense(self.num_classes, name=f"aux_class_head_{i}",
                                                       dtype=backbone.dtype_policy)
                                    for i in range(spec.decoder_layers - 1)]
            for head in self.aux_class_heads:
                head.build((None, None, spec.d_model))

    def own_box_head(self, backbone):
        return not backbone.bbox_embed

    def auxiliary_logits(self, outputs):
        """Each layer but the last: its class head (two-stage: its own, else the shared one) and its
        box head (box refinement: its refinement MLP) offset by the references that layer read."""
        inter, refs = outputs["intermediate_hidden_states"], outputs["intermediate_reference_points"]
        n = len(self.backbone.decoder_layers) - 1
        if self.backbone.spec.two_stage and len(self.aux_class_heads) != n:
            raise ConfigError(f"{type(self).__name__}: the two-stage auxiliary loss needs every decoder layer's "
                              "class head, built only when the config has auxiliary_loss=True; reload the "
                              "checkpoint with auxiliary_loss=True in config.json")
        classes, boxes = [], []
        for i in range(n):
            classes.append((self.aux_class_heads[i] if self.aux_class_heads else self.class_head)(inter[i]))
            head = self.backbone.bbox_embed[i] if self.backbone.bbox_embed else self.bbox_head
            boxes.append(self._offset(head(inter[i]), refs[i]))
        return ops.stack(classes), ops.stack(boxes)

    @staticmethod
    def _offset(boxes, ref):
        ref = inverse_sigmoid(ref)
        if ref.shape[-1] == 4:
            return boxes + ref
        return boxes + ops.concatenate([ref, ops.zeros_like(ref)], axis=-1)

    def box_logits(self, states, outputs):
        return self._offset((self.bbox_head or self.backbone.bbox_embed[-1])(states), outputs["reference_points"])

    def head_rules(self):
        spec = self.backbone.spec
        if spec.two_stage:  # the last decoder layer's own class head (the checkpoint names them per layer)
            n = spec.decoder_layers - 1
            heads = [(n, self.class_head)] + list(enumerate(self.aux_class_heads))
            return [dataclasses.replace(r, hf=f"model.decoder.{r.hf}", aliases=(r.hf,))
                    for i, head in heads for r in dense_rules(f"class_embed.{i}", head, base=False)]
        r = dense_rules("class_embed.0", self.class_head, base=False)
        return r if self.bbox_head is None else r + self.bbox_head.rules("bbox_embed.0", base=False)


__all__ = ["DeformableDetrSpec", "DeformableDetrBackbone", "DeformableDetrObjectDetector", "DeformableAttention"]

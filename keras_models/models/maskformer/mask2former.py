"""Mask2Former (model_type ``mask2former``): MaskFormer's query masks with a multi-scale pixel
decoder and a masked-attention transformer decoder.

* Backbone (``backbone_config``, a Swin read at its ``out_features`` stages, each through its
  ``hidden_states_norms`` LayerNorm, as Transformers' SwinBackbone: windows kept at every size).
* Pixel decoder: the three deepest maps, each 1x1-projected + GroupNorm(32) to ``feature_size``,
  with normalised sine positions plus a learned per-level embedding, flattened together through
  ``encoder_layers`` multi-scale deformable-attention layers (3 levels, 4 points, ReLU MLP,
  post-norm; keras_models.models.detr.deformable); then an FPN over the shallower maps
  (log2(min stride) - log2(``common_stride``) of them: a 1x1 lateral conv + GroupNorm, the coarser
  level added after bilinear upsampling, a 3x3 conv + GroupNorm + ReLU) and a 1x1
  ``mask_projection`` of the finest level (``pixel_decoder_last_hidden_state``).
* Transformer decoder: learned query features and query positions; for layer ``i`` (of
  ``decoder_layers - 1``), masked cross-attention to level ``i % 3`` (1x1-projected where
  ``hidden_dim`` differs or ``enforce_input_projection``, plus a level embedding, sine positions on
  the keys) where each query only sees pixels whose previous mask prediction (bilinear to the
  level's size) has sigmoid >= 0.5 (a query that sees none sees all), then self-attention and the
  MLP (``pre_norm`` or post-norm). After the shared LayerNorm, every layer's queries predict masks
  (``mask_predictor``: a 3-layer MLP dotted with the pixel embeddings).

The backbone returns ``last_hidden_state`` (= ``transformer_decoder_last_hidden_state``, the last
layer's queries before the LayerNorm, as Transformers), ``transformer_decoder_intermediate_state``
(after it; the class head reads it), ``masks_queries_logits`` (the last prediction),
``pixel_decoder_last_hidden_state``, ``encoder_last_hidden_state``, ``encoder_hidden_states`` and
``pixel_decoder_hidden_states`` (the three multi-scale maps, coarse to fine), channels_last.
"""

import dataclasses
import math
from dataclasses import dataclass, replace

import keras
import numpy as np
from keras import ops

from keras_models.errors import ConfigError
from keras_models.layers.activations import get_activation
from keras_models.layers.vision_embeddings import conv_rules, dense_rules, norm_rules
from keras_models.models.backbone import SpecBackbone
from keras_models.models.depth.layers import resize
from keras_models.models.detr.deformable import DeformableEncoderLayer
from keras_models.models.detr.layers import DetrAttention, sine_positions
from keras_models.models.maskformer import ConvGroupNorm
from keras_models.models.registry import register_backbone, register_task
from keras_models.models.swin.backbone import SwinBackbone
from keras_models.models.swin.backbone import SwinFeatureBackbone
from keras_models.models.upernet import out_stages
from keras_models.presets.weight_map import TRANSPOSE, Rule
from keras_models.spec import Spec, dim, hf, tower
from keras_models.tasks.object_detector import PredictionMLP
from keras_models.tasks.universal_segmenter import UniversalSegmenter, mask_logits

_ser = keras.saving.register_keras_serializable(package="keras_models")
LEVELS = 3


@dataclass(frozen=True, kw_only=True)
class Mask2FormerSpec(Spec):
    ignored = ("no_object_weight", "class_weight", "mask_weight", "dice_weight", "train_num_points",
               "oversample_ratio", "importance_sample_ratio", "init_xavier_std", "use_auxiliary_loss",
               "output_auxiliary_logits", "ignore_value", "backbone", "use_timm_backbone", "use_pretrained_backbone",
               "backbone_kwargs")

    backbone_config: dict = tower("backbone_config", "swin", doc="a Swin config read at its out_features stages")
    feature_size: int = dim("feature_size", 256)
    mask_feature_size: int = dim("mask_feature_size", 256)
    hidden_dim: int = dim("hidden_dim", 256)
    encoder_feedforward_dim: int = dim("encoder_feedforward_dim", 1024)
    activation_function: str = hf("activation_function", "relu")
    encoder_layers: int = hf("encoder_layers", 6)
    decoder_layers: int = dim("decoder_layers", 10)
    num_attention_heads: int = dim("num_attention_heads", 8)
    dropout: float = hf("dropout", 0.0)
    dim_feedforward: int = dim("dim_feedforward", 2048)
    pre_norm: bool = hf("pre_norm", False)
    enforce_input_projection: bool = hf("enforce_input_projection", False)
    common_stride: int = dim("common_stride", 4)
    num_queries: int = dim("num_queries", 100)
    feature_strides: tuple = hf("feature_strides", (4, 8, 16, 32))
    init_std: float = hf("init_std", 0.02)

    @classmethod
    def from_hf(cls, config, source="config.json"):
        if isinstance(config, dict) and config.get("backbone_config") is None:
            config = {**config, "backbone_config": {"model_type": "swin", "depths": [2, 2, 18, 2],
                                                    "drop_path_rate": 0.3,
                                                    "out_features": ["stage1", "stage2", "stage3", "stage4"]}}
        return super().from_hf(config, source)

    def validate(self, source="config.json"):
        b = self.backbone_config
        if b.get("model_type") != "swin":
            raise ConfigError(f"{source}: backbone_config model_type {b.get('model_type')!r} is not implemented for "
                              "Mask2Former (supported: ['swin'])")
        stages = out_stages(b, f"{source} [backbone_config]")
        if len(stages) < LEVELS or len(self.feature_strides) != len(stages):
            raise ConfigError(f"{source}: Mask2Former reads three feature levels: backbone_config out_features must "
                              f"name at least 3 stages ({len(stages)} named) and feature_strides one stride each "
                              f"({list(self.feature_strides)})")
        if self.feature_size % 32:
            raise ConfigError(f"{source}: feature_size={self.feature_size} must be a multiple of 32 (GroupNorm with "
                              "32 groups)")
        if self.feature_size % self.num_attention_heads or self.hidden_dim % self.num_attention_heads:
            raise ConfigError(f"{source}: feature_size and hidden_dim must be divisible by num_attention_heads="
                              f"{self.num_attention_heads}")
        fpn = math.log2(min(self.feature_strides[-LEVELS:])) - math.log2(self.common_stride)
        if fpn < 0 or fpn != int(fpn) or fpn > len(stages) - LEVELS:
            raise ConfigError(f"{source}: common_stride={self.common_stride} and feature_strides="
                              f"{list(self.feature_strides)} give {fpn} FPN levels (a whole number of the shallower "
                              "maps expected)")

    def dummy_inputs(self):
        return {"pixel_values": np.zeros((1, 64, 64, self.backbone_config.get("num_channels", 3)), "float32")}


@_ser
class MaskedCrossAttention(keras.layers.Layer):
    """``torch.nn.MultiheadAttention`` (a fused ``in_proj`` and ``out_proj``) with a boolean mask
    (True: not attended) of shape (batch, heads, queries, keys)."""

    def __init__(self, hidden_size, num_heads, **kwargs):
        super().__init__(**kwargs)
        self.hidden_size, self.num_heads = hidden_size, num_heads
        self.out_proj = keras.layers.Dense(hidden_size, name="out_proj", dtype=self.dtype_policy)

    def build(self, input_shape=None):
        d = self.hidden_size
        self.in_kernel = self.add_weight(name="in_kernel", shape=(d, 3 * d), initializer="glorot_uniform")
        self.in_bias = self.add_weight(name="in_bias", shape=(3 * d,), initializer="zeros")
        self.out_proj.build((None, None, d))
        self.built = True

    def call(self, query, key, value, masked):
        d, h = self.hidden_size, self.num_heads
        wq, wk, wv = (self.in_kernel[:, i * d:(i + 1) * d] for i in range(3))
        bq, bk, bv = (self.in_bias[i * d:(i + 1) * d] for i in range(3))

        def heads(x, w, bias):
            y = ops.matmul(x, ops.cast(w, x.dtype)) + ops.cast(bias, x.dtype)
            return ops.reshape(y, (ops.shape(y)[0], ops.shape(y)[1], h, d // h))

        q, k, v = heads(query, wq, bq), heads(key, wk, bk), heads(value, wv, bv)
        scores = ops.einsum("bqhd,bkhd->bhqk", q * ops.cast((d // h) ** -0.5, q.dtype), k)
        scores = ops.where(masked, ops.cast(-1e9, scores.dtype), scores)
        out = ops.einsum("bhqk,bkhd->bqhd", ops.softmax(scores, axis=-1), v)
        return self.out_proj(ops.reshape(out, (ops.shape(out)[0], ops.shape(out)[1], d)))

    def rules(self, p):
        return [Rule(p + ".in_proj_weight", self.in_kernel, TRANSPOSE), Rule(p + ".in_proj_bias", self.in_bias)] + \
            dense_rules(p + ".out_proj", self.out_proj)

    def get_config(self):
        c = super().get_config()
        c.update(hidden_size=self.hidden_size, num_heads=self.num_heads)
        return c


@_ser
class MaskedAttentionDecoderLayer(keras.layers.Layer):
    def __init__(self, hidden_size, num_heads, ffn_dim, activation="relu", pre_norm=False, **kwargs):
        super().__init__(**kwargs)
        self.hidden_size, self.num_heads, self.ffn_dim = hidden_size, num_heads, ffn_dim
        self.activation, self.pre_norm = activation, pre_norm
        common = dict(dtype=self.dtype_policy)
        self.cross_attn = MaskedCrossAttention(hidden_size, num_heads, name="cross_attn", **common)
        self.self_attn = DetrAttention(hidden_size, num_heads, name="self_attn", **common)
        self.fc1 = keras.layers.Dense(ffn_dim, name="fc1", **common)
        self.fc2 = keras.layers.Dense(hidden_size, name="fc2", **common)
        self.act = get_activation(activation)
        self.norms = {n: keras.layers.LayerNormalization(epsilon=1e-5, name=n, **common)
                      for n in ("cross_attn_layer_norm", "self_attn_layer_norm", "final_layer_norm")}

    def build(self, input_shape=None):
        d = self.hidden_size
        for layer in [self.cross_attn, self.self_attn, self.fc1] + list(self.norms.values()):
            layer.build((None, None, d))
        self.fc2.build((None, None, self.ffn_dim))
        self.built = True

    def call(self, x, query_pos, memory, memory_pos, masked):
        def cross(h):
            return self.cross_attn(h + query_pos, memory + memory_pos, memory, masked)

        def selfattn(h):
            return self.self_attn(h + query_pos, h + query_pos, h)

        def mlp(h):
            return self.fc2(self.act(self.fc1(h)))

        for branch, norm in ((cross, "cross_attn_layer_norm"), (selfattn, "self_attn_layer_norm"),
                             (mlp, "final_layer_norm")):
            norm = self.norms[norm]
            x = x + branch(norm(x)) if self.pre_norm else norm(x + branch(x))
        return x

    def rules(self, p):
        r = self.cross_attn.rules(p + ".cross_attn") + self.self_attn.rules(p + ".self_attn")
        r += dense_rules(p + ".fc1", self.fc1) + dense_rules(p + ".fc2", self.fc2)
        for name, norm in self.norms.items():
            r += norm_rules(f"{p}.{name}", norm)
        return r

    def get_config(self):
        c = super().get_config()
        c.update(hidden_size=self.hidden_size, num_heads=self.num_heads, ffn_dim=self.ffn_dim,
                 activation=self.activation, pre_norm=self.pre_norm)
        return c


def reference_points(shapes):
    """(1, tokens, levels, 2) centres ((x, y) in (0, 1)) of every level's cells, unpadded images."""
    pts = []
    for h, w in shapes:
        y, x = np.meshgrid((np.arange(h, dtype=np.float32) + 0.5) / h, (np.arange(w, dtype=np.float32) + 0.5) / w,
                           indexing="ij")
        pts.append(np.stack([x.reshape(-1), y.reshape(-1)], -1))
    pts = np.concatenate(pts, 0)
    return np.repeat(pts[None, :, None, :], len(shapes), axis=2).astype(np.float32)


@_ser
@register_backbone("mask2former")
class Mask2FormerBackbone(SpecBackbone):
    spec_cls = Mask2FormerSpec
    base_model_prefix = "model"
    hf_architecture = "Mask2FormerModel"
    hf_ignore = ("*num_batches_tracked", "*relative_position_index", "criterion.empty_weight")
    verified_backends = ("jax", "torch", "tensorflow")  # tests/vision/test_mask2former.py

    def __init__(self, spec=None, **kwargs):
        super().__init__(spec, **kwargs)
        s, common = self.spec, dict(dtype=self.dtype_policy)
        b = s.backbone_config
        self.tower = SwinFeatureBackbone(name="encoder", **common, **SwinBackbone.config_from_hf(b))
        self.stages = out_stages(b, "backbone_config")
        self.channels = [self.tower.embed_dim * 2 ** (i - 1) for i in self.stages]
        self.stage_norms = [keras.layers.LayerNormalization(epsilon=1e-5, name=f"norm_stage{i}", **common)
                            for i in self.stages]
        f, d = s.feature_size, s.hidden_dim
        self.input_projections = [ConvGroupNorm(f, 1, c, relu=False, bias=True, name=f"input_projection_{i}", **common)
                                  for i, c in enumerate(self.channels[-LEVELS:][::-1])]
        self.encoder_layers = [DeformableEncoderLayer(f, s.num_attention_heads, s.encoder_feedforward_dim,
                                                      activation="relu", num_levels=LEVELS, num_points=4,
                                                      dropout=s.dropout, name=f"encoder_layer_{i}", **common)
                               for i in range(s.encoder_layers)]
        self.num_fpn = int(math.log2(min(s.feature_strides[-LEVELS:])) - math.log2(s.common_stride))
        self.adapters = [ConvGroupNorm(f, 1, c, relu=False, name=f"adapter_{i + 1}", **common)
                         for i, c in enumerate(self.channels[:self.num_fpn])]
        self.fpn_layers = [ConvGroupNorm(f, 3, f, name=f"layer_{i + 1}", **common) for i in range(self.num_fpn)]
        self.mask_projection = keras.layers.Conv2D(s.mask_feature_size, 1, name="mask_projection", **common)
        self.project = f != d or s.enforce_input_projection
        self.query_projections = [keras.layers.Conv2D(d, 1, name=f"query_input_projection_{i}", **common)
                                  for i in range(LEVELS)] if self.project else []
        self.decoder_layers = [MaskedAttentionDecoderLayer(d, s.num_attention_heads, s.dim_feedforward,
                                                           s.activation_function, s.pre_norm, name=f"decoder_layer_{i}",
                                                           **common) for i in range(s.decoder_layers - 1)]
        self.decoder_norm = keras.layers.LayerNormalization(epsilon=1e-5, name="decoder_norm", **common)
        self.mask_embedder = PredictionMLP(d, s.mask_feature_size, 3, name="mask_embedder", **common)
        self.hidden_size = d

    def build_pixel_decoder(self):
        """Build the tower, its stage norms and the pixel decoder (shared with OneFormer)."""
        f = self.spec.feature_size
        self.tower.build_from_dummy()
        for norm, c in zip(self.stage_norms, self.channels):
            norm.build((None, None, None, c))
        for layer in self.input_projections + self.adapters + self.fpn_layers:
            layer.build()
        self.level_embed = self.add_weight(name="level_embed", shape=(LEVELS, f), initializer="zeros")
        for layer in self.encoder_layers:
            layer.build((None, None, f))
        self.mask_projection.build((None, None, None, f))
        for conv in self.query_projections:
            conv.build((None, None, None, f))

    def build(self, input_shape=None):
        s, d = self.spec, self.spec.hidden_dim
        self.build_pixel_decoder()
        init = keras.initializers.RandomNormal(stddev=1.0)
        self.query_embed = self.add_weight(name="queries_embedder", shape=(s.num_queries, d), initializer=init)
        self.query_feat = self.add_weight(name="queries_features", shape=(s.num_queries, d), initializer=init)
        self.query_level_embed = self.add_weight(name="query_level_embed", shape=(LEVELS, d), initializer=init)
        for layer in self.decoder_layers:
            layer.build()
        self.decoder_norm.build((None, None, d))
        self.mask_embedder.build((None, None, d))
        self.built = True

    # --- forward ------------------------------------------------------------------------------
    def backbone_maps(self, pixels):
        outs = self.tower.stage_outputs({"pixel_values": pixels}, training=False)
        return [norm(outs[i - 1]) for norm, i in zip(self.stage_norms, self.stages)]

    def pixel_decoder(self, maps, training=False):
        """(mask features, the three multi-scale maps coarse to fine)."""
        f = self.spec.feature_size
        levels = [proj(x) for proj, x in zip(self.input_projections, maps[::-1][:LEVELS])]
        shapes = [(int(x.shape[1]), int(x.shape[2])) for x in levels]
        b = ops.shape(levels[0])[0]
        tokens = ops.concatenate([ops.reshape(x, (b, -1, f)) for x in levels], axis=1)
        pos = ops.concatenate([
            ops.reshape(sine_positions(ops.ones_like(x[..., 0], dtype="float32"), f // 2, x.dtype), (b, -1, f))
            + ops.cast(self.level_embed[i], x.dtype) for i, x in enumerate(levels)], axis=1)
        ones = ops.ones_like(tokens[..., 0])
        # batch-sized: TensorFlow does not broadcast the batch axis in the 6-D sampling arithmetic
        ref = ops.zeros_like(tokens[:, :, :1, None]) + ops.convert_to_tensor(reference_points(shapes))
        for layer in self.encoder_layers:
            tokens = layer(tokens, pos, ones, ref, shapes=shapes, training=training)
        outs, start = [], 0
        for h, w in shapes:
            outs.append(ops.reshape(tokens[:, start:start + h * w], (b, h, w, f)))
            start += h * w
        for i in range(self.num_fpn - 1, -1, -1):
            lateral = self.adapters[i](maps[i])
            up = resize(outs[-1], lateral.shape[1], lateral.shape[2], "bilinear")
            outs.append(self.fpn_layers[i](lateral + up))
        return self.mask_projection(outs[-1]), outs[:LEVELS]

    def predict_masks(self, queries, pixel_embeddings, size):
        """(mask logits (b, q, H, W), masked (b, heads, q, h * w): sigmoid < 0.5 at ``size``)."""
        masks = mask_logits(self.mask_embedder(self.decoder_norm(queries)), pixel_embeddings)
        small = ops.transpose(resize(ops.transpose(masks, (0, 2, 3, 1)), size[0], size[1], "bilinear"), (0, 3, 1, 2))
        masked = ops.sigmoid(ops.reshape(small, (ops.shape(small)[0], ops.shape(small)[1], -1))) < 0.5
        return masks, masked[:, None]

    def transformer_decoder(self, levels, pixel_embeddings, queries=None, collect=None):
        """The masked-attention decoder from ``queries`` (batch, num_queries, hidden); default: the
        learned query features (OneFormer passes its task-conditioned queries). ``collect``: a list
        that receives every prediction's (normalised queries, mask logits), the initial one first
        (the training loss scores all of them)."""
        d = self.hidden_size
        b = ops.shape(levels[0])[0]
        sizes = [(int(x.shape[1]), int(x.shape[2])) for x in levels]
        memory, memory_pos = [], []
        for i, x in enumerate(levels):
            memory_pos.append(ops.reshape(sine_positions(ops.ones_like(x[..., 0], dtype="float32"), d // 2, x.dtype),
                                          (b, -1, d)))
            y = self.query_projections[i](x) if self.project else x
            memory.append(ops.reshape(y, (b, -1, d)) + ops.cast(self.query_level_embed[i], y.dtype))
        if queries is None:
            queries = ops.zeros_like(memory[0][:, :1, :1]) + ops.cast(self.query_feat, memory[0].dtype)[None]
        query_pos = ops.zeros_like(queries[:, :1, :1]) + ops.cast(self.query_embed, queries.dtype)[None]
        x = queries
        masks, masked = self.predict_masks(x, pixel_embeddings, sizes[0])
        if collect is not None:
            collect.append((self.decoder_norm(x), masks))
        for i, layer in enumerate(self.decoder_layers):
            level = i % LEVELS
            masked = masked & ~ops.all(masked, axis=-1, keepdims=True)  # a query that sees nothing sees all
            x = layer(x, query_pos, memory[level], memory_pos[level], masked)
            masks, masked = self.predict_masks(x, pixel_embeddings, sizes[(i + 1) % LEVELS])
            if collect is not None:
                collect.append((self.decoder_norm(x), masks))
        return x, masks

    def call(self, inputs, training=False, auxiliary=False):
        """``auxiliary``: also ``auxiliary_states`` / ``auxiliary_masks_queries_logits`` (decoder_layers
        - 1, batch, queries, ...): the normalised queries and mask logits of every prediction but the
        last (the initial one first), for the training loss."""
        pixels = inputs["pixel_values"] if isinstance(inputs, dict) else inputs
        maps = self.backbone_maps(pixels)
        pixel_embeddings, levels = self.pixel_decoder(maps, training=training)
        collect = [] if auxiliary else None
        queries, masks = self.transformer_decoder(levels, pixel_embeddings, collect=collect)
        extra = {}
        if auxiliary and len(collect) > 1:
            extra = {"auxiliary_states": ops.stack([c[0] for c in collect[:-1]]),
                     "auxiliary_masks_queries_logits": ops.stack([c[1] for c in collect[:-1]])}
        return {**extra, "last_hidden_state": queries, "transformer_decoder_last_hidden_state": queries,
                "transformer_decoder_intermediate_state": self.decoder_norm(queries), "masks_queries_logits": masks,
                "pixel_decoder_last_hidden_state": pixel_embeddings, "encoder_last_hidden_state": maps[-1],
                "encoder_hidden_states": tuple(maps), "pixel_decoder_hidden_states": tuple(levels)}

    # --- HF conversion ------------------------------------------------------------------------
    def weight_rules(self):
        enc = "pixel_level_module.encoder."
        r = self.tower.weight_rules()
        final = [x for x in r if x.hf.startswith("layernorm.")]
        r = [dataclasses.replace(x, hf=enc + x.hf, aliases=tuple(enc + a for a in x.aliases))
             for x in r if not x.hf.startswith("layernorm.")]
        r += [replace(x, hf=enc + "swin." + x.hf, optional=True) for x in final]  # SwinBackbone's unused norm
        for norm, i in zip(self.stage_norms, self.stages):
            r += norm_rules(f"{enc}hidden_states_norms.stage{i}", norm)
        p = "pixel_level_module.decoder."
        for i, proj in enumerate(self.input_projections):
            r += proj.rules(f"{p}input_projections.{i}")
        r.append(Rule(p + "level_embed", self.level_embed))
        for i, layer in enumerate(self.encoder_layers):
            r += layer.rules(f"{p}encoder.layers.{i}")
        r += conv_rules(p + "mask_projection", self.mask_projection)
        for i, (adapter, layer) in enumerate(zip(self.adapters, self.fpn_layers)):
            r += adapter.rules(f"{p}adapter_{i + 1}") + layer.rules(f"{p}layer_{i + 1}")
        t = "transformer_module."
        r.append(Rule(t + "queries_embedder.weight", self.query_embed))
        r.append(Rule(t + "queries_features.weight", self.query_feat))
        r.append(Rule(t + "level_embed.weight", self.query_level_embed))
        for i, conv in enumerate(self.query_projections):
            r += conv_rules(f"{t}input_projections.{i}", conv)
        for i, layer in enumerate(self.decoder_layers):
            r += layer.rules(f"{t}decoder.layers.{i}")
        r += norm_rules(t + "decoder.layernorm", self.decoder_norm)
        for i, dense in enumerate(self.mask_embedder.denses):
            r += dense_rules(f"{t}decoder.mask_predictor.mask_embedder.{i}.0", dense)
        return r


@_ser
@register_task(Mask2FormerBackbone, "UniversalSegmenter", ("Mask2FormerForUniversalSegmentation",))
class Mask2FormerUniversalSegmenter(UniversalSegmenter):
    """A linear class head (num_labels + "no object") on the decoder's normalised queries; the masks
    are the decoder's last mask prediction."""

    hf_head_patterns = ("class_predictor.*", "criterion.*")
    post_process_mask_size = (384, 384)
    loss_kind = "mask2former"  # keras_models.tasks.segmentation_loss; every decoder layer is scored

    def __init__(self, backbone, num_classes=2, **kwargs):
        super().__init__(backbone, num_classes=num_classes, **kwargs)
        self.class_predictor = keras.layers.Dense(num_classes + 1, name="class_predictor",
                                                  dtype=backbone.dtype_policy)

    def build(self, input_shape=None):
        self.class_predictor.build((None, None, self.backbone.hidden_size))
        self.built = True

    def query_outputs(self, outputs, training=False):
        return self.class_predictor(outputs["transformer_decoder_intermediate_state"]), outputs["masks_queries_logits"]

    def auxiliary_outputs(self, inputs, training=False):
        out = self.backbone(inputs, training=training, auxiliary=True)
        if "auxiliary_states" not in out:  # one decoder layer: only the last prediction
            return out, None
        return out, (self.class_predictor(out["auxiliary_states"]), out["auxiliary_masks_queries_logits"])

    def head_rules(self):
        return dense_rules("class_predictor", self.class_predictor, base=False)


__all__ = ["Mask2FormerSpec", "Mask2FormerBackbone", "Mask2FormerUniversalSegmenter", "MaskedCrossAttention",
           "MaskedAttentionDecoderLayer"]

"""OneFormer (model_type ``oneformer``): Mask2Former's pixel decoder and masked-attention decoder,
conditioned on a task token ("the task is semantic / instance / panoptic").

* Backbone, pixel decoder (multi-scale deformable encoder + FPN + ``mask_projection``) and the
  masked-attention decoder layers are Mask2Former's (keras_models.models.maskformer.mask2former),
  read from OneFormer's config keys (``conv_dim``, ``mask_dim``, ``strides``, ``enforce_input_proj``;
  ``layer_norm_eps`` for the deformable encoder's and the decoder's LayerNorms).
* Task token: ``task_inputs`` (batch, ``task_seq_len``; the processor's token ids, as floats) through
  a 2-layer ReLU MLP (``task_encoder``), LayerNormed by the decoder's norm when ``use_task_norm``.
* Query transformer: ``num_queries - 1`` queries, all starting as the normalised task token (zeros
  without ``use_task_norm``), with the first ``num_queries - 1`` learned query positions, read the
  mask features' sine positions (memory), to whose keys the 1x1-projected mask features
  (``query_input_projection``) are added as positions (Transformers' argument order), through
  ``query_dec_layers`` DETR decoder layers (fused ``nn.MultiheadAttention`` self- and cross-attention,
  ReLU MLP, ``pre_norm`` or post-norm) and a final LayerNorm. The task token is appended as the
  last query: these ``num_queries`` queries (``transformer_decoder_contrastive_queries``) start the
  masked-attention decoder, whose learned query positions are all ``num_queries``.
* The class head (``transformer_module.decoder.class_embed``, num_labels + 1, on the
  LayerNormed last queries) lives in Transformers' base model; here it is the task's head.

Only inference is implemented: Transformers' text mapper (``text_mapper.*``, used by the contrastive
training loss when ``is_training``) is not built, its tensors are skipped on load, and
``is_training: true`` (which also turns on dropout in Transformers' pixel decoder) is refused.

The backbone takes ``{"pixel_values" (batch, H, W, C), "task_inputs" (batch, task_seq_len)}``
(``pixel_mask`` accepted, unused as in Transformers) and returns ``last_hidden_state`` =
``transformer_decoder_object_queries`` (the last decoder layer's queries, before the LayerNorm),
``transformer_decoder_intermediate_state`` (after it), ``transformer_decoder_contrastive_queries``,
``task_token`` (batch, hidden), ``masks_queries_logits`` (batch, queries, H/4, W/4),
``pixel_decoder_last_hidden_state``, ``encoder_hidden_states`` and ``pixel_decoder_hidden_states``
(the three multi-scale maps, coarse to fine), spatial ones channels_last.
"""

import dataclasses
from dataclasses import dataclass

import keras
import numpy as np
from keras import ops

from keras_models.errors import ConfigError, InputError
from keras_models.layers.vision_embeddings import conv_rules, dense_rules, norm_rules
from keras_models.models.detr.layers import sine_positions
from keras_models.models.maskformer.mask2former import (LEVELS, Mask2FormerBackbone, Mask2FormerSpec,
                                                        MaskedCrossAttention)
from keras_models.models.registry import register_backbone, register_task
from keras_models.presets.weight_map import Rule
from keras_models.spec import const, dim, hf, tower
from keras_models.tasks.object_detector import PredictionMLP
from keras_models.tasks.universal_segmenter import UniversalSegmenter

_ser = keras.saving.register_keras_serializable(package="keras_models")
TASKS = ("semantic", "instance", "panoptic")


@dataclass(frozen=True, kw_only=True)
class OneFormerSpec(Mask2FormerSpec):
    unsupported = {"is_training": (False, None),  # text mapper + dropout in eval mode: training only
                   "norm": ("GN",)}
    ignored = ("no_object_weight", "class_weight", "mask_weight", "dice_weight", "contrastive_weight",
               "contrastive_temperature", "train_num_points", "oversample_ratio", "importance_sample_ratio",
               "init_xavier_std", "use_auxiliary_loss", "output_auxiliary_logits", "ignore_value", "backbone",
               "use_timm_backbone", "use_pretrained_backbone", "backbone_kwargs", "is_training",
               "text_encoder_width", "text_encoder_context_length", "text_encoder_num_layers",
               "text_encoder_vocab_size", "text_encoder_proj_layers", "text_encoder_n_ctx", "norm")

    backbone_config: dict = tower("backbone_config", "swin", doc="a Swin config read at its out_features stages")
    feature_size: int = dim("conv_dim", 256)
    mask_feature_size: int = dim("mask_dim", 256)
    activation_function: str = const("relu")
    num_queries: int = dim("num_queries", 150)
    dropout: float = hf("dropout", 0.1)
    enforce_input_projection: bool = hf("enforce_input_proj", False)
    feature_strides: tuple = hf("strides", (4, 8, 16, 32))
    layer_norm_eps: float = hf("layer_norm_eps", 1e-5)
    use_task_norm: bool = hf("use_task_norm", True)
    query_dec_layers: int = hf("query_dec_layers", 2)
    task_seq_len: int = dim("task_seq_len", 77)

    def validate(self, source="config.json"):
        out = self.backbone_config.get("out_features") if isinstance(self.backbone_config, dict) else None
        if out is not None and not (isinstance(out, list) and all(isinstance(n, str) for n in out)):
            raise ConfigError(f"{source}: backbone_config out_features must be a list of stage names, got {out!r}")
        if self.mask_feature_size != self.feature_size:
            raise ConfigError(f"{source}: mask_dim={self.mask_feature_size} must equal conv_dim={self.feature_size} "
                              "(OneFormer's query_input_projection reads the mask features with conv_dim inputs)")
        if self.feature_size != self.hidden_dim or self.enforce_input_projection:
            raise ConfigError(f"{source}: conv_dim={self.feature_size} != hidden_dim={self.hidden_dim} (or "
                              "enforce_input_proj) is not implemented: Transformers' OneFormer keeps those input "
                              "projections in a plain list, so they are never saved and are randomly initialised "
                              "on every load")
        if self.decoder_layers < 2:
            raise ConfigError(f"{source}: decoder_layers={self.decoder_layers} must be at least 2 (Transformers' "
                              "OneFormer reads the last masked-attention layer's output)")
        if self.num_queries < 2:
            raise ConfigError(f"{source}: num_queries={self.num_queries} must be at least 2 (the task token is "
                              "the last query)")
        if self.query_dec_layers < 0 or isinstance(self.query_dec_layers, bool):
            raise ConfigError(f"{source}: query_dec_layers={self.query_dec_layers!r} must be an integer >= 0")
        if self.feature_size % 32:
            raise ConfigError(f"{source}: conv_dim={self.feature_size} must be a multiple of 32 (GroupNorm with 32 "
                              "groups)")
        if self.feature_size % self.num_attention_heads or self.hidden_dim % self.num_attention_heads:
            raise ConfigError(f"{source}: conv_dim and hidden_dim must be divisible by num_attention_heads="
                              f"{self.num_attention_heads}")
        try:
            super().validate(source)
        except ConfigError as e:  # Mask2Former's messages, in OneFormer's key names
            raise ConfigError(str(e).replace("feature_strides", "strides")) from None

    def dummy_inputs(self):
        return {"pixel_values": np.zeros((1, 64, 64, self.backbone_config.get("num_channels", 3)), "float32"),
                "task_inputs": np.zeros((1, self.task_seq_len), "float32")}


@_ser
class QueryTransformerLayer(keras.layers.Layer):
    """A DETR decoder layer with ``torch.nn.MultiheadAttention`` self- and cross-attention
    (``self_attn``, ``multihead_attn``), ReLU MLP (``linear1``, ``linear2``), ``norm1..3``; post- or
    pre-norm."""

    def __init__(self, hidden_size, num_heads, ffn_dim, pre_norm=False, epsilon=1e-5, **kwargs):
        super().__init__(**kwargs)
        self.hidden_size, self.num_heads, self.ffn_dim = hidden_size, num_heads, ffn_dim
        self.pre_norm, self.epsilon = pre_norm, epsilon
        common = dict(dtype=self.dtype_policy)
        self.self_attn = MaskedCrossAttention(hidden_size, num_heads, name="self_attn", **common)
        self.multihead_attn = MaskedCrossAttention(hidden_size, num_heads, name="multihead_attn", **common)
        self.linear1 = keras.layers.Dense(ffn_dim, name="linear1", **common)
        self.linear2 = keras.layers.Dense(hidden_size, name="linear2", **common)
        self.norms = [keras.layers.LayerNormalization(epsilon=epsilon, name=f"norm{i}", **common) for i in (1, 2, 3)]

    def build(self, input_shape=None):
        d = self.hidden_size
        for layer in [self.self_attn, self.multihead_attn, self.linear1] + self.norms:
            layer.build((None, None, d))
        self.linear2.build((None, None, self.ffn_dim))
        self.built = True

    def call(self, x, query_pos, memory, memory_pos):
        none = ops.zeros((1, 1, 1, 1), "bool")

        def selfattn(h):
            return self.self_attn(h + query_pos, h + query_pos, h, none)

        def cross(h):
            return self.multihead_attn(h + query_pos, memory + memory_pos, memory, none)

        def mlp(h):
            return self.linear2(ops.relu(self.linear1(h)))

        for branch, norm in zip((selfattn, cross, mlp), self.norms):
            x = x + branch(norm(x)) if self.pre_norm else norm(x + branch(x))
        return x

    def rules(self, p):
        r = self.self_attn.rules(p + ".self_attn") + self.multihead_attn.rules(p + ".multihead_attn")
        r += dense_rules(p + ".linear1", self.linear1) + dense_rules(p + ".linear2", self.linear2)
        for i, norm in enumerate(self.norms):
            r += norm_rules(f"{p}.norm{i + 1}", norm)
        return r

    def get_config(self):
        c = super().get_config()
        c.update(hidden_size=self.hidden_size, num_heads=self.num_heads, ffn_dim=self.ffn_dim,
                 pre_norm=self.pre_norm, epsilon=self.epsilon)
        return c


# Mask2Former's decoder-layer names -> OneFormer's (the layers are the same)
_DECODER_NAMES = ((".cross_attn.in_proj", ".cross_attn.multihead_attn.in_proj"),
                  (".cross_attn.out_proj", ".cross_attn.multihead_attn.out_proj"),
                  (".self_attn.", ".self_attn.self_attn."), (".fc1.", ".ffn.linear1."), (".fc2.", ".ffn.linear2."),
                  (".cross_attn_layer_norm.", ".cross_attn.norm."), (".self_attn_layer_norm.", ".self_attn.norm."),
                  (".final_layer_norm.", ".ffn.norm."))


def _rename(name):
    for old, new in _DECODER_NAMES:
        if old in name:
            return name.replace(old, new, 1)
    return name


@_ser
@register_backbone("oneformer")
class OneFormerBackbone(Mask2FormerBackbone):
    spec_cls = OneFormerSpec
    base_model_prefix = "model"
    hf_architecture = "OneFormerModel"
    hf_ignore = ("*num_batches_tracked", "*relative_position_index", "criterion.empty_weight", "*text_mapper.*")
    verified_backends = ("jax", "torch", "tensorflow")  # tests/vision/test_oneformer.py

    def __init__(self, spec=None, **kwargs):
        super().__init__(spec, **kwargs)
        s, common, d = self.spec, dict(dtype=self.dtype_policy), self.spec.hidden_dim
        eps = s.layer_norm_eps
        for layer in self.encoder_layers:  # Mask2Former's norms, at OneFormer's layer_norm_eps
            layer.self_attn_layer_norm.epsilon = layer.final_layer_norm.epsilon = eps
        for layer in self.decoder_layers:
            for norm in layer.norms.values():
                norm.epsilon = eps
        self.decoder_norm.epsilon = eps
        self.task_mlp = PredictionMLP(d, d, 2, name="task_mlp", **common)
        self.query_input_projection = keras.layers.Conv2D(d, 1, name="query_input_projection", **common)
        self.query_layers = [QueryTransformerLayer(d, s.num_attention_heads, s.dim_feedforward, s.pre_norm, eps,
                                                   name=f"query_layer_{i}", **common)
                             for i in range(s.query_dec_layers)]
        self.query_norm = keras.layers.LayerNormalization(epsilon=eps, name="query_norm", **common)

    def build(self, input_shape=None):
        s, d = self.spec, self.spec.hidden_dim
        self.build_pixel_decoder()
        init = keras.initializers.RandomNormal(stddev=1.0)
        self.query_embed = self.add_weight(name="queries_embedder", shape=(s.num_queries, d), initializer=init)
        self.query_level_embed = self.add_weight(name="query_level_embed", shape=(LEVELS, d), initializer=init)
        for layer in self.decoder_layers + self.query_layers:
            layer.build()
        for norm in (self.decoder_norm, self.query_norm):
            norm.build((None, None, d))
        self.mask_embedder.build((None, None, d))
        self.task_mlp.build((None, s.task_seq_len))
        self.query_input_projection.build((None, None, None, s.mask_feature_size))
        self.built = True

    # --- forward ------------------------------------------------------------------------------
    def query_transformer(self, pixel_embeddings, task):
        d = self.hidden_size
        src = self.query_input_projection(pixel_embeddings)
        b, h, w = ops.shape(src)[0], src.shape[1], src.shape[2]
        pos = ops.reshape(sine_positions(ops.ones_like(src[..., 0], dtype="float32"), d // 2, src.dtype), (b, h * w, d))
        src = ops.reshape(src, (b, h * w, d))
        n = self.spec.num_queries - 1
        query_pos = ops.zeros_like(src[:, :1, :1]) + ops.cast(self.query_embed[:n], src.dtype)[None]
        if self.spec.use_task_norm:
            x = ops.zeros_like(query_pos) + task[:, None, :]
        else:
            x = ops.zeros_like(query_pos)
        for layer in self.query_layers:  # Transformers' order: the sine positions are the memory (keys and
            x = layer(x, query_pos, pos, src)  # values), the projected mask features the keys' positions
        return self.query_norm(x)

    def call(self, inputs, training=False):
        if not isinstance(inputs, dict) or "task_inputs" not in inputs:
            raise InputError("OneFormer: inputs need 'pixel_values' and 'task_inputs' (batch, task_seq_len): the "
                             "token ids of 'the task is semantic / instance / panoptic' (OneFormerProcessor)")
        pixels = inputs["pixel_values"]
        maps = self.backbone_maps(pixels)
        pixel_embeddings, levels = self.pixel_decoder(maps, training=training)
        task = self.task_mlp(ops.cast(inputs["task_inputs"], pixel_embeddings.dtype))
        normed = self.decoder_norm(task) if self.spec.use_task_norm else task
        object_queries = self.query_transformer(pixel_embeddings, normed)
        queries = ops.concatenate([object_queries, normed[:, None, :]], axis=1)
        x, masks = self.transformer_decoder(levels, pixel_embeddings, queries)
        return {"last_hidden_state": x, "transformer_decoder_object_queries": x,
                "transformer_decoder_intermediate_state": self.decoder_norm(x),
                "transformer_decoder_contrastive_queries": queries, "task_token": task,
                "masks_queries_logits": masks, "pixel_decoder_last_hidden_state": pixel_embeddings,
                "encoder_last_hidden_state": maps[-1], "encoder_hidden_states": tuple(maps),
                "pixel_decoder_hidden_states": tuple(levels)}

    # --- HF conversion ------------------------------------------------------------------------
    @property
    def query_feat(self):
        """Mask2Former's learned initial queries: OneFormer has none (its weight_rules reads this
        name; only the pixel-level rules of it are kept)."""
        return self.query_embed

    def weight_rules(self):
        enc, p = "pixel_level_module.encoder.", "pixel_level_module.decoder."
        r = [x for x in super().weight_rules() if x.hf.startswith((enc, p))]  # Mask2Former's, the same names
        t, dec = "transformer_module.", "transformer_module.decoder."
        r.append(Rule(t + "queries_embedder.weight", self.query_embed))
        r.append(Rule(t + "level_embed.weight", self.query_level_embed))
        for i, conv in enumerate(self.query_projections):
            r += conv_rules(f"{t}input_projections.{i}", conv)
        for i, layer in enumerate(self.decoder_layers):
            r += [dataclasses.replace(x, hf=_rename(x.hf)) for x in layer.rules(f"{dec}layers.{i}")]
        r += norm_rules(dec + "decoder_norm", self.decoder_norm)
        r += dense_rules_of(self.mask_embedder, dec + "mask_embed")
        r += dense_rules_of(self.task_mlp, "task_encoder.task_mlp")
        r += conv_rules(dec + "query_input_projection", self.query_input_projection)
        q = dec + "query_transformer.decoder."
        for i, layer in enumerate(self.query_layers):
            r += layer.rules(f"{q}layers.{i}")
        return r + norm_rules(q + "norm", self.query_norm)


def dense_rules_of(mlp, prefix):
    """A PredictionMLP stored as Transformers' ``{prefix}.layers.{i}.0`` (PredictionBlock)."""
    return [x for i, dense in enumerate(mlp.denses) for x in dense_rules(f"{prefix}.layers.{i}.0", dense)]


@_ser
@register_task(OneFormerBackbone, "UniversalSegmenter", ("OneFormerForUniversalSegmentation",))
class OneFormerUniversalSegmenter(UniversalSegmenter):
    """The class head (num_labels + "no object") on the decoder's normalised last queries; the masks
    are the decoder's last mask prediction. Inputs: ``{"pixel_values", "task_inputs"}``."""

    hf_head_patterns = ("model.transformer_module.decoder.class_embed.*", "transformer_module.decoder.class_embed.*",
                        "criterion.*")
    loss_unsupported = ("OneFormer's loss adds to Mask2Former's a contrastive loss between the object queries and "
                        "the text queries of per-image 'text_inputs', read by Transformers' text mapper "
                        "(text_mapper.*, built only with config is_training=True), which is not implemented")

    def __init__(self, backbone, num_classes=2, **kwargs):
        super().__init__(backbone, num_classes=num_classes, **kwargs)
        self.class_predictor = keras.layers.Dense(num_classes + 1, name="class_predictor",
                                                  dtype=backbone.dtype_policy)

    @classmethod
    def preprocessor_from_preset(cls, folder, hf, **kw):
        from keras_models.models.oneformer.processor import OneFormerProcessor

        return OneFormerProcessor.from_preset(folder, task_seq_len=hf.get("task_seq_len") or 77)

    def build(self, input_shape=None):
        self.class_predictor.build((None, None, self.backbone.hidden_size))
        self.built = True

    def query_outputs(self, outputs, training=False):
        return self.class_predictor(outputs["transformer_decoder_intermediate_state"]), outputs["masks_queries_logits"]

    def call(self, inputs, training=False):
        """Also returns, as Transformers' output does, ``transformer_decoder_object_queries``,
        ``transformer_decoder_contrastive_queries`` and ``task_token``."""
        if isinstance(inputs, dict) and "pixel_values" in inputs and "task_inputs" not in inputs:
            raise InputError("OneFormerUniversalSegmenter: inputs need 'task_inputs' (batch, task_seq_len), the "
                             "token ids of 'the task is semantic / instance / panoptic' (model.preprocessor(images, "
                             "task))")
        out = self.backbone(inputs, training=training)
        classes, masks = self.query_outputs(out, training=training)
        result = {"class_queries_logits": classes, "masks_queries_logits": masks}
        for k in ("transformer_decoder_object_queries", "transformer_decoder_contrastive_queries", "task_token",
                  "pixel_decoder_last_hidden_state", "encoder_last_hidden_state"):
            result[k] = out[k]
        return result

    def head_rules(self):
        return dense_rules("transformer_module.decoder.class_embed", self.class_predictor, base=True)

    # --- post-processing (numpy, as Transformers' OneFormerImageProcessor) -----------------------
    @classmethod
    def post_process_instance_segmentation(cls, outputs, task_type="instance", is_demo=True, threshold=0.5,
                                           mask_threshold=0.5, overlap_mask_area_threshold=0.8, target_sizes=None,
                                           thing_ids=None, class_info_file=None):
        """OneFormer's instance post-processing: per image the ``queries`` best (query, class)
        scores (best first), those above ``threshold`` when ``is_demo``; with ``task_type="panoptic"``
        only the ``thing_ids`` classes (the image processor's class-info metadata); then the
        panoptic segment assembly (masks resized bilinear to ``target_sizes``, pixels to the best
        score-weighted mask logit, small segments dropped). ``class_info_file`` (its name) decides, as in
        Transformers, whether labels are re-indexed among the thing classes (ADE20k, ``is_demo``
        false)."""
        from keras_models.tasks.universal_segmenter import _check_sizes, _numpy, _softmax

        logits, masks_all = _numpy(outputs["class_queries_logits"]), _numpy(outputs["masks_queries_logits"])
        _check_sizes(target_sizes, len(logits), "post_process_instance_segmentation")
        if task_type == "panoptic" and thing_ids is None:
            raise InputError("post_process_instance_segmentation: task_type='panoptic' needs thing_ids (the "
                             "class-info metadata's thing classes: model.preprocessor.image_processor"
                             ".metadata['thing_ids'])")
        n_q, n_c = logits.shape[1], logits.shape[2] - 1
        results = []
        for i in range(len(logits)):
            scores = _softmax(logits[i])[:, :-1].reshape(-1)
            top = np.argsort(-scores, kind="stable")[:n_q]
            sc, labels, pred = scores[top], top % n_c, masks_all[i][top // n_c]
            if is_demo:
                keep = sc > threshold
                sc, labels, pred = sc[keep], labels[keep], pred[keep]
            if task_type == "panoptic":
                keep = np.array([int(l) in set(thing_ids) for l in labels], bool)
                sc, labels, pred = sc[keep], labels[keep], pred[keep]
            if pred.shape[0] == 0:
                h, w = target_sizes[i] if target_sizes is not None else pred.shape[1:]
                results.append({"segmentation": np.full((h, w), -1.0, np.float32), "segments_info": []})
                continue
            if class_info_file is not None and "ade20k" in class_info_file and not is_demo and "instance" in task_type:
                labels = np.array([list(thing_ids).index(int(l)) for l in labels])
            size = None if target_sizes is None else target_sizes[i]
            # (Transformers assembles the segments from the mask logits here, not their sigmoids)
            seg, segments = _segments(pred, sc, labels, mask_threshold, overlap_mask_area_threshold, (),
                                      size)
            results.append({"segmentation": seg, "segments_info": segments})
        return results


def _segments(probs, scores, labels, mask_threshold, overlap, fuse, size):
    """Transformers' ``compute_segments`` in numpy (masks resized bilinear to ``size`` first)."""
    from keras_models.tasks.universal_segmenter import _bilinear

    if size is not None:
        probs = _bilinear(probs, size)
    probs = probs * scores[:, None, None].astype(np.float32)
    owner = probs.argmax(0)
    seg = np.zeros(owner.shape, np.int32)
    segments, current, stuff = [], 0, {}
    for k in range(len(labels)):
        cls_k = int(labels[k])
        mask_k = owner == k
        area, original = int(mask_k.sum()), int((probs[k] >= mask_threshold).sum())
        if not (area > 0 and original > 0 and area / original > overlap):
            continue
        if cls_k in stuff:
            current = stuff[cls_k]
        else:
            current += 1
        seg[mask_k] = current
        segments.append({"id": current, "label_id": cls_k, "was_fused": cls_k in fuse,
                         "score": round(float(scores[k]), 6)})
        if cls_k in fuse:
            stuff[cls_k] = current
    return seg, segments


__all__ = ["OneFormerSpec", "OneFormerBackbone", "OneFormerUniversalSegmenter", "QueryTransformerLayer", "TASKS"]

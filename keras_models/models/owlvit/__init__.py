"""OWL-ViT and OWLv2: CLIP-like dual encoders with per-patch box and class heads (open-vocabulary
detection, :class:`~keras_models.tasks.zero_shot_object_detector.ZeroShotObjectDetector`).

* Text tower: CLIP's (causal, final LayerNorm); the pooled token is the highest id of each query
  (end-of-text), whatever ``eos_token_id`` says. Vision tower: CLIP's, its LayerNorm before the
  blocks named ``pre_layernorm``. Both are registered as ``owlvit_*`` / ``owlv2_*`` model types.
* Detection: the vision tower's last hidden state goes through ``post_layernorm`` on every token;
  each patch token is multiplied by the class token and normalised again (``layer_norm``). The class
  head compares a dense map of each patch with the unit-normalised projected queries (cosine, then
  a per-patch learned shift and ELU+1 scale); the box head (three dense layers, exact GELU) adds a
  fixed bias placing each box on its patch, then a sigmoid. OWLv2 adds an objectness head of the
  box head's shape. ``image_guided_detection`` uses a query image's patch as the query (OWL-ViT:
  among the boxes within 80% of the best IoU with the whole image, the one least like the image's
  mean class embedding; OWLv2: the most object-like patch). Weights live under ``owlvit.`` / ``owlv2.`` in the detection checkpoints
  (``OwlViTForObjectDetection``) and at the top level in the dual-encoder ones (``OwlViTModel``).
"""

from dataclasses import dataclass, replace

import keras
import numpy as np
from keras import ops

from keras_models.errors import InputError
from keras_models.layers.vision_embeddings import dense_rules, norm_rules
from keras_models.models.clip.dual import CLIPSpec, DualEncoderBackbone
from keras_models.models.clip.text import CLIPTextSpec, TextTower
from keras_models.models.clip.vision import CLIPVisionSpec, VisionTower, _square
from keras_models.models.registry import register_backbone, register_task
from keras_models.presets.weight_map import Rule
from keras_models.spec import const, dim, hf, tower
from keras_models.tasks.zero_shot_image_classifier import ZeroShotImageClassifier, _unit
from keras_models.tasks.zero_shot_object_detector import ZeroShotObjectDetector

_ser = keras.saving.register_keras_serializable(package="keras_models")
_ALL = ("jax", "torch", "tensorflow")


# --- towers ---------------------------------------------------------------------------------------
@dataclass(frozen=True, kw_only=True)
class OwlViTTextSpec(CLIPTextSpec):
    max_position_embeddings: int = dim("max_position_embeddings", 16)
    pad_token_id: int | None = hf("pad_token_id", 0)
    projection_dim: int | None = const(None)
    pooling: str = const("argmax", doc="the highest id of each query (its end-of-text token)")


@_ser
@register_backbone("owlvit_text_model")
class OwlViTTextBackbone(TextTower):
    spec_cls = OwlViTTextSpec
    hf_architecture = "OwlViTTextModel"
    verified_backends = _ALL

    def pooled(self, hidden, inputs):
        where = ops.cast(ops.argmax(ops.cast(inputs["input_ids"], "int32"), axis=-1), "int32")
        return ops.take_along_axis(hidden, where[:, None, None], axis=1)[:, 0]


@_ser
@register_backbone("owlv2_text_model")
class Owlv2TextBackbone(OwlViTTextBackbone):
    hf_architecture = "Owlv2TextModel"


@dataclass(frozen=True, kw_only=True)
class OwlViTVisionSpec(CLIPVisionSpec):
    image_size: int = hf("image_size", 768, read=_square, dim=True)
    projection_dim: int | None = const(None)


@dataclass(frozen=True, kw_only=True)
class Owlv2VisionSpec(OwlViTVisionSpec):
    patch_size: int = hf("patch_size", 16, read=_square, dim=True)


@_ser
@register_backbone("owlvit_vision_model")
class OwlViTVisionBackbone(VisionTower):
    spec_cls = OwlViTVisionSpec
    hf_architecture = "OwlViTVisionModel"
    verified_backends = _ALL

    def weight_rules(self):  # CLIP's names but for the LayerNorm before the blocks
        return [replace(r, hf=r.hf.replace("pre_layrnorm.", "pre_layernorm.")) for r in super().weight_rules()]


@_ser
@register_backbone("owlv2_vision_model")
class Owlv2VisionBackbone(OwlViTVisionBackbone):
    spec_cls = Owlv2VisionSpec
    hf_architecture = "Owlv2VisionModel"


# --- dual encoders --------------------------------------------------------------------------------
@dataclass(frozen=True, kw_only=True)
class OwlViTSpec(CLIPSpec):
    text_config: dict = tower("text_config", "owlvit_text_model")
    vision_config: dict = tower("vision_config", "owlvit_vision_model")


@dataclass(frozen=True, kw_only=True)
class Owlv2Spec(CLIPSpec):
    text_config: dict = tower("text_config", "owlv2_text_model")
    vision_config: dict = tower("vision_config", "owlv2_vision_model")


class _OwlDualEncoder(DualEncoderBackbone):
    """The towers and projections, named relative to the base model (``owlvit.`` in detection
    checkpoints, nothing in dual-encoder ones)."""

    hf_ignore = ("*position_ids", "*token_type_ids", "*box_bias")
    hf_known_unused = ("*logit_scale",)

    def weight_rules(self):
        return [replace(r, base=True) for r in super().weight_rules()]


@_ser
@register_backbone("owlvit")
class OwlViTBackbone(_OwlDualEncoder):
    spec_cls = OwlViTSpec
    base_model_prefix = "owlvit"
    hf_architecture = "OwlViTModel"
    verified_backends = _ALL


@_ser
@register_backbone("owlv2")
class Owlv2Backbone(_OwlDualEncoder):
    spec_cls = Owlv2Spec
    base_model_prefix = "owlv2"
    hf_architecture = "Owlv2Model"
    verified_backends = _ALL


# --- tasks ----------------------------------------------------------------------------------------
class _OwlZeroShotImageClassifier(ZeroShotImageClassifier):
    """CLIP's scoring; the temperature is read from a dual-encoder checkpoint (``logit_scale``) or a
    detection one (``<prefix>.logit_scale``)."""

    @property
    def export_prefix(self):
        return ""  # written as the dual-encoder model (towers at the top level)

    def head_rules(self):
        alias = f"{self.backbone.base_model_prefix}.logit_scale"
        return [Rule("logit_scale", self.logit_scale, base=False, aliases=(alias,))]


@_ser
@register_task(OwlViTBackbone, "ZeroShotImageClassifier", ("OwlViTModel", "OwlViTForObjectDetection"))
class OwlViTZeroShotImageClassifier(_OwlZeroShotImageClassifier):
    pass


@_ser
@register_task(Owlv2Backbone, "ZeroShotImageClassifier", ("Owlv2Model", "Owlv2ForObjectDetection"))
class Owlv2ZeroShotImageClassifier(_OwlZeroShotImageClassifier):
    pass


@_ser
class BoxPredictionHead(keras.layers.Layer):
    """dense0 -> GELU -> dense1 -> GELU -> dense2 (``out_dim`` outputs), on every patch."""

    def __init__(self, width, out_dim, **kwargs):
        super().__init__(**kwargs)
        self.width, self.out_dim = width, out_dim
        self.dense0 = keras.layers.Dense(width, name="dense0", dtype=self.dtype_policy)
        self.dense1 = keras.layers.Dense(width, name="dense1", dtype=self.dtype_policy)
        self.dense2 = keras.layers.Dense(out_dim, name="dense2", dtype=self.dtype_policy)

    def build(self, input_shape):
        for layer in (self.dense0, self.dense1, self.dense2):
            layer.build((None, None, self.width))
        self.built = True

    def call(self, x):
        x = ops.gelu(self.dense0(x), approximate=False)
        x = ops.gelu(self.dense1(x), approximate=False)
        return self.dense2(x)

    def rules(self, prefix):
        return [r for i, d in enumerate((self.dense0, self.dense1, self.dense2))
                for r in dense_rules(f"{prefix}.dense{i}", d, base=False)]

    def get_config(self):
        return {**super().get_config(), "width": self.width, "out_dim": self.out_dim}


def box_bias(grid_h, grid_w):
    """(grid_h * grid_w, 4) logits placing each patch's box on its cell, one patch in size."""
    x = np.arange(1, grid_w + 1, dtype=np.float32) / np.float32(grid_w)
    y = np.arange(1, grid_h + 1, dtype=np.float32) / np.float32(grid_h)
    xx, yy = np.meshgrid(x, y, indexing="xy")
    centers = np.clip(np.stack([xx, yy], axis=-1).reshape(-1, 2), 0.0, 1.0)
    center_bias = np.log(centers + np.float32(1e-4)) - np.log1p(-centers + np.float32(1e-4))
    size = np.broadcast_to(np.array([1.0 / grid_w, 1.0 / grid_h], np.float32), centers.shape)
    size_bias = np.log(size + np.float32(1e-4)) - np.log1p(-size + np.float32(1e-4))
    return np.concatenate([center_bias, size_bias], axis=-1).astype(np.float32)


class _OwlZeroShotObjectDetector(ZeroShotObjectDetector):
    hf_head_patterns = ("class_head.*", "box_head.*", "layer_norm.*", "objectness_head.*")
    objectness = False

    def __init__(self, backbone, preprocessor=None, **kwargs):
        super().__init__(backbone, preprocessor=preprocessor, **kwargs)
        vision = backbone.vision_model
        d, common = vision.hidden_size, dict(dtype=self.dtype_policy)
        self.layer_norm = keras.layers.LayerNormalization(epsilon=vision.spec.layer_norm_eps, name="layer_norm",
                                                          **common)
        self.class_dense = keras.layers.Dense(backbone.text_model.hidden_size, name="class_dense0", **common)
        self.logit_shift = keras.layers.Dense(1, name="logit_shift", **common)
        self.logit_scale = keras.layers.Dense(1, name="logit_scale", **common)
        self.box_head = BoxPredictionHead(d, 4, name="box_head", **common)
        self.objectness_head = BoxPredictionHead(d, 1, name="objectness_head", **common) if self.objectness else None

    def patch_features(self, pixels, training=False):
        """(batch, patches, hidden): post-normed patch tokens times the class token, normed."""
        vision = self.backbone.vision_model
        x = vision.post_norm(vision({"pixel_values": pixels}, training=training))
        return self.layer_norm(x[:, 1:] * x[:, :1])

    def class_logits(self, feats, queries, valid=None):
        """(logits (batch, patches, queries), normalised class embeddings) for query embeddings
        (batch, queries, width); ``valid`` (batch, queries) marks real queries."""
        class_embeds = self.class_dense(feats)
        class_embeds = class_embeds / (ops.norm(class_embeds, axis=-1, keepdims=True) + 1e-6)
        q = queries / (ops.norm(queries, axis=-1, keepdims=True) + 1e-6)
        logits = ops.matmul(class_embeds, ops.transpose(q, (0, 2, 1)))
        logits = (logits + self.logit_shift(feats)) * (ops.elu(self.logit_scale(feats)) + 1.0)
        if valid is not None:
            lowest = ops.cast(np.finfo(np.float32).min, logits.dtype)
            logits = ops.where(valid[:, None, :], logits, lowest)
        return logits, class_embeds

    def predict_boxes(self, feats):
        grid = self.backbone.vision_model.grid
        return ops.sigmoid(self.box_head(feats) + ops.cast(box_bias(grid, grid), feats.dtype)[None])

    def feature_map(self, feats):
        grid = self.backbone.vision_model.grid
        return ops.reshape(feats, (ops.shape(feats)[0], grid, grid, ops.shape(feats)[-1]))

    def call(self, inputs, training=False):
        if "query_pixel_values" in inputs:
            return self.guided(inputs)
        bb = self.backbone
        ids, pixels = inputs["input_ids"], inputs["pixel_values"]
        n_ids, n_images = ids.shape[0], pixels.shape[0]
        if isinstance(n_ids, int) and isinstance(n_images, int) and (n_images == 0 or n_ids % n_images):
            raise InputError(f"input_ids holds {n_ids} queries for {n_images} images in pixel_values: it must hold "
                             "the same number of queries for each image, one image's after the other")
        feats = self.patch_features(pixels, training=training)
        batch = ops.shape(feats)[0]
        queries = _unit(bb.encode_text(inputs, training=training))
        queries = ops.reshape(queries, (batch, -1, ops.shape(queries)[-1]))
        valid = ops.reshape(ids[:, 0], (batch, -1)) > 0  # a query whose first id is 0 is padding
        logits, class_embeds = self.class_logits(feats, queries, valid)
        out = {"logits": logits, "pred_boxes": self.predict_boxes(feats), "text_embeds": queries,
               "image_embeds": self.feature_map(feats), "class_embeds": class_embeds}
        if self.objectness_head is not None:
            out["objectness_logits"] = self.objectness_head(feats)[..., 0]
        return out

    def best_query_patch(self, class_embeds, feats, boxes):
        """(batch,) the query image's patch whose class embedding is the query: among the boxes
        within 80% of the best IoU with the whole image (generalised IoU when none overlaps it),
        the one least similar to the image's mean embedding."""
        x0, y0 = boxes[..., 0] - 0.5 * boxes[..., 2], boxes[..., 1] - 0.5 * boxes[..., 3]
        x1, y1 = boxes[..., 0] + 0.5 * boxes[..., 2], boxes[..., 1] + 0.5 * boxes[..., 3]
        area = (x1 - x0) * (y1 - y0)
        inter = (ops.maximum(ops.minimum(x1, 1.0) - ops.maximum(x0, 0.0), 0.0)
                 * ops.maximum(ops.minimum(y1, 1.0) - ops.maximum(y0, 0.0), 0.0))
        union = 1.0 + area - inter
        iou = inter / union
        hull = (ops.maximum(ops.maximum(x1, 1.0) - ops.minimum(x0, 0.0), 0.0)
                * ops.maximum(ops.maximum(y1, 1.0) - ops.minimum(y0, 0.0), 0.0))
        giou = iou - (hull - union) / hull
        none = ops.all(ops.equal(iou, 0.0), axis=-1, keepdims=True)
        iou = ops.where(none, giou, iou)
        selected = iou >= ops.max(iou, axis=-1, keepdims=True) * 0.8
        mean = ops.mean(class_embeds, axis=1, keepdims=True)
        sim = ops.sum(class_embeds * mean, axis=-1)
        sim = ops.where(selected, sim, ops.cast(np.inf, sim.dtype))
        return ops.argmin(sim, axis=-1)

    def image_guided_detection(self, inputs):
        """One-shot detection: ``{"pixel_values", "query_pixel_values"}`` (one query image per
        image, channels_last) -> Transformers' ``image_guided_detection`` outputs: ``logits``
        (batch, patches, 1), ``target_pred_boxes``, ``query_pred_boxes`` (batch, patches, 4),
        ``image_embeds``, ``query_image_embeds`` (batch, grid, grid, hidden), ``class_embeds``.
        Calling the model (or ``predict``) on such a dict does the same."""
        missing = [k for k in ("pixel_values", "query_pixel_values") if k not in inputs]
        if missing:
            raise InputError(f"image_guided_detection needs {missing} (one query image per image)")
        return self(inputs)

    def guided(self, inputs):
        feats = self.patch_features(inputs["pixel_values"])
        query_feats = self.patch_features(inputs["query_pixel_values"])
        query_class = self.class_dense(query_feats)  # not normalised: the query embedding itself
        query_boxes = self.predict_boxes(query_feats)
        best = ops.cast(self.best_query_patch(query_class, query_feats, query_boxes), "int32")
        query = ops.take_along_axis(query_class, best[:, None, None], axis=1)
        logits, class_embeds = self.class_logits(feats, query)
        return {"logits": logits, "target_pred_boxes": self.predict_boxes(feats), "query_pred_boxes": query_boxes,
                "image_embeds": self.feature_map(feats), "query_image_embeds": self.feature_map(query_feats),
                "class_embeds": class_embeds}

    def head_rules(self):
        r = norm_rules("layer_norm", self.layer_norm, base=False)
        for name, layer in (("dense0", self.class_dense), ("logit_shift", self.logit_shift),
                            ("logit_scale", self.logit_scale)):
            r += dense_rules(f"class_head.{name}", layer, base=False)
        r += self.box_head.rules("box_head")
        if self.objectness_head is not None:
            r += self.objectness_head.rules("objectness_head")
        return r


@_ser
@register_task(OwlViTBackbone, "ZeroShotObjectDetector", ("OwlViTForObjectDetection",))
class OwlViTZeroShotObjectDetector(_OwlZeroShotObjectDetector):
    pass


@_ser
@register_task(Owlv2Backbone, "ZeroShotObjectDetector", ("Owlv2ForObjectDetection",))
class Owlv2ZeroShotObjectDetector(_OwlZeroShotObjectDetector):
    """OWL-ViT's heads plus ``objectness_logits`` (batch, patches); boxes are relative to the
    square-padded image."""

    objectness = True
    square_padding = True

    def best_query_patch(self, class_embeds, feats, boxes):
        """(batch,) the query image's most object-like patch."""
        return ops.argmax(self.objectness_head(feats)[..., 0], axis=-1)


__all__ = ["OwlViTTextSpec", "OwlViTTextBackbone", "Owlv2TextBackbone", "OwlViTVisionSpec", "Owlv2VisionSpec",
           "OwlViTVisionBackbone", "Owlv2VisionBackbone", "OwlViTSpec", "Owlv2Spec", "OwlViTBackbone",
           "Owlv2Backbone", "OwlViTZeroShotImageClassifier", "Owlv2ZeroShotImageClassifier", "BoxPredictionHead",
           "box_bias", "OwlViTZeroShotObjectDetector", "Owlv2ZeroShotObjectDetector"]

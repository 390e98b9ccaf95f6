"""DPT (model_type ``dpt``, non-hybrid): a ViT encoder, the reassemble + fusion neck, and a depth
head (``DPTForDepthEstimation``) or a segmentation head (``DPTForSemanticSegmentation``).

The encoder is :class:`ViTBackbone` with DPT's checkpoint prefix (``dpt.``) and its position
embeddings resized bilinearly (Transformers' DPT uses ``bilinear``, not ViT's bicubic). The neck
reads ``hidden_states`` after the blocks in ``backbone_out_indices`` (before the final norm).
Hybrid DPT (``is_hybrid=True``: a BiT stem) and DPT over another backbone (``backbone_config``)
are refused with a ConfigError naming the key.
"""

from dataclasses import dataclass

import keras
from keras import ops

from keras_models.errors import ConfigError
from keras_models.layers.vision_embeddings import conv_rules, norm_rules, resize_grid
from keras_models.models.depth.layers import ReassembleNeck, resize, vit_hidden_states
from keras_models.models.registry import register_backbone, register_task
from keras_models.models.vit.backbone import ViTBackbone, ViTSpec, _pair, one_or_pair
from keras_models.spec import Spec, const, dim, hf
from keras_models.tasks.depth_estimator import DepthEstimator
from keras_models.tasks.semantic_segmenter import SemanticSegmenter

_ser = keras.saving.register_keras_serializable(package="keras_models")
_ALL = ("jax", "torch", "tensorflow")


@dataclass(frozen=True, kw_only=True)
class DPTSpec(ViTSpec):
    image_size: tuple = hf("image_size", (384, 384), read=_pair, write=one_or_pair)
    model_type: str = const("dpt")

    unsupported = {"is_hybrid": (False,)}

    @classmethod
    def adjust_from_hf(cls, config, values, source):
        for key in ("backbone_config", "backbone"):
            if config.get(key) is not None:
                raise ConfigError(f"{source}: {key}={str(config[key])[:60]!r}: DPT over another backbone is not "
                                  "implemented (only DPT's own ViT encoder, is_hybrid=false, backbone_config=null)")
        return values


@dataclass(frozen=True, kw_only=True)
class DPTNeckSpec(Spec):
    """config.json keys of DPT's neck and heads (read by the task, written back with it)."""

    backbone_out_indices: tuple = hf("backbone_out_indices", (2, 5, 8, 11))
    readout_type: str = hf("readout_type", "project")
    reassemble_factors: tuple = hf("reassemble_factors", (4, 2, 1, 0.5))
    neck_hidden_sizes: tuple = hf("neck_hidden_sizes", (96, 192, 384, 768))
    fusion_hidden_size: int = dim("fusion_hidden_size", 256)
    head_in_index: int = hf("head_in_index", -1)
    use_batch_norm_in_fusion_residual: bool = hf("use_batch_norm_in_fusion_residual", False)
    use_bias_in_fusion_residual: bool | None = hf("use_bias_in_fusion_residual", None)
    add_projection: bool = hf("add_projection", False)
    semantic_classifier_dropout: float = hf("semantic_classifier_dropout", 0.1)

    def validate(self, source="config.json"):
        if self.readout_type not in ("ignore", "add", "project"):
            raise ConfigError(f"{source}: readout_type={self.readout_type!r} (expected ignore, add or project)")
        n = len(self.neck_hidden_sizes)
        if len(set(self.backbone_out_indices)) != n or len(self.reassemble_factors) != n:
            raise ConfigError(f"{source}: backbone_out_indices {list(self.backbone_out_indices)}, reassemble_factors "
                              f"{list(self.reassemble_factors)} and neck_hidden_sizes {list(self.neck_hidden_sizes)} "
                              "must have the same length")

    @property
    def use_bias(self):
        b = self.use_bias_in_fusion_residual
        return (not self.use_batch_norm_in_fusion_residual) if b is None else b


def neck_spec(value):
    if value is None or isinstance(value, DPTNeckSpec):
        return value or DPTNeckSpec()
    return DPTNeckSpec.from_config(value)


@_ser
@register_backbone("dpt")
class DPTBackbone(ViTBackbone):
    """DPT's ViT encoder (``DPTModel``): last hidden state (batch, 1 + patches, hidden)."""

    spec_cls = DPTSpec
    base_model_prefix = "dpt"
    hf_architecture = "DPTModel"
    hf_known_unused = ("*pooler.dense.*",)
    hf_ignore = ("*num_batches_tracked",)
    verified_backends = _ALL

    def positions(self, gh, gw):
        pos = self.position_embedding
        if (gh, gw) == self.grid:
            return pos
        h, w = self.grid
        grid = resize_grid(ops.reshape(pos[:, 1:], (1, h, w, self.hidden_size)), gh, gw, mode="bilinear")
        return ops.concatenate([pos[:, :1], ops.reshape(grid, (1, gh * gw, self.hidden_size))], axis=1)

    def depth_features(self, pixels, indices, training=False):
        return vit_hidden_states(self, pixels, [i + 1 for i in indices], training=training)


class _DPTNeckTask:
    """The neck shared by DPT's depth and segmentation tasks."""

    def _build_neck(self, neck):
        self.neck_spec = neck_spec(neck)
        s, bb = self.neck_spec, self.backbone
        self.neck = ReassembleNeck(bb.hidden_size, s.neck_hidden_sizes, s.reassemble_factors, s.fusion_hidden_size,
                                   readout=s.readout_type, hidden_act=bb.hidden_act,
                                   use_batch_norm=s.use_batch_norm_in_fusion_residual, use_bias=s.use_bias,
                                   name="neck", dtype=bb.dtype_policy)

    def fused(self, pixels, training=False):
        hs, grid = self.backbone.depth_features(pixels, self.neck_spec.backbone_out_indices, training=training)
        return self.neck(hs, grid=grid, training=training)[self.neck_spec.head_in_index]

    @classmethod
    def _neck_from_hf(cls, hf, kwargs):
        kwargs.setdefault("neck", DPTNeckSpec.from_hf(hf))
        return kwargs


@_ser
@register_task(DPTBackbone, "DepthEstimator", ("DPTForDepthEstimation",))
class DPTDepthEstimator(_DPTNeckTask, DepthEstimator):
    """Neck -> [3x3 conv + ReLU if add_projection] -> 3x3 conv (C/2) -> x2 bilinear (aligned) ->
    3x3 conv (32) -> ReLU -> 1x1 conv (1) -> ReLU."""

    hf_head_patterns = ("neck.*", "head.*")

    def __init__(self, backbone, neck=None, **kwargs):
        super().__init__(backbone, **kwargs)
        self._build_neck(neck)
        c, d = self.neck_spec.fusion_hidden_size, backbone.dtype_policy
        conv = lambda n, k, name: keras.layers.Conv2D(n, k, padding="same", name=name, dtype=d)  # noqa: E731
        self.projection = conv(c, 3, "head_projection") if self.neck_spec.add_projection else None
        self.conv1, self.conv2, self.conv3 = conv(c // 2, 3, "head_conv1"), conv(32, 3, "head_conv2"), conv(1, 1, "head_conv3")

    @classmethod
    def task_config_from_hf(cls, hf, head_from_checkpoint, **kwargs):
        return cls._neck_from_hf(hf, kwargs)

    def task_config_to_hf(self):
        return self.neck_spec.to_hf()

    def depth(self, pixels, training=False):
        x = self.fused(pixels, training)
        if self.projection is not None:
            x = ops.relu(self.projection(x))
        x = self.conv1(x)
        x = resize(x, 2 * x.shape[1], 2 * x.shape[2], "bilinear_aligned")
        x = ops.relu(self.conv3(ops.relu(self.conv2(x))))
        return ops.squeeze(x, -1)

    def head_rules(self):
        r = self.neck.rules("neck")
        if self.projection is not None:
            r += conv_rules("head.projection", self.projection, base=False)
        for i, conv in ((0, self.conv1), (2, self.conv2), (4, self.conv3)):
            r += conv_rules(f"head.head.{i}", conv, base=False)
        return r

    def get_config(self):
        c = super().get_config()
        c.update(neck=self.neck_spec.to_config())
        return c


@_ser
@register_task(DPTBackbone, "SemanticSegmenter", ("DPTForSemanticSegmentation",))
class DPTSemanticSegmenter(_DPTNeckTask, SemanticSegmenter):
    """Neck -> 3x3 conv (no bias) -> BatchNorm -> ReLU -> dropout -> 1x1 conv (classes) -> x2
    bilinear (aligned): logits (batch, 2*h, 2*w, classes), channels_last. The auxiliary head
    (training only in Transformers) is not built; a checkpoint's one is reported as unused."""

    hf_head_patterns = ("neck.*", "head.*", "auxiliary_head.*")

    def __init__(self, backbone, num_classes=2, neck=None, **kwargs):
        super().__init__(backbone, num_classes=num_classes, **kwargs)
        self._build_neck(neck)
        c, d = self.neck_spec.fusion_hidden_size, backbone.dtype_policy
        self.conv = keras.layers.Conv2D(c, 3, padding="same", use_bias=False, name="head_conv", dtype=d)
        self.norm = keras.layers.BatchNormalization(epsilon=1e-5, momentum=0.9, name="head_norm", dtype=d)
        self.drop = keras.layers.Dropout(self.dropout, dtype=d)
        self.classifier = keras.layers.Conv2D(num_classes, 1, name="head_classifier", dtype=d)

    @classmethod
    def task_config_from_hf(cls, hf, head_from_checkpoint, **kwargs):
        kwargs = super().task_config_from_hf(hf, head_from_checkpoint, **kwargs)
        kwargs = cls._neck_from_hf(hf, kwargs)
        kwargs["dropout"] = kwargs["neck"].semantic_classifier_dropout
        return kwargs

    def task_config_to_hf(self):
        c = super().task_config_to_hf()
        c.update(self.neck_spec.to_hf(), use_auxiliary_head=False)
        return c

    def call(self, inputs, training=False):
        pixels = inputs["pixel_values"] if isinstance(inputs, dict) else inputs
        x = self.norm(self.conv(self.fused(pixels, training)), training=training)
        x = self.classifier(self.drop(ops.relu(x), training=training))
        return resize(x, 2 * x.shape[1], 2 * x.shape[2], "bilinear_aligned")

    def head_rules(self):
        return (self.neck.rules("neck") + conv_rules("head.head.0", self.conv, base=False)
                + norm_rules("head.head.1", self.norm, base=False)
                + conv_rules("head.head.4", self.classifier, base=False))

    def get_config(self):
        c = super().get_config()
        c.update(neck=self.neck_spec.to_config())
        return c


__all__ = ["DPTSpec", "DPTNeckSpec", "DPTBackbone", "DPTDepthEstimator", "DPTSemanticSegmenter"]

"""Depth Anything (model_type ``depth_anything``): a DINOv2 tower (``backbone_config``), the
DPT-style neck without a class-token readout (each fusion step resizes to the next map's size),
and a head of three convs whose output is ReLU'd (``depth_estimation_type="relative"``) or
sigmoid'd (``"metric"``), times ``max_depth``.

The tower's feature maps follow Transformers' backbone API: ``out_indices`` (or ``out_features``
``stageN``) index ``hidden_states`` (0: the embeddings, i: after block i), each final-normed when
``apply_layernorm``; tokens are kept (``reshape_hidden_states=false``), the neck drops the class
token. The checkpoint has no base model: the tower's tensors live under ``backbone.``.
"""

from dataclasses import dataclass

import keras
from keras import ops

from keras_models.errors import ConfigError
from keras_models.layers.vision_embeddings import conv_rules
from keras_models.models.backbone import SpecBackbone
from keras_models.models.depth.layers import ReassembleNeck, resize, vit_hidden_states
from keras_models.models.registry import register_backbone, register_task
from keras_models.presets.weight_map import mount
from keras_models.spec import Spec, build_tower, dim, hf, tower
from keras_models.tasks.depth_estimator import DepthEstimator

_ser = keras.saving.register_keras_serializable(package="keras_models")
_ALL = ("jax", "torch", "tensorflow")


def _int_size(v):
    if isinstance(v, (list, tuple)):
        if len(set(v)) != 1:
            raise ValueError("a non-square patch_size is not supported")
        v = v[0]
    return int(v)


def stage_indices(config, source):
    """Transformers' BackboneMixin: ``out_indices``, else ``out_features`` (``stem``/``stageN``), else
    the last stage; negative indices count from the end (num_hidden_layers + 1 stages)."""
    n = config.get("num_hidden_layers", 12) + 1
    if config.get("out_indices") is not None:
        idx = [int(i) for i in config["out_indices"]]
    elif config.get("out_features") is not None:
        try:
            idx = [0 if f == "stem" else int(str(f).replace("stage", "")) for f in config["out_features"]]
        except ValueError as e:
            raise ConfigError(f"{source}: out_features={config['out_features']!r} ({e})") from e
    else:
        idx = [n - 1]
    idx = [i % n for i in idx]
    if any(i < 0 or i >= n for i in idx):
        raise ConfigError(f"{source}: out_indices {idx} outside the {n} stages")
    return sorted(set(idx))


@dataclass(frozen=True, kw_only=True)
class DepthAnythingSpec(Spec):
    backbone_config: dict = tower("backbone_config", "dinov2")
    patch_size: int = hf("patch_size", 14, read=_int_size)
    reassemble_hidden_size: int = dim("reassemble_hidden_size", 384)
    reassemble_factors: tuple = hf("reassemble_factors", (4, 2, 1, 0.5))
    neck_hidden_sizes: tuple = hf("neck_hidden_sizes", (48, 96, 192, 384))
    fusion_hidden_size: int = dim("fusion_hidden_size", 64)
    head_in_index: int = hf("head_in_index", -1)
    head_hidden_size: int = dim("head_hidden_size", 32)
    depth_estimation_type: str = hf("depth_estimation_type", "relative")
    max_depth: float = hf("max_depth", 1)
    initializer_range: float = hf("initializer_range", 0.02)

    def validate(self, source="config.json"):
        if self.depth_estimation_type not in ("relative", "metric"):
            raise ConfigError(f"{source}: depth_estimation_type={self.depth_estimation_type!r} (expected relative "
                              "or metric)")
        b = self.backbone_config
        if b.get("model_type") != "dinov2":
            raise ConfigError(f"{source}: backbone_config model_type {b.get('model_type')!r} is not implemented "
                              "(Depth Anything over dinov2 only)")
        if b.get("reshape_hidden_states"):
            raise ConfigError(f"{source}: backbone_config reshape_hidden_states=true is not implemented (Depth "
                              "Anything's neck takes token sequences)")
        n = len(self.neck_hidden_sizes)
        if len(stage_indices(b, source)) != n or len(self.reassemble_factors) != n:
            raise ConfigError(f"{source}: backbone_config out_indices, reassemble_factors and neck_hidden_sizes "
                              "must have the same length")

    def dummy_inputs(self):
        import numpy as np

        s = 2 * self.patch_size
        return {"pixel_values": np.zeros((1, s, s, self.backbone_config.get("num_channels", 3)), "float32")}


@_ser
@register_backbone("depth_anything")
class DepthAnythingBackbone(SpecBackbone):
    """The DINOv2 tower (``self.dinov2``, checkpoint prefix ``backbone.``); calling it returns the
    tower's last hidden state; ``depth_features`` gives the neck's inputs."""

    spec_cls = DepthAnythingSpec
    base_model_prefix = ""
    hf_architecture = None
    hf_ignore = ("*num_batches_tracked",)
    verified_backends = _ALL

    def __init__(self, spec=None, **kwargs):
        super().__init__(spec, **kwargs)
        self.dinov2 = build_tower(self.spec.backbone_config, "backbone", self.dtype_policy)
        self.out_indices = stage_indices(self.spec.backbone_config, "backbone_config")
        self.apply_layernorm = self.spec.backbone_config.get("apply_layernorm", True)

    def build(self, input_shape=None):
        self.dinov2.build_from_dummy()
        self.built = True

    def call(self, inputs, training=False):
        return self.dinov2(inputs, training=training)

    def depth_features(self, pixels, training=False):
        hs, _ = vit_hidden_states(self.dinov2, pixels, self.out_indices, final_norm=self.apply_layernorm,
                                  training=training)
        p = self.spec.patch_size
        return hs, (pixels.shape[1] // p, pixels.shape[2] // p)

    def feature_maps(self, inputs, reshape=False, training=False):
        """Transformers' ``Dinov2Backbone(...).feature_maps`` for ``backbone_config``'s out_indices /
        out_features and apply_layernorm: token sequences (batch, 1 + gh*gw, hidden), or with
        ``reshape=True`` (``reshape_hidden_states``) the patch tokens as channels_last maps
        (batch, gh, gw, hidden)."""
        pixels = inputs["pixel_values"] if isinstance(inputs, dict) else inputs
        hs, (gh, gw) = self.depth_features(pixels, training=training)
        if not reshape:
            return hs
        return [ops.reshape(h[:, 1:], (-1, gh, gw, h.shape[-1])) for h in hs]

    def weight_rules(self):
        return mount(self.dinov2.weight_rules(), "backbone.")


@_ser
@register_task(DepthAnythingBackbone, "DepthEstimator", ("DepthAnythingForDepthEstimation",))
class DepthAnythingDepthEstimator(DepthEstimator):
    """Neck -> 3x3 conv (C/2) -> bilinear (aligned) to the patch grid x patch_size -> 3x3 conv
    (head_hidden_size) -> ReLU -> 1x1 conv (1) -> ReLU or sigmoid -> x max_depth."""

    hf_head_patterns = ("neck.*", "head.*")

    def __init__(self, backbone, **kwargs):
        super().__init__(backbone, **kwargs)
        s, d = backbone.spec, backbone.dtype_policy
        self.neck = ReassembleNeck(s.reassemble_hidden_size, s.neck_hidden_sizes, s.reassemble_factors,
                                   s.fusion_hidden_size, readout="ignore", fuse_to_next=True, name="neck", dtype=d)
        c = s.fusion_hidden_size
        conv = lambda n, k, name: keras.layers.Conv2D(n, k, padding="same", name=name, dtype=d)  # noqa: E731
        self.conv1 = conv(c // 2, 3, "head_conv1")
        self.conv2 = conv(s.head_hidden_size, 3, "head_conv2")
        self.conv3 = conv(1, 1, "head_conv3")

    def depth(self, pixels, training=False):
        s = self.backbone.spec
        hs, grid = self.backbone.depth_features(pixels, training=training)
        x = self.conv1(self.neck(hs, grid=grid, training=training)[s.head_in_index])
        x = resize(x, grid[0] * s.patch_size, grid[1] * s.patch_size, "bilinear_aligned")
        x = self.conv3(ops.relu(self.conv2(x)))
        x = ops.relu(x) if s.depth_estimation_type == "relative" else ops.sigmoid(x)
        return ops.squeeze(x, -1) * s.max_depth

    def head_rules(self):
        r = self.neck.rules("neck")
        for name, conv in (("conv1", self.conv1), ("conv2", self.conv2), ("conv3", self.conv3)):
            r += conv_rules(f"head.{name}", conv, base=False)
        return r

    def config_to_hf(self):
        c = super().config_to_hf()
        c["architectures"] = ["DepthAnythingForDepthEstimation"]
        return c


__all__ = ["DepthAnythingSpec", "DepthAnythingBackbone", "DepthAnythingDepthEstimator", "stage_indices"]

"""ViTMatte (model_type ``vitmatte``): a ViTDet tower (``backbone_config``, 4 input channels: the
image and its trimap) and the detail-capture decoder, channels_last:

* ConvStream: stride-2 3x3 ConvModules (conv without bias, padding 1, BatchNorm with
  ``batch_norm_eps``, ReLU) over the 4-channel input, one per ``convstream_hidden_sizes``;
* fusion blocks (``fusion_hidden_sizes``), coarse to fine: the features are bilinearly upsampled
  x2 (align_corners=False), concatenated after the matching ConvStream map (the input itself
  last), then a stride-1 3x3 ConvModule;
* matting head: 3x3 conv (16, bias) + BatchNorm (eps 1e-5) + ReLU + 1x1 conv (1) -> sigmoid.

The tower's feature map is Transformers' ``VitDetBackbone`` feature map of the deepest stage in
``out_features`` / ``out_indices`` (the output of that block, no final norm). Input sides must
be multiples of the patch size and the fusion chain must return to the input's resolution
(patch size = 2 ** len(fusion_hidden_sizes)), as in Transformers; the processor pads to 32.
"""

from dataclasses import dataclass

import keras
import numpy as np
from keras import ops

from keras_models.errors import ConfigError, InputError
from keras_models.layers.vision_embeddings import conv_rules, norm_rules, resize_grid
from keras_models.models.backbone import SpecBackbone
from keras_models.models.depth.layers import resize
from keras_models.models.registry import register_backbone, register_task
from keras_models.models.vit.backbone import pixel_values_of
from keras_models.models.vitmatte.processor import VitMatteImageProcessor
from keras_models.presets.weight_map import mount
from keras_models.spec import Spec, build_tower, dim, hf, tower
from keras_models.tasks.image_matting import ImageMatting

_ser = keras.saving.register_keras_serializable(package="keras_models")


def deepest_stage(config, source):
    """The deepest stage (block count) named by a ViTDet config's out_features / out_indices."""
    n = config.get("num_hidden_layers", 12)
    if config.get("out_features"):
        try:
            idx = [0 if f == "stem" else int(str(f).replace("stage", "")) for f in config["out_features"]]
        except ValueError as e:
            raise ConfigError(f"{source}: backbone_config out_features={config['out_features']!r} ({e})") from e
    elif config.get("out_indices"):
        idx = [int(i) % (n + 1) for i in config["out_indices"]]
    else:
        idx = [n]
    if any(i < 0 or i > n for i in idx):
        raise ConfigError(f"{source}: backbone_config out_features / out_indices {idx} outside stages 0..{n}")
    return max(idx)


@dataclass(frozen=True, kw_only=True)
class VitMatteSpec(Spec):
    backbone_config: dict = tower("backbone_config", "vitdet")
    hidden_size: int = dim("hidden_size", 384)
    batch_norm_eps: float = hf("batch_norm_eps", 1e-5)
    convstream_hidden_sizes: tuple = hf("convstream_hidden_sizes", (48, 96, 192))
    fusion_hidden_sizes: tuple = hf("fusion_hidden_sizes", (256, 128, 64, 32))
    initializer_range: float = hf("initializer_range", 0.02)

    def validate(self, source="config.json"):
        b = self.backbone_config
        if b.get("model_type") != "vitdet":
            raise ConfigError(f"{source}: backbone_config model_type {b.get('model_type')!r} is not implemented "
                              "(ViTMatte over vitdet only)")
        if len(self.fusion_hidden_sizes) != len(self.convstream_hidden_sizes) + 1:
            raise ConfigError(f"{source}: fusion_hidden_sizes must have one more entry than convstream_hidden_sizes")
        deepest_stage(b, source)

    def dummy_inputs(self):
        s = 2 ** len(self.fusion_hidden_sizes)
        return {"pixel_values": np.zeros((1, s, s, self.backbone_config.get("num_channels", 3)), "float32")}


@_ser
@register_backbone("vitmatte")
class VitMatteBackbone(SpecBackbone):
    """The ViTDet tower (``self.vitdet``, checkpoint prefix ``backbone.``); calling it returns the
    feature map (batch, H/p, W/p, hidden) of the deepest ``out_features`` stage."""

    spec_cls = VitMatteSpec
    base_model_prefix = ""
    hf_architecture = None
    hf_ignore = ("*num_batches_tracked",)
    verified_backends = ("jax", "torch", "tensorflow")

    def __init__(self, spec=None, **kwargs):
        super().__init__(spec, **kwargs)
        self.vitdet = build_tower(self.spec.backbone_config, "backbone", self.dtype_policy)
        self.stage = deepest_stage(self.spec.backbone_config, "backbone_config")

    def build(self, input_shape=None):
        self.vitdet.build_from_dummy()
        self.built = True

    def call(self, inputs, training=False):
        v = self.vitdet
        x = v.patch_embedding(pixel_values_of(inputs))
        if v.position_embedding is not None:
            size = int(round((v.position_embedding.shape[1] - 1) ** 0.5))
            pos = ops.reshape(v.position_embedding[:, 1:], (1, size, size, v.hidden_size))
            x = x + ops.cast(resize_grid(pos, x.shape[1], x.shape[2]), x.dtype)
        for b in v.blocks[: self.stage]:
            x = b(x, training=training)
        return x

    def weight_rules(self):
        return mount(self.vitdet.weight_rules(), "backbone.")


@_ser
class ConvBNReLU(keras.layers.Layer):
    """3x3 conv (padding 1, ``stride``, no bias) -> BatchNorm -> ReLU."""

    def __init__(self, filters, in_channels, stride=1, eps=1e-5, **kwargs):
        super().__init__(**kwargs)
        self.filters, self.in_channels, self.stride, self.eps = filters, in_channels, stride, eps
        self.conv = keras.layers.Conv2D(filters, 3, strides=stride, use_bias=False, name="conv", dtype=self.dtype_policy)
        self.norm = keras.layers.BatchNormalization(epsilon=eps, momentum=0.9, name="batch_norm",
                                                    dtype=self.dtype_policy)

    def build(self, input_shape=None):
        self.conv.build((None, None, None, self.in_channels))
        self.norm.build((None, None, None, self.filters))
        self.built = True

    def call(self, x, training=False):
        x = self.conv(ops.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0))))
        return ops.relu(self.norm(x, training=training))

    def rules(self, p):
        return conv_rules(p + ".conv", self.conv, base=False) + norm_rules(p + ".batch_norm", self.norm, base=False)

    def get_config(self):
        c = super().get_config()
        c.update(filters=self.filters, in_channels=self.in_channels, stride=self.stride, eps=self.eps)
        return c


@_ser
@register_task(VitMatteBackbone, "ImageMatting", ("VitMatteForImageMatting",))
class VitMatteImageMatting(ImageMatting):
    hf_head_patterns = ("decoder.*",)

    def __init__(self, backbone, **kwargs):
        super().__init__(backbone, **kwargs)
        s, d = backbone.spec, backbone.dtype_policy
        eps = s.batch_norm_eps
        chans = [s.backbone_config.get("num_channels", 3)] + list(s.convstream_hidden_sizes)
        self.convstream = [ConvBNReLU(c, cin, stride=2, eps=eps, name=f"convstream_{i}", dtype=d)
                           for i, (cin, c) in enumerate(zip(chans[:-1], chans[1:]))]
        fusion = [s.hidden_size] + list(s.fusion_hidden_sizes)
        self.fusion = [ConvBNReLU(fusion[i + 1], fusion[i] + chans[-(i + 1)], eps=eps, name=f"fusion_{i}", dtype=d)
                       for i in range(len(fusion) - 1)]
        self.head_conv = keras.layers.Conv2D(16, 3, name="head_conv", dtype=d)
        self.head_norm = keras.layers.BatchNormalization(epsilon=1e-5, momentum=0.9, name="head_norm", dtype=d)
        self.head_out = keras.layers.Conv2D(1, 1, name="head_out", dtype=d)

    @classmethod
    def preprocessor_from_preset(cls, folder, hf, **kw):
        from keras_models.preprocessing.image import CONFIG_NAME

        if not (folder / CONFIG_NAME).is_file():
            return None
        return VitMatteImageProcessor.from_preset(folder)

    def build(self, input_shape=None):
        for layer in self.convstream + self.fusion:
            layer.build()
        self.head_conv.build((None, None, None, self.backbone.spec.fusion_hidden_sizes[-1]))
        self.head_norm.build((None, None, None, 16))
        self.head_out.build((None, None, None, 16))
        self.built = True

    def call(self, inputs, training=False):
        pixels = inputs["pixel_values"] if isinstance(inputs, dict) else inputs
        if len(pixels.shape) != 4:
            raise InputError(f"ViTMatte: pixel_values must be (batch, height, width, channels), got {tuple(pixels.shape)}")
        h, w, n = pixels.shape[1], pixels.shape[2], len(self.fusion)
        if h is not None and w is not None and (h % 2**n or w % 2**n):
            raise InputError(f"ViTMatte: pixel_values height and width must be multiples of {2 ** n} (got {h}x{w}); "
                             "pad them (the image processor pads to size_divisor)")
        details = [pixels]
        for conv in self.convstream:
            details.append(conv(details[-1], training=training))
        x = self.backbone({"pixel_values": pixels}, training=training)
        for i, block in enumerate(self.fusion):
            detail = details[len(self.fusion) - i - 1]
            x = resize(x, 2 * x.shape[1], 2 * x.shape[2], "bilinear")
            if x.shape[1] != detail.shape[1] or x.shape[2] != detail.shape[2]:
                raise InputError(f"ViTMatte: the feature map upsampled to {x.shape[1]}x{x.shape[2]} does not meet the "
                                 f"{detail.shape[1]}x{detail.shape[2]} detail map (patch size must be {2 ** n})")
            x = block(ops.concatenate([detail, x], axis=-1), training=training)
        x = self.head_conv(ops.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0))))
        x = ops.relu(self.head_norm(x, training=training))
        return ops.sigmoid(self.head_out(x))

    def head_rules(self):
        r = []
        for i, m in enumerate(self.convstream):
            r += m.rules(f"decoder.convstream.convs.{i}")
        for i, m in enumerate(self.fusion):
            r += m.rules(f"decoder.fusion_blocks.{i}.conv")
        p = "decoder.matting_head.matting_convs."
        r += conv_rules(p + "0", self.head_conv, base=False) + norm_rules(p + "1", self.head_norm, base=False)
        return r + conv_rules(p + "3", self.head_out, base=False)

    def config_to_hf(self):
        c = super().config_to_hf()
        c["architectures"] = ["VitMatteForImageMatting"]
        return c


__all__ = ["VitMatteSpec", "VitMatteBackbone", "VitMatteImageMatting", "VitMatteImageProcessor", "ConvBNReLU"]

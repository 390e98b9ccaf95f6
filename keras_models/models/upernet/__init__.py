"""UperNet (model_type ``upernet``): a ConvNeXT or Swin tower (``backbone_config``) whose stage maps
(``out_features`` / ``out_indices``, each through its ``hidden_states_norms`` LayerNorm, as
Transformers' ``ConvNextBackbone`` / ``SwinBackbone``) feed the UperNet head:

* PSP module on the deepest map: adaptive average pooling to each of ``pool_scales``, a 1x1
  ConvModule (conv without bias + BatchNorm + ReLU) each, bilinear back to the map's size,
  concatenated with the map -> 3x3 ConvModule (``bottleneck``);
* FPN: a 1x1 lateral ConvModule per other map, top-down sum with bilinear upsampling, a 3x3
  ConvModule per level, every level resized to the finest -> concat -> 3x3 ConvModule -> 1x1
  classifier;
* auxiliary FCN head (``use_auxiliary_head``) on the third map: ``auxiliary_num_convs`` 3x3
  ConvModules (optionally ``auxiliary_concat_input``: concat with its input + 3x3 ConvModule) ->
  1x1 classifier. It only feeds Transformers' training loss; here ``auxiliary_logits(inputs)``.

Logits are bilinearly resized to the input size and returned channels_last
(batch, H, W, num_labels). All resizes are PyTorch's bilinear with align_corners=False. The Swin
tower partitions windows at every resolution (Transformers' ``always_partition``: a map smaller
than the window is padded to it and the odd blocks keep their shift).
"""

from dataclasses import dataclass, replace

import keras
import numpy as np
from keras import ops

from keras_models.errors import ConfigError
from keras_models.layers.vision_embeddings import conv_rules, norm_rules
from keras_models.models.backbone import SpecBackbone
from keras_models.models.depth.layers import resize
from keras_models.models.registry import register_backbone, register_task
from keras_models.models.swin.backbone import SwinFeatureBackbone
from keras_models.presets.weight_map import mount
from keras_models.spec import Spec, dim, hf, tower, tower_kwargs
from keras_models.tasks.semantic_segmenter import SemanticSegmenter

_ser = keras.saving.register_keras_serializable(package="keras_models")
TOWERS = ("convnext", "swin")


def out_stages(config, source):
    """1-based stage numbers of a backbone config's ``out_features`` (``stageN``) / ``out_indices``
    (0 is the stem, which is not implemented), else the last stage."""
    n = len(config.get("depths") or ())
    if config.get("out_features"):
        try:
            idx = [int(str(f).replace("stage", "")) if f != "stem" else 0 for f in config["out_features"]]
        except ValueError as e:
            raise ConfigError(f"{source}: backbone_config out_features={config['out_features']!r} ({e})") from e
    elif config.get("out_indices"):
        idx = [int(i) % (n + 1) for i in config["out_indices"]]
    else:
        idx = [n]
    if any(i < 1 or i > n for i in idx):
        raise ConfigError(f"{source}: backbone_config out_features / out_indices {idx} must name stages 1..{n} "
                          "(the stem map is not implemented)")
    return tuple(idx)


@dataclass(frozen=True, kw_only=True)
class UperNetSpec(Spec):
    backbone_config: dict = tower("backbone_config", "resnet")
    hidden_size: int = dim("hidden_size", 512)
    pool_scales: tuple = hf("pool_scales", (1, 2, 3, 6))
    use_auxiliary_head: bool = hf("use_auxiliary_head", True)
    auxiliary_in_channels: int | None = hf("auxiliary_in_channels", None)
    auxiliary_channels: int = dim("auxiliary_channels", 256)
    auxiliary_num_convs: int = hf("auxiliary_num_convs", 1)
    auxiliary_concat_input: bool = hf("auxiliary_concat_input", False)
    auxiliary_loss_weight: float = hf("auxiliary_loss_weight", 0.4)
    loss_ignore_index: int = hf("loss_ignore_index", 255)
    initializer_range: float = hf("initializer_range", 0.02)

    def validate(self, source="config.json"):
        b = self.backbone_config
        if b.get("model_type") not in TOWERS:
            raise ConfigError(f"{source}: backbone_config model_type {b.get('model_type')!r} is not implemented "
                              f"for UperNet (supported: {list(TOWERS)})")
        if b.get("use_timm_backbone") or b.get("backbone"):
            raise ConfigError(f"{source}: a timm backbone (backbone / use_timm_backbone) is not implemented for "
                              "UperNet")
        stages = out_stages(b, source)
        if self.use_auxiliary_head and len(stages) < 3:
            raise ConfigError(f"{source}: use_auxiliary_head reads the third feature map but backbone_config "
                              f"out_features names {len(stages)}")
        if self.auxiliary_num_convs < 0 or any(s < 1 for s in self.pool_scales):
            raise ConfigError(f"{source}: auxiliary_num_convs must be >= 0 and pool_scales >= 1")

    def dummy_inputs(self):
        c = self.backbone_config.get("num_channels", 3)
        return {"pixel_values": np.zeros((1, 32, 32, c), "float32")}


@_ser
@register_backbone("upernet")
class UperNetBackbone(SpecBackbone):
    """The tower (checkpoint prefix ``backbone.``) and its per-stage norms; calling it returns the
    deepest feature map, ``feature_maps`` all of them (channels_last)."""

    spec_cls = UperNetSpec
    base_model_prefix = ""
    hf_architecture = None
    hf_ignore = ("*num_batches_tracked", "*relative_position_index")
    verified_backends = ("jax", "torch", "tensorflow")

    def __init__(self, spec=None, **kwargs):
        super().__init__(spec, **kwargs)
        config = self.spec.backbone_config
        self.kind = config["model_type"]
        cls, tower_args = tower_kwargs(config, "backbone_config")
        if self.kind == "swin":
            cls = SwinFeatureBackbone
        self.tower = cls(name="backbone", dtype=self.dtype_policy, **tower_args)
        self.stages = out_stages(config, "backbone_config")
        if self.kind == "convnext":
            self.channels = [self.tower.hidden_sizes[i - 1] for i in self.stages]
        else:
            self.channels = [self.tower.embed_dim * 2 ** (i - 1) for i in self.stages]
        eps = 1e-6 if self.kind == "convnext" else 1e-5
        self.norms = [keras.layers.LayerNormalization(epsilon=eps, name=f"norm_stage{i}", dtype=self.dtype_policy)
                      for i in self.stages]

    def build(self, input_shape=None):
        self.tower.build_from_dummy()
        for norm, c in zip(self.norms, self.channels):
            norm.build((None, None, None, c))
        self.built = True

    def feature_maps(self, inputs, training=False):
        pixels = inputs["pixel_values"] if isinstance(inputs, dict) else inputs
        outs = self.tower.stage_outputs({"pixel_values": pixels})
        return [norm(outs[i - 1]) for norm, i in zip(self.norms, self.stages)]

    def call(self, inputs, training=False):
        return self.feature_maps(inputs, training=training)[-1]

    def weight_rules(self):
        r = self.tower.weight_rules()
        final = [x for x in r if x.hf.startswith("layernorm.")]
        r = mount([x for x in r if not x.hf.startswith("layernorm.")], "backbone.")
        if self.kind == "swin":  # SwinBackbone keeps the unused final norm (swin.layernorm); older
            # checkpoints lack it. Transformers' ConvNextBackbone has no pooling norm.
            r += [replace(x, hf="backbone.swin." + x.hf, base=False, optional=True) for x in final]
        for norm, i in zip(self.norms, self.stages):
            r += norm_rules(f"backbone.hidden_states_norms.stage{i}", norm, base=False)
        return r


@_ser
class ConvModule(keras.layers.Layer):
    """Conv (no bias) -> BatchNorm (eps 1e-5) -> ReLU, Transformers' ``UperNetConvModule``."""

    def __init__(self, filters, kernel, in_channels, **kwargs):
        super().__init__(**kwargs)
        self.filters, self.kernel, self.in_channels = filters, kernel, in_channels
        self.conv = keras.layers.Conv2D(filters, kernel, padding="same", use_bias=False, name="conv",
                                        dtype=self.dtype_policy)
        self.norm = keras.layers.BatchNormalization(epsilon=1e-5, momentum=0.9, name="batch_norm",
                                                    dtype=self.dtype_policy)

    def build(self, input_shape=None):
        self.conv.build((None, None, None, self.in_channels))
        self.norm.build((None, None, None, self.filters))
        self.built = True

    def call(self, x, training=False):
        return ops.relu(self.norm(self.conv(x), training=training))

    def rules(self, p):
        return conv_rules(p + ".conv", self.conv, base=False) + norm_rules(p + ".batch_norm", self.norm, base=False)

    def get_config(self):
        c = super().get_config()
        c.update(filters=self.filters, kernel=self.kernel, in_channels=self.in_channels)
        return c


def adaptive_pool_matrix(n, s):
    """(s, n) matrix of PyTorch's AdaptiveAvgPool over one axis: bin i averages
    [floor(i*n/s), ceil((i+1)*n/s))."""
    m = np.zeros((s, n), np.float32)
    for i in range(s):
        lo, hi = (i * n) // s, -((-(i + 1) * n) // s)
        m[i, lo:hi] = 1.0 / (hi - lo)
    return m


def adaptive_avg_pool(x, s):
    h, w = x.shape[1], x.shape[2]
    mh = ops.convert_to_tensor(adaptive_pool_matrix(h, s))
    mw = ops.convert_to_tensor(adaptive_pool_matrix(w, s))
    y = ops.einsum("ih,bhwc->biwc", ops.cast(mh, x.dtype), x)
    return ops.einsum("jw,biwc->bijc", ops.cast(mw, x.dtype), y)


@_ser
class UperNetHead(keras.layers.Layer):
    def __init__(self, in_channels, hidden, pool_scales, num_classes, **kwargs):
        super().__init__(**kwargs)
        self.in_channels, self.hidden = list(in_channels), hidden
        self.pool_scales, self.num_classes = list(pool_scales), num_classes
        d, top = self.dtype_policy, self.in_channels[-1]
        self.psp = [ConvModule(hidden, 1, top, name=f"psp_{i}", dtype=d) for i in range(len(pool_scales))]
        self.bottleneck = ConvModule(hidden, 3, top + len(pool_scales) * hidden, name="bottleneck", dtype=d)
        self.laterals = [ConvModule(hidden, 1, c, name=f"lateral_{i}", dtype=d) for i, c in enumerate(in_channels[:-1])]
        self.fpn = [ConvModule(hidden, 3, hidden, name=f"fpn_{i}", dtype=d) for i in range(len(in_channels) - 1)]
        self.fpn_bottleneck = ConvModule(hidden, 3, len(in_channels) * hidden, name="fpn_bottleneck", dtype=d)
        self.classifier = keras.layers.Conv2D(num_classes, 1, name="classifier", dtype=d)

    def build(self, input_shape=None):
        for layer in self.psp + [self.bottleneck, self.fpn_bottleneck] + self.laterals + self.fpn:
            layer.build()
        self.classifier.build((None, None, None, self.hidden))
        self.built = True

    def call(self, maps, training=False):
        x = maps[-1]
        h, w = x.shape[1], x.shape[2]
        pooled = [resize(m(adaptive_avg_pool(x, s), training=training), h, w, "bilinear")
                  for m, s in zip(self.psp, self.pool_scales)]
        laterals = [m(f, training=training) for m, f in zip(self.laterals, maps)]
        laterals.append(self.bottleneck(ops.concatenate([x] + pooled, axis=-1), training=training))
        for i in range(len(laterals) - 1, 0, -1):
            prev = laterals[i - 1]
            laterals[i - 1] = prev + resize(laterals[i], prev.shape[1], prev.shape[2], "bilinear")
        outs = [m(f, training=training) for m, f in zip(self.fpn, laterals)] + [laterals[-1]]
        h0, w0 = outs[0].shape[1], outs[0].shape[2]
        outs = [outs[0]] + [resize(o, h0, w0, "bilinear") for o in outs[1:]]
        return self.classifier(self.fpn_bottleneck(ops.concatenate(outs, axis=-1), training=training))

    def rules(self, p="decode_head"):
        r = []
        for i, m in enumerate(self.psp):
            r += m.rules(f"{p}.psp_modules.{i}.1")
        r += self.bottleneck.rules(f"{p}.bottleneck") + self.fpn_bottleneck.rules(f"{p}.fpn_bottleneck")
        for i, (lat, fpn) in enumerate(zip(self.laterals, self.fpn)):
            r += lat.rules(f"{p}.lateral_convs.{i}") + fpn.rules(f"{p}.fpn_convs.{i}")
        return r + conv_rules(f"{p}.classifier", self.classifier, base=False)

    def get_config(self):
        c = super().get_config()
        c.update(in_channels=self.in_channels, hidden=self.hidden, pool_scales=self.pool_scales,
                 num_classes=self.num_classes)
        return c


@_ser
class FCNHead(keras.layers.Layer):
    def __init__(self, in_channels, channels, num_convs, concat_input, num_classes, in_index=2, **kwargs):
        super().__init__(**kwargs)
        self.in_channels, self.channels, self.num_convs = in_channels, channels, num_convs
        self.concat_input, self.num_classes, self.in_index = concat_input, num_classes, in_index
        d = self.dtype_policy
        self.convs = [ConvModule(channels, 3, in_channels if i == 0 else channels, name=f"conv_{i}", dtype=d)
                      for i in range(num_convs)]
        out = channels if num_convs else in_channels
        self.conv_cat = (ConvModule(channels, 3, in_channels + out, name="conv_cat", dtype=d)
                         if concat_input else None)
        self.classifier = keras.layers.Conv2D(num_classes, 1, name="classifier", dtype=d)
        self.classifier_in = channels if (concat_input or num_convs) else in_channels

    def build(self, input_shape=None):
        for m in self.convs + ([self.conv_cat] if self.conv_cat is not None else []):
            m.build()
        self.classifier.build((None, None, None, self.classifier_in))
        self.built = True

    def call(self, maps, training=False):
        x = maps[self.in_index]
        y = x
        for m in self.convs:
            y = m(y, training=training)
        if self.conv_cat is not None:
            y = self.conv_cat(ops.concatenate([x, y], axis=-1), training=training)
        return self.classifier(y)

    def rules(self, p="auxiliary_head"):
        r = []
        for i, m in enumerate(self.convs):
            r += m.rules(f"{p}.convs.{i}")
        if self.conv_cat is not None:
            r += self.conv_cat.rules(f"{p}.conv_cat")
        return r + conv_rules(f"{p}.classifier", self.classifier, base=False)

    def get_config(self):
        c = super().get_config()
        c.update(in_channels=self.in_channels, channels=self.channels, num_convs=self.num_convs,
                 concat_input=self.concat_input, num_classes=self.num_classes, in_index=self.in_index)
        return c


@_ser
@register_task(UperNetBackbone, "SemanticSegmenter", ("UperNetForSemanticSegmentation",))
class UperNetSemanticSegmenter(SemanticSegmenter):
    """Logits (batch, H, W, num_labels) at the input's size, channels_last."""

    hf_head_patterns = ("decode_head.*", "auxiliary_head.*")

    def __init__(self, backbone, num_classes=2, **kwargs):
        super().__init__(backbone, num_classes=num_classes, **kwargs)
        s, d = backbone.spec, backbone.dtype_policy
        self.head = UperNetHead(backbone.channels, s.hidden_size, s.pool_scales, num_classes, name="decode_head",
                                dtype=d)
        self.auxiliary_head = None
        if s.use_auxiliary_head:
            cin = s.auxiliary_in_channels if s.auxiliary_in_channels is not None else backbone.channels[2]
            self.auxiliary_head = FCNHead(cin, s.auxiliary_channels, s.auxiliary_num_convs, s.auxiliary_concat_input,
                                          num_classes, name="auxiliary_head", dtype=d)

    def build(self, input_shape=None):
        self.head.build()
        if self.auxiliary_head is not None:
            self.auxiliary_head.build()
        self.built = True

    def call(self, inputs, training=False):
        return self.logits_and_auxiliary(inputs, training=training, auxiliary=False)[0]

    def logits_and_auxiliary(self, inputs, training=False, auxiliary=True):
        """(logits, auxiliary logits or None), both (batch, H, W, num_labels) channels_last at the
        input's size, from one pass of the backbone (the auxiliary pair feeds Transformers' training
        loss: ``loss + auxiliary_loss_weight * auxiliary loss``)."""
        pixels = inputs["pixel_values"] if isinstance(inputs, dict) else inputs
        h, w = pixels.shape[1], pixels.shape[2]
        maps = self.backbone.feature_maps({"pixel_values": pixels}, training=training)
        logits = resize(self.head(maps, training=training), h, w, "bilinear")
        if not auxiliary or self.auxiliary_head is None:
            return logits, None
        return logits, resize(self.auxiliary_head(maps, training=training), h, w, "bilinear")

    def auxiliary_logits(self, inputs, training=False):
        """The auxiliary FCN head's logits at the input's size (channels_last); None without it."""
        return self.logits_and_auxiliary(inputs, training=training)[1]

    def head_rules(self):
        r = self.head.rules()
        if self.auxiliary_head is not None:
            r += self.auxiliary_head.rules()
        return r

    def config_to_hf(self):
        c = super().config_to_hf()
        c["architectures"] = ["UperNetForSemanticSegmentation"]
        return c


__all__ = ["UperNetSpec", "UperNetBackbone", "UperNetHead", "FCNHead", "ConvModule", "UperNetSemanticSegmenter",
           "adaptive_avg_pool"]

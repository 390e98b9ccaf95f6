"""GLPN (model_type ``glpn``): SegFormer's Mix Transformer encoder (:class:`SegformerBackbone`,
checkpoint prefix ``glpn.``), a decoder with selective feature fusion, and a depth head
(``sigmoid(...) * max_depth``).

Decoder, deepest stage first: 1x1 conv to ``decoder_hidden_size`` (skipped when the widths are
equal) -> selective fusion with the previous (upsampled) stage: concat -> [3x3 conv, BatchNorm,
ReLU] x2 -> 3x3 conv to 2 channels -> sigmoid -> a per-pixel blend of the two -> x2 bilinear
upsampling (align_corners=False); the last stage is upsampled once more. Each stage's map must
be exactly twice the next one's, so height and width must be multiples of the product of
``strides`` (32 by default): other sizes raise InputError.
"""

from dataclasses import dataclass

import keras
from keras import ops

from keras_models.errors import InputError
from keras_models.layers.vision_embeddings import conv_rules, norm_rules
from keras_models.models.depth.layers import resize
from keras_models.models.registry import register_backbone, register_task
from keras_models.models.segformer.backbone import SegformerBackbone, SegformerSpec
from keras_models.spec import Spec, const, dim, hf
from keras_models.tasks.depth_estimator import DepthEstimator

_ser = keras.saving.register_keras_serializable(package="keras_models")
_ALL = ("jax", "torch", "tensorflow")


@dataclass(frozen=True, kw_only=True)
class GLPNSpec(SegformerSpec):
    reshape_last_stage: bool = const(True)


@dataclass(frozen=True, kw_only=True)
class GLPNHeadSpec(Spec):
    decoder_hidden_size: int = dim("decoder_hidden_size", 64)
    max_depth: float = hf("max_depth", 10)
    head_in_index: int = hf("head_in_index", -1)


@_ser
@register_backbone("glpn")
class GLPNBackbone(SegformerBackbone):
    spec_cls = GLPNSpec
    base_model_prefix = "glpn"
    hf_architecture = "GLPNModel"
    verified_backends = _ALL

    def depth_features(self, pixels, training=False):
        m = 1
        for s in self.strides:
            m *= s
        h, w = pixels.shape[1], pixels.shape[2]
        if h is not None and w is not None and (h % m or w % m):
            raise InputError(f"GLPN: pixel_values height and width must be multiples of {m} (the product of the "
                             f"strides), got {h}x{w}; resize them (GLPNImageProcessor's size_divisor does)")
        return self.stage_outputs(pixels, training=training)


@_ser
class SelectiveFeatureFusion(keras.layers.Layer):
    def __init__(self, channels, **kwargs):
        super().__init__(**kwargs)
        self.channels = channels
        d = self.dtype_policy
        bn = lambda n: keras.layers.BatchNormalization(epsilon=1e-5, momentum=0.9, name=n, dtype=d)  # noqa: E731
        self.conv1 = keras.layers.Conv2D(channels, 3, padding="same", name="conv1", dtype=d)
        self.bn1 = bn("bn1")
        self.conv2 = keras.layers.Conv2D(channels // 2, 3, padding="same", name="conv2", dtype=d)
        self.bn2 = bn("bn2")
        self.conv3 = keras.layers.Conv2D(2, 3, padding="same", name="conv3", dtype=d)

    def build(self, input_shape=None):
        c = self.channels
        self.conv1.build((None, None, None, 2 * c))
        self.bn1.build((None, None, None, c))
        self.conv2.build((None, None, None, c))
        self.bn2.build((None, None, None, c // 2))
        self.conv3.build((None, None, None, c // 2))
        self.built = True

    def call(self, local, global_, training=False):
        x = ops.relu(self.bn1(self.conv1(ops.concatenate([local, global_], axis=-1)), training=training))
        x = ops.relu(self.bn2(self.conv2(x), training=training))
        a = ops.sigmoid(self.conv3(x))
        return local * a[..., :1] + global_ * a[..., 1:]

    def rules(self, p):
        return (conv_rules(p + ".convolutional_layer1.0", self.conv1, base=False)
                + norm_rules(p + ".convolutional_layer1.1", self.bn1, base=False)
                + conv_rules(p + ".convolutional_layer2.0", self.conv2, base=False)
                + norm_rules(p + ".convolutional_layer2.1", self.bn2, base=False)
                + conv_rules(p + ".convolutional_layer3", self.conv3, base=False))

    def get_config(self):
        c = super().get_config()
        c.update(channels=self.channels)
        return c


def _head_spec(value):
    if value is None or isinstance(value, GLPNHeadSpec):
        return value or GLPNHeadSpec()
    return GLPNHeadSpec.from_config(value)


@_ser
@register_task(GLPNBackbone, "DepthEstimator", ("GLPNForDepthEstimation",))
class GLPNDepthEstimator(DepthEstimator):
    hf_head_patterns = ("decoder.*", "head.*")

    def __init__(self, backbone, head=None, **kwargs):
        super().__init__(backbone, **kwargs)
        self.head_spec = s = _head_spec(head)
        c, d = s.decoder_hidden_size, backbone.dtype_policy
        self.stage_convs, self.fusions = [], []
        for i, width in enumerate(backbone.hidden_sizes[::-1]):
            self.stage_convs.append(None if width == c else keras.layers.Conv2D(c, 1, name=f"decoder_conv_{i}", dtype=d))
            self.fusions.append(None if i == 0 else SelectiveFeatureFusion(c, name=f"decoder_fusion_{i}", dtype=d))
        self.head_conv1 = keras.layers.Conv2D(c, 3, padding="same", name="head_conv1", dtype=d)
        self.head_conv2 = keras.layers.Conv2D(1, 3, padding="same", name="head_conv2", dtype=d)

    @classmethod
    def task_config_from_hf(cls, hf, head_from_checkpoint, **kwargs):
        kwargs.setdefault("head", GLPNHeadSpec.from_hf(hf))
        return kwargs

    def task_config_to_hf(self):
        return self.head_spec.to_hf()

    def depth(self, pixels, training=False):
        maps = self.backbone.depth_features(pixels, training=training)[::-1]
        x, outs = None, []
        for m, conv, fusion in zip(maps, self.stage_convs, self.fusions):
            m = conv(m) if conv is not None else m
            if x is not None:
                m = fusion(m, x, training=training)
            x = resize(m, 2 * m.shape[1], 2 * m.shape[2], "bilinear")
            outs.append(x)
        outs[-1] = resize(x, 2 * x.shape[1], 2 * x.shape[2], "bilinear")
        y = self.head_conv2(ops.relu(self.head_conv1(outs[self.head_spec.head_in_index])))
        return ops.squeeze(ops.sigmoid(y), -1) * self.head_spec.max_depth

    def head_rules(self):
        r = []
        for i, (conv, fusion) in enumerate(zip(self.stage_convs, self.fusions)):
            if conv is not None:
                r += conv_rules(f"decoder.stages.{i}.convolution", conv, base=False)
            if fusion is not None:
                r += fusion.rules(f"decoder.stages.{i}.fusion")
        return (r + conv_rules("head.head.0", self.head_conv1, base=False)
                + conv_rules("head.head.2", self.head_conv2, base=False))

    def get_config(self):
        c = super().get_config()
        c.update(head=self.head_spec.to_config())
        return c


__all__ = ["GLPNSpec", "GLPNHeadSpec", "GLPNBackbone", "GLPNDepthEstimator", "SelectiveFeatureFusion"]

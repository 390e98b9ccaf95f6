"""SAM (Segment Anything, model_type ``sam``), channels_last.

* :class:`SamBackbone`: the image encoder -- a stride-p patch embedding plus an absolute
  position table (``use_abs_pos``; the input must be ``image_size`` square, as in Transformers),
  ViTDet blocks (windowed attention in ``window_size`` windows, zero-padded, except the
  ``global_attn_indexes`` blocks; decomposed relative positions with ``use_rel_pos``) and the
  neck (1x1 conv -> channel LayerNorm -> 3x3 conv -> channel LayerNorm, eps 1e-6, no biases).
  Output: the image embeddings (batch, g, g, output_channels), Transformers'
  ``get_image_embeddings`` in channels_last.
* :class:`SamMaskGenerator` (``SamModel``): the prompt encoder and the two-way mask decoder
  (``keras_models/models/sam/layers.py``) -> ``{"iou_scores", "pred_masks"}``.
"""

import threading
from dataclasses import dataclass

import keras
import numpy as np
from keras import ops

from keras_models.errors import ConfigError, InputError
from keras_models.layers.activations import get_activation
from keras_models.layers.vision_embeddings import PatchEmbedding, conv_rules, dense_rules, norm_rules
from keras_models.models.backbone import SpecBackbone
from keras_models.models.registry import register_backbone, register_task
from keras_models.models.sam.layers import SamMaskDecoder, SamPromptEncoder
from keras_models.models.sam.processor import SamImageProcessor
from keras_models.models.vitdet import VitDetBlock
from keras_models.presets.weight_map import Rule
from keras_models.spec import Spec, dim, hf, nested
from keras_models.tasks.mask_generator import MaskGenerator
from keras_models.backend_choice import switch_on

_ser = keras.saving.register_keras_serializable(package="keras_models")


def _ints(v):
    if not isinstance(v, (list, tuple)) or not all(isinstance(i, int) and not isinstance(i, bool) for i in v):
        raise ValueError("expected a list of integers")
    return tuple(v)


def _check_act(name, key, source):
    try:
        get_activation(name)
    except ValueError as e:
        raise ConfigError(f"{source}: key {key!r}: {e}") from e


@dataclass(frozen=True, kw_only=True)
class SamVisionSpec(Spec):
    hidden_size: int = dim("hidden_size", 768)
    output_channels: int = dim("output_channels", 256)
    num_layers: int = dim("num_hidden_layers", 12)
    num_heads: int = dim("num_attention_heads", 12)
    num_channels: int = dim("num_channels", 3)
    image_size: int = dim("image_size", 1024)
    patch_size: int = dim("patch_size", 16)
    hidden_act: str = hf("hidden_act", "gelu")
    layer_norm_eps: float = hf("layer_norm_eps", 1e-6)
    attention_dropout: float = hf("attention_dropout", 0.0, doc="training only (not applied)")
    initializer_range: float = hf("initializer_range", 1e-10)
    qkv_bias: bool = hf("qkv_bias", True)
    mlp_ratio: float = hf("mlp_ratio", 4.0)
    mlp_dim: int | None = hf("mlp_dim", None, doc="None: mlp_ratio * hidden_size")
    use_abs_pos: bool = hf("use_abs_pos", True)
    use_rel_pos: bool = hf("use_rel_pos", True)
    window_size: int = hf("window_size", 14)
    global_attn_indexes: tuple = hf("global_attn_indexes", (2, 5, 8, 11), read=_ints)
    num_pos_feats: int = dim("num_pos_feats", 128, doc="Fourier features of the prompt / image positions")
    ignored = ("scale",)

    @property
    def inner_dim(self):
        return self.mlp_dim if self.mlp_dim is not None else int(self.hidden_size * self.mlp_ratio)

    def validate(self, source="config.json"):
        if self.hidden_size % self.num_heads:
            raise ConfigError(f"{source}: hidden_size {self.hidden_size} is not a multiple of num_attention_heads "
                              f"{self.num_heads}")
        if self.mlp_dim is not None and (not isinstance(self.mlp_dim, int) or self.mlp_dim <= 0):
            raise ConfigError(f"{source}: key 'mlp_dim' must be a positive integer, got {self.mlp_dim!r}")
        if self.inner_dim <= 0:
            raise ConfigError(f"{source}: key 'mlp_ratio' gives an MLP width of {self.inner_dim}")
        if not 0 <= self.window_size <= self.image_size // self.patch_size:
            raise ConfigError(f"{source}: key 'window_size' must be in 0..{self.image_size // self.patch_size} (the "
                              f"image grid, image_size / patch_size), got {self.window_size}")
        if self.image_size % self.patch_size:
            raise ConfigError(f"{source}: image_size {self.image_size} is not a multiple of patch_size "
                              f"{self.patch_size}")
        _check_act(self.hidden_act, "hidden_act", source)

    def dummy_inputs(self):
        return {"pixel_values": np.zeros((1, self.image_size, self.image_size, self.num_channels), "float32")}


@dataclass(frozen=True, kw_only=True)
class SamPromptEncoderSpec(Spec):
    hidden_size: int = dim("hidden_size", 256)
    image_size: int = dim("image_size", 1024)
    patch_size: int = dim("patch_size", 16)
    mask_input_channels: int = dim("mask_input_channels", 16)
    num_point_embeddings: int = dim("num_point_embeddings", 4)
    hidden_act: str = hf("hidden_act", "gelu")
    layer_norm_eps: float = hf("layer_norm_eps", 1e-6)
    ignored = ("image_embedding_size",)

    def validate(self, source="config.json"):
        if self.num_point_embeddings != 4:
            raise ConfigError(f"{source}: key 'num_point_embeddings' must be 4 (negative / positive point, two box "
                              f"corners), got {self.num_point_embeddings}")
        if self.mask_input_channels % 4:
            raise ConfigError(f"{source}: key 'mask_input_channels' must be a multiple of 4, got "
                              f"{self.mask_input_channels}")
        _check_act(self.hidden_act, "hidden_act", source)


@dataclass(frozen=True, kw_only=True)
class SamMaskDecoderSpec(Spec):
    hidden_size: int = dim("hidden_size", 256)
    hidden_act: str = hf("hidden_act", "relu")
    mlp_dim: int = dim("mlp_dim", 2048)
    num_layers: int = dim("num_hidden_layers", 2)
    num_heads: int = dim("num_attention_heads", 8)
    attention_downsample_rate: int = dim("attention_downsample_rate", 2)
    num_multimask_outputs: int = dim("num_multimask_outputs", 3)
    iou_head_depth: int = dim("iou_head_depth", 3)
    iou_head_hidden_dim: int = dim("iou_head_hidden_dim", 256)
    layer_norm_eps: float = hf("layer_norm_eps", 1e-6)

    def validate(self, source="config.json"):
        c, h, r = self.hidden_size, self.num_heads, self.attention_downsample_rate
        if c % r or (c // r) % h or c % h or c % 2 or (c // 2) % h:
            raise ConfigError(f"{source}: hidden_size {c}, hidden_size / 2 (the two-way blocks' cross-attention) and "
                              f"hidden_size / attention_downsample_rate ({r}) must be multiples of "
                              f"num_attention_heads {h}")
        if c % 8:
            raise ConfigError(f"{source}: hidden_size must be a multiple of 8 (the x4 upscaling), got {c}")
        if self.iou_head_depth < 2:
            raise ConfigError(f"{source}: key 'iou_head_depth' must be >= 2, got {self.iou_head_depth}")
        _check_act(self.hidden_act, "hidden_act", source)


@dataclass(frozen=True, kw_only=True)
class SamSpec(Spec):
    vision_config: SamVisionSpec = nested("vision_config", SamVisionSpec, required=False)
    prompt_encoder_config: SamPromptEncoderSpec = nested("prompt_encoder_config", SamPromptEncoderSpec,
                                                         required=False)
    mask_decoder_config: SamMaskDecoderSpec = nested("mask_decoder_config", SamMaskDecoderSpec, required=False)
    initializer_range: float = hf("initializer_range", 0.02)
    ignored = ("tie_word_embeddings",)

    @classmethod
    def adjust_from_hf(cls, config, values, source):
        for key, spec_cls in (("vision_config", SamVisionSpec), ("prompt_encoder_config", SamPromptEncoderSpec),
                              ("mask_decoder_config", SamMaskDecoderSpec)):
            if values.get(key) is None:  # absent (or null): Transformers' defaults
                values[key] = spec_cls.from_hf({}, f"{source} [{key}]")
        return values

    def adjust_to_hf(self, out):
        for key, model_type in (("vision_config", "sam_vision_model"), ("prompt_encoder_config", "sam_prompt_encoder"),
                                ("mask_decoder_config", "sam_mask_decoder")):
            out[key] = dict(out[key], model_type=model_type)
        return out

    def validate(self, source="config.json"):
        v, p, m = self.vision_config, self.prompt_encoder_config, self.mask_decoder_config
        if v is None or p is None or m is None:
            return  # filled by adjust_from_hf (from_config passes all three)
        if not (m.hidden_size == p.hidden_size == v.output_channels == 2 * v.num_pos_feats):
            raise ConfigError(
                f"{source}: mask_decoder_config.hidden_size ({m.hidden_size}), prompt_encoder_config.hidden_size "
                f"({p.hidden_size}), vision_config.output_channels ({v.output_channels}) and 2 x "
                f"vision_config.num_pos_feats ({2 * v.num_pos_feats}) must be equal")
        if p.image_size // p.patch_size != v.image_size // v.patch_size:
            raise ConfigError(
                f"{source}: prompt_encoder_config image_size / patch_size ({p.image_size}/{p.patch_size}) must give "
                f"the vision encoder's grid ({v.image_size}/{v.patch_size})")

    def dummy_inputs(self):
        return self.vision_config.dummy_inputs()


def _mlp_ratio(hidden, inner):
    """A ratio that VitDetBlock's ``int(hidden * ratio)`` turns back into exactly ``inner``."""
    ratio = inner / hidden
    while int(hidden * ratio) < inner:
        ratio = float(np.nextafter(ratio, np.inf))
    return ratio


@_ser
class SamVisionEncoder(keras.layers.Layer):
    """Patch embedding + absolute positions + ViTDet blocks + neck (checkpoint ``vision_encoder.``)."""

    def __init__(self, spec, **kwargs):
        super().__init__(**kwargs)
        self.spec = spec if isinstance(spec, SamVisionSpec) else SamVisionSpec.from_config(spec)
        s, d = self.spec, dict(dtype=self.dtype_policy)
        self.grid = s.image_size // s.patch_size
        self.patch_embedding = PatchEmbedding(s.hidden_size, s.patch_size, s.num_channels, name="patch_embed", **d)
        ratio = _mlp_ratio(s.hidden_size, s.inner_dim)
        self.blocks = []
        for i in range(s.num_layers):
            ws = 0 if i in s.global_attn_indexes else s.window_size
            self.blocks.append(VitDetBlock(
                s.hidden_size, s.num_heads, ratio, s.hidden_act, s.layer_norm_eps, s.qkv_bias, window_size=ws,
                relative_positions=s.use_rel_pos, rel_size=(ws, ws) if ws else (self.grid, self.grid),
                name=f"layers_{i}", **d))
        c = s.output_channels
        self.neck_conv1 = keras.layers.Conv2D(c, 1, use_bias=False, name="neck_conv1", **d)
        self.neck_conv2 = keras.layers.Conv2D(c, 3, use_bias=False, name="neck_conv2", **d)
        self.neck_norm1 = keras.layers.LayerNormalization(epsilon=1e-6, name="neck_layer_norm1", **d)
        self.neck_norm2 = keras.layers.LayerNormalization(epsilon=1e-6, name="neck_layer_norm2", **d)

    def build(self, input_shape=None):
        s = self.spec
        self.patch_embedding.build((None, None, None, s.num_channels))
        self.pos_embed = (self.add_weight(name="pos_embed", shape=(1, self.grid, self.grid, s.hidden_size),
                                          initializer="zeros") if s.use_abs_pos else None)
        for b in self.blocks:
            b.build((None, None, None, s.hidden_size))
        c = s.output_channels
        self.neck_conv1.build((None, None, None, s.hidden_size))
        self.neck_norm1.build((None, None, None, c))
        self.neck_conv2.build((None, None, None, c))
        self.neck_norm2.build((None, None, None, c))
        self.built = True

    def call(self, pixel_values, training=False):
        s = self.spec
        shape = tuple(pixel_values.shape[1:3])
        if len(pixel_values.shape) != 4 or shape != (s.image_size, s.image_size):
            raise InputError(f"SAM: pixel_values must be (batch, {s.image_size}, {s.image_size}, {s.num_channels}) "
                             f"(channels_last, the image processor pads to it), got {tuple(pixel_values.shape)}")
        x = self.patch_embedding(pixel_values)
        if self.pos_embed is not None:
            x = x + ops.cast(self.pos_embed, x.dtype)
        for b in self.blocks:
            x = b(x, training=training)
        x = self.neck_norm1(self.neck_conv1(x))
        return self.neck_norm2(self.neck_conv2(ops.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))))

    def rules(self, p="vision_encoder."):
        r = conv_rules(p + "patch_embed.projection", self.patch_embedding.projection)
        if self.pos_embed is not None:
            r.append(Rule(p + "pos_embed", self.pos_embed))
        for i, b in enumerate(self.blocks):
            q = f"{p}layers.{i}."
            a = b.attention
            r += dense_rules(q + "attn.qkv", a.qkv) + dense_rules(q + "attn.proj", a.output_dense)
            r += norm_rules(q + "layer_norm1", b.norm1) + norm_rules(q + "layer_norm2", b.norm2)
            r += dense_rules(q + "mlp.lin1", b.fc1) + dense_rules(q + "mlp.lin2", b.fc2)
            if b.relative_positions:
                r += [Rule(q + "attn.rel_pos_h", b.rel_h), Rule(q + "attn.rel_pos_w", b.rel_w)]
        r += conv_rules(p + "neck.conv1", self.neck_conv1) + conv_rules(p + "neck.conv2", self.neck_conv2)
        return r + norm_rules(p + "neck.layer_norm1", self.neck_norm1) + norm_rules(p + "neck.layer_norm2",
                                                                                   self.neck_norm2)

    def get_config(self):
        c = super().get_config()
        c["spec"] = self.spec.to_config()
        return c


@_ser
@register_backbone("sam")
class SamBackbone(SpecBackbone):
    """SAM's image encoder; calling it returns the image embeddings (batch, g, g, output_channels)."""

    spec_cls = SamSpec
    base_model_prefix = ""
    hf_architecture = None  # the whole SamModel is the MaskGenerator task
    verified_backends = ("jax", "torch", "tensorflow")

    def __init__(self, spec=None, **kwargs):
        super().__init__(spec, **kwargs)
        self.vision_encoder = SamVisionEncoder(self.spec.vision_config, name="vision_encoder", dtype=self.dtype_policy)

    def build(self, input_shape=None):
        self.vision_encoder.build()
        self.built = True

    def call(self, inputs, training=False):
        pixels = inputs["pixel_values"] if isinstance(inputs, dict) else inputs
        return self.vision_encoder(pixels, training=training)

    def weight_rules(self):
        return self.vision_encoder.rules()


PROMPTS = ("input_points", "input_labels", "input_boxes", "input_masks")

# tensorflow: ``get_image_embeddings`` runs the image encoder as one graph (``tf.function``, no XLA),
# traced once per model for any batch size. Grappler's oneDNN rewrites (MatMul + BiasAdd fusions)
# and no per-op eager dispatch: measured ~5-7% off the ViT-B encoder on one AMD EPYC core (XLA's
# ``jit_compile`` was slower than eager). ``KM_SAM_TF_GRAPH=0`` (or ``TF_GRAPH = False``) keeps the
# eager call; the results differ from it by float rounding only (fused kernels, ~1e-5).
TF_GRAPH = switch_on("KM_SAM_TF_GRAPH")
_GRAPH_LOCK = threading.Lock()


@_ser
@register_task(SamBackbone, "MaskGenerator", ("SamModel",))
class SamMaskGenerator(MaskGenerator):
    hf_head_patterns = ("prompt_encoder.*", "mask_decoder.*", "shared_image_embedding.*")

    def __init__(self, backbone, **kwargs):
        super().__init__(backbone, **kwargs)
        s, d = backbone.spec, backbone.dtype_policy
        v, p, m = s.vision_config, s.prompt_encoder_config, s.mask_decoder_config
        self.prompt_encoder = SamPromptEncoder(p.hidden_size, v.num_pos_feats, p.image_size,
                                               p.image_size // p.patch_size, p.mask_input_channels, p.hidden_act,
                                               p.layer_norm_eps, name="prompt_encoder", dtype=d)
        self.mask_decoder = SamMaskDecoder(m.hidden_size, m.num_heads, m.mlp_dim, m.num_layers, m.hidden_act,
                                           m.attention_downsample_rate, m.num_multimask_outputs, m.iou_head_depth,
                                           m.iou_head_hidden_dim, m.layer_norm_eps, name="mask_decoder", dtype=d)

    @classmethod
    def preprocessor_from_preset(cls, folder, hf, **kw):
        from keras_models.preprocessing.image import CONFIG_NAME

        if not (folder / CONFIG_NAME).is_file():
            return None
        return SamImageProcessor.from_preset(folder)

    def build(self, input_shape=None):
        self.prompt_encoder.build()
        self.mask_decoder.build()
        self.built = True

    def call(self, inputs, multimask_output=None, training=False):
        if not isinstance(inputs, dict):
            inputs = {"pixel_values": inputs}
        multimask = self.multimask_output if multimask_output is None else bool(multimask_output)
        has_pixels = inputs.get("pixel_values") is not None
        has_embeddings = inputs.get("image_embeddings") is not None
        if has_pixels == has_embeddings:
            raise InputError("SAM: give exactly one of pixel_values and image_embeddings")
        points, labels, boxes, masks = (inputs.get(k) for k in PROMPTS)
        if points is not None and len(points.shape) != 4:
            raise InputError(f"SAM: input_points must be (batch, point_batch, points, 2), got {tuple(points.shape)}")
        if boxes is not None and len(boxes.shape) != 3:
            raise InputError(f"SAM: input_boxes must be (batch, boxes, 4), got {tuple(boxes.shape)}")
        if points is not None and boxes is not None and isinstance(points.shape[1], int) \
                and isinstance(boxes.shape[1], int) and points.shape[1] != boxes.shape[1]:
            raise InputError(f"SAM: {boxes.shape[1]} boxes for {points.shape[1]} point batches: give one box per "
                             "point batch")
        if points is not None and labels is None:
            labels = ops.ones(ops.shape(points)[:3], "int32")
        if has_pixels:
            image = self.backbone({"pixel_values": inputs["pixel_values"]}, training=training)
        else:
            image = ops.convert_to_tensor(inputs["image_embeddings"], self.compute_dtype)
        if points is not None and isinstance(points.shape[0], int) and isinstance(image.shape[0], int) \
                and points.shape[0] != image.shape[0]:
            raise InputError(f"SAM: input_points hold {points.shape[0]} images' prompts for {image.shape[0]} images")
        sparse, dense = self.prompt_encoder(points, labels, boxes, masks)
        image_pe = self.prompt_encoder.image_positional_embeddings()
        masks, iou = self.mask_decoder(image, image_pe, sparse, dense, multimask_output=multimask)
        return {"iou_scores": iou, "pred_masks": masks}

    def get_image_embeddings(self, pixel_values):
        if not (TF_GRAPH and keras.backend.backend() == "tensorflow"):
            return super().get_image_embeddings(pixel_values)
        import tensorflow as tf

        from keras_models.generation.backend import tf_graph

        if tf.inside_function():  # already being traced: a graph of its own
            return super().get_image_embeddings(pixel_values)
        pixels = tf.convert_to_tensor(pixel_values)
        if pixels.dtype.is_floating:  # as Keras' input autocasting would
            pixels = tf.cast(pixels, self.backbone.compute_dtype)
        v = self.backbone.spec.vision_config
        if tuple(pixels.shape[1:]) != (v.image_size, v.image_size, v.num_channels):  # the encoder's own error
            return super().get_image_embeddings(pixels)
        with _GRAPH_LOCK:  # one trace per model, whichever thread comes first
            if "_km_tf_encoder" not in self.__dict__:
                spec = tf.TensorSpec((None,) + tuple(pixels.shape[1:]), pixels.dtype)
                backbone = self.backbone
                fn = tf_graph(lambda p: backbone({"pixel_values": p}), input_signature=(spec,))
                self.__dict__["_km_tf_encoder"] = (fn, spec)
            fn, spec = self.__dict__["_km_tf_encoder"]
        if not spec.is_compatible_with(pixels):  # another size or dtype: the eager call
            return super().get_image_embeddings(pixels)
        return fn(pixels)

    def head_rules(self):
        return self.prompt_encoder.rules() + self.mask_decoder.rules()

    def config_to_hf(self):
        c = super().config_to_hf()
        c["architectures"] = ["SamModel"]
        return c


__all__ = ["SamSpec", "SamVisionSpec", "SamPromptEncoderSpec", "SamMaskDecoderSpec", "SamBackbone",
           "SamVisionEncoder", "SamMaskGenerator", "SamImageProcessor"]

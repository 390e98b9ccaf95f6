"""Swin2SR (channels_last): image restoration / super-resolution with Swin V2 blocks.

pixel_values (batch, H, W, C), already in [0, 1] (the image processor only rescales and pads) ->
reflect-pad to a multiple of ``window_size`` -> ``(x - mean) * img_range`` (mean: DIV2K's RGB mean
when ``num_channels`` and ``num_channels_out`` are 3, else 0) -> 3x3 conv to ``embed_dim`` ->
1x1 patch projection + LayerNorm -> residual Swin-transformer stages (Swin V2 blocks: cosine
attention, continuous position bias, residual post-norm, the shifted-window mask added twice;
each stage ends with a conv (``resi_connection`` "1conv" or "3conv"), a 1x1 projection and the
stage's input added) -> LayerNorm -> 3x3 conv + the first conv's output.

Output: (batch, Hp, Wp, embed_dim) at the padded size, Transformers' ``last_hidden_state``
(channels-first there) in channels_last. Window sizes are fixed at construction from
``image_size`` as in Transformers (a window larger than the checkpoint's grid shrinks to it and
is not shifted).

Input sizes: Transformers' Swin2SRModel fails unless H and W are multiples of ``window_size``
(its processor pads them); here other sizes are reflect-padded as in the original SwinIR and the
task crops the reconstruction back to ``(H * upscale, W * upscale)``.
"""

from dataclasses import dataclass

import keras
import numpy as np
from keras import ops

from keras_models.errors import ConfigError, InputError
from keras_models.layers.vision_embeddings import conv_rules, dense_rules, norm_rules
from keras_models.layers.window_attention import SwinBlock
from keras_models.models.backbone import SpecBackbone
from keras_models.models.registry import register_backbone
from keras_models.presets.weight_map import TRANSPOSE, Reshape, Rule
from keras_models.spec import Spec, dim, hf

_ser = keras.saving.register_keras_serializable(package="keras_models")

DIV2K_MEAN = (0.4488, 0.4371, 0.4040)
UPSAMPLERS = ("pixelshuffle", "pixelshuffledirect", "nearest+conv", "pixelshuffle_aux", None)


def _square(v):
    if isinstance(v, (list, tuple)):
        if len(set(v)) != 1:
            raise ValueError("a non-square size is not supported")
        v = v[0]
    return int(v)


@dataclass(frozen=True, kw_only=True)
class Swin2SRSpec(Spec):
    # Transformers cannot run these either: its absolute table has one position too many, and a
    # patch size above 1 shrinks the map that the un-embedding reshapes back to the image size.
    unsupported = {"use_absolute_embeddings": (False,), "patch_size": (1, [1, 1])}

    embed_dim: int = dim("embed_dim", 180)
    depths: tuple = hf("depths", (6, 6, 6, 6, 6, 6))
    num_heads: tuple = hf("num_heads", (6, 6, 6, 6, 6, 6))
    window_size: int = dim("window_size", 8)
    image_size: int = hf("image_size", 64, read=_square)
    num_channels: int = dim("num_channels", 3)
    num_channels_out: int | None = hf("num_channels_out", None)
    mlp_ratio: float = hf("mlp_ratio", 2.0)
    qkv_bias: bool = hf("qkv_bias", True)
    hidden_act: str = hf("hidden_act", "gelu")
    layer_norm_eps: float = hf("layer_norm_eps", 1e-5)
    upscale: int = dim("upscale", 2)
    img_range: float = hf("img_range", 1.0)
    resi_connection: str = hf("resi_connection", "1conv")
    upsampler: str | None = hf("upsampler", "pixelshuffle")
    dropout: float = hf("hidden_dropout_prob", 0.0)
    attention_dropout: float = hf("attention_probs_dropout_prob", 0.0)
    initializer_range: float = hf("initializer_range", 0.02)

    def validate(self, source="config.json"):
        if len(self.depths) != len(self.num_heads):
            raise ConfigError(f"{source}: depths {list(self.depths)} and num_heads {list(self.num_heads)} differ in "
                              "length")
        if self.resi_connection not in ("1conv", "3conv"):
            raise ConfigError(f"{source}: resi_connection={self.resi_connection!r} (expected '1conv' or '3conv')")
        if self.upsampler not in UPSAMPLERS and self.upsampler != "":
            raise ConfigError(f"{source}: upsampler={self.upsampler!r} (expected one of {list(UPSAMPLERS)})")
        up = self.upscale
        if self.upsampler in ("pixelshuffle", "pixelshuffle_aux") and up & (up - 1) and up != 3:
            raise ConfigError(f"{source}: upscale={up} is not supported by the {self.upsampler} upsampler "
                              "(powers of 2 and 3)")
        if self.upsampler == "nearest+conv" and up != 4:
            raise ConfigError(f"{source}: upscale={up}: the nearest+conv upsampler only supports 4")
        if self.upsampler == "pixelshuffle_aux" and self.num_channels != 3:
            raise ConfigError(f"{source}: num_channels={self.num_channels}: the pixelshuffle_aux upsampler takes "
                              "3 channels")

    @property
    def channels_out(self):
        return self.num_channels if self.num_channels_out is None else self.num_channels_out

    @property
    def mean(self):
        return DIV2K_MEAN if self.num_channels == 3 and self.channels_out == 3 else (0.0,)

    def dummy_inputs(self):
        s = self.window_size
        return {"pixel_values": np.zeros((1, s, s, self.num_channels), "float32")}


def _conv(filters, kernel, name, dtype):
    return keras.layers.Conv2D(filters, kernel, padding="same", name=name, dtype=dtype)


@_ser
class ResidualSwinStage(keras.layers.Layer):
    """Swin V2 blocks -> conv ("1conv": 3x3; "3conv": 3x3 to C/4, LeakyReLU(0.2), 1x1,
    LeakyReLU(0.2), 3x3 back to C) -> 1x1 projection -> + the stage's input."""

    def __init__(self, blocks, dim, resi_connection="1conv", **kwargs):
        super().__init__(**kwargs)
        self.blocks, self.dim, self.resi_connection = blocks, dim, resi_connection
        d = self.dtype_policy
        if resi_connection == "1conv":
            self.convs = [_conv(dim, 3, "conv", d)]
        else:
            self.convs = [_conv(dim // 4, 3, "conv_0", d), _conv(dim // 4, 1, "conv_2", d), _conv(dim, 3, "conv_4", d)]
        self.projection = _conv(dim, 1, "projection", d)

    def build(self, input_shape):
        c = self.dim
        for b in self.blocks:
            b.build((None, None, None, c))
        for conv in self.convs:
            conv.build((None, None, None, c))
            c = conv.filters
        self.projection.build((None, None, None, self.dim))
        self.built = True

    def call(self, x, training=False):
        y = x
        for b in self.blocks:
            y = b(y, training=training)
        for i, conv in enumerate(self.convs):
            y = conv(y)
            if i < len(self.convs) - 1:
                y = ops.leaky_relu(y, 0.2)
        return self.projection(y) + x

    def get_config(self):  # the blocks are rebuilt by the backbone
        c = super().get_config()
        c.update(dim=self.dim, resi_connection=self.resi_connection)
        return c


@_ser
@register_backbone("swin2sr")
class Swin2SRBackbone(SpecBackbone):
    spec_cls = Swin2SRSpec
    base_model_prefix = "swin2sr"
    hf_architecture = "Swin2SRModel"
    hf_ignore = ("*relative_position_index", "*relative_coords_table")
    verified_backends = ("jax", "torch", "tensorflow")

    def __init__(self, spec=None, **kwargs):
        super().__init__(spec, **kwargs)
        s, d = self.spec, self.dtype_policy
        c = s.embed_dim
        self.first_conv = _conv(c, 3, "first_convolution", d)
        self.patch_projection = _conv(c, 1, "patch_projection", d)
        self.patch_norm = keras.layers.LayerNormalization(epsilon=1e-5, name="patch_norm", dtype=d)
        grid = s.image_size
        self.stages = []
        for i, (depth, heads) in enumerate(zip(s.depths, s.num_heads)):
            ws = min(grid, s.window_size)
            blocks = [SwinBlock(c, heads, ws, 0 if j % 2 == 0 or grid <= ws else s.window_size // 2,
                                mlp_ratio=s.mlp_ratio, hidden_act=s.hidden_act, layer_norm_eps=s.layer_norm_eps,
                                qkv_bias=s.qkv_bias, dropout=s.dropout, attention_dropout=s.attention_dropout,
                                cosine_attention=True, continuous_position_bias=True, res_post_norm=True,
                                fixed_window=True, shift_mask_value=-200.0, name=f"stage_{i}_block_{j}", dtype=d)
                      for j in range(depth)]
            self.stages.append(ResidualSwinStage(blocks, c, s.resi_connection, name=f"stage_{i}", dtype=d))
        self.final_norm = keras.layers.LayerNormalization(epsilon=s.layer_norm_eps, name="final_norm", dtype=d)
        self.conv_after_body = _conv(c, 3, "conv_after_body", d)

    def build(self, input_shape=None):
        s = self.spec
        self.first_conv.build((None, None, None, s.num_channels))
        for layer in (self.patch_projection, self.conv_after_body):
            layer.build((None, None, None, s.embed_dim))
        for layer in [self.patch_norm, self.final_norm] + self.stages:
            layer.build((None, None, None, s.embed_dim))
        self.built = True

    def normalise(self, pixels):
        """Reflect-pad to a multiple of the window, then (x - mean) * img_range."""
        s = self.spec
        if len(pixels.shape) != 4 or pixels.shape[-1] != s.num_channels:
            raise InputError(f"Swin2SR: pixel_values must be (batch, height, width, {s.num_channels}) "
                             f"(channels_last), got {tuple(pixels.shape)}")
        h, w, ws = pixels.shape[1], pixels.shape[2], s.window_size
        pb, pr = (-h) % ws, (-w) % ws
        if pb or pr:
            if pb >= h or pr >= w:
                raise InputError(f"Swin2SR: a {h}x{w} image is too small to reflect-pad to a multiple of "
                                 f"window_size={ws}")
            pixels = ops.pad(pixels, ((0, 0), (0, pb), (0, pr), (0, 0)), mode="reflect")
        mean = ops.convert_to_tensor(np.asarray(s.mean, "float32"))
        return (pixels - ops.cast(mean, pixels.dtype)) * s.img_range

    def call(self, inputs, training=False):
        pixels = inputs["pixel_values"] if isinstance(inputs, dict) else inputs
        first = self.first_conv(self.normalise(pixels))
        x = self.patch_norm(self.patch_projection(first))
        for stage in self.stages:
            x = stage(x, training=training)
        return self.conv_after_body(self.final_norm(x)) + first

    def weight_rules(self):
        r = conv_rules("first_convolution", self.first_conv)
        r += conv_rules("embeddings.patch_embeddings.projection", self.patch_projection)
        r += norm_rules("embeddings.patch_embeddings.layernorm", self.patch_norm)
        for i, stage in enumerate(self.stages):
            p = f"encoder.stages.{i}."
            for j, b in enumerate(stage.blocks):
                r += _block_rules(f"{p}layers.{j}.", b)
            if len(stage.convs) == 1:
                r += conv_rules(p + "conv", stage.convs[0])
            else:
                for k, conv in zip((0, 2, 4), stage.convs):
                    r += conv_rules(f"{p}conv.{k}", conv)
            r += conv_rules(p + "patch_embed.projection", stage.projection)
        return r + norm_rules("layernorm", self.final_norm) + conv_rules("conv_after_body", self.conv_after_body)


def _block_rules(p, b):
    a, s = b.attention, p + "attention.self."
    r = dense_rules(s + "query", a.query) + [Rule(s + "key.weight", a.key.kernel, TRANSPOSE)]
    r += dense_rules(s + "value", a.value) + dense_rules(p + "attention.output.dense", a.output_dense)
    r += dense_rules(p + "intermediate.dense", b.fc1) + dense_rules(p + "output.dense", b.fc2)
    r += norm_rules(p + "layernorm_before", b.norm1) + norm_rules(p + "layernorm_after", b.norm2)
    h = b.num_heads
    r.append(Rule(s + "logit_scale", b.logit_scale, Reshape((h, 1, 1), (h,))))
    r += dense_rules(s + "continuous_position_bias_mlp.0", b.cpb_fc1)
    return r + dense_rules(s + "continuous_position_bias_mlp.2", b.cpb_fc2)


__all__ = ["Swin2SRSpec", "Swin2SRBackbone", "ResidualSwinStage"]

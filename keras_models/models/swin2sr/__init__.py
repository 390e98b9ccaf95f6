"""Swin2SR: the backbone (:mod:`.backbone`), its image processor and the super-resolution task with
Transformers' upsamplers (all channels_last, 64 features where the upsampler has them):

* ``pixelshuffle``: 3x3 conv + LeakyReLU(0.01), then per factor 2 (log2(upscale) times) or once
  for 3 a 3x3 conv to r*r*64 + pixel shuffle, then a 3x3 conv to ``num_channels_out``;
* ``pixelshuffledirect``: one 3x3 conv to upscale^2 * out channels + pixel shuffle;
* ``nearest+conv`` (upscale 4): 3x3 conv + LeakyReLU(0.01), twice [nearest x2, 3x3 conv,
  LeakyReLU(0.2)], 3x3 conv + LeakyReLU(0.2), 3x3 conv to the output channels;
* ``pixelshuffle_aux``: the pixelshuffle path whose features go through an auxiliary 3-channel
  image (3x3 conv, then 3x3 conv + LeakyReLU back to 64), plus a 3x3 conv of the bicubic-upscaled
  input (PyTorch's bicubic, align_corners=False);
* none (``upsampler`` null or ""): input + 3x3 conv of the features (restoration, upscale 1).

The reconstruction is ``/ img_range + mean`` and cropped to (H * upscale, W * upscale).
"""

import math

import keras
from keras import ops

from keras_models.layers.vision_embeddings import conv_rules
from keras_models.models.depth.layers import resize
from keras_models.models.registry import register_task
from keras_models.models.swin2sr.backbone import ResidualSwinStage, Swin2SRBackbone, Swin2SRSpec
from keras_models.models.swin2sr.processor import Swin2SRImageProcessor
from keras_models.tasks.image_super_resolution import ImageSuperResolution, pixel_shuffle

_ser = keras.saving.register_keras_serializable(package="keras_models")
NUM_FEATURES = 64


def _conv(filters, name, dtype):
    return keras.layers.Conv2D(filters, 3, padding="same", name=name, dtype=dtype)


@_ser
class Swin2SRUpsampler(keras.layers.Layer):
    """The ``upsample`` (or ``final_convolution``) head of Swin2SRForImageSuperResolution."""

    def __init__(self, upsampler, upscale, embed_dim, num_channels, channels_out, **kwargs):
        super().__init__(**kwargs)
        self.upsampler, self.upscale, self.embed_dim = upsampler or None, upscale, embed_dim
        self.num_channels, self.channels_out = num_channels, channels_out
        d, f, up = self.dtype_policy, NUM_FEATURES, upscale
        self.conv_inputs = {}  # checkpoint name (under upsample.) -> input channels
        if self.upsampler in ("pixelshuffle", "pixelshuffle_aux"):
            self.add("conv_before_upsample", f, embed_dim)
            self.steps = [2] * int(math.log2(up)) if up & (up - 1) == 0 else [3]
            if self.steps == [3]:
                self.add("upsample.convolution", 9 * f, f)
            else:
                for i in range(len(self.steps)):
                    self.add(f"upsample.convolution_{i}", 4 * f, f)
            self.add("final_convolution", channels_out, f)
            if self.upsampler == "pixelshuffle_aux":
                self.add("conv_bicubic", f, num_channels)
                self.add("conv_aux", num_channels, f)
                self.add("conv_after_aux.0", f, 3)
        elif self.upsampler == "pixelshuffledirect":
            self.add("conv", up * up * channels_out, embed_dim)
        elif self.upsampler == "nearest+conv":
            self.add("conv_before_upsample", f, embed_dim)
            for name in ("conv_up1", "conv_up2", "conv_hr"):
                self.add(name, f, f)
            self.add("final_convolution", channels_out, f)
        else:
            self.add("final_convolution", channels_out, embed_dim)

    def add(self, name, filters, channels_in):
        setattr(self, "conv_" + name.replace(".", "_"), _conv(filters, name.replace(".", "_"), self.dtype_policy))
        self.conv_inputs[name] = channels_in

    def layer(self, name):
        return getattr(self, "conv_" + name.replace(".", "_"))

    def build(self, input_shape=None):
        for name, c in self.conv_inputs.items():
            self.layer(name).build((None, None, None, c))
        self.built = True

    def conv(self, name, x):
        return self.layer(name)(x)

    def shuffle_up(self, x):
        if self.steps == [3]:
            return pixel_shuffle(self.conv("upsample.convolution", x), 3)
        for i in range(len(self.steps)):
            x = pixel_shuffle(self.conv(f"upsample.convolution_{i}", x), 2)
        return x

    def call(self, features, pixels):
        """features: the backbone's (batch, Hp, Wp, embed_dim); pixels: the raw input."""
        kind, up = self.upsampler, self.upscale
        h, w = pixels.shape[1], pixels.shape[2]
        if kind == "pixelshuffle":
            x = ops.leaky_relu(self.conv("conv_before_upsample", features), 0.01)
            return self.conv("final_convolution", self.shuffle_up(x))
        if kind == "pixelshuffle_aux":
            bicubic = self.conv("conv_bicubic", resize(pixels, h * up, w * up, "bicubic"))
            x = ops.leaky_relu(self.conv("conv_before_upsample", features), 0.01)
            x = ops.leaky_relu(self.conv("conv_after_aux.0", self.conv("conv_aux", x)), 0.01)
            x = self.shuffle_up(x)[:, : h * up, : w * up] + bicubic
            return self.conv("final_convolution", x)
        if kind == "pixelshuffledirect":
            return pixel_shuffle(self.conv("conv", features), up)
        if kind == "nearest+conv":
            x = ops.leaky_relu(self.conv("conv_before_upsample", features), 0.01)
            for name in ("conv_up1", "conv_up2"):
                x = ops.repeat(ops.repeat(x, 2, axis=1), 2, axis=2)
                x = ops.leaky_relu(self.conv(name, x), 0.2)
            return self.conv("final_convolution", ops.leaky_relu(self.conv("conv_hr", x), 0.2))
        return pixels + self.conv("final_convolution", features)[:, :h, :w]

    def rules(self):
        if self.upsampler is None:
            return conv_rules("final_convolution", self.layer("final_convolution"), base=False)
        r = []
        for name in self.conv_inputs:
            r += conv_rules(f"upsample.{name}", self.layer(name), base=False)
        return r

    def get_config(self):
        c = super().get_config()
        c.update(upsampler=self.upsampler, upscale=self.upscale, embed_dim=self.embed_dim,
                 num_channels=self.num_channels, channels_out=self.channels_out)
        return c


@_ser
@register_task(Swin2SRBackbone, "ImageSuperResolution", ("Swin2SRForImageSuperResolution",))
class Swin2SRImageSuperResolution(ImageSuperResolution):
    hf_head_patterns = ("upsample.*", "final_convolution.*")

    def __init__(self, backbone, **kwargs):
        super().__init__(backbone, **kwargs)
        s = backbone.spec
        self.head = Swin2SRUpsampler(s.upsampler, s.upscale, s.embed_dim, s.num_channels, s.channels_out,
                                     name="upsample", dtype=backbone.dtype_policy)

    @classmethod
    def preprocessor_from_preset(cls, folder, hf, **kw):
        from keras_models.preprocessing.image import CONFIG_NAME

        if not (folder / CONFIG_NAME).is_file():
            return None
        return Swin2SRImageProcessor.from_preset(folder)

    def call(self, inputs, training=False):
        pixels = inputs["pixel_values"] if isinstance(inputs, dict) else inputs
        s = self.backbone.spec
        features = self.backbone({"pixel_values": pixels}, training=training)
        x = self.head(features, pixels)
        mean = ops.cast(ops.convert_to_tensor(list(s.mean)), x.dtype)
        x = x / s.img_range + mean
        return x[:, : pixels.shape[1] * s.upscale, : pixels.shape[2] * s.upscale]

    def head_rules(self):
        return self.head.rules()


__all__ = ["Swin2SRSpec", "Swin2SRBackbone", "ResidualSwinStage", "Swin2SRImageProcessor", "Swin2SRUpsampler",
           "Swin2SRImageSuperResolution"]

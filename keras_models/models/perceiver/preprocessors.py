"""Perceiver IO's image input preprocessors (Transformers' ``PerceiverImagePreprocessor``), channels_last.

Each turns ``pixel_values`` into the encoder's byte array (batch, positions, channels): the pixels'
features with a position encoding concatenated on the channel axis.

* ``conv1x1`` (``PerceiverForImageClassificationLearned``): a 1x1 convolution to 256 channels plus a
  learned (image_size**2, 256) position table through a 256 -> 256 projection (512 channels);
  the image must be ``image_size`` square.
* ``pixels`` (``...Fourier``): the raw pixels plus Fourier features (3 + 258 channels).
* ``conv`` (``...ConvProcessing``): 7x7 stride-2 convolution (TensorFlow "same" padding, no bias),
  BatchNorm, ReLU, 3x3 stride-2 max pool (64 channels, 1/4 of the size), plus Fourier features
  with a (56, 56) maximum resolution (322 channels).
* ``patches`` (``PerceiverForOpticalFlow``): two frames of (H, W, 27) patch features
  (``(batch, 2, H, W, 27)``) stacked per pixel (frame-major, 54 channels), a 54 -> 64 linear
  layer, plus Fourier features at ``train_size`` (322 channels).

Fourier features (``fourier_features``): positions on [-1, 1] per axis (torch's ``linspace``
rounding), ``num_bands`` frequencies from 1 to ``max_resolution / 2`` per axis, the positions then
sin(pi f x) for every axis and band, then cos(...). They depend on the input size only and are
computed once in numpy (float32, rounding as Transformers').
"""

import keras
import numpy as np
from keras import ops

from keras_models.errors import InputError
from keras_models.layers.vision_embeddings import conv_rules, dense_rules, norm_rules
from keras_models.presets.weight_map import Rule

NUM_BANDS = 64
_FOURIER_2D = 2 * (2 * NUM_BANDS + 1)  # two axes: the position, then sin and cos of each band
CHANNELS = {"conv1x1": 256 + 256, "pixels": 3 + _FOURIER_2D, "conv": 64 + _FOURIER_2D, "patches": 64 + _FOURIER_2D}
KINDS = tuple(CHANNELS)


def _linspace(start, end, n):
    """torch.linspace in float32 (step in float32, each value start + i * step with one rounding,
    the second half counted back from ``end``)."""
    if n == 1:
        return np.array([start], np.float32)
    step = float(np.float32((np.float32(end) - np.float32(start)) / np.float32(n - 1)))
    i = np.arange(n)
    return np.where(i < n // 2, start + step * i, end - step * (n - 1 - i)).astype(np.float32)


def fourier_features(index_dims, max_resolution, num_bands=NUM_BANDS):
    """(prod(index_dims), len(index_dims) * (2 * num_bands + 1)) float32 features."""
    grids = np.meshgrid(*[_linspace(-1.0, 1.0, n) for n in index_dims], indexing="ij")
    pos = np.stack(grids, axis=-1).reshape(-1, len(index_dims))
    bands = np.stack([_linspace(1.0, res / 2, num_bands) for res in max_resolution])
    per = (pos[:, :, None] * bands[None]).reshape(pos.shape[0], -1).astype(np.float32)
    per = (np.float32(np.pi) * per).astype(np.float32)
    return np.concatenate([pos, np.sin(per), np.cos(per)], axis=-1).astype(np.float32)


@keras.saving.register_keras_serializable(package="keras_models")
class PerceiverImagePreprocessor(keras.layers.Layer):
    """One of Transformers' image preprocessors (``kind`` in KINDS); see the module docstring."""

    def __init__(self, kind, image_size=56, train_size=(368, 496), initializer_range=0.02, **kwargs):
        super().__init__(**kwargs)
        if kind not in KINDS:
            raise ValueError(f"PerceiverImagePreprocessor: kind {kind!r} is not one of {KINDS}")
        self.kind, self.image_size, self.train_size = kind, image_size, tuple(train_size)
        self.initializer_range = initializer_range
        init = keras.initializers.TruncatedNormal(stddev=initializer_range)
        common = dict(dtype=self.dtype_policy)
        if kind == "conv1x1":
            self.conv = keras.layers.Conv2D(256, 1, kernel_initializer=init, name="convnet_1x1", **common)
            self.projection = keras.layers.Dense(256, kernel_initializer=init, name="positions_projection", **common)
        elif kind == "conv":
            self.conv = keras.layers.Conv2D(64, 7, strides=2, use_bias=False, kernel_initializer=init,
                                            name="conv", **common)
            self.norm = keras.layers.BatchNormalization(epsilon=1e-5, momentum=0.9, name="batchnorm", **common)
            self.pool = keras.layers.MaxPooling2D(3, strides=2, name="max_pool", **common)
        elif kind == "patches":
            self.patch_proj = keras.layers.Dense(64, kernel_initializer=init, name="conv_after_patches", **common)

    @property
    def max_resolution(self):
        return {"pixels": (224, 224), "conv": (56, 56), "patches": self.train_size}.get(self.kind)

    @property
    def num_channels(self):
        return CHANNELS[self.kind]

    def build(self, input_shape=None):
        if self.kind == "conv1x1":
            self.conv.build((None, None, None, 3))
            self.positions = self.add_weight(
                shape=(self.image_size ** 2, 256), name="position_embeddings",
                initializer=keras.initializers.RandomNormal(stddev=self.initializer_range))
            self.projection.build((None, None, 256))
        elif self.kind == "conv":
            self.conv.build((None, None, None, 3))
            self.norm.build((None, None, None, 64))
        elif self.kind == "patches":
            self.patch_proj.build((None, None, None, 54))
        self.built = True

    def _check(self, x, rank, what):
        if len(x.shape) != rank or x.shape[-1] is None:
            raise InputError(f"Perceiver ({self.kind} preprocessor): pixel_values must be {what}, got shape "
                             f"{tuple(x.shape)}")

    def call(self, pixels, training=False):
        if self.kind == "patches":
            self._check(pixels, 5, "(batch, 2, height, width, 27) patch features of two frames")
            if pixels.shape[1] != 2 or pixels.shape[-1] != 27:
                raise InputError(f"Perceiver optical flow: pixel_values must be (batch, 2, height, width, 27), "
                                 f"got {tuple(pixels.shape)}")
            h, w = pixels.shape[2], pixels.shape[3]
            x = ops.reshape(ops.transpose(pixels, (0, 2, 3, 1, 4)), (-1, h, w, 54))
            x = self.patch_proj(x)
        else:
            self._check(pixels, 4, "(batch, height, width, 3)")
            if pixels.shape[-1] != 3:
                raise InputError(f"Perceiver: pixel_values must have 3 channels, got {tuple(pixels.shape)}")
            x = pixels
            if self.kind == "conv1x1":
                if pixels.shape[1] != self.image_size or pixels.shape[2] != self.image_size:
                    raise InputError(f"Perceiver (learned positions): pixel_values must be image_size="
                                     f"{self.image_size} square, got {tuple(pixels.shape)}")
                x = self.conv(x)
            elif self.kind == "conv":
                x = ops.pad(x, ((0, 0), (3, 3), (3, 3), (0, 0)))
                x = self.pool(ops.relu(self.norm(self.conv(x), training=training)))
        h, w, c = x.shape[1], x.shape[2], x.shape[3]
        x = ops.reshape(x, (-1, h * w, c))
        if self.kind == "conv1x1":
            pos = self.projection(ops.cast(self.positions, x.dtype))
        else:
            pos = ops.convert_to_tensor(fourier_features((h, w), self.max_resolution), dtype=x.dtype)
        pos = ops.broadcast_to(pos[None], (ops.shape(x)[0], h * w, pos.shape[-1]))
        return ops.concatenate([x, pos], axis=-1)

    def rules(self, prefix):
        p = prefix
        if self.kind == "conv1x1":
            return (conv_rules(p + "convnet_1x1", self.conv)
                    + [Rule(p + "position_embeddings.position_embeddings", self.positions)]
                    + dense_rules(p + "positions_projection", self.projection))
        if self.kind == "conv":
            return conv_rules(p + "convnet.conv", self.conv) + norm_rules(p + "convnet.batchnorm", self.norm)
        if self.kind == "patches":
            return dense_rules(p + "conv_after_patches", self.patch_proj)
        return []

    def get_config(self):
        config = super().get_config()
        config.update(kind=self.kind, image_size=self.image_size, train_size=list(self.train_size),
                      initializer_range=self.initializer_range)
        return config


__all__ = ["PerceiverImagePreprocessor", "fourier_features", "CHANNELS"]

"""Training-time image augmentation as Keras layers (keras.ops only, every backend).

``RandomResizedCrop`` samples, per image, a box covering ``scale`` of the area with an aspect
ratio in ``ratio`` (log-uniform), and resizes it to (height, width) bilinearly; outside training
it only resizes when the input size differs. ``image_augmentation()`` is the usual
RandomResizedCrop + horizontal flip pair; pass it to ``ImageClassifier(augmentation=...)`` (or
``from_preset(..., augmentation=...)``) and it runs in ``fit`` only.
"""

import math

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="keras_models")
class RandomResizedCrop(keras.layers.Layer):
    def __init__(self, height, width, scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3), seed=None, **kwargs):
        super().__init__(**kwargs)
        self.height, self.width = int(height), int(width)
        self.scale, self.ratio, self.seed = tuple(scale), tuple(ratio), seed
        if not (0 < self.scale[0] <= self.scale[1] <= 1):
            raise ValueError(f"RandomResizedCrop: scale must satisfy 0 < min <= max <= 1, got {scale}")
        if not (0 < self.ratio[0] <= self.ratio[1]):
            raise ValueError(f"RandomResizedCrop: invalid ratio {ratio}")
        self.generator = keras.random.SeedGenerator(seed)

    def _resize(self, x):
        if x.shape[1] == self.height and x.shape[2] == self.width:
            return x
        return ops.image.resize(x, (self.height, self.width), interpolation="bilinear")

    def call(self, images, training=False):
        if not training:
            return self._resize(images)
        b = ops.shape(images)[0]
        h, w = images.shape[1], images.shape[2]
        area = keras.random.uniform((b,), self.scale[0], self.scale[1], seed=self.generator)
        log_r = keras.random.uniform((b,), math.log(self.ratio[0]), math.log(self.ratio[1]), seed=self.generator)
        r = ops.exp(log_r)
        cw = ops.minimum(ops.sqrt(area * r), 1.0) * w  # crop size in input pixels
        ch = ops.minimum(ops.sqrt(area / r), 1.0) * h
        x0 = keras.random.uniform((b,), seed=self.generator) * (w - cw)
        y0 = keras.random.uniform((b,), seed=self.generator) * (h - ch)
        zeros = ops.zeros_like(cw)
        # output pixel (x, y) of an h x w canvas samples input (x0 + x * cw / w, y0 + y * ch / h)
        transform = ops.stack([cw / w, zeros, x0, zeros, ch / h, y0, zeros, zeros], axis=1)
        crops = ops.image.affine_transform(images, ops.cast(transform, "float32"), interpolation="bilinear",
                                           fill_mode="nearest")
        return self._resize(crops)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.height, self.width, input_shape[-1])

    def get_config(self):
        c = super().get_config()
        c.update(height=self.height, width=self.width, scale=list(self.scale), ratio=list(self.ratio), seed=self.seed)
        return c


def image_augmentation(height, width, scale=(0.08, 1.0), flip=True, seed=None):
    """RandomResizedCrop (+ horizontal RandomFlip) as one Keras layer."""
    layers = [RandomResizedCrop(height, width, scale=scale, seed=seed)]
    if flip:
        layers.append(keras.layers.RandomFlip("horizontal", seed=seed))
    return keras.Sequential(layers, name="image_augmentation")


__all__ = ["RandomResizedCrop", "image_augmentation"]

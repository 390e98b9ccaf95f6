"""ImageClassifier: a vision backbone, a pooling rule and a linear head.

``km.ImageClassifier.from_preset(folder)`` resolves the family's subclass from config.json. Family
subclasses set the HF head names (``hf_out``) and the pooling rule:

  * ``"cls"``: the first token (ViT, DeiT without teacher, ViT-MSN);
  * ``"cls_and_mean"``: [CLS] concatenated with the mean of the patch tokens (DINOv2);
  * ``"backbone"``: the backbone's own ``pooled(hidden)`` (global average pool [+ norm] of
    ConvNets, BEiT's mean pooling, Swin...).

``distilled=True`` (DeiT ``...WithTeacher``) averages a [CLS] head and a distillation-token head.
``augmentation``: a Keras layer (e.g. :func:`keras_models.preprocessing.image_augment.image_augmentation`)
applied to ``pixel_values`` during ``fit`` only.
Inputs: ``{"pixel_values": (batch, height, width, channels)}`` or the array itself; raw images
(paths, PIL images) in ``predict`` / ``fit`` / ``evaluate`` go through the checkpoint's
``preprocessor_config.json`` (:class:`~keras_models.preprocessing.image.ImageProcessor`).
"""

import keras
from keras import ops

from keras_models.layers.vision_embeddings import dense_rules
from keras_models.tasks.text import _LabelledTask


class ImageTask(_LabelledTask):
    """What every image task shares: Transformers' label-count default, no head dropout unless
    asked, and the checkpoint's image processor (preprocessor_config.json) loaded and saved."""

    @classmethod
    def task_config_from_hf(cls, hf, head_from_checkpoint, **kwargs):
        if head_from_checkpoint and not hf.get("id2label") and not hf.get("num_labels"):
            hf = {**hf, "num_labels": 2}  # Transformers' default; config.json omits default values
        kwargs = super().task_config_from_hf(hf, head_from_checkpoint, **kwargs)
        kwargs.setdefault("dropout", 0.0)
        return kwargs

    @classmethod
    def preprocessor_from_preset(cls, folder, hf, **kw):
        from keras_models.presets.config import read_processor_part
        from keras_models.preprocessing.image import ImageProcessor

        if read_processor_part(folder, "image_processor") is None:
            return None
        return ImageProcessor.from_preset(folder)

    def save_extra_files(self, folder):
        if self.preprocessor is not None and hasattr(self.preprocessor, "save_pretrained"):
            self.preprocessor.save_pretrained(folder)


@keras.saving.register_keras_serializable(package="keras_models")
class ImageClassifier(ImageTask):
    task_name = "ImageClassifier"
    hf_out = "classifier"
    hf_dist_out = ("cls_classifier", "distillation_classifier")
    hf_head_patterns = ("classifier.*", "cls_classifier.*", "distillation_classifier.*")
    pooling = "cls"
    distilled_architectures = ()

    def __init__(self, backbone, num_classes=2, id2label=None, dropout=0.0, pooling=None,
                 distilled=False, augmentation=None, preprocessor=None, **kwargs):
        super().__init__(backbone, preprocessor=preprocessor, **kwargs)
        if isinstance(augmentation, dict):
            augmentation = keras.saving.deserialize_keras_object(augmentation)
        self.augmentation = augmentation  # a Keras layer applied to pixel_values in training only
        self.num_classes = num_classes
        self.id2label = {int(k): v for k, v in id2label.items()} if id2label else None
        self.dropout = dropout or 0.0
        self.pooling = pooling or type(self).pooling
        if self.pooling not in ("cls", "cls_and_mean", "backbone"):
            raise ValueError(f"ImageClassifier: unknown pooling {self.pooling!r}")
        self.distilled = distilled
        init = keras.initializers.TruncatedNormal(stddev=getattr(backbone, "initializer_range", 0.02))
        dense = dict(kernel_initializer=init, dtype=backbone.dtype_policy)
        self.drop = keras.layers.Dropout(self.dropout, dtype=backbone.dtype_policy)
        self.out = keras.layers.Dense(num_classes, name="classifier", **dense)
        self.dist_out = keras.layers.Dense(num_classes, name="distillation_classifier", **dense) if distilled else None

    @classmethod
    def task_config_from_hf(cls, hf, head_from_checkpoint, **kwargs):
        kwargs = super().task_config_from_hf(hf, head_from_checkpoint, **kwargs)
        archs = hf.get("architectures") or []
        if kwargs.get("_head_from_checkpoint") and any(a in cls.distilled_architectures for a in archs):
            kwargs.setdefault("distilled", True)
        return kwargs

    @property
    def hf_architecture_name(self):
        return self.hf_architectures[-1] if self.distilled else self.hf_architectures[0]

    def config_to_hf(self):
        c = super().config_to_hf()
        c["architectures"] = [self.hf_architecture_name]
        return c

    def build_from_dummy(self):
        if self.augmentation is not None and not self.augmentation.built:
            self.augmentation(self.backbone.dummy_inputs()["pixel_values"], training=False)
        return super().build_from_dummy()

    # --- forward ------------------------------------------------------------------------------
    def pool(self, hidden):
        if self.pooling == "cls":
            return hidden[:, 0]
        if self.pooling == "cls_and_mean":
            patches = hidden[:, self.backbone.num_prefix_tokens:]
            return ops.concatenate([hidden[:, 0], ops.mean(patches, axis=1)], axis=-1)
        return self.backbone.pooled(hidden)

    def call(self, inputs, training=False):
        if training and self.augmentation is not None:
            pixels = inputs["pixel_values"] if isinstance(inputs, dict) else inputs
            inputs = {"pixel_values": self.augmentation(pixels, training=True)}
        h = self.backbone(inputs, training=training)
        if self.distilled:
            a = self.out(self.drop(h[:, 0], training=training))
            b = self.dist_out(self.drop(h[:, 1], training=training))
            return (a + b) / 2
        return self.out(self.drop(self.pool(h), training=training))

    def head_rules(self):
        if self.distilled:
            return dense_rules(self.hf_dist_out[0], self.out, base=False) + dense_rules(
                self.hf_dist_out[1], self.dist_out, base=False)
        return dense_rules(self.hf_out, self.out, base=False)

    def get_config(self):
        c = super().get_config()
        c.update(pooling=self.pooling, distilled=self.distilled,
                 augmentation=keras.saving.serialize_keras_object(self.augmentation) if self.augmentation else None)
        return c


__all__ = ["ImageClassifier"]

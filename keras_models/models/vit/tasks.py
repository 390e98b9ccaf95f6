"""Image classifiers of the ViT-shaped families (HF head names and pooling rules)."""

import dataclasses

import keras

from keras_models.models.registry import register_task
from keras_models.models.vit.backbone import ViTBackbone
from keras_models.models.vit.variants import DeiTBackbone, Dinov2Backbone, Dinov2WithRegistersBackbone
from keras_models.tasks.image_classifier import ImageClassifier

_ser = keras.saving.register_keras_serializable(package="keras_models")


@_ser
@register_task(ViTBackbone, "ImageClassifier", ("ViTForImageClassification", "ViTMSNForImageClassification"))
class ViTImageClassifier(ImageClassifier):
    def weight_rules(self):
        """ViT-MSN classifier checkpoints (the hub's and Transformers 5's save_pretrained) name the
        encoder without the ``vit.`` prefix but the embeddings and final norm with it."""
        if getattr(self.backbone, "model_type", "vit") != "vit_msn":
            return super().weight_rules()
        rules = []
        for r in self.backbone.weight_rules():
            name = r.hf if r.hf.startswith("encoder.") else f"vit.{r.hf}"
            rules.append(dataclasses.replace(r, hf=name, base=False))
        return rules + self.head_rules()

    @property
    def export_prefix(self):
        return "" if getattr(self.backbone, "model_type", "vit") == "vit_msn" else super().export_prefix


@_ser
@register_task(DeiTBackbone, "ImageClassifier",
               ("DeiTForImageClassification", "DeiTForImageClassificationWithTeacher"))
class DeiTImageClassifier(ImageClassifier):
    distilled_architectures = ("DeiTForImageClassificationWithTeacher",)


@_ser
@register_task(Dinov2Backbone, "ImageClassifier", ("Dinov2ForImageClassification",))
class Dinov2ImageClassifier(ImageClassifier):
    pooling = "cls_and_mean"


@_ser
@register_task(Dinov2WithRegistersBackbone, "ImageClassifier", ("Dinov2WithRegistersForImageClassification",))
class Dinov2WithRegistersImageClassifier(ImageClassifier):
    pooling = "cls_and_mean"

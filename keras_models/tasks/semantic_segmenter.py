"""SemanticSegmenter: a vision backbone's multi-scale feature maps and a family's decode head,
returning per-pixel class logits channels_last (batch, h, w, num_classes) at the head's own
resolution (SegFormer: H/4, W/4), like Transformers' ``logits`` transposed to channels_last.

``km.SemanticSegmenter.from_preset(folder)`` resolves the family's subclass from config.json
(``SegformerForSemanticSegmentation`` checkpoints carry their head; other checkpoints get a new
head of ``num_classes``). Subclasses build ``self.head`` (called on ``backbone.feature_maps``)
and declare its weight map in ``head_rules``.
"""

import keras

from keras_models.tasks.text import _LabelledTask


@keras.saving.register_keras_serializable(package="keras_models")
class SemanticSegmenter(_LabelledTask):
    task_name = "SemanticSegmenter"

    def __init__(self, backbone, num_classes=2, id2label=None, dropout=0.0, preprocessor=None, **kwargs):
        super().__init__(backbone, preprocessor=preprocessor, **kwargs)
        self.num_classes = num_classes
        self.id2label = {int(k): v for k, v in id2label.items()} if id2label else None
        self.dropout = dropout or 0.0

    @classmethod
    def task_config_from_hf(cls, hf, head_from_checkpoint, **kwargs):
        if head_from_checkpoint and not hf.get("id2label") and not hf.get("num_labels"):
            hf = {**hf, "num_labels": 2}  # Transformers' default; config.json omits default values
        kwargs = super().task_config_from_hf(hf, head_from_checkpoint, **kwargs)
        kwargs.setdefault("dropout", 0.0)
        return kwargs

    @classmethod
    def preprocessor_from_preset(cls, folder, hf, **kw):
        from keras_models.preprocessing.image import CONFIG_NAME, ImageProcessor

        if not (folder / CONFIG_NAME).is_file():
            return None
        return ImageProcessor.from_preset(folder)

    def save_extra_files(self, folder):
        if self.preprocessor is not None and hasattr(self.preprocessor, "save_pretrained"):
            self.preprocessor.save_pretrained(folder)

    def call(self, inputs, training=False):
        return self.head(self.backbone.feature_maps(inputs, training=training), training=training)


__all__ = ["SemanticSegmenter"]

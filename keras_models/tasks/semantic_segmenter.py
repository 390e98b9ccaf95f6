"""SemanticSegmenter: a vision backbone's multi-scale feature maps and a family's decode head,
returning per-pixel class logits channels_last (batch, h, w, num_classes) at the head's own
resolution (SegFormer: H/4, W/4), like Transformers' ``logits`` transposed to channels_last.

``km.SemanticSegmenter.from_preset(folder)`` resolves the family's subclass from config.json
(``SegformerForSemanticSegmentation`` checkpoints carry their head; other checkpoints get a new
head of ``num_classes``). Subclasses build ``self.head`` (called on ``backbone.feature_maps``)
and declare its weight map in ``head_rules``.
"""

import keras

from keras_models.tasks.image_classifier import ImageTask


@keras.saving.register_keras_serializable(package="keras_models")
class SemanticSegmenter(ImageTask):
    task_name = "SemanticSegmenter"
    ignore_label = 255  # Transformers' semantic_loss_ignore_index; labels at the logits' resolution

    def __init__(self, backbone, num_classes=2, id2label=None, dropout=0.0, preprocessor=None, **kwargs):
        super().__init__(backbone, preprocessor=preprocessor, **kwargs)
        self.num_classes = num_classes
        self.id2label = {int(k): v for k, v in id2label.items()} if id2label else None
        self.dropout = dropout or 0.0

    def call(self, inputs, training=False):
        return self.head(self.backbone.feature_maps(inputs, training=training), training=training)


__all__ = ["SemanticSegmenter"]

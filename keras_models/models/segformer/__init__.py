"""SegFormer: Mix Transformer backbone, image classifier (mean of the last map) and the all-MLP
decode head for semantic segmentation."""

import keras
from keras import ops

from keras_models.layers.vision_embeddings import conv_rules, dense_rules, norm_rules, resize_grid
from keras_models.models.registry import register_task
from keras_models.models.segformer.backbone import MixTransformerBlock, SegformerBackbone
from keras_models.tasks.image_classifier import ImageClassifier
from keras_models.tasks.semantic_segmenter import SemanticSegmenter

_ser = keras.saving.register_keras_serializable(package="keras_models")


@_ser
@register_task(SegformerBackbone, "ImageClassifier", ("SegformerForImageClassification",))
class SegformerImageClassifier(ImageClassifier):
    pooling = "backbone"


@_ser
class SegformerDecodeHead(keras.layers.Layer):
    """Stage maps -> per-stage Dense to ``hidden`` -> bilinear resize to the first map's size ->
    concat (deepest first) -> 1x1 conv (no bias) -> BatchNorm -> ReLU -> dropout -> 1x1 classifier."""

    def __init__(self, num_stages, hidden, num_classes, dropout=0.0, **kwargs):
        super().__init__(**kwargs)
        self.num_stages, self.hidden, self.num_classes, self.dropout_rate = num_stages, hidden, num_classes, dropout
        common = dict(dtype=self.dtype_policy)
        self.projections = [keras.layers.Dense(hidden, name=f"proj_{i}", **common) for i in range(num_stages)]
        self.fuse = keras.layers.Conv2D(hidden, 1, use_bias=False, name="fuse", **common)
        self.norm = keras.layers.BatchNormalization(epsilon=1e-5, momentum=0.9, name="norm", **common)
        self.drop = keras.layers.Dropout(dropout, **common)
        self.classifier = keras.layers.Conv2D(num_classes, 1, name="classifier", **common)

    def call(self, maps, training=False):
        h, w = maps[0].shape[1], maps[0].shape[2]
        ups = [resize_grid(proj(m), h, w, mode="bilinear") for proj, m in zip(self.projections, maps)]
        x = self.norm(self.fuse(ops.concatenate(ups[::-1], axis=-1)), training=training)
        return self.classifier(self.drop(ops.relu(x), training=training))

    def get_config(self):
        c = super().get_config()
        c.update(num_stages=self.num_stages, hidden=self.hidden, num_classes=self.num_classes,
                 dropout=self.dropout_rate)
        return c


@_ser
@register_task(SegformerBackbone, "SemanticSegmenter", ("SegformerForSemanticSegmentation",))
class SegformerSemanticSegmenter(SemanticSegmenter):
    hf_head_patterns = ("decode_head.*",)

    def __init__(self, backbone, num_classes=2, decoder_hidden_size=256, **kwargs):
        super().__init__(backbone, num_classes=num_classes, **kwargs)
        self.decoder_hidden_size = decoder_hidden_size
        self.head = SegformerDecodeHead(len(backbone.hidden_sizes), decoder_hidden_size, num_classes,
                                        dropout=self.dropout, name="decode_head", dtype=backbone.dtype_policy)

    @classmethod
    def task_config_from_hf(cls, hf, head_from_checkpoint, **kwargs):
        kwargs.setdefault("decoder_hidden_size", hf.get("decoder_hidden_size", 256))
        if "classifier_dropout_prob" in hf:
            kwargs.setdefault("dropout", hf["classifier_dropout_prob"])
        return super().task_config_from_hf(hf, head_from_checkpoint, **kwargs)

    def task_config_to_hf(self):
        c = super().task_config_to_hf()
        c.update(decoder_hidden_size=self.decoder_hidden_size, classifier_dropout_prob=self.dropout)
        return c

    def head_rules(self):
        h = self.head
        r = []
        for i, proj in enumerate(h.projections):
            r += dense_rules(f"decode_head.linear_c.{i}.proj", proj, base=False)
        r += conv_rules("decode_head.linear_fuse", h.fuse, base=False)
        r += norm_rules("decode_head.batch_norm", h.norm, base=False)
        return r + conv_rules("decode_head.classifier", h.classifier, base=False)

    def get_config(self):
        c = super().get_config()
        c.update(decoder_hidden_size=self.decoder_hidden_size)
        return c


__all__ = ["SegformerBackbone", "MixTransformerBlock", "SegformerImageClassifier", "SegformerDecodeHead",
           "SegformerSemanticSegmenter"]

"""DETA (model_type ``deta``; removed from Transformers 5, checked against 4.57.1): two-stage
Deformable DETR with box refinement (deformable.py, two_stage.py) whose proposals are chosen by
per-level NMS (``assign_first_stage``) and whose queries add the chosen tokens' projected features
(``pix_trans``). Its other differences from Deformable DETR (one-to-many assignment in both stages)
only change training. Defaults are DETA's: 900 queries, 5 feature levels, a ResNet-50 read at
stages 2-4, two_stage and with_box_refine on; a Swin ``backbone_config`` (deta-swin-large) is read
through SwinBackbone's per-stage LayerNorms.

Heads: every decoder layer has its own class head and box MLP (``model.decoder.class_embed.{i}`` /
``model.decoder.bbox_embed.{i}``, the top-level ``class_embed`` / ``bbox_embed`` are the same tensors);
the outputs read the last layer's, index ``decoder_layers`` is the proposal heads (the backbone's),
and the other class heads (auxiliary losses only) are reported as unused.

Post-processing (:meth:`DetaObjectDetector.post_process_object_detection`) is DETA's: the 10 000
best (query, class) sigmoid scores, NMS per class at ``nms_threshold`` (0.7), the best 100 kept.
"""

from dataclasses import dataclass

import keras
import numpy as np

from keras_models.errors import InputError
from keras_models.models.detr.deformable import (DeformableDetrBackbone, DeformableDetrObjectDetector, DeformableDetrSpec,
                                                 out_stages)
from keras_models.models.registry import register_backbone, register_task
from keras_models.spec import const, dim, hf
from keras_models.tasks.zero_shot_object_detector import center_to_corners

_ser = keras.saving.register_keras_serializable(package="keras_models")
_ALL = ("jax", "torch", "tensorflow")


@dataclass(frozen=True, kw_only=True)
class DetaSpec(DeformableDetrSpec):
    ignored = DeformableDetrSpec.ignored + ("assign_second_stage",)
    num_queries: int = dim("num_queries", 900)
    encoder_ffn_dim: int = dim("encoder_ffn_dim", 2048)
    decoder_ffn_dim: int = dim("decoder_ffn_dim", 1024)
    num_feature_levels: int = dim("num_feature_levels", 5)
    two_stage: bool = hf("two_stage", True, doc="queries from the encoder's best proposals")
    with_box_refine: bool = hf("with_box_refine", True, doc="each decoder layer refines the reference boxes")
    assign_first_stage: bool = hf("assign_first_stage", True, doc="per-level NMS (IoU 0.9) chooses the proposals")
    proposal_features: bool = const(True, doc="pix_trans: the chosen tokens' projected features join the queries")

    @classmethod
    def from_hf(cls, config, source="config.json"):
        if isinstance(config, dict) and config.get("backbone_config") is None and not config.get("use_timm_backbone"):
            # DETA's default backbone: a ResNet-50 read at stages 2, 3 and 4
            config = {**config, "backbone_config": {"model_type": "resnet",
                                                    "out_features": ["stage2", "stage3", "stage4"]}}
        return super().from_hf(config, source)

    def dummy_inputs(self):
        # enough tokens at the first level (the ResNet's first out_features stage) for the queries
        stages = out_stages(self.backbone_config) if isinstance(self.backbone_config, dict) else [2]
        stride, side = 4 * 2 ** stages[0], 64
        while (side // stride) ** 2 < self.two_stage_num_proposals:
            side *= 2
        return {"pixel_values": np.zeros((1, side, side, self.num_channels), "float32")}


@_ser
@register_backbone("deta")
class DetaBackbone(DeformableDetrBackbone):
    """Returns ``{"last_hidden_state" (batch, proposals, d), "encoder_last_hidden_state",
    "reference_points" (batch, proposals, 4)}``."""

    spec_cls = DetaSpec
    hf_architecture = "DetaModel"
    conv_prefix = "backbone.model."
    verified_backends = _ALL  # tests/vision/test_deta.py


def _nms(boxes, scores, classes, threshold):
    """Greedy NMS per class (numpy): indices kept, best score first."""
    order = np.argsort(-scores, kind="stable")
    boxes, classes = boxes[order], classes[order]
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    lo = np.maximum(boxes[:, None, :2], boxes[None, :, :2])
    hi = np.minimum(boxes[:, None, 2:], boxes[None, :, 2:])
    inter = np.prod(np.clip(hi - lo, 0, None), axis=-1)
    union = area[:, None] + area[None, :] - inter
    with np.errstate(invalid="ignore", divide="ignore"):
        over = (inter / union > threshold) & (classes[:, None] == classes[None, :])
    keep = np.ones(len(order), bool)
    for i in range(len(order)):
        if keep[i]:
            keep[i + 1:] &= ~over[i, i + 1:]
    return order[keep]


@_ser
@register_task(DetaBackbone, "ObjectDetector", ("DetaForObjectDetection",))
class DetaObjectDetector(DeformableDetrObjectDetector):
    """Sigmoid class logits (the last decoder layer's class head) and boxes from its refinement MLP
    offset by the references it read; DETA's post-processing."""

    loss_unsupported = "DETA's training loss (its one-to-many assignment) is not implemented"

    @classmethod
    def post_process_object_detection(cls, outputs, threshold=0.5, target_sizes=None, nms_threshold=0.7):
        """Per image ``{"scores", "labels", "boxes"}`` (numpy), as DETA's image processor: the
        (query, class) pairs' sigmoid scores, NMS per class at ``nms_threshold`` among the best
        10 000, at most 100 kept, best first, then those above ``threshold``; boxes (x0, y0, x1, y1)
        in pixels of ``target_sizes`` ((height, width) per image) or relative when it is None."""
        logits = np.asarray(keras.ops.convert_to_numpy(outputs["logits"]), np.float32)
        boxes = center_to_corners(np.asarray(keras.ops.convert_to_numpy(outputs["pred_boxes"]), np.float32))
        if target_sizes is not None and len(target_sizes) != len(logits):
            raise InputError(f"post_process_object_detection: target_sizes has {len(target_sizes)} sizes for "
                             f"{len(logits)} images")
        n, q, c = logits.shape
        with np.errstate(over="ignore"):
            prob = (1.0 / (1.0 + np.exp(-logits))).astype(np.float32).reshape(n, q * c)
        if target_sizes is not None:
            sizes = np.asarray(target_sizes, np.float32).reshape(n, 2)
            boxes = boxes * np.stack([sizes[:, 1], sizes[:, 0], sizes[:, 1], sizes[:, 0]], axis=1)[:, None, :]
        results = []
        for i in range(n):
            top = np.argsort(-prob[i], kind="stable")[:min(10000, q * c)]
            box, score, label = boxes[i][top // c], prob[i][top], top % c
            keep = _nms(box, score, label, nms_threshold)[:100]
            box, score, label = box[keep], score[keep], label[keep]
            above = score > threshold
            results.append({"scores": score[above], "labels": label[above], "boxes": box[above]})
        return results


__all__ = ["DetaSpec", "DetaBackbone", "DetaObjectDetector"]

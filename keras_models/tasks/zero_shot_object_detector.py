"""ZeroShotObjectDetector: open-vocabulary detection, every image patch a box scored against text queries.

Calling the model on ``{"input_ids", "attention_mask", "pixel_values"}`` returns what
Transformers' ``OwlViTForObjectDetection`` / ``Owlv2ForObjectDetection`` return for text queries,
under the same names:

* ``logits`` (batch, patches, queries): each patch's score per query; a padded query (its
  first id is 0) scores the float32 minimum;
* ``pred_boxes`` (batch, patches, 4): (center_x, center_y, width, height) in [0, 1] of the image;
* ``text_embeds`` (batch, queries, projection_dim): the unit-normalised query embeddings;
* ``image_embeds`` (batch, grid_h, grid_w, hidden): the patch features, channels_last as theirs;
* ``class_embeds`` (batch, patches, query width): the patches' class embeddings (normalised);
* ``objectness_logits`` (batch, patches), OWLv2 only.

``input_ids`` holds the queries of every image one after the other, (batch * queries, seq), as the
Transformers processor makes it; the number of queries is the same for each image.
:meth:`post_process_object_detection` turns outputs into per-image ``{"scores", "labels",
"boxes"}`` exactly as the image processors' method of that name does (sigmoid of the best query's
logit, corner boxes scaled to ``target_sizes``; OWLv2's by the longer side, its images being
padded to squares). Families may add ``image_guided_detection({"pixel_values",
"query_pixel_values"})`` (one-shot detection with a query image, Transformers' method of that
name; calling the model on that dict does the same). Subclasses (a family) implement ``call`` and ``head_rules``.
"""

import keras
import numpy as np

from keras_models.errors import InputError
from keras_models.tasks.task import Task


def center_to_corners(boxes):
    """(cx, cy, w, h) -> (x0, y0, x1, y1), numpy, last axis."""
    cx, cy, w, h = (boxes[..., i] for i in range(4))
    return np.stack([cx - 0.5 * w, cy - 0.5 * h, cx + 0.5 * w, cy + 0.5 * h], axis=-1)


def _sigmoid(x):
    x = np.asarray(x, np.float32)
    with np.errstate(over="ignore"):
        return (1.0 / (1.0 + np.exp(-x))).astype(np.float32)


@keras.saving.register_keras_serializable(package="keras_models")
class ZeroShotObjectDetector(Task):
    task_name = "ZeroShotObjectDetector"
    # the family's image processor pads images to a square (OWLv2): boxes are relative to it, and
    # scale by the longer side of each target size
    square_padding = False

    @classmethod
    def preprocessor_from_preset(cls, folder, hf, **task_kwargs):
        """The checkpoint's tokenizer and image processor (a DualEncoderProcessor), when it ships them."""
        from keras_models.preprocessing.dual import DualEncoderProcessor

        return DualEncoderProcessor.from_preset(folder)

    @classmethod
    def post_process_object_detection(cls, outputs, threshold=0.1, target_sizes=None):
        """Per image ``{"scores", "labels", "boxes"}`` (numpy): the best query of each patch, its
        sigmoid score above ``threshold``, boxes as (x0, y0, x1, y1) in pixels of ``target_sizes``
        ((height, width) per image) or relative to the image when it is None."""
        logits = np.asarray(keras.ops.convert_to_numpy(outputs["logits"]), np.float32)
        boxes = np.asarray(keras.ops.convert_to_numpy(outputs["pred_boxes"]), np.float32)
        if target_sizes is not None and len(target_sizes) != len(logits):
            raise InputError(f"post_process_object_detection: target_sizes has {len(target_sizes)} sizes for "
                             f"{len(logits)} images")
        scores, labels = _sigmoid(logits.max(axis=-1)), logits.argmax(axis=-1)
        boxes = center_to_corners(boxes)
        if target_sizes is not None:
            sizes = np.asarray(target_sizes, np.float32).reshape(len(logits), 2)
            if cls.square_padding:
                sizes = np.repeat(sizes.max(axis=1, keepdims=True), 2, axis=1)
            boxes = boxes * np.stack([sizes[:, 1], sizes[:, 0], sizes[:, 1], sizes[:, 0]], axis=1)[:, None, :]
        results = []
        for s, lab, b in zip(scores, labels, boxes):
            keep = s > threshold
            results.append({"scores": s[keep], "labels": lab[keep], "boxes": b[keep]})
        return results


__all__ = ["ZeroShotObjectDetector", "center_to_corners"]

"""DETR's set-prediction training loss: a Hungarian matching of predicted slots to target boxes,
then classification and box losses on the matched pairs (the loss Transformers computes when
``...ForObjectDetection`` is given ``labels``).

Targets are Transformers' ``labels``: one dict per image, ``{"class_labels": (n,) int, "boxes":
(n, 4) (center_x, center_y, width, height) in [0, 1]}``. :func:`pad_targets` turns such a list into
arrays Keras can batch: ``class_labels`` (images, max_n) padded with -1 and ``boxes`` (images,
max_n, 4).

The matching (``scipy.optimize.linear_sum_assignment`` on the class / L1 / GIoU cost of every
(slot, target) pair) runs on the host, in numpy, on the predictions' values; it returns, for every
target, the index of its slot (-1: padding, or unmatched when there are more targets than
slots). The losses are then Keras ops on those constant indices, so gradients flow through the
predictions only. Inside a compiled step the host call is ``jax.pure_callback`` (JAX) or
``tf.numpy_function`` (TensorFlow); PyTorch runs eagerly.

Two kinds, as Transformers' families use them:

* ``"softmax"`` (DETR, Table Transformer, YOLOS): the class cost is ``-p(target class)``; the
  loss is cross-entropy over classes + "no object", "no object" weighted ``eos_coefficient``.
* ``"focal"`` (Conditional DETR, Deformable DETR): the class cost is the focal cost of sigmoid
  scores (alpha 0.25, gamma 2); the loss is the sigmoid focal loss (``focal_alpha``, gamma 2)
  against one-hot targets, summed and divided by the number of boxes.

Both add ``loss_bbox`` (L1) and ``loss_giou`` (1 - GIoU) of the matched pairs, divided by the
number of target boxes in the batch (at least 1), and ``cardinality_error`` (logged, not
weighted). With ``auxiliary_loss`` every decoder layer but the last is matched and scored again
(``loss_ce_0``...). An image with no boxes is allowed: all its slots are "no object" targets, as in
Transformers.
"""

import numpy as np

from keras_models.errors import ConfigError, InputError

LOSS_KEYS = ("class_cost", "bbox_cost", "giou_cost", "eos_coefficient", "bbox_loss_coefficient",
             "giou_loss_coefficient", "focal_alpha", "auxiliary_loss")
# (ints where Transformers 5 types the config field as int: its strict config classes reject 1.0)
DEFAULTS = dict(class_cost=1, bbox_cost=5, giou_cost=2, eos_coefficient=0.1, bbox_loss_coefficient=5,
                giou_loss_coefficient=2, focal_alpha=0.25, auxiliary_loss=False)


def loss_config_from_hf(hf, defaults=None):
    """The loss fields of a Transformers config.json (absent ones: the family's defaults)."""
    base = dict(DEFAULTS, **(defaults or {}))
    out = {}
    for k in LOSS_KEYS:
        v = hf.get(k, base[k])
        v = base[k] if v is None else v
        if k == "auxiliary_loss":
            out[k] = bool(v)
        elif isinstance(v, (int, float)) and not isinstance(v, bool):
            out[k] = v  # the checkpoint's own type, written back as it was
        else:
            raise ConfigError(f"config.json: {k}={v!r} must be a number")
    if out["class_cost"] == 0 and out["bbox_cost"] == 0 and out["giou_cost"] == 0:
        raise ConfigError("config.json: class_cost, bbox_cost and giou_cost are all 0; the matcher needs one")
    return out


# --- targets -------------------------------------------------------------------------------------
def is_target_list(y):
    return isinstance(y, (list, tuple)) and len(y) > 0 and all(isinstance(t, dict) for t in y)


def pad_targets(targets, num_classes=None):
    """Transformers' ``labels`` (a list of per-image dicts) -> ``{"class_labels": (images, max_n)
    int32, -1 on padding, "boxes": (images, max_n, 4) float32}``; max_n is at least 1."""
    if not is_target_list(targets):
        raise InputError("detection targets: expected a list with one dict per image, "
                         "{'class_labels': (n,) ints, 'boxes': (n, 4) center_x, center_y, width, height}; "
                         f"got {type(targets).__name__}")
    labels, boxes = [], []
    for i, t in enumerate(targets):
        missing = [k for k in ("class_labels", "boxes") if k not in t]
        if missing:
            raise InputError(f"detection targets[{i}]: missing {missing} (has {sorted(t)})")
        lab = np.asarray(_numpy(t["class_labels"])).reshape(-1)
        box = np.asarray(_numpy(t["boxes"]), np.float32)
        if box.size == 0:
            box = box.reshape(0, 4)
        if box.ndim != 2 or box.shape[1] != 4 or len(box) != len(lab):
            raise InputError(f"detection targets[{i}]: 'boxes' must be ({len(lab)}, 4) for {len(lab)} "
                             f"class_labels; got shape {box.shape}")
        if lab.size and not np.issubdtype(lab.dtype, np.integer):
            raise InputError(f"detection targets[{i}]: 'class_labels' must be integers; got {lab.dtype}")
        if lab.size and (lab.min() < 0 or (num_classes is not None and lab.max() >= num_classes)):
            raise InputError(f"detection targets[{i}]: 'class_labels' must lie in [0, {num_classes}); "
                             f"got {lab.min()}..{lab.max()}")
        if box.size and (not np.isfinite(box).all() or (box[:, 2:] < 0).any()):
            raise InputError(f"detection targets[{i}]: 'boxes' need finite values and width, height >= 0 "
                             "(center_x, center_y, width, height)")
        labels.append(lab.astype(np.int32))
        boxes.append(box)
    n = max(1, max(len(lab) for lab in labels))
    out_l = np.full((len(labels), n), -1, np.int32)
    out_b = np.zeros((len(labels), n, 4), np.float32)
    for i, (lab, box) in enumerate(zip(labels, boxes)):
        out_l[i, :len(lab)], out_b[i, :len(lab)] = lab, box
    return {"class_labels": out_l, "boxes": out_b}


def _numpy(x):
    if hasattr(x, "detach"):  # a torch tensor
        x = x.detach().cpu().numpy()
    elif not isinstance(x, np.ndarray) and hasattr(x, "numpy"):
        x = x.numpy()
    return x


def check_padded_targets(y, num_classes):
    if not isinstance(y, dict) or "class_labels" not in y or "boxes" not in y:
        raise InputError("ObjectDetector: fit / evaluate targets must be Transformers' labels (a list of "
                         "{'class_labels', 'boxes'} dicts, one per image) or pad_targets' dict; got "
                         f"{type(y).__name__}{' keys ' + str(sorted(y)) if isinstance(y, dict) else ''}")


# --- numpy box helpers (the matcher's cost) -------------------------------------------------------
def _corners(b):
    return np.concatenate([b[..., :2] - 0.5 * b[..., 2:], b[..., :2] + 0.5 * b[..., 2:]], axis=-1)


def _pairwise_giou(a, b):
    """(n, 4) x (m, 4) corner boxes -> (n, m) generalized IoU."""
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    lt, rb = np.maximum(a[:, None, :2], b[None, :, :2]), np.minimum(a[:, None, 2:], b[None, :, 2:])
    wh = np.clip(rb - lt, 0, None)
    inter = wh[..., 0] * wh[..., 1]
    union = area_a[:, None] + area_b[None] - inter
    with np.errstate(divide="ignore", invalid="ignore"):
        iou = inter / union
        lt, rb = np.minimum(a[:, None, :2], b[None, :, :2]), np.maximum(a[:, None, 2:], b[None, :, 2:])
        wh = np.clip(rb - lt, 0, None)
        hull = wh[..., 0] * wh[..., 1]
        return iou - (hull - union) / hull


def hungarian_match(logits, pred_boxes, class_labels, boxes, class_cost, bbox_cost, giou_cost, focal):
    """Per image, the slot matched to each target: (images, max_n) int32, -1 on padding (and on
    targets left without a slot). Numpy in, numpy out."""
    try:
        from scipy.optimize import linear_sum_assignment
    except ImportError as e:
        raise ImportError("the detection loss's Hungarian matching needs scipy: pip install 'keras-models[detection]' "
                          "(or scipy)") from e

    logits = np.asarray(logits, np.float32)
    pred_boxes = np.asarray(pred_boxes, np.float32)
    class_labels = np.asarray(class_labels).astype(np.int64)
    boxes = np.asarray(boxes, np.float32)
    out = np.full(class_labels.shape, -1, np.int32)
    for i in range(len(logits)):
        keep = np.nonzero(class_labels[i] >= 0)[0]
        if not len(keep):
            continue
        lab, tgt = class_labels[i, keep], boxes[i, keep]
        z = logits[i]
        if focal:
            with np.errstate(over="ignore"):
                p = (1.0 / (1.0 + np.exp(-z))).astype(np.float32)
            neg = 0.75 * p ** 2 * -np.log(1 - p + 1e-8)
            pos = 0.25 * (1 - p) ** 2 * -np.log(p + 1e-8)
            cls = pos[:, lab] - neg[:, lab]
        else:
            e = np.exp(z - z.max(axis=-1, keepdims=True))
            cls = -(e / e.sum(axis=-1, keepdims=True))[:, lab]
        l1 = np.abs(pred_boxes[i][:, None, :] - tgt[None]).sum(-1)
        giou = -_pairwise_giou(_corners(pred_boxes[i]), _corners(tgt))
        cost = (np.float32(bbox_cost) * l1 + np.float32(class_cost) * cls + np.float32(giou_cost) * giou)
        big = np.finfo(np.float32).max
        cost = np.nan_to_num(cost.astype(np.float32), nan=big, posinf=big, neginf=big)
        rows, cols = linear_sum_assignment(cost)
        out[i, keep[cols]] = rows
    return out


def _host_match(logits, pred_boxes, class_labels, boxes, costs, focal):
    """hungarian_match on traced or eager tensors of any backend, as a constant (images, max_n)."""
    import keras
    from keras import ops

    logits, pred_boxes = ops.stop_gradient(logits), ops.stop_gradient(pred_boxes)
    args = (costs["class_cost"], costs["bbox_cost"], costs["giou_cost"], focal)

    def fn(a, b, c, d):
        return hungarian_match(a, b, c, d, *args)

    backend = keras.backend.backend()
    if backend == "jax":
        import jax

        shape = jax.ShapeDtypeStruct(class_labels.shape, np.int32)
        return jax.pure_callback(fn, shape, logits, pred_boxes, class_labels, boxes)
    if backend == "tensorflow":
        import tensorflow as tf

        out = tf.numpy_function(fn, [logits, pred_boxes, class_labels, boxes], tf.int32, stateful=False)
        out.set_shape(class_labels.shape)
        return out
    if backend == "torch":
        idx = fn(*(ops.convert_to_numpy(t) for t in (logits, pred_boxes, class_labels, boxes)))
        return ops.convert_to_tensor(idx)
    raise ConfigError(f"detection loss: backend {backend!r} is not supported (jax, tensorflow, torch)")


# --- the loss (Keras ops) -------------------------------------------------------------------------
def _giou_pairs(a, b):
    """Elementwise GIoU of (..., 4) center boxes (Keras ops)."""
    from keras import ops

    def corners(x):
        return x[..., :2] - 0.5 * x[..., 2:], x[..., :2] + 0.5 * x[..., 2:]

    (a0, a1), (b0, b1) = corners(a), corners(b)
    area_a = ops.prod(a1 - a0, axis=-1)
    area_b = ops.prod(b1 - b0, axis=-1)
    inter = ops.prod(ops.maximum(ops.minimum(a1, b1) - ops.maximum(a0, b0), 0.0), axis=-1)
    union = area_a + area_b - inter
    hull = ops.prod(ops.maximum(ops.maximum(a1, b1) - ops.minimum(a0, b0), 0.0), axis=-1)
    return inter / union - (hull - union) / hull


def _single_loss(logits, pred_boxes, labels, boxes, num_boxes, costs, focal, num_classes):
    from keras import ops

    dtype = logits.dtype
    q = logits.shape[1]
    idx = _host_match(logits, pred_boxes, labels, boxes, costs, focal)
    idx = ops.cast(idx, "int32")
    matched = ops.cast(idx >= 0, dtype)  # (b, n)
    assign = ops.one_hot(ops.where(idx >= 0, idx, 0), q, dtype=dtype) * matched[..., None]  # (b, n, q)
    safe_labels = ops.where(labels >= 0, labels, 0)
    onehot_labels = ops.one_hot(safe_labels, num_classes, dtype=dtype)  # (b, n, c)
    target = ops.einsum("bnq,bnc->bqc", assign, onehot_labels)  # (b, q, c); all 0: "no object"
    losses = {}
    if focal:
        prob = ops.sigmoid(logits)
        ce = ops.maximum(logits, 0.0) - logits * target + ops.log1p(ops.exp(-ops.abs(logits)))
        p_t = prob * target + (1 - prob) * (1 - target)
        alpha = costs["focal_alpha"]
        loss = ce * (1 - p_t) ** 2
        if alpha >= 0:
            loss = (alpha * target + (1 - alpha) * (1 - target)) * loss
        losses["loss_ce"] = ops.sum(loss) / num_boxes
        card = ops.sum(ops.cast(ops.max(prob, axis=-1) > 0.5, dtype), axis=1)
    else:
        no_object = 1.0 - ops.sum(target, axis=-1, keepdims=True)
        full = ops.concatenate([target, no_object], axis=-1)  # (b, q, c + 1) one-hot
        weight = 1.0 + (costs["eos_coefficient"] - 1.0) * no_object[..., 0]  # (b, q)
        nll = -ops.sum(full * ops.log_softmax(logits, axis=-1), axis=-1)
        losses["loss_ce"] = ops.sum(weight * nll) / ops.sum(weight)
        card = ops.sum(ops.cast(ops.argmax(logits, axis=-1) != logits.shape[-1] - 1, dtype), axis=1)
    n_targets = ops.sum(ops.cast(labels >= 0, dtype), axis=1)
    losses["cardinality_error"] = ops.stop_gradient(ops.mean(ops.abs(card - n_targets)))
    src = ops.einsum("bnq,bqd->bnd", assign, pred_boxes)
    # unmatched / padded rows: a unit box against a unit box (GIoU 1), then masked out
    unit = ops.convert_to_tensor(np.array([0.5, 0.5, 1.0, 1.0], np.float32), dtype=dtype)
    m4 = matched[..., None]
    src_safe = src * m4 + unit * (1 - m4)
    tgt_safe = ops.cast(boxes, dtype) * m4 + unit * (1 - m4)
    losses["loss_bbox"] = ops.sum(ops.abs(src - ops.cast(boxes, dtype)) * m4) / num_boxes
    losses["loss_giou"] = ops.sum((1.0 - _giou_pairs(src_safe, tgt_safe)) * matched) / num_boxes
    return losses


def detection_loss(outputs, targets, costs, focal, num_classes):
    """``(loss, loss_dict)`` as Transformers' object-detection losses compute them.

    ``outputs``: ``logits`` (b, q, classes [+ 1]), ``pred_boxes`` (b, q, 4), and, for the
    auxiliary loss, ``auxiliary_logits`` / ``auxiliary_pred_boxes`` (layers - 1, b, q, ...);
    ``targets``: :func:`pad_targets`' dict; ``costs``: :func:`loss_config_from_hf`'s dict;
    ``focal``: the sigmoid focal kind (no "no object" class)."""
    from keras import ops

    logits = outputs["logits"]
    labels = ops.cast(ops.convert_to_tensor(targets["class_labels"]), "int32")
    boxes = ops.convert_to_tensor(targets["boxes"])
    if len(labels.shape) != 2 or len(boxes.shape) != 3 or boxes.shape[-1] != 4:
        raise InputError(f"detection targets: class_labels must be (images, n) and boxes (images, n, 4); got "
                         f"{tuple(labels.shape)} and {tuple(boxes.shape)}")
    num_boxes = ops.maximum(ops.sum(ops.cast(labels >= 0, logits.dtype)), 1.0)
    losses = _single_loss(logits, outputs["pred_boxes"], labels, boxes, num_boxes, costs, focal, num_classes)
    if costs.get("auxiliary_loss") and "auxiliary_logits" in outputs:
        aux_logits, aux_boxes = outputs["auxiliary_logits"], outputs["auxiliary_pred_boxes"]
        for i in range(aux_logits.shape[0]):
            aux = _single_loss(aux_logits[i], aux_boxes[i], labels, boxes, num_boxes, costs, focal, num_classes)
            losses.update({f"{k}_{i}": v for k, v in aux.items()})
    weights = {"loss_ce": 1.0, "loss_bbox": costs["bbox_loss_coefficient"],
               "loss_giou": costs["giou_loss_coefficient"]}
    total = 0.0
    for k, v in losses.items():
        base = k.rsplit("_", 1)[0] if k[-1].isdigit() else k
        if base in weights:
            total = total + weights[base] * v
    return total, losses


__all__ = ["pad_targets", "hungarian_match", "detection_loss", "loss_config_from_hf", "LOSS_KEYS"]

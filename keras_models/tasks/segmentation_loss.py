"""The universal segmenters' set-prediction training loss (MaskFormer, Mask2Former): a Hungarian
matching of query masks to target masks, then a class loss and two mask losses on the matched pairs
(the loss Transformers computes when ``MaskFormerForInstanceSegmentation`` /
``Mask2FormerForUniversalSegmentation`` are given ``mask_labels`` and ``class_labels``).

Targets are Transformers' labels: ``mask_labels``, one (n_i, H, W) array of 0/1 masks per image,
and ``class_labels``, one (n_i,) int array per image (n_i may be 0: an image with no segments).
:func:`pad_segmentation_targets` turns them into arrays Keras can batch: ``class_labels``
(images, max_n) padded with -1 and ``mask_labels`` (images, max_n, H, W) zero-padded (masks of
different sizes are zero-padded to the largest, as Transformers pads them).

The matching cost (class: ``-softmax(p)[target class]``; mask and dice costs, see the kinds) is
computed with Keras ops on the predictions' values (no gradient); only the assignment itself,
``scipy.optimize.linear_sum_assignment`` per image, runs on the host: ``jax.pure_callback`` under
JAX, ``tf.numpy_function`` under TensorFlow, numpy on eager PyTorch values. It returns, for every
target, the query matched to it (-1: padding, or left without a query). The losses are Keras ops on
those constant indices, so gradients flow through the predictions only.

Two kinds, as Transformers' families compute them:

* ``"maskformer"``: the targets are nearest-resized to the mask logits' size for the matching cost
  (sigmoid focal, alpha 0.25, gamma 2, averaged over pixels, and dice); the losses upsample each
  matched mask logit map (bilinear, align_corners=False) to the target's size: ``loss_mask`` is the
  sigmoid focal loss averaged over pixels, ``loss_dice`` the dice loss, both summed over matched
  pairs and divided by the number of target masks in the batch (at least 1).
* ``"mask2former"`` (point sampling): the matching cost reads ``train_num_points`` random points per
  image (bilinear, ``grid_sample`` with align_corners=False and zero padding) of every predicted and
  target mask: sigmoid cross-entropy and dice costs. The losses read, per matched pair,
  ``importance_sample_ratio * train_num_points`` of the most uncertain (smallest ``|logit|``) of
  ``oversample_ratio * train_num_points`` random points, plus the rest drawn at random:
  ``loss_mask`` the sigmoid cross-entropy, ``loss_dice`` the dice loss on those points. Points are
  drawn with ``keras.random`` (a seed generator); :func:`segmentation_loss` also takes them as an
  input (``points``) so a run can be replayed exactly.

Both add ``loss_cross_entropy``: cross-entropy of every query's class logits against its matched
target's class or "no object" (the last class), "no object" weighted ``no_object_weight``
(Transformers' ``eos_coef``), averaged with those weights. With auxiliary predictions (one per
decoder layer but the last) every layer is matched and scored again (``loss_mask_0`` ...).

The returned ``loss_dict`` holds the terms already multiplied by their weights (``mask_weight``,
``dice_weight``, ``cross_entropy_weight`` / ``class_weight``), as Transformers'
``get_loss_dict`` returns them, and ``loss`` is their sum.
"""

import numpy as np

from keras_models.errors import ConfigError, InputError

# Transformers' config fields of the loss and their defaults, per kind
DEFAULTS = {
    "maskformer": dict(no_object_weight=0.1, cross_entropy_weight=1.0, mask_weight=20.0, dice_weight=1.0),
    "mask2former": dict(no_object_weight=0.1, class_weight=2.0, mask_weight=5.0, dice_weight=5.0,
                        train_num_points=12544, oversample_ratio=3.0, importance_sample_ratio=0.75),
}
INT_KEYS = ("train_num_points",)


def loss_config_from_hf(hf, kind):
    """The loss fields of a Transformers config.json for ``kind`` (absent ones: its defaults)."""
    if kind not in DEFAULTS:
        raise ConfigError(f"segmentation loss: kind {kind!r} is not one of {sorted(DEFAULTS)}")
    out = {}
    for k, default in DEFAULTS[kind].items():
        v = hf.get(k, default)
        v = default if v is None else v
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise ConfigError(f"config.json: {k}={v!r} must be a number")
        if k in INT_KEYS and (int(v) != v or v < 1):
            raise ConfigError(f"config.json: {k}={v!r} must be a positive integer")
        out[k] = v
    if kind == "mask2former":
        if out["oversample_ratio"] < 1:
            raise ConfigError(f"config.json: oversample_ratio={out['oversample_ratio']!r} must be at least 1")
        if not 0 <= out["importance_sample_ratio"] <= 1:
            raise ConfigError(f"config.json: importance_sample_ratio={out['importance_sample_ratio']!r} must lie "
                              "in [0, 1]")
    cost_class = 1.0 if kind == "maskformer" else out["class_weight"]
    if cost_class == 0 and out["mask_weight"] == 0 and out["dice_weight"] == 0:
        raise ConfigError("config.json: the class, mask_weight and dice_weight costs are all 0; the matcher needs one")
    return out


def checkpoint_no_object_weight(folder):
    """The "no object" class weight a Transformers checkpoint stores (``criterion.empty_weight``'s
    last value; Transformers' loss reads it over config.json's ``no_object_weight``), or None."""
    import json
    from pathlib import Path

    folder = Path(folder)
    index = folder / "model.safetensors.index.json"
    name = "criterion.empty_weight"
    if index.is_file():
        shard = json.loads(index.read_text()).get("weight_map", {}).get(name)
        path = folder / shard if shard else None
    else:
        path = folder / "model.safetensors"
    if path is None or not path.is_file():
        return None
    from safetensors import safe_open

    with safe_open(str(path), framework="numpy") as f:
        if name not in f.keys():
            return None
        # float32 in the file: its shortest decimal (0.1, not 0.10000000149...)
        return float(f"{float(np.asarray(f.get_tensor(name), np.float32).reshape(-1)[-1]):.7g}")


def point_counts(config):
    """(points per matched pair, oversampled points, uncertain points, random points) of the
    Mask2Former kind, as Transformers rounds them."""
    n = int(config["train_num_points"])
    uncertain = int(config["importance_sample_ratio"] * n)
    return n, int(n * config["oversample_ratio"]), uncertain, n - uncertain


# --- targets -------------------------------------------------------------------------------------
def is_label_pair(y):
    return isinstance(y, dict) and "mask_labels" in y and "class_labels" in y and \
        isinstance(y["mask_labels"], (list, tuple))


def _numpy(x):
    if hasattr(x, "detach"):  # a torch tensor
        x = x.detach().cpu().numpy()
    elif not isinstance(x, np.ndarray) and hasattr(x, "numpy"):
        x = x.numpy()
    return np.asarray(x)


def pad_segmentation_targets(mask_labels, class_labels=None, num_classes=None):
    """Transformers' ``mask_labels`` (list of (n_i, H, W)) and ``class_labels`` (list of (n_i,)) ->
    ``{"mask_labels": (images, max_n, H, W) float32, "class_labels": (images, max_n) int32, -1 on
    padding}``; max_n is at least 1. Also takes one dict ``{"mask_labels": [...], "class_labels":
    [...]}``."""
    if class_labels is None and isinstance(mask_labels, dict):
        if not is_label_pair(mask_labels):
            raise InputError("segmentation targets: expected {'mask_labels': [(n, H, W) per image], 'class_labels': "
                             f"[(n,) per image]}}; got keys {sorted(mask_labels)}")
        mask_labels, class_labels = mask_labels["mask_labels"], mask_labels["class_labels"]
    if not isinstance(mask_labels, (list, tuple)) or not isinstance(class_labels, (list, tuple)):
        raise InputError("segmentation targets: mask_labels and class_labels must be lists with one array per image "
                         f"((n, H, W) masks, (n,) class ids); got {type(mask_labels).__name__} and "
                         f"{type(class_labels).__name__}")
    if len(mask_labels) != len(class_labels) or not mask_labels:
        raise InputError(f"segmentation targets: mask_labels has {len(mask_labels)} images and class_labels "
                         f"{len(class_labels)}; one entry per image expected in both")
    masks, labels = [], []
    for i, (m, c) in enumerate(zip(mask_labels, class_labels)):
        m = _numpy(m).astype(np.float32)
        c = _numpy(c).reshape(-1)
        if m.ndim != 3 or m.shape[0] != len(c):
            raise InputError(f"segmentation targets: mask_labels[{i}] must be ({len(c)}, height, width) for "
                             f"{len(c)} class_labels; got shape {m.shape}")
        if c.size and not np.issubdtype(c.dtype, np.integer):
            raise InputError(f"segmentation targets: class_labels[{i}] must be integers; got {c.dtype}")
        if c.size and (c.min() < 0 or (num_classes is not None and c.max() >= num_classes)):
            raise InputError(f"segmentation targets: class_labels[{i}] must lie in [0, {num_classes}); got "
                             f"{c.min()}..{c.max()}")
        if m.size and not np.isfinite(m).all():
            raise InputError(f"segmentation targets: mask_labels[{i}] has non-finite values")
        masks.append(m)
        labels.append(c.astype(np.int32))
    n = max(1, max(len(c) for c in labels))
    h, w = max(m.shape[1] for m in masks), max(m.shape[2] for m in masks)
    out_m = np.zeros((len(masks), n, h, w), np.float32)
    out_c = np.full((len(masks), n), -1, np.int32)
    for i, (m, c) in enumerate(zip(masks, labels)):
        out_m[i, :m.shape[0], :m.shape[1], :m.shape[2]] = m
        out_c[i, :len(c)] = c
    return {"mask_labels": out_m, "class_labels": out_c}


def check_padded_targets(y, who):
    if not isinstance(y, dict) or "mask_labels" not in y or "class_labels" not in y:
        raise InputError(f"{who}: fit / evaluate targets must be Transformers' labels ({{'mask_labels': [(n, H, W) per "
                         "image], 'class_labels': [(n,) per image]}) or pad_segmentation_targets' dict; got "
                         f"{type(y).__name__}{' keys ' + str(sorted(y)) if isinstance(y, dict) else ''}")


# --- matching (host) -----------------------------------------------------------------------------
def assign(cost, class_labels):
    """Per image, the query matched to each target: (images, max_n) int32, -1 on padding (and on
    targets left without a query). ``cost``: (images, queries, max_n). Numpy in, numpy out."""
    try:
        from scipy.optimize import linear_sum_assignment
    except ImportError as e:
        raise ImportError("the segmentation loss's Hungarian matching needs scipy: pip install scipy") from e

    cost = np.asarray(cost, np.float32)
    class_labels = np.asarray(class_labels)
    out = np.full(class_labels.shape, -1, np.int32)
    big = np.finfo(np.float32).max
    for i in range(len(cost)):
        keep = np.nonzero(class_labels[i] >= 0)[0]
        if not len(keep):
            continue
        c = np.nan_to_num(cost[i][:, keep], nan=big, posinf=big, neginf=big)
        rows, cols = linear_sum_assignment(c)
        out[i, keep[cols]] = rows
    return out


def _host_assign(cost, class_labels):
    import keras
    from keras import ops

    cost = ops.stop_gradient(cost)
    backend = keras.backend.backend()
    if backend == "jax":
        import jax

        return jax.pure_callback(assign, jax.ShapeDtypeStruct(class_labels.shape, np.int32), cost, class_labels)
    if backend == "tensorflow":
        import tensorflow as tf

        out = tf.numpy_function(assign, [cost, class_labels], tf.int32, stateful=False)
        out.set_shape(class_labels.shape)
        return out
    if backend == "torch":
        return ops.convert_to_tensor(assign(ops.convert_to_numpy(cost), ops.convert_to_numpy(class_labels)))
    raise ConfigError(f"segmentation loss: backend {backend!r} is not supported (jax, tensorflow, torch)")


# --- Keras-ops helpers ---------------------------------------------------------------------------
def _softplus(x):
    """BCE-with-logits against 0 (``softplus(x)``), stable; against 1 it is ``softplus(-x)``."""
    from keras import ops

    return ops.maximum(x, 0.0) + ops.log1p(ops.exp(-ops.abs(x)))


def sample_points(maps, points):
    """``grid_sample`` (bilinear, align_corners=False, zero padding) of (B, M, H, W) maps at
    (B, M, P, 2) points ((x, y) in [0, 1]) -> (B, M, P)."""
    from keras import ops

    h, w = int(maps.shape[-2]), int(maps.shape[-1])
    flat = ops.reshape(maps, (ops.shape(maps)[0], ops.shape(maps)[1], h * w))
    x = points[..., 0] * w - 0.5
    y = points[..., 1] * h - 0.5
    x0, y0 = ops.floor(x), ops.floor(y)
    out = 0.0
    for yy, wy in ((y0, 1.0 - (y - y0)), (y0 + 1.0, y - y0)):
        for xx, wx in ((x0, 1.0 - (x - x0)), (x0 + 1.0, x - x0)):
            valid = (xx >= 0) & (xx <= w - 1) & (yy >= 0) & (yy <= h - 1)
            idx = ops.cast(ops.clip(yy, 0, h - 1) * w + ops.clip(xx, 0, w - 1), "int32")
            vals = ops.take_along_axis(flat, idx, axis=2)
            out = out + ops.where(valid, vals * (wx * wy), ops.zeros_like(vals))
    return out


def _nearest_rows(n_in, n_out):
    return np.minimum(np.floor(np.arange(n_out, dtype=np.float32) * np.float32(n_in / n_out)).astype("int32"),
                      n_in - 1)


def _gather_queries(x, idx):
    """x (b, q, ...) and idx (b, n) -> (b, n, ...) (index 0 where idx is -1)."""
    from keras import ops

    safe = ops.where(idx >= 0, idx, 0)
    extra = len(x.shape) - 2
    index = ops.reshape(safe, tuple(ops.shape(safe)) + (1,) * extra)
    return ops.take_along_axis(x, index, axis=1) if extra == 0 else \
        ops.take_along_axis(x, ops.zeros_like(x[:, :1], dtype="int32") + index, axis=1)


def _class_cost(class_logits, labels, num_classes):
    from keras import ops

    probs = ops.softmax(class_logits, axis=-1)
    onehot = ops.one_hot(ops.where(labels >= 0, labels, 0), num_classes + 1, dtype=class_logits.dtype)
    return -ops.einsum("bqc,bnc->bqn", probs, onehot)


def _pairwise_dice(logits, targets):
    """(b, q, P) logits, (b, n, P) targets -> (b, q, n)."""
    from keras import ops

    s = ops.sigmoid(logits)
    num = 2.0 * ops.einsum("bqp,bnp->bqn", s, targets)
    den = ops.sum(s, axis=-1)[:, :, None] + ops.sum(targets, axis=-1)[:, None, :]
    return 1.0 - (num + 1.0) / (den + 1.0)


def _dice(logits, targets):
    """(b, n, P) pairs -> (b, n)."""
    from keras import ops

    s = ops.sigmoid(logits)
    return 1.0 - (2.0 * ops.sum(s * targets, axis=-1) + 1.0) / (ops.sum(s, -1) + ops.sum(targets, -1) + 1.0)


def _cross_entropy(class_logits, idx, labels, no_object_weight):
    from keras import ops

    dtype = class_logits.dtype
    q, c1 = class_logits.shape[1], class_logits.shape[2]
    matched = ops.cast(idx >= 0, dtype)
    assign_qn = ops.one_hot(ops.where(idx >= 0, idx, 0), q, dtype=dtype) * matched[..., None]  # (b, n, q)
    onehot = ops.one_hot(ops.where(labels >= 0, labels, 0), c1 - 1, dtype=dtype)  # (b, n, c)
    target = ops.einsum("bnq,bnc->bqc", assign_qn, onehot)
    no_object = 1.0 - ops.sum(target, axis=-1, keepdims=True)
    full = ops.concatenate([target, no_object], axis=-1)
    weight = 1.0 + (no_object_weight - 1.0) * no_object[..., 0]
    nll = -ops.sum(full * ops.log_softmax(class_logits, axis=-1), axis=-1)
    return ops.sum(weight * nll) / ops.sum(weight)


def _maskformer_single(class_logits, mask_logits, labels, masks, num_masks, config):
    from keras import ops

    from keras_models.models.depth.layers import resize

    dtype = mask_logits.dtype
    h, w = int(mask_logits.shape[2]), int(mask_logits.shape[3])
    big_h, big_w = int(masks.shape[2]), int(masks.shape[3])
    num_classes = class_logits.shape[-1] - 1
    # matching cost: targets nearest-resized to the logits' size
    small = ops.take(ops.take(masks, ops.convert_to_tensor(_nearest_rows(big_h, h)), axis=2),
                     ops.convert_to_tensor(_nearest_rows(big_w, w)), axis=3)
    b = ops.shape(mask_logits)[0]
    x = ops.stop_gradient(ops.reshape(mask_logits, (b, mask_logits.shape[1], h * w)))
    t = ops.reshape(small, (b, masks.shape[1], h * w))
    p = ops.sigmoid(x)
    pos = 0.25 * (1 - p) ** 2 * _softplus(-x)
    neg = 0.75 * p ** 2 * _softplus(x)
    cost_mask = (ops.einsum("bqp,bnp->bqn", pos, t) + ops.einsum("bqp,bnp->bqn", neg, 1.0 - t)) / (h * w)
    cost = (config["mask_weight"] * cost_mask + _class_cost(ops.stop_gradient(class_logits), labels, num_classes)
            + config["dice_weight"] * _pairwise_dice(x, t))
    idx = ops.cast(_host_assign(cost, labels), "int32")
    matched = ops.cast(idx >= 0, dtype)
    # losses: each matched logit map upsampled to the targets' size
    pred = _gather_queries(mask_logits, idx)  # (b, n, h, w)
    pred = ops.transpose(resize(ops.transpose(pred, (0, 2, 3, 1)), big_h, big_w, "bilinear"), (0, 3, 1, 2))
    pred = ops.reshape(pred, (b, masks.shape[1], big_h * big_w))
    tgt = ops.reshape(masks, (b, masks.shape[1], big_h * big_w))
    prob = ops.sigmoid(pred)
    ce = ops.maximum(pred, 0.0) - pred * tgt + ops.log1p(ops.exp(-ops.abs(pred)))
    p_t = prob * tgt + (1 - prob) * (1 - tgt)
    focal = (0.25 * tgt + 0.75 * (1 - tgt)) * ce * (1 - p_t) ** 2
    return {"loss_mask": ops.sum(ops.mean(focal, axis=-1) * matched) / num_masks,
            "loss_dice": ops.sum(_dice(pred, tgt) * matched) / num_masks,
            "loss_cross_entropy": _cross_entropy(class_logits, idx, labels, config["no_object_weight"])}


def draw_points(config, images, targets, seed=None):
    """One call's random points of the Mask2Former kind: ``{"matcher": (images, P, 2),
    "oversampled": (images, targets, P * oversample_ratio, 2), "random": (images, targets,
    P - uncertain, 2)}``, uniform in [0, 1) (``keras.random``, ``seed`` an int or SeedGenerator)."""
    import keras

    n, over, _, rand = point_counts(config)
    u = keras.random.uniform
    return {"matcher": u((images, n, 2), seed=seed), "oversampled": u((images, targets, over, 2), seed=seed),
            "random": u((images, targets, rand, 2), seed=seed)}


def _mask2former_single(class_logits, mask_logits, labels, masks, num_masks, config, points):
    from keras import ops

    dtype = mask_logits.dtype
    num_classes = class_logits.shape[-1] - 1
    _, _, uncertain, n_random = point_counts(config)
    x = ops.stop_gradient(mask_logits)
    match_pts = ops.cast(points["matcher"], dtype)[:, None]  # (b, 1, P, 2)
    px = sample_points(x, ops.zeros_like(x[:, :, :1, :1]) + match_pts)  # (b, q, P)
    pt = sample_points(masks, ops.zeros_like(masks[:, :, :1, :1]) + match_pts)  # (b, n, P)
    n_pts = px.shape[-1]
    cost_mask = (ops.einsum("bqp,bnp->bqn", _softplus(-px) / n_pts, pt)
                 + ops.einsum("bqp,bnp->bqn", _softplus(px) / n_pts, 1.0 - pt))
    cost = (config["mask_weight"] * cost_mask
            + config["class_weight"] * _class_cost(ops.stop_gradient(class_logits), labels, num_classes)
            + config["dice_weight"] * _pairwise_dice(px, pt))
    idx = ops.cast(_host_assign(cost, labels), "int32")
    matched = ops.cast(idx >= 0, dtype)
    pred = _gather_queries(mask_logits, idx)  # (b, n, h, w)
    # importance sampling: the most uncertain of the oversampled points, then random ones
    over = ops.cast(points["oversampled"], dtype)
    parts = []
    if uncertain > 0:
        unc = -ops.abs(sample_points(ops.stop_gradient(pred), over))  # (b, n, over)
        _, top = ops.top_k(unc, uncertain)
        parts.append(ops.stack([ops.take_along_axis(over[..., 0], top, axis=-1),
                                ops.take_along_axis(over[..., 1], top, axis=-1)], axis=-1))
    if n_random > 0:
        parts.append(ops.cast(points["random"], dtype))
    pts = ops.stop_gradient(parts[0] if len(parts) == 1 else ops.concatenate(parts, axis=2))
    logits_at = sample_points(pred, pts)
    labels_at = ops.stop_gradient(sample_points(masks, pts))
    ce = ops.mean(ops.maximum(logits_at, 0.0) - logits_at * labels_at + ops.log1p(ops.exp(-ops.abs(logits_at))), -1)
    return {"loss_mask": ops.sum(ce * matched) / num_masks,
            "loss_dice": ops.sum(_dice(logits_at, labels_at) * matched) / num_masks,
            "loss_cross_entropy": _cross_entropy(class_logits, idx, labels, config["no_object_weight"])}


def segmentation_loss(outputs, targets, config, kind, points=None, seed=None):
    """``(loss, loss_dict)`` as Transformers' universal segmenters compute them.

    ``outputs``: ``class_queries_logits`` (b, q, classes + 1), ``masks_queries_logits`` (b, q, h, w)
    and, for the auxiliary losses, ``auxiliary_class_queries_logits`` /
    ``auxiliary_masks_queries_logits`` (layers - 1, b, q, ...); ``targets``:
    :func:`pad_segmentation_targets`' dict; ``config``: :func:`loss_config_from_hf`'s dict; ``kind``:
    ``"maskformer"`` or ``"mask2former"``. Mask2Former: ``points``, one :func:`draw_points` dict per
    scored layer (the last layer first, then the auxiliary ones in order), else drawn with ``seed``."""
    from keras import ops

    if kind not in DEFAULTS:
        raise ConfigError(f"segmentation loss: kind {kind!r} is not one of {sorted(DEFAULTS)}")
    labels = ops.cast(ops.convert_to_tensor(targets["class_labels"]), "int32")
    masks = ops.convert_to_tensor(targets["mask_labels"])
    if len(labels.shape) != 2 or len(masks.shape) != 4 or masks.shape[1] != labels.shape[1]:
        raise InputError(f"segmentation targets: class_labels must be (images, n) and mask_labels (images, n, height, "
                         f"width); got {tuple(labels.shape)} and {tuple(masks.shape)}")
    class_logits, mask_logits = outputs["class_queries_logits"], outputs["masks_queries_logits"]
    masks = ops.cast(masks, mask_logits.dtype)
    num_masks = ops.maximum(ops.sum(ops.cast(labels >= 0, mask_logits.dtype)), 1.0)
    layers = [(class_logits, mask_logits)]
    if "auxiliary_class_queries_logits" in outputs:
        aux_c, aux_m = outputs["auxiliary_class_queries_logits"], outputs["auxiliary_masks_queries_logits"]
        layers += [(aux_c[i], aux_m[i]) for i in range(aux_c.shape[0])]
    if kind == "mask2former" and points is not None and len(points) != len(layers):
        raise InputError(f"segmentation loss: points has {len(points)} entries for {len(layers)} scored layers (the "
                         "last one, then each auxiliary one)")
    losses = {}
    for i, (c, m) in enumerate(layers):
        if kind == "maskformer":
            part = _maskformer_single(c, m, labels, masks, num_masks, config)
        else:
            pts = points[i] if points is not None else draw_points(config, ops.shape(m)[0], masks.shape[1], seed)
            part = _mask2former_single(c, m, labels, masks, num_masks, config, pts)
        suffix = "" if i == 0 else f"_{i - 1}"
        losses.update({k + suffix: v for k, v in part.items()})
    weights = {"loss_cross_entropy": config.get("cross_entropy_weight", config.get("class_weight")),
               "loss_mask": config["mask_weight"], "loss_dice": config["dice_weight"]}
    for k in losses:
        base = k.rsplit("_", 1)[0] if k[-1].isdigit() else k
        losses[k] = losses[k] * weights[base]
    total = 0.0
    for v in losses.values():
        total = total + v
    return total, losses


__all__ = ["pad_segmentation_targets", "assign", "segmentation_loss", "loss_config_from_hf", "draw_points",
           "sample_points", "DEFAULTS"]

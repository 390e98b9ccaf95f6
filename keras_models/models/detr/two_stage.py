"""Two-stage Deformable DETR / DETA: the object queries come from the encoder, not from a table.

Every encoder token proposes a box: a fixed-size box (``0.05 * 2**level`` wide and high) at its
cell's centre over the valid part of its level (:func:`encoder_proposals`), moved by the box head
``decoder.bbox_embed.{decoder_layers}`` and scored by the class head
``decoder.class_embed.{decoder_layers}`` (column 0). Tokens on padding, and proposals outside
(0.01, 0.99), are masked (their logits +inf, their features 0).

The ``two_stage_num_proposals`` best become the decoder's queries: their boxes the first references,
the sine embedding of the boxes (:func:`proposal_positions`, through ``pos_trans`` + LayerNorm) the
(position | content) halves; DETA adds the LayerNormed ``pix_trans`` projection of the chosen
tokens' features to the content half.

Selection (:func:`select_proposals`): the top scores (Deformable DETR), or with DETA's
``assign_first_stage`` per-level NMS (:func:`level_nms`): per level the 1000 best tokens by
sigmoid score (all of them when the level has fewer; Transformers then tops its 1000 up with
zero-score ties from other levels, an order torch leaves undefined, which changes nothing unless
such a low-score token survives among a level's best), greedy NMS at IoU 0.9 within each level
(boxes clipped to [0, 1]), best first; then at most ``proposals // levels`` per level in that order,
topped up with the next kept ones. Fewer kept proposals than needed: the plain top scores, as
Transformers falls back. All of it has static shapes (masks, cumulative sums and ``top_k`` instead
of data-dependent lists), so it compiles under JAX and TensorFlow.
"""

import math

import keras
import numpy as np
from keras import ops

from keras_models.models.detr.layers import _frequencies, _sin_cos

PRE_NMS_TOPK = 1000
NMS_IOU = 0.9


def encoder_proposals(memory, mask, shapes):
    """memory (b, tokens, d), mask (b, tokens) 1 on real pixels, shapes the levels' (h, w) ->
    (features (b, tokens, d) zeroed where masked, proposals (b, tokens, 4) as inverse-sigmoid
    (cx, cy, w, h), +inf where masked)."""
    b = ops.shape(memory)[0]
    boxes, start = [], 0
    for level, (h, w) in enumerate(shapes):
        m = ops.reshape(mask[:, start:start + h * w], (b, h, w))
        valid_h = ops.sum(m[:, :, 0], axis=1)[:, None, None]
        valid_w = ops.sum(m[:, 0, :], axis=1)[:, None, None]
        ys, xs = np.meshgrid(np.arange(h, dtype=np.float32), np.arange(w, dtype=np.float32), indexing="ij")
        x = (ops.convert_to_tensor(xs)[None] + 0.5) / valid_w
        y = (ops.convert_to_tensor(ys)[None] + 0.5) / valid_h
        size = ops.ones_like(x) * np.float32(0.05 * 2.0 ** level)
        boxes.append(ops.reshape(ops.stack([x, y, size, size], axis=-1), (b, h * w, 4)))
        start += h * w
    boxes = ops.concatenate(boxes, axis=1)
    keep = ops.all((boxes > 0.01) & (boxes < 0.99), axis=-1) & (mask > 0)
    logits = ops.where(keep[..., None], ops.log(boxes / (1.0 - boxes)), np.float32(np.inf))
    features = ops.where(keep[..., None], memory, ops.zeros_like(memory))
    return features, logits


def proposal_positions(coord_logits, d):
    """(b, q, 4) inverse-sigmoid boxes -> (b, q, 2 * d): each coordinate's sigmoid times 2 pi over
    d / 2 sine frequencies (sin on even features, cos on odd)."""
    freq = ops.convert_to_tensor(_frequencies(d // 2))
    angles = ops.sigmoid(coord_logits)[..., None] * (2 * math.pi) / freq
    b, q = ops.shape(coord_logits)[0], ops.shape(coord_logits)[1]
    return ops.reshape(_sin_cos(angles), (b, q, 2 * d))


def _corners(coord_logits):
    box = ops.sigmoid(coord_logits)
    cx, cy, w, h = (box[..., i] for i in range(4))
    return ops.clip(ops.stack([cx - 0.5 * w, cy - 0.5 * h, cx + 0.5 * w, cy + 0.5 * h], axis=-1), 0.0, 1.0)


def level_nms(scores, coord_logits, shapes, iou_threshold=NMS_IOU, pre_topk=PRE_NMS_TOPK):
    """(ids (b, m) of the candidate tokens, best first; kept (b, m) bool) after per-level greedy NMS."""
    b = ops.shape(scores)[0]
    ids, levels, start = [], [], 0
    for level, (h, w) in enumerate(shapes):
        n = h * w
        if n <= pre_topk:
            ids.append(ops.zeros((b, n), "int32") + ops.arange(start, start + n, dtype="int32")[None])
        else:
            ids.append(ops.cast(ops.top_k(ops.sigmoid(scores[:, start:start + n]), pre_topk)[1], "int32") + start)
        levels.append(np.full(min(n, pre_topk), level, np.int32))
        start += n
    ids = ops.concatenate(ids, axis=1)
    levels = ops.zeros_like(ids) + ops.convert_to_tensor(np.concatenate(levels))[None]
    order = ops.argsort(-ops.take_along_axis(scores, ids, axis=1), axis=1)
    ids, levels = ops.take_along_axis(ids, order, axis=1), ops.take_along_axis(levels, order, axis=1)
    boxes = ops.take_along_axis(_corners(coord_logits), ops.broadcast_to(ids[..., None], ops.shape(ids) + (4,)), axis=1)
    area = (boxes[..., 2] - boxes[..., 0]) * (boxes[..., 3] - boxes[..., 1])
    lo = ops.maximum(boxes[:, :, None, :2], boxes[:, None, :, :2])
    hi = ops.minimum(boxes[:, :, None, 2:], boxes[:, None, :, 2:])
    inter = ops.prod(ops.maximum(hi - lo, 0.0), axis=-1)
    union = area[:, :, None] + area[:, None, :] - inter
    iou = ops.where(union > 0, inter / ops.where(union > 0, union, 1.0), 0.0)
    m = ids.shape[1]
    later = ops.convert_to_tensor(np.triu(np.ones((m, m), bool), 1))[None]
    suppresses = ops.cast((iou > iou_threshold) & (levels[:, :, None] == levels[:, None, :]) & later, "float32")
    kept = ops.ones_like(scores[:, :m])
    if _values_unknown(suppresses):
        return ids, kept > 0

    # Greedy NMS is the unique fixed point of "kept = not suppressed by a kept better box": iterate
    # from all kept until nothing changes (after i rounds the i best are final; a few in practice).
    def body(kept, changed):
        new = ops.cast(ops.matmul(kept[:, None, :], suppresses)[:, 0] == 0, "float32")
        return new, ops.any(new != kept)

    kept, _ = ops.while_loop(lambda kept, changed: changed, body, (kept, ops.convert_to_tensor(True)),
                             maximum_iterations=m + 1)
    return ids, kept > 0


def _values_unknown(x):
    """Keras' torch backend traces shapes on the 'meta' device, where nothing can be looped over."""
    return keras.backend.backend() == "torch" and getattr(getattr(x, "device", None), "type", None) == "meta"


def select_proposals(scores, coord_logits, shapes, num, assign_first_stage):
    """(b, num) token ids of the proposals that become queries, in Transformers' order."""
    top = ops.cast(ops.top_k(scores, num)[1], "int32")
    if not assign_first_stage:
        return top
    ids, kept = level_nms(scores, coord_logits, shapes)
    m = max(ids.shape[1], num)
    fallback = (ops.sum(ops.cast(kept, "int32"), axis=1) < num)[:, None]

    def pad(x, value):
        return x if x.shape[1] == m else ops.pad(x, ((0, 0), (0, m - x.shape[1])), constant_values=value)

    seq = ops.where(fallback, pad(top, 0), pad(ids, 0))
    valid = ops.where(fallback, pad(ops.ones_like(top, dtype="bool"), False), pad(kept, False))
    counts = np.cumsum([0] + [h * w for h, w in shapes])
    level = ops.zeros_like(seq)
    for start in counts[1:-1]:
        level = level + ops.cast(seq >= int(start), "int32")
    onehot = ops.one_hot(level, len(shapes)) * ops.cast(valid, "float32")[..., None]
    rank = ops.take_along_axis(ops.cumsum(onehot, axis=1), level[..., None], axis=2)[..., 0]
    chosen = valid & (rank <= num // len(shapes))
    rest = valid & ops.logical_not(chosen)
    need = num - ops.sum(ops.cast(chosen, "int32"), axis=1, keepdims=True)
    final = chosen | (rest & (ops.cumsum(ops.cast(rest, "int32"), axis=1) <= need))
    position = ops.where(final, m - ops.arange(m, dtype="int32")[None], 0)
    return ops.take_along_axis(seq, ops.cast(ops.top_k(position, num)[1], "int32"), axis=1)

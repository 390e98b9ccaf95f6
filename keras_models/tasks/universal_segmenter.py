"""UniversalSegmenter: MaskFormer-like models (MaskFormer, Mask2Former) that predict a fixed set of
query masks, each with a class (or "no object").

Calling the model on ``{"pixel_values": (batch, H, W, C)}`` (channels_last; ``"pixel_mask"`` is
accepted and, as in Transformers, does not change the outputs) returns what Transformers'
``MaskFormerForInstanceSegmentation`` / ``Mask2FormerForUniversalSegmentation`` return, under the
same names:

* ``class_queries_logits`` (batch, queries, num_labels + 1): the last class is "no object";
* ``masks_queries_logits`` (batch, queries, h, w): one mask logit map per query at the pixel
  decoder's resolution (H/4, W/4). This keeps Transformers' layout (queries before the spatial
  axes): the queries are a set of masks, not feature channels, and the post-processing reads them so;
* ``transformer_decoder_last_hidden_state`` (batch, queries, hidden),
  ``pixel_decoder_last_hidden_state`` (batch, h, w, mask_feature_size) and
  ``encoder_last_hidden_state`` (batch, h', w', C) -- the spatial ones channels_last.

``post_process_semantic_segmentation`` / ``post_process_instance_segmentation`` /
``post_process_panoptic_segmentation`` turn them into per-image maps (numpy) exactly as
Transformers' image processors' methods of those names do (call them on the model or its class:
Mask2Former's first resize the mask logits to 384 x 384, as its processor does). There is no default training loss
(Transformers' Hungarian-matched mask losses are not implemented): ``fit`` needs
``compile(loss=...)``. A checkpoint's preprocessor_config.json becomes ``model.preprocessor``
(resize, normalise, pad + ``pixel_mask``): ``model(model.preprocessor(images))``.

Family subclasses build ``self.class_predictor`` / heads and implement :meth:`query_outputs`.
"""

import keras
import numpy as np
from keras import ops

from keras_models.errors import InputError
from keras_models.tasks.image_classifier import ImageTask

_ser = keras.saving.register_keras_serializable(package="keras_models")


def _softmax(x):
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def _sigmoid(x):
    with np.errstate(over="ignore"):
        return (1.0 / (1.0 + np.exp(-x))).astype(np.float32)


def _numpy(x):
    return np.asarray(keras.ops.convert_to_numpy(x), np.float32)


def _linear_taps(n_in, n_out):
    """PyTorch's bilinear taps (align_corners=False) along one axis, in float32 as its CPU kernel:
    (first index, second index, first weight, second weight)."""
    scale = np.float32(n_in) / np.float32(n_out)
    src = np.maximum(scale * (np.arange(n_out, dtype=np.float32) + np.float32(0.5)) - np.float32(0.5), 0)
    i0 = src.astype(np.int64)
    lam1 = np.clip(src - i0.astype(np.float32), 0, 1).astype(np.float32)
    i1 = np.where(i0 < n_in - 1, i0 + 1, i0)
    return i0, i1, (np.float32(1) - lam1).astype(np.float32), lam1


def _bilinear(maps, size):
    """(n, h, w) -> (n, *size), PyTorch's bilinear interpolate with align_corners=False, summed in the
    same order as its CPU kernel (so argmax ties of the post-processing break the same way)."""
    maps = maps.astype(np.float32)
    h0, h1, hl0, hl1 = _linear_taps(maps.shape[1], int(size[0]))
    w0, w1, wl0, wl1 = _linear_taps(maps.shape[2], int(size[1]))

    def row(r):
        m = maps[:, r]
        return m[:, :, w0] * wl0 + m[:, :, w1] * wl1

    return (row(h0) * hl0[:, None] + row(h1) * hl1[:, None]).astype(np.float32)


def _nearest(maps, size):
    """(n, h, w) -> (n, *size), PyTorch's nearest interpolate (source index floor(i * in / out))."""
    h, w = maps.shape[1:]
    rows = np.minimum(np.floor(np.arange(size[0], dtype=np.float32) * np.float32(h / size[0])).astype(int), h - 1)
    cols = np.minimum(np.floor(np.arange(size[1], dtype=np.float32) * np.float32(w / size[1])).astype(int), w - 1)
    return maps[:, rows][:, :, cols]


def _masks(cls, outputs):
    """The mask logits (batch, queries, h, w) as numpy, resized to the family's post-processing size."""
    masks = _numpy(outputs["masks_queries_logits"])
    if cls.post_process_mask_size is not None:
        b, q = masks.shape[:2]
        masks = _bilinear(masks.reshape((b * q,) + masks.shape[2:]), cls.post_process_mask_size)
        masks = masks.reshape((b, q) + masks.shape[1:])
    return masks


def _check_sizes(target_sizes, n, what):
    if target_sizes is not None and len(target_sizes) != n:
        raise InputError(f"{what}: target_sizes has {len(target_sizes)} sizes for {n} images")


@_ser
class UniversalSegmenter(ImageTask):
    task_name = "UniversalSegmenter"
    hf_head_patterns = ("class_predictor.*", "mask_embedder.*", "criterion.*")
    # Mask2Former's processor first resizes the mask logits (bilinear) to the size it was trained at
    post_process_mask_size = None

    def __init__(self, backbone, num_classes=2, id2label=None, dropout=0.0, preprocessor=None, **kwargs):
        super().__init__(backbone, preprocessor=preprocessor, **kwargs)
        self.num_classes = num_classes
        self.id2label = {int(k): v for k, v in id2label.items()} if id2label else None
        self.dropout = dropout or 0.0

    @classmethod
    def preprocessor_from_preset(cls, folder, hf, **kw):
        from keras_models.models.maskformer.processor import CONFIG_NAME, MaskFormerImageProcessor

        if not (folder / CONFIG_NAME).is_file():
            return None
        return MaskFormerImageProcessor.from_preset(folder)

    def default_loss(self):
        return None

    def default_metrics(self):
        return None

    def query_outputs(self, outputs, training=False):
        """(class_queries_logits, masks_queries_logits (batch, queries, h, w)) from the backbone's
        outputs."""
        raise NotImplementedError

    def call(self, inputs, training=False):
        if isinstance(inputs, dict) and "pixel_values" not in inputs:
            raise InputError(f"{type(self).__name__}: inputs need 'pixel_values' (batch, height, width, channels); "
                             f"got keys {sorted(inputs)}")
        out = self.backbone(inputs, training=training)
        classes, masks = self.query_outputs(out, training=training)
        result = {"class_queries_logits": classes, "masks_queries_logits": masks}
        for k in ("transformer_decoder_last_hidden_state", "pixel_decoder_last_hidden_state",
                  "encoder_last_hidden_state"):
            if k in out:
                result[k] = out[k]
        return result

    # --- post-processing (numpy, as Transformers' MaskFormer image processor) -------------------
    @classmethod
    def post_process_semantic_segmentation(cls, outputs, target_sizes=None):
        """Per image a (height, width) int map of class ids: the classes' probabilities (softmax,
        "no object" dropped) weighting the masks' sigmoids, resized (bilinear) to ``target_sizes``
        ((height, width) per image) when given, argmax over the classes."""
        classes = _softmax(_numpy(outputs["class_queries_logits"]))[..., :-1]
        masks = _sigmoid(_masks(cls, outputs))
        _check_sizes(target_sizes, len(classes), "post_process_semantic_segmentation")
        seg = np.einsum("bqc,bqhw->bchw", classes, masks).astype(np.float32)
        out = []
        for i in range(len(seg)):
            s = seg[i] if target_sizes is None else _bilinear(seg[i], target_sizes[i])
            out.append(s.argmax(axis=0))
        return out

    @classmethod
    def post_process_instance_segmentation(cls, outputs, threshold=0.5, target_sizes=None):
        """Per image ``{"segmentation": (height, width) float map of segment ids (-1: none),
        "segments_info": [{"id", "label_id", "was_fused", "score"}]}``: the ``queries`` best
        (query, class) scores, each times its mask's mean probability inside the mask, kept when
        at least ``threshold``; masks resized (nearest) to ``target_sizes`` when given. The
        candidates are taken best first (Transformers' unsorted top-k may order ties differently)."""
        logits = _numpy(outputs["class_queries_logits"])
        masks_all = _masks(cls, outputs)
        _check_sizes(target_sizes, len(logits), "post_process_instance_segmentation")
        n_q, n_c = logits.shape[1], logits.shape[2] - 1
        results = []
        for i in range(len(logits)):
            scores = _softmax(logits[i])[:, :-1].reshape(-1)
            top = np.argsort(-scores, kind="stable")[:n_q]
            labels, q = top % n_c, top // n_c
            pred = masks_all[i][q]
            binary = (pred > 0).astype(np.float32)
            mask_scores = (_sigmoid(pred).reshape(n_q, -1) * binary.reshape(n_q, -1)).sum(1) / (
                binary.reshape(n_q, -1).sum(1) + 1e-6)
            pred_scores = scores[top] * mask_scores
            size = masks_all.shape[2:] if target_sizes is None else tuple(int(s) for s in target_sizes[i])
            if target_sizes is not None:
                binary = _nearest(binary, size)
            seg = np.full(size, -1.0, np.float32)
            segments, current = [], 0
            for j in range(n_q):
                score = float(pred_scores[j])
                if binary[j].any() and score >= threshold:
                    seg[binary[j] == 1] = current
                    segments.append({"id": current, "label_id": int(labels[j]), "was_fused": False,
                                     "score": round(score, 6)})
                    current += 1
            results.append({"segmentation": seg, "segments_info": segments})
        return results

    @classmethod
    def post_process_panoptic_segmentation(cls, outputs, threshold=0.5, mask_threshold=0.5,
                                           overlap_mask_area_threshold=0.8, label_ids_to_fuse=None,
                                           target_sizes=None):
        """Per image ``{"segmentation": (height, width) int32 map of segment ids (0: none; a float
        map of -1 when no query passes), "segments_info": [{"id", "label_id", "was_fused",
        "score"}]}``: queries whose best class is real and scores above ``threshold``, each pixel
        given to its best score-weighted mask, segments smaller than ``overlap_mask_area_threshold``
        of their mask dropped, classes in ``label_ids_to_fuse`` merged into one segment."""
        fuse = set(label_ids_to_fuse or ())
        logits = _numpy(outputs["class_queries_logits"])
        probs = _sigmoid(_masks(cls, outputs))
        _check_sizes(target_sizes, len(logits), "post_process_panoptic_segmentation")
        num_labels = logits.shape[-1] - 1
        soft = _softmax(logits)
        scores_all, labels_all = soft.max(-1), soft.argmax(-1)
        results = []
        for i in range(len(logits)):
            keep = (labels_all[i] != num_labels) & (scores_all[i] > threshold)
            mp, sc, lab = probs[i][keep], scores_all[i][keep], labels_all[i][keep]
            if mp.shape[0] == 0:
                h, w = target_sizes[i] if target_sizes is not None else mp.shape[1:]
                results.append({"segmentation": np.full((h, w), -1.0, np.float32), "segments_info": []})
                continue
            if target_sizes is not None:
                mp = _bilinear(mp, target_sizes[i])
            mp = mp * sc[:, None, None]
            owner = mp.argmax(0)
            seg = np.zeros(owner.shape, np.int32)
            segments, current, stuff = [], 0, {}
            for k in range(len(lab)):
                cls_k = int(lab[k])
                mask_k = owner == k
                area, original = int(mask_k.sum()), int((mp[k] >= mask_threshold).sum())
                exists = area > 0 and original > 0 and area / original > overlap_mask_area_threshold
                if not exists:
                    continue
                if cls_k in stuff:
                    current = stuff[cls_k]
                else:
                    current += 1
                seg[mask_k] = current
                segments.append({"id": current, "label_id": cls_k, "was_fused": cls_k in fuse,
                                 "score": round(float(sc[k]), 6)})
                if cls_k in fuse:
                    stuff[cls_k] = current
            results.append({"segmentation": seg, "segments_info": segments})
        return results


def mask_logits(mask_embeddings, pixel_embeddings):
    """(batch, queries, c) x (batch, h, w, c) -> (batch, queries, h, w)."""
    return ops.einsum("bqc,bhwc->bqhw", mask_embeddings, pixel_embeddings)


__all__ = ["UniversalSegmenter", "mask_logits"]

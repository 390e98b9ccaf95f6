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
Mask2Former's first resize the mask logits to 384 x 384, as its processor does). Training:
``fit(x, y)`` with ``y`` as Transformers' labels, ``{"mask_labels": [(n_i, H, W) per image],
"class_labels": [(n_i,) per image]}``, uses Transformers' Hungarian-matched loss
(:mod:`keras_models.tasks.segmentation_loss`: MaskFormer's focal + dice, Mask2Former's point-sampled
cross-entropy + dice with a loss per decoder layer; the config's weights) unless
``compile(loss=...)`` set another; :meth:`compute_segmentation_loss` returns ``(loss, loss_dict)``
as ``...(pixel_values, mask_labels=..., class_labels=...)`` and ``get_loss_dict`` do. A checkpoint's preprocessor_config.json becomes ``model.preprocessor``
(resize, normalise, pad + ``pixel_mask``): ``model(model.preprocessor(images))``.

Family subclasses build ``self.class_predictor`` / heads and implement :meth:`query_outputs`.
"""

import keras
import numpy as np
from keras import ops

from keras_models.errors import ConfigError, InputError
from keras_models.tasks.host_targets import HostTargetsMixin
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
class UniversalSegmenter(HostTargetsMixin, ImageTask):
    task_name = "UniversalSegmenter"
    hf_head_patterns = ("class_predictor.*", "mask_embedder.*", "criterion.*")
    # Mask2Former's processor first resizes the mask logits (bilinear) to the size it was trained at
    post_process_mask_size = None
    # training loss: keras_models.tasks.segmentation_loss's kind; None: refused with loss_unsupported
    loss_kind = None
    loss_unsupported = "no training loss is implemented for this family"

    def __init__(self, backbone, num_classes=2, id2label=None, dropout=0.0, preprocessor=None, loss_config=None,
                 loss_seed=None, **kwargs):
        super().__init__(backbone, preprocessor=preprocessor, **kwargs)
        from keras_models.tasks.segmentation_loss import loss_config_from_hf

        self.num_classes = num_classes
        self.id2label = {int(k): v for k, v in id2label.items()} if id2label else None
        self.dropout = dropout or 0.0
        self.loss_config = loss_config_from_hf(dict(loss_config or {}), self.loss_kind) if self.loss_kind else None
        # the seed of the point sampling's draws (Mask2Former); None: a random one
        self.loss_seed = loss_seed
        self.loss_seed_generator = keras.random.SeedGenerator(loss_seed, name="loss_seed") \
            if self.loss_kind == "mask2former" else None

    @classmethod
    def task_config_from_hf(cls, hf, head_from_checkpoint, **kwargs):
        from keras_models.tasks.segmentation_loss import DEFAULTS

        kwargs = super().task_config_from_hf(hf, head_from_checkpoint, **kwargs)
        if cls.loss_kind:
            kwargs.setdefault("loss_config", {k: hf[k] for k in DEFAULTS[cls.loss_kind] if hf.get(k) is not None})
        return kwargs

    def task_config_to_hf(self):
        out = super().task_config_to_hf()
        if self.loss_config:
            out.update(self.loss_config)
        return out

    @staticmethod
    def _load_weights(folder, model, head_from_checkpoint, archs):
        report = ImageTask._load_weights(folder, model, head_from_checkpoint, archs)
        if getattr(model, "loss_config", None):
            from keras_models.tasks.segmentation_loss import checkpoint_no_object_weight

            # Transformers' criterion keeps "no object"'s weight in a buffer that the checkpoint fills
            weight = checkpoint_no_object_weight(folder)
            if weight is not None:
                model.loss_config["no_object_weight"] = weight
        return report

    def get_config(self):
        config = super().get_config()
        config.update(loss_config=dict(self.loss_config) if self.loss_config else None, loss_seed=self.loss_seed)
        return config

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

    # --- training: Transformers' Hungarian-matched mask loss ------------------------------------
    def default_compile_args(self):
        args = super().default_compile_args()
        if args is None and self.loss_kind:  # compiled without a Keras loss: compute_loss uses the mask loss
            args = dict(optimizer=keras.optimizers.AdamW(self.default_learning_rate, weight_decay=0.01))
        return args

    def _check_loss_supported(self):
        if not self.loss_kind:
            raise ConfigError(f"{type(self).__name__}: no training loss: {self.loss_unsupported}; "
                              "compile(loss=...) with your own")

    def _check_training(self, y):
        if y is not None and getattr(self, "loss", None) is None:  # not the user's compile(loss=...)
            self._check_loss_supported()

    def _targets(self, y):
        from keras_models.tasks.segmentation_loss import is_label_pair, pad_segmentation_targets

        return pad_segmentation_targets(y, num_classes=self.num_classes) if is_label_pair(y) else y

    def compute_segmentation_loss(self, inputs, mask_labels, class_labels=None, training=False, points=None):
        """``(loss, loss_dict)`` of Transformers' ``...(pixel_values, mask_labels=..., class_labels=...)``
        (its ``get_loss_dict``: the terms already weighted): ``mask_labels`` one (n, H, W) array per
        image and ``class_labels`` one (n,) array per image (or one dict holding both, or
        :func:`~keras_models.tasks.segmentation_loss.pad_segmentation_targets`' dict). Mask2Former:
        ``points`` replays given random points (one
        :func:`~keras_models.tasks.segmentation_loss.draw_points` dict per scored layer)."""
        from keras_models.tasks.segmentation_loss import pad_segmentation_targets, segmentation_loss

        self._check_loss_supported()
        if class_labels is not None:
            targets = pad_segmentation_targets(mask_labels, class_labels, self.num_classes)
        else:
            targets = self._targets(mask_labels)
        outputs = self.segmentation_outputs(inputs, training=training, auxiliary=True)
        return segmentation_loss(outputs, targets, self.loss_config, self.loss_kind, points=points,
                                 seed=self.loss_seed_generator)

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        if getattr(self, "loss", None) is not None or not self.loss_kind:  # the user's compile(loss=...)
            return super().compute_loss(x, y, y_pred, sample_weight, training=training)
        from keras_models.tasks.segmentation_loss import check_padded_targets, segmentation_loss

        check_padded_targets(y, type(self).__name__)
        if sample_weight is not None:
            raise InputError(f"{type(self).__name__}: the segmentation loss takes no sample_weight")
        loss, _ = segmentation_loss(y_pred, y, self.loss_config, self.loss_kind, seed=self.loss_seed_generator)
        extra = self.losses  # regularisation losses the layers add
        return loss + ops.sum(ops.stack(extra)) if extra else loss

    # --- forward ----------------------------------------------------------------------------
    def query_outputs(self, outputs, training=False):
        """(class_queries_logits, masks_queries_logits (batch, queries, h, w)) from the backbone's
        outputs."""
        raise NotImplementedError

    def auxiliary_outputs(self, inputs, training=False):
        """(backbone outputs, auxiliary (class logits, mask logits) stacked over the scored layers
        but the last, or None). Families with per-layer predictions override it."""
        return self.backbone(inputs, training=training), None

    def call(self, inputs, training=False):
        return self.segmentation_outputs(inputs, training=training, auxiliary=training and bool(self.loss_kind))

    def segmentation_outputs(self, inputs, training=False, auxiliary=False):
        """``call``'s outputs; with ``auxiliary`` (training), also ``auxiliary_class_queries_logits``
        / ``auxiliary_masks_queries_logits`` (layers - 1, batch, queries, ...) where the family
        scores every decoder layer."""
        if isinstance(inputs, dict) and "pixel_values" not in inputs:
            raise InputError(f"{type(self).__name__}: inputs need 'pixel_values' (batch, height, width, channels); "
                             f"got keys {sorted(inputs)}")
        if auxiliary:
            out, aux = self.auxiliary_outputs(inputs, training=training)
        else:
            out, aux = self.backbone(inputs, training=training), None
        classes, masks = self.query_outputs(out, training=training)
        result = {"class_queries_logits": classes, "masks_queries_logits": masks}
        for k in ("transformer_decoder_last_hidden_state", "pixel_decoder_last_hidden_state",
                  "encoder_last_hidden_state"):
            if k in out:
                result[k] = out[k]
        if aux is not None:
            result["auxiliary_class_queries_logits"], result["auxiliary_masks_queries_logits"] = aux
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

"""ObjectDetector: a fixed set of detection slots (DETR's object queries, YOLOS' detection tokens),
each classified and given a box.

Calling the model on ``{"pixel_values": (batch, H, W, C)}`` (channels_last; DETR-likes also take
``"pixel_mask"`` (batch, H, W), 1 on real pixels and 0 on padding, as Transformers' image
processors make it for a padded batch) returns what Transformers' ``...ForObjectDetection``
returns, under the same names:

* ``logits`` (batch, slots, classes + 1): the last class is "no object" (DETR, Table Transformer,
  YOLOS; ``no_object_class = True``), or (batch, slots, classes) scored each by a sigmoid
  (Conditional DETR);
* ``pred_boxes`` (batch, slots, 4): (center_x, center_y, width, height) in [0, 1] of the image;
* ``last_hidden_state``: the backbone's (DETR: the decoder's (batch, queries, hidden); YOLOS: every
  token's (batch, tokens, hidden)); ``encoder_last_hidden_state`` for encoder-decoders.

:meth:`post_process_object_detection` turns them into per-image ``{"scores", "labels", "boxes"}``
exactly as the image processors' method of that name does: softmax and the best real class per
slot, or (sigmoid families) the ``top_k`` best (slot, class) pairs; boxes as (x0, y0, x1, y1) scaled
to ``target_sizes``. Training: ``fit(x, y)`` with ``y`` as Transformers' ``labels`` (one
``{"class_labels", "boxes"}`` dict per image) uses Transformers' Hungarian-matched loss
(:mod:`keras_models.tasks.detection_loss`, the config's costs and coefficients) unless
``compile(loss=...)`` set another; :meth:`compute_detection_loss` returns ``(loss, loss_dict)``
as ``...ForObjectDetection(labels=...)`` does. A checkpoint's preprocessor_config.json
(DETR-style resize, normalise, pad + ``pixel_mask``) becomes ``model.preprocessor``
(:class:`~keras_models.models.detr.processor.DetrImageProcessor`): ``model(model.preprocessor(images))``.

Family subclasses set ``class_head_layers`` (1: a Dense; 3: an MLP, YOLOS) and may override
:meth:`slot_states` and :meth:`box_logits`.
"""

import keras
import numpy as np
from keras import ops

from keras_models.errors import ConfigError, InputError
from keras_models.layers.vision_embeddings import dense_rules
from keras_models.tasks.host_targets import HostTargetsMixin
from keras_models.tasks.image_classifier import ImageTask
from keras_models.tasks.zero_shot_object_detector import center_to_corners

_ser = keras.saving.register_keras_serializable(package="keras_models")


@_ser
class PredictionMLP(keras.layers.Layer):
    """``num_layers`` Dense layers (``hidden`` wide, the last ``out_dim``), ReLU between them;
    checkpoint names ``{prefix}.layers.{i}``."""

    def __init__(self, hidden, out_dim, num_layers=3, **kwargs):
        super().__init__(**kwargs)
        self.hidden, self.out_dim, self.num_layers = hidden, out_dim, num_layers
        self.denses = [keras.layers.Dense(out_dim if i == num_layers - 1 else hidden, name=f"layers_{i}",
                                          dtype=self.dtype_policy) for i in range(num_layers)]

    def build(self, input_shape):
        d = input_shape[-1]
        for dense in self.denses:
            dense.build((None, None, d))
            d = dense.units
        self.built = True

    def call(self, x):
        for i, dense in enumerate(self.denses):
            x = dense(x)
            if i < self.num_layers - 1:
                x = ops.relu(x)
        return x

    def rules(self, prefix, base=True):
        return [r for i, d in enumerate(self.denses) for r in dense_rules(f"{prefix}.layers.{i}", d, base=base)]

    def get_config(self):
        c = super().get_config()
        c.update(hidden=self.hidden, out_dim=self.out_dim, num_layers=self.num_layers)
        return c


def _softmax(x):
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


@_ser
class ObjectDetector(HostTargetsMixin, ImageTask):
    task_name = "ObjectDetector"
    hf_head_patterns = ("class_labels_classifier.*", "bbox_predictor.*")
    no_object_class = True
    class_head_layers = 1
    top_k = 100  # sigmoid families' post-processing keeps this many (slot, class) pairs at most
    # training loss: the family's Transformers config defaults of the loss fields, and whether the
    # backbone returns "intermediate_hidden_states" for the auxiliary loss; None: no loss (refused)
    loss_defaults = {}
    auxiliary_loss_supported = False
    auxiliary_loss_refused = "its backbone returns no per-layer decoder states"  # why, in the error
    loss_unsupported = None

    def __init__(self, backbone, num_classes=2, id2label=None, dropout=0.0, preprocessor=None, loss_config=None,
                 **kwargs):
        super().__init__(backbone, preprocessor=preprocessor, **kwargs)
        from keras_models.tasks.detection_loss import loss_config_from_hf

        self.loss_config = loss_config_from_hf(dict(loss_config or {}), self.loss_defaults)
        if getattr(getattr(backbone, "spec", None), "auxiliary_loss", None) is not None:
            self.loss_config["auxiliary_loss"] = bool(backbone.spec.auxiliary_loss)
        self.num_classes = num_classes
        self.id2label = {int(k): v for k, v in id2label.items()} if id2label else None
        self.dropout = dropout or 0.0
        d, common = backbone.hidden_size, dict(dtype=backbone.dtype_policy)
        n_out = num_classes + int(self.no_object_class)
        if self.class_head_layers == 1:
            self.class_head = keras.layers.Dense(n_out, name="class_labels_classifier", **common)
        else:
            self.class_head = PredictionMLP(d, n_out, self.class_head_layers, name="class_labels_classifier", **common)
        # None where the backbone's own last refinement MLP predicts the boxes (Deformable DETR)
        self.bbox_head = PredictionMLP(d, 4, 3, name="bbox_predictor", **common) if self.own_box_head(backbone) else None

    def own_box_head(self, backbone):
        return True

    @classmethod
    def preprocessor_from_preset(cls, folder, hf, **kw):
        from keras_models.models.detr.processor import CONFIG_NAME, TYPES, DetrImageProcessor, _base_type
        from keras_models.presets.config import read_json

        if not (folder / CONFIG_NAME).is_file():
            return None
        config = read_json(folder / CONFIG_NAME)
        kind = _base_type(str(config.get("image_processor_type") or ""))
        if kind not in TYPES:
            from keras_models.errors import ConfigError

            raise ConfigError(f"{folder / CONFIG_NAME}: image_processor_type {kind!r} is not a detection processor "
                              f"this task implements ({', '.join(TYPES)})")
        return DetrImageProcessor.from_config(config)

    @classmethod
    def task_config_from_hf(cls, hf, head_from_checkpoint, **kwargs):
        from keras_models.tasks.detection_loss import LOSS_KEYS

        kwargs = super().task_config_from_hf(hf, head_from_checkpoint, **kwargs)
        kwargs.setdefault("loss_config", {k: hf[k] for k in LOSS_KEYS if hf.get(k) is not None})
        return kwargs

    def task_config_to_hf(self):
        out = super().task_config_to_hf()
        out.update({k: v for k, v in self.loss_config.items() if k != "auxiliary_loss"})
        return out

    def get_config(self):
        config = super().get_config()
        config["loss_config"] = dict(self.loss_config)
        return config

    def default_loss(self):
        return None

    def default_metrics(self):
        return None

    # --- training: Transformers' Hungarian-matched loss -----------------------------------------
    def default_compile_args(self):
        args = super().default_compile_args()
        if args is None:  # compiled without a Keras loss: compute_loss uses the detection loss
            args = dict(optimizer=keras.optimizers.AdamW(self.default_learning_rate, weight_decay=0.01))
        return args

    def _check_loss_supported(self):
        if self.loss_unsupported:
            raise ConfigError(f"{type(self).__name__}: no training loss: {self.loss_unsupported}; "
                              "compile(loss=...) with your own")
        if self.loss_config["auxiliary_loss"] and not self.auxiliary_loss_supported:
            raise ConfigError(f"{type(self).__name__}: config auxiliary_loss=True is not implemented for this "
                              f"family's training loss ({self.auxiliary_loss_refused}); set it False")
        if self.loss_config["auxiliary_loss"] and getattr(getattr(self.backbone, "spec", None), "auxiliary_loss",
                                                          None) is False:
            raise ConfigError(f"{type(self).__name__}: loss_config auxiliary_loss=True, but the backbone was built "
                              "with auxiliary_loss=False and returns no per-layer decoder states; set "
                              "auxiliary_loss=True in config.json and reload")

    def compute_detection_loss(self, inputs, labels, training=False):
        """``(loss, loss_dict)`` of Transformers' ``...ForObjectDetection(pixel_values, labels=labels)``:
        ``labels`` one ``{"class_labels": (n,), "boxes": (n, 4)}`` dict per image (or
        :func:`~keras_models.tasks.detection_loss.pad_targets`' dict)."""
        from keras_models.tasks.detection_loss import detection_loss, is_target_list, pad_targets

        self._check_loss_supported()
        targets = pad_targets(labels, self.num_classes) if is_target_list(labels) else labels
        outputs = self.detection_outputs(inputs, training=training, auxiliary=True)
        return detection_loss(outputs, targets, self.loss_config, not self.no_object_class, self.num_classes)

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        if getattr(self, "loss", None) is not None:  # the user's compile(loss=...)
            return super().compute_loss(x, y, y_pred, sample_weight, training=training)
        from keras_models.tasks.detection_loss import check_padded_targets, detection_loss

        self._check_loss_supported()
        check_padded_targets(y, self.num_classes)
        if sample_weight is not None:
            raise InputError(f"{type(self).__name__}: the detection loss takes no sample_weight")
        loss, _ = detection_loss(y_pred, y, self.loss_config, not self.no_object_class, self.num_classes)
        extra = self.losses  # regularisation losses the layers add
        return loss + ops.sum(ops.stack(extra)) if extra else loss

    def _targets(self, y):
        from keras_models.tasks.detection_loss import is_target_list, pad_targets

        return pad_targets(y, self.num_classes) if is_target_list(y) else y

    # --- forward ----------------------------------------------------------------------------
    def slot_states(self, outputs):
        """(batch, slots, hidden): the states that the heads read."""
        return outputs["last_hidden_state"]

    def box_logits(self, states, outputs):
        """The boxes before the sigmoid: the box head on the slots' states (Conditional and
        Deformable DETR add their reference points)."""
        return self.bbox_head(states)

    def call(self, inputs, training=False):
        return self.detection_outputs(inputs, training=training, auxiliary=training)

    def detection_outputs(self, inputs, training=False, auxiliary=False):
        """``call``'s outputs; with ``auxiliary`` (training) and a backbone that returns its decoder
        layers' states, also ``auxiliary_logits`` / ``auxiliary_pred_boxes`` (layers - 1, batch,
        slots, ...) of every decoder layer but the last, for the auxiliary loss."""
        if isinstance(inputs, dict) and "pixel_values" not in inputs:
            raise InputError(f"{type(self).__name__}: inputs need 'pixel_values' (batch, height, width, channels); "
                             f"got keys {sorted(inputs)}")
        out = self.backbone(inputs, training=training)
        if not isinstance(out, dict):
            out = {"last_hidden_state": out}
        h = self.slot_states(out)
        result = {"logits": self.class_head(h),
                  "pred_boxes": ops.sigmoid(self.box_logits(h, out))}
        for k in ("last_hidden_state", "encoder_last_hidden_state"):
            if k in out:
                result[k] = out[k]
        if auxiliary and self.auxiliary_loss_supported and "intermediate_hidden_states" in out:
            result["auxiliary_logits"], boxes = self.auxiliary_logits(out)
            result["auxiliary_pred_boxes"] = ops.sigmoid(boxes)
        return result

    def auxiliary_logits(self, outputs):
        """(class logits, box logits before the sigmoid), (layers - 1, batch, slots, ...), of every
        decoder layer but the last: the heads on ``intermediate_hidden_states``."""
        inter = outputs["intermediate_hidden_states"][:-1]
        return self.class_head(inter), self.box_logits(inter, outputs)

    def head_rules(self):
        if isinstance(self.class_head, PredictionMLP):
            r = self.class_head.rules("class_labels_classifier", base=False)
        else:
            r = dense_rules("class_labels_classifier", self.class_head, base=False)
        return r + self.bbox_head.rules("bbox_predictor", base=False)

    # --- post-processing ----------------------------------------------------------------------
    @classmethod
    def post_process_object_detection(cls, outputs, threshold=0.5, target_sizes=None, top_k=None):
        """Per image ``{"scores", "labels", "boxes"}`` (numpy) above ``threshold``: boxes as
        (x0, y0, x1, y1), in pixels of ``target_sizes`` ((height, width) per image) or relative
        when it is None. Softmax families: each slot's best class but "no object"; sigmoid
        families: the ``top_k`` (default 100) best (slot, class) pairs, best first."""
        logits = np.asarray(keras.ops.convert_to_numpy(outputs["logits"]), np.float32)
        boxes = np.asarray(keras.ops.convert_to_numpy(outputs["pred_boxes"]), np.float32)
        if target_sizes is not None and len(target_sizes) != len(logits):
            raise InputError(f"post_process_object_detection: target_sizes has {len(target_sizes)} sizes for "
                             f"{len(logits)} images")
        boxes = center_to_corners(boxes)
        if cls.no_object_class:
            prob = _softmax(logits)[..., :-1]
            scores, labels = prob.max(axis=-1), prob.argmax(axis=-1)
        else:
            n, q, c = logits.shape
            with np.errstate(over="ignore"):
                prob = (1.0 / (1.0 + np.exp(-logits))).astype(np.float32).reshape(n, q * c)
            k = min(top_k or cls.top_k, q * c)
            order = np.argsort(-prob, axis=1, kind="stable")[:, :k]
            scores = np.take_along_axis(prob, order, axis=1)
            labels = order % c
            boxes = np.take_along_axis(boxes, (order // c)[..., None], axis=1)
        if target_sizes is not None:
            sizes = np.asarray(target_sizes, np.float32).reshape(len(logits), 2)
            boxes = boxes * np.stack([sizes[:, 1], sizes[:, 0], sizes[:, 1], sizes[:, 0]], axis=1)[:, None, :]
        results = []
        for s, lab, b in zip(scores, labels, boxes):
            keep = s > threshold
            results.append({"scores": s[keep], "labels": lab[keep], "boxes": b[keep]})
        return results


__all__ = ["ObjectDetector", "PredictionMLP"]

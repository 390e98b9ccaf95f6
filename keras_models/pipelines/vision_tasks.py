"""Dense vision pipelines with Transformers' arguments and output formats: object-detection,
image-segmentation and image-to-image. Images: file paths, PIL images or (height, width, channels)
arrays; a list of them (or a 4-D array) gives a list of results.

* object-detection (km.ObjectDetector: DETR, Conditional DETR, YOLOS ...): ``pipe(image,
  threshold=0.5)`` -> ``[{"score", "label", "box": {"xmin", "ymin", "xmax", "ymax"}}]`` in the
  model's post-processing order, boxes in pixels of the original image truncated to integers.
* image-segmentation (km.UniversalSegmenter: MaskFormer, Mask2Former; km.SemanticSegmenter:
  SegFormer, UPerNet ...): ``pipe(image, subtask=None, threshold=0.9, mask_threshold=0.5,
  overlap_mask_area_threshold=0.5)`` -> ``[{"score", "label", "mask"}]`` with each mask a PIL "L"
  image of the original size (255 inside the segment). ``subtask`` is "panoptic", "instance" or
  "semantic"; without it the first the model supports, in that order. Semantic results have
  ``score`` None, one per class present, in class-id order.
* image-to-image (km.ImageSuperResolution: Swin2SR): ``pipe(image)`` -> a PIL image: the
  reconstruction clipped to [0, 1], times 255, rounded (Transformers 4's pipeline; the padding that
  the image processor added is kept, scaled, as there).
"""

from __future__ import annotations

import numpy as np

from keras_models.pipelines.base import PipelineError, to_numpy
from keras_models.pipelines.image import ImagePipeline, _labels


class _DenseImagePipeline(ImagePipeline):
    """One image per chunk, with its original (height, width); images of one shape share a model call."""

    def preprocess(self, item, **_):
        from keras_models.preprocessing.image_io import load_image

        image = load_image(item)
        features = {k: np.asarray(v)[0] for k, v in self.image_processor([image]).items()}
        return [{"features": features, "size": tuple(int(s) for s in image.shape[:2])}]

    def forward(self, chunks, **_):
        outputs = [None] * len(chunks)
        groups = {}
        for i, c in enumerate(chunks):  # pixel_mask / padding would change with the batch's largest image
            groups.setdefault(tuple((k, v.shape) for k, v in sorted(c["features"].items())), []).append(i)
        for idx in groups.values():
            batch = {k: np.stack([chunks[i]["features"][k] for i in idx]) for k in chunks[idx[0]]["features"]}
            out = self.model(batch)
            out = to_numpy(out) if isinstance(out, dict) else {"output": to_numpy(out)}
            for j, i in enumerate(idx):
                outputs[i] = {k: v[j : j + 1] for k, v in out.items()}
        return outputs

    id2label = property(lambda self: _labels(self))


def _check_number(task, name, value, default):
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise PipelineError(f"{task}: {name} must be a number, got {value!r}")
    return float(value)


class ObjectDetectionPipeline(_DenseImagePipeline):
    task = "object-detection"
    call_params = ("threshold", "timeout")

    def __init__(self, model, tokenizer=None, **kwargs):
        super().__init__(model, tokenizer=tokenizer, **kwargs)
        if not hasattr(model, "post_process_object_detection"):
            raise PipelineError(f"{self.task}: the model ({type(model).__name__}) is not an object detector "
                                "(km.ObjectDetector)")

    def prepare_params(self, params):
        return {"threshold": _check_number(self.task, "threshold", params.get("threshold"), 0.5)}

    def postprocess(self, item, chunks, outputs, threshold=0.5, **_):
        out = {k: outputs[0][k] for k in ("logits", "pred_boxes")}
        found = self.model.post_process_object_detection(out, threshold=threshold, target_sizes=[chunks[0]["size"]])[0]
        labels = self.id2label
        results = []
        for score, label, box in zip(found["scores"], found["labels"], found["boxes"]):
            xmin, ymin, xmax, ymax = (int(v) for v in np.asarray(box, np.float32))
            results.append({"score": float(score), "label": labels.get(int(label), f"LABEL_{int(label)}"),
                            "box": {"xmin": xmin, "ymin": ymin, "xmax": xmax, "ymax": ymax}})
        return results


SUBTASKS = ("panoptic", "instance", "semantic")


class ImageSegmentationPipeline(_DenseImagePipeline):
    task = "image-segmentation"
    call_params = ("subtask", "threshold", "mask_threshold", "overlap_mask_area_threshold", "timeout")

    def supported_subtasks(self):
        if hasattr(self.model, "post_process_panoptic_segmentation"):
            return SUBTASKS
        return ("semantic",)

    def prepare_params(self, params):
        subtask = params.get("subtask")
        supported = self.supported_subtasks()
        if subtask is None:
            subtask = supported[0]
        elif subtask not in supported:
            raise PipelineError(f"{self.task}: subtask={subtask!r} is not supported by {type(self.model).__name__}; "
                                f"choose one of {', '.join(map(repr, supported))}")
        return {"subtask": subtask,
                "threshold": _check_number(self.task, "threshold", params.get("threshold"), 0.9),
                "mask_threshold": _check_number(self.task, "mask_threshold", params.get("mask_threshold"), 0.5),
                "overlap_mask_area_threshold": _check_number(
                    self.task, "overlap_mask_area_threshold", params.get("overlap_mask_area_threshold"), 0.5)}

    def postprocess(self, item, chunks, outputs, subtask="semantic", threshold=0.9, mask_threshold=0.5,
                    overlap_mask_area_threshold=0.5, **_):
        from keras_models.preprocessing.image_io import pil

        size = chunks[0]["size"]
        out = outputs[0]
        labels = self.id2label
        def mask(selected):  # a 2-D uint8 array is a mode "L" image
            return pil().fromarray((selected * 255).astype(np.uint8))

        if subtask == "semantic":
            seg = self._semantic(out, size)
            return [{"score": None, "label": labels.get(int(c), f"LABEL_{int(c)}"), "mask": mask(seg == c)}
                    for c in np.unique(seg)]
        if subtask == "panoptic":
            found = self.model.post_process_panoptic_segmentation(
                out, threshold=threshold, mask_threshold=mask_threshold,
                overlap_mask_area_threshold=overlap_mask_area_threshold, target_sizes=[size])[0]
        else:
            found = instance_segmentation(self.model, out, threshold, size)
        seg = np.asarray(found["segmentation"])
        return [{"score": s["score"], "label": labels.get(int(s["label_id"]), f"LABEL_{s['label_id']}"),
                 "mask": mask(seg == s["id"])} for s in found["segments_info"]]

    def _semantic(self, out, size):
        if hasattr(self.model, "post_process_semantic_segmentation"):
            return np.asarray(self.model.post_process_semantic_segmentation(out, target_sizes=[size])[0])
        # SemanticSegmenter: per-pixel logits (1, h, w, classes), resized (bilinear) to the image, argmax
        from keras_models.tasks.universal_segmenter import _bilinear

        logits = np.asarray(out["output"] if "output" in out else out["logits"], np.float32)[0]
        return _bilinear(np.ascontiguousarray(logits.transpose(2, 0, 1)), size).argmax(axis=0)


def instance_segmentation(model, outputs, threshold, target_size):
    """Transformers' MaskFormer / Mask2Former ``post_process_instance_segmentation`` for one image,
    candidates in PyTorch's unsorted top-k order (:func:`torch_topk_unsorted`)."""
    from keras_models.tasks.universal_segmenter import _masks, _nearest, _sigmoid, _softmax

    logits = np.asarray(outputs["class_queries_logits"], np.float32)[0]
    masks = _masks(type(model), outputs)[0]
    n_q, n_c = logits.shape[0], logits.shape[1] - 1
    scores = _softmax(logits)[:, :-1].reshape(-1).astype(np.float32)
    top = np.asarray(torch_topk_unsorted(scores, n_q))
    labels, pred = top % n_c, masks[top // n_c]
    binary = (pred > 0).astype(np.float32)
    flat = binary.reshape(n_q, -1)
    mask_scores = (_sigmoid(pred).reshape(n_q, -1) * flat).sum(1) / (flat.sum(1) + np.float32(1e-6))
    pred_scores = scores[top] * mask_scores
    binary = _nearest(binary, target_size)
    seg = np.full(target_size, -1.0, np.float32)
    segments = []
    for j in range(n_q):
        score = float(pred_scores[j])
        if binary[j].any() and score >= threshold:
            seg[binary[j] == 1] = len(segments)
            segments.append({"id": len(segments), "label_id": int(labels[j]), "score": round(score, 6)})
    return {"segmentation": seg, "segments_info": segments}


def _gt(a, b):  # torch's descending topk comparator on (value, index): NaN first, then larger
    return (np.isnan(a[0]) and not np.isnan(b[0])) or a[0] > b[0]

def torch_topk_unsorted(values, k):
    """The indices of the ``k`` largest ``values`` in the order PyTorch's CPU ``topk(sorted=False)``
    returns them (Transformers' instance post-processing keeps that order, and later segments
    overwrite earlier ones): a full sort when ``k * 64 <= n``, else libstdc++'s ``nth_element``
    (introselect: median-of-three partitions, then an insertion sort), replayed here."""
    q = [(float(v), i) for i, v in enumerate(np.asarray(values, np.float32).reshape(-1))]
    n = len(q)
    if k * 64 <= n:
        return [i for _, i in sorted(q, key=lambda t: -t[0])[:k]]
    first, last, nth = 0, n, k - 1
    depth = 2 * (n.bit_length() - 1)
    while last - first > 3:
        if depth == 0:  # heap selection in libstdc++: not reached at these sizes
            return [i for _, i in sorted(q, key=lambda t: -t[0])[:k]]
        depth -= 1
        mid = first + (last - first) // 2
        a, b, c = first + 1, mid, last - 1
        if _gt(q[a], q[b]):
            m = b if _gt(q[b], q[c]) else (c if _gt(q[a], q[c]) else a)
        elif _gt(q[a], q[c]):
            m = a
        elif _gt(q[b], q[c]):
            m = c
        else:
            m = b
        q[first], q[m] = q[m], q[first]
        lo, hi = first + 1, last
        while True:
            while _gt(q[lo], q[first]):
                lo += 1
            hi -= 1
            while _gt(q[first], q[hi]):
                hi -= 1
            if not lo < hi:
                break
            q[lo], q[hi] = q[hi], q[lo]
            lo += 1
        if lo <= nth:
            first = lo
        else:
            last = lo
    for i in range(first + 1, last):
        v = q[i]
        if _gt(v, q[first]):
            q[first + 1 : i + 1] = q[first:i]
            q[first] = v
        else:
            j = i
            while _gt(v, q[j - 1]):
                q[j] = q[j - 1]
                j -= 1
            q[j] = v
    return [i for _, i in q[:k]]


class ImageToImagePipeline(_DenseImagePipeline):
    task = "image-to-image"
    call_params = ("timeout",)

    def postprocess(self, item, chunks, outputs, **_):
        from keras_models.preprocessing.image_io import pil

        out = outputs[0]
        x = out["reconstruction"] if "reconstruction" in out else out["output"]
        x = np.clip(np.asarray(x, np.float32)[0], 0, 1)
        if x.shape[-1] == 1:
            x = x[..., 0]
        return pil().fromarray(np.round(x * np.float32(255.0)).astype(np.uint8))


__all__ = ["ImageSegmentationPipeline", "ImageToImagePipeline", "ObjectDetectionPipeline"]

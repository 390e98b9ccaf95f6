"""mask-generation (km.MaskGenerator: SAM): automatic "segment everything" over a grid of points,
with Transformers' arguments and output format. Images: file paths, PIL images or (height, width,
channels) arrays; a list of them (or a 4-D array) gives a list of results.

``pipe(image, points_per_batch=64, points_per_crop=32, crops_n_layers=0, crop_overlap_ratio=512/1500,
crop_n_points_downscale_factor=1, pred_iou_thresh=0.88, stability_score_thresh=0.95,
stability_score_offset=1, mask_threshold=0.0, crops_nms_thresh=0.7, output_bboxes_mask=False,
output_rle_mask=False)`` -> ``{"masks": [bool (height, width) arrays], "scores": float32 array}``
(plus ``"bounding_boxes"`` (n, 4) int64 (x1, y1, x2, y2) and ``"rle_mask"`` (COCO-style uncompressed
run lengths, column-major: ``{"size": [h, w], "counts": [...]}``) when asked), best score first.

The steps, as Transformers' pipeline does them:

1. crops: the whole image, then for each crop layer i (1..crops_n_layers) a 2^i x 2^i grid of
   overlapping crops; in each crop an n x n grid of points (n = points_per_crop //
   downscale_factor^i, cell centres), scaled to the crop's resized (longest side = the processor's
   ``longest_edge``) pixels;
2. per crop: the image embeddings once, then ``points_per_batch`` points at a time, one point per
   prompt, the model's candidate masks (multimask) upsampled to the crop's size;
3. per batch: masks kept when their predicted IoU > pred_iou_thresh and their stability score
   (pixels above mask_threshold + offset over pixels above mask_threshold - offset) >
   stability_score_thresh (a threshold <= 0 turns a filter off), binarised, boxed, dropped when
   their box lies within 20 pixels of an inner crop edge, and pasted into the full image;
4. non-maximum suppression over every kept mask's box (IoU > crops_nms_thresh suppresses the
   lower-scored one), written in numpy.

Not supported: ``max_hole_area`` / ``max_sprinkle_area`` (Transformers 5's PIL image processor does
not accept them either); ``crop_n_points_downscale_factor`` > 1 with crops_n_layers > 0 (the layers'
grids differ in size, which Transformers' pipeline cannot stack either) raises a PipelineError.
"""

from __future__ import annotations

import math

import numpy as np

from keras_models.layers.vision_embeddings import bilinear_matrix
from keras_models.pipelines.base import Pipeline, PipelineError, to_numpy
from keras_models.pipelines.image import ImageInputs

_DEFAULTS = {"points_per_batch": 64, "points_per_crop": 32, "crops_n_layers": 0, "crop_overlap_ratio": 512 / 1500,
             "crop_n_points_downscale_factor": 1, "pred_iou_thresh": 0.88, "stability_score_thresh": 0.95,
             "stability_score_offset": 1, "mask_threshold": 0.0, "crops_nms_thresh": 0.7,
             "output_bboxes_mask": False, "output_rle_mask": False}
_EDGE_ATOL = 20.0


# --- grids and crops ---------------------------------------------------------------------------------
def point_grid(n):
    """(n * n, 2) cell centres of an n x n grid over [0, 1]^2 as (x, y), rows of equal y together."""
    centres = (np.arange(n, dtype=np.float64) + 0.5) / n
    xs, ys = np.meshgrid(centres, centres)
    return np.stack([xs.ravel(), ys.ravel()], axis=-1)


def crop_boxes(height, width, n_layers, overlap_ratio):
    """[(x1, y1, x2, y2)] and their layer: the whole image, then 2^i x 2^i overlapping crops per layer."""
    boxes, layers = [(0, 0, width, height)], [0]
    for layer in range(1, n_layers + 1):
        per_side = 2 ** layer
        overlap = int(overlap_ratio * min(height, width) * 2 / per_side)
        crop_w = math.ceil((overlap * (per_side - 1) + width) / per_side)
        crop_h = math.ceil((overlap * (per_side - 1) + height) / per_side)
        for i in range(per_side):  # x outer, y inner (Transformers' order)
            for j in range(per_side):
                x0, y0 = int((crop_w - overlap) * i), int((crop_h - overlap) * j)
                boxes.append((x0, y0, min(x0 + crop_w, width), min(y0 + crop_h, height)))
                layers.append(layer)
    return boxes, layers


# --- mask filtering ------------------------------------------------------------------------------------
def upsample(masks, resize, size):
    """(n, h, w) low-resolution logits -> (n, height, width) with the (rows, columns) resize matrices."""
    rows, cols = resize
    if rows.shape[1] != masks.shape[1] or cols.shape[1] != masks.shape[2]:
        raise PipelineError(f"mask-generation: the model's masks are {masks.shape[1:]}, not the 4x image-embedding "
                            f"grid {(rows.shape[1], cols.shape[1])}")
    return np.matmul(np.matmul(rows, masks), cols.T)


def stability_scores(masks, mask_threshold, offset):
    """Pixels above threshold + offset over pixels above threshold - offset, per mask (float32; 0/0 -> nan)."""
    inner = (masks > mask_threshold + offset).sum(axis=(-2, -1))
    outer = (masks > mask_threshold - offset).sum(axis=(-2, -1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return inner.astype(np.float32) / outer.astype(np.float32)


def masks_to_boxes(masks):
    """(n, h, w) bool -> (n, 4) int64 (x1, y1, x2, y2) inclusive pixel bounds; an empty mask -> zeros."""
    boxes = np.zeros((masks.shape[0], 4), np.int64)
    rows, cols = masks.any(axis=2), masks.any(axis=1)
    for i in range(masks.shape[0]):
        ys, xs = np.flatnonzero(rows[i]), np.flatnonzero(cols[i])
        if len(ys) and len(xs):
            boxes[i] = (xs[0], ys[0], xs[-1], ys[-1])
    return boxes


def near_inner_crop_edge(boxes, crop, width, height, atol=_EDGE_ATOL):
    """Boxes (in crop pixels) with a side within ``atol`` of the crop's edge where that edge is not the image's."""
    left, top = crop[0], crop[1]
    shifted = boxes.astype(np.float32) + np.asarray([left, top, left, top], np.float32)
    near_crop = np.abs(shifted - np.asarray(crop, np.float32)) <= atol
    near_image = np.abs(shifted - np.asarray([0, 0, width, height], np.float32)) <= atol
    return (near_crop & ~near_image).any(axis=1)


def mask_to_rle(mask):
    """Uncompressed COCO run lengths of a (h, w) bool mask, column-major, starting with a 0-run."""
    flat = np.asarray(mask, bool).T.ravel()
    change = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    bounds = np.concatenate([[0], change, [flat.size]])
    counts = np.diff(bounds).tolist()
    if flat.size and flat[0]:
        counts = [0] + counts
    return {"size": [int(mask.shape[0]), int(mask.shape[1])], "counts": [int(c) for c in counts]}


def nms(boxes, scores, iou_threshold):
    """Greedy non-maximum suppression: indices kept, best score first (ties: the earlier box)."""
    order = np.argsort(-np.asarray(scores, np.float64), kind="stable")
    b = np.asarray(boxes, np.float64)[order]
    area = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    keep, alive = [], np.ones(len(order), bool)
    for n in range(len(order)):
        if not alive[n]:
            continue
        keep.append(order[n])
        w = np.clip(np.minimum(b[n, 2], b[:, 2]) - np.maximum(b[n, 0], b[:, 0]), 0, None)
        h = np.clip(np.minimum(b[n, 3], b[:, 3]) - np.maximum(b[n, 1], b[:, 1]), 0, None)
        inter = w * h
        with np.errstate(invalid="ignore", divide="ignore"):
            iou = inter / (area[n] + area - inter)
        suppress = iou > iou_threshold
        suppress[: n + 1] = False
        alive &= ~suppress
    return np.asarray(keep, np.int64)


# --- arguments -------------------------------------------------------------------------------------------
def _number(name, value):
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise PipelineError(f"mask-generation: {name} must be a number, got {value!r}")
    return float(value)


def _integer(name, value, low):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
        raise PipelineError(f"mask-generation: {name} must be an integer >= {low}, got {value!r}")
    return int(value)


class MaskGenerationPipeline(ImageInputs, Pipeline):
    task = "mask-generation"
    call_params = tuple(_DEFAULTS) + ("timeout",)

    def __init__(self, model, tokenizer=None, image_processor=None, **kwargs):
        super().__init__(model, tokenizer=tokenizer, **kwargs)
        if not hasattr(model, "get_image_embeddings"):
            raise PipelineError(f"{self.task}: the model ({type(model).__name__}) is not a mask generator "
                                "(km.MaskGenerator)")
        self.image_processor = image_processor or getattr(model, "preprocessor", None)
        if self.image_processor is None or not hasattr(self.image_processor, "post_process_masks"):
            raise PipelineError(f"{self.task}: the model has no SAM image processor (preprocessor_config.json); "
                                "pass image_processor=")

    def prepare_params(self, params):
        p = {**_DEFAULTS, **{k: v for k, v in params.items() if v is not None or k == "points_per_batch"}}
        p.pop("timeout", None)
        if p["points_per_batch"] is not None:
            if isinstance(p["points_per_batch"], bool) or not isinstance(p["points_per_batch"], (int, np.integer)) \
                    or p["points_per_batch"] <= 0:
                raise PipelineError("mask-generation: points_per_batch must be an integer >= 1 (or None: every "
                                    f"point at once), got {p['points_per_batch']!r}")
            p["points_per_batch"] = int(p["points_per_batch"])
        p["points_per_crop"] = _integer("points_per_crop", p["points_per_crop"], 1)
        p["crops_n_layers"] = _integer("crops_n_layers", p["crops_n_layers"], 0)
        p["crop_n_points_downscale_factor"] = _integer("crop_n_points_downscale_factor",
                                                       p["crop_n_points_downscale_factor"], 1)
        for name in ("crop_overlap_ratio", "pred_iou_thresh", "stability_score_thresh", "stability_score_offset",
                     "mask_threshold", "crops_nms_thresh"):
            p[name] = _number(name, p[name])
        sides = {int(p["points_per_crop"] / p["crop_n_points_downscale_factor"] ** i)
                 for i in range(p["crops_n_layers"] + 1)}
        if min(sides) < 1:
            raise PipelineError(f"mask-generation: points_per_crop={p['points_per_crop']} with "
                                f"crop_n_points_downscale_factor={p['crop_n_points_downscale_factor']} leaves a crop "
                                "layer without points")
        if len(sides) > 1:
            raise PipelineError("mask-generation: crop_n_points_downscale_factor > 1 with crops_n_layers > 0 gives "
                                "the crop layers grids of different sizes, which Transformers' pipeline cannot run "
                                "either; use crop_n_points_downscale_factor=1")
        for name in ("output_bboxes_mask", "output_rle_mask"):
            p[name] = bool(p[name])
        return p

    def preprocess(self, item, **_):
        from keras_models.preprocessing.image_io import load_image

        return [{"image": load_image(item)}]

    def forward(self, chunks, **params):
        return [self._generate(c["image"], **params) for c in chunks]

    def _generate(self, image, points_per_batch, points_per_crop, crops_n_layers, crop_overlap_ratio,
                  crop_n_points_downscale_factor, pred_iou_thresh, stability_score_thresh, stability_score_offset,
                  mask_threshold, **_):
        height, width = image.shape[:2]
        boxes, layers = crop_boxes(height, width, crops_n_layers, crop_overlap_ratio)
        grids = [point_grid(int(points_per_crop / crop_n_points_downscale_factor ** i))
                 for i in range(crops_n_layers + 1)]
        edge = self.image_processor.longest_edge
        kept_masks, kept_scores, kept_boxes = [], [], []
        processed = [self.image_processor([image[y1:y2, x1:x2]]) for x1, y1, x2, y2 in boxes]
        pixels = [p["pixel_values"] for p in processed]
        if len({p.shape for p in pixels}) == 1:  # padded crops: one encoder call for all of them
            encoded = to_numpy(self.model.get_image_embeddings(np.concatenate(pixels)))
            encoded = [encoded[i : i + 1] for i in range(len(pixels))]
        else:
            encoded = [to_numpy(self.model.get_image_embeddings(p)) for p in pixels]
        for box, layer, inputs, embeddings in zip(boxes, layers, processed, encoded):
            x1, y1, x2, y2 = box
            ch, cw = y2 - y1, x2 - x1
            new_h = int(ch * (edge / max(ch, cw)) + 0.5)
            new_w = int(cw * (edge / max(ch, cw)) + 0.5)
            points = grids[layer] * np.asarray([cw, ch], np.float64)
            points = (points * np.asarray([new_w / cw, new_h / ch])).astype(np.float32)
            resize = self._resize_matrices(inputs["reshaped_input_sizes"][0], (ch, cw), embeddings.shape[1:3])
            step = len(points) if points_per_batch is None else points_per_batch
            for start in range(0, len(points), step):
                batch_points = points[start : start + step]
                out = to_numpy(self.model({"image_embeddings": embeddings,
                                           "input_points": batch_points[None, :, None, :],
                                           "input_labels": np.ones((1, len(batch_points), 1), np.int32)}))
                low = np.asarray(out["pred_masks"][0], np.float32)
                masks = upsample(low.reshape((-1,) + low.shape[-2:]), resize, (ch, cw))
                scores = np.asarray(out["iou_scores"][0], np.float32).reshape(-1)
                keep = np.ones(len(scores), bool)
                if pred_iou_thresh > 0.0:
                    keep &= scores > np.float32(pred_iou_thresh)
                if stability_score_thresh > 0.0:
                    with np.errstate(invalid="ignore"):
                        keep &= stability_scores(masks, mask_threshold, stability_score_offset) > \
                            np.float32(stability_score_thresh)
                masks, scores = masks[keep] > mask_threshold, scores[keep]
                found = masks_to_boxes(masks)
                inside = ~near_inner_crop_edge(found, box, width, height)
                masks, scores, found = masks[inside], scores[inside], found[inside]
                found = found + np.asarray([x1, y1, x1, y1], np.int64)
                for m in masks:
                    full = np.zeros((height, width), bool)
                    full[y1:y2, x1:x2] = m
                    kept_masks.append(full)
                kept_scores.append(scores)
                kept_boxes.append(found)
        return {"masks": kept_masks, "scores": np.concatenate(kept_scores).astype(np.float32),
                "boxes": np.concatenate(kept_boxes).reshape(-1, 4)}

    def _resize_matrices(self, reshaped, size, grid):
        """The image processor's ``post_process_masks`` (low-res -> padded input -> crop the padding ->
        original size, bilinear) as one (rows, columns) pair of matrices."""
        pad = self.image_processor.pad_size if self.image_processor.do_pad else \
            {"height": int(reshaped[0]), "width": int(reshaped[1])}
        low = (4 * int(grid[0]), 4 * int(grid[1]))
        rows = bilinear_matrix(int(reshaped[0]), size[0]) @ bilinear_matrix(low[0], pad["height"])[: int(reshaped[0])]
        cols = bilinear_matrix(int(reshaped[1]), size[1]) @ bilinear_matrix(low[1], pad["width"])[: int(reshaped[1])]
        return rows.astype(np.float32), cols.astype(np.float32)

    def postprocess(self, item, chunks, outputs, crops_nms_thresh=0.7, output_bboxes_mask=False,
                    output_rle_mask=False, **_):
        out = outputs[0]
        keep = nms(out["boxes"], out["scores"], crops_nms_thresh)
        masks = [out["masks"][i] for i in keep]
        result = {"masks": masks, "scores": out["scores"][keep]}
        if output_rle_mask:
            result["rle_mask"] = [mask_to_rle(m) for m in masks]
        if output_bboxes_mask:
            result["bounding_boxes"] = out["boxes"][keep]
        return result


__all__ = ["MaskGenerationPipeline", "crop_boxes", "mask_to_rle", "masks_to_boxes", "nms", "point_grid",
           "stability_scores"]

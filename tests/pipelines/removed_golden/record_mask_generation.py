"""Records tests/pipelines/removed_golden/mask_generation/ (a tiny SAM, its image processor and a PNG
image) and mask_generation.npz / mask_generation.json: what Transformers 5.25's "mask-generation"
pipeline returns for a few argument sets (the references of tests/pipelines/test_mask_generation_pipeline.py):
    python tests/pipelines/removed_golden/record_mask_generation.py

Why recorded, and why a stand-in: the pipeline's last step (``post_process_for_mask_generation``)
imports torchvision's ``batched_nms``, and torchvision cannot run beside this torch (every wheel
fails with "operator torchvision::nms does not exist"), so the test cannot call Transformers'
pipeline. It ran once here with a stand-in ``torchvision.ops.boxes`` module injected through
``sys.modules`` (only in this script) whose ``batched_nms`` is written from the operator's definition
(``_batched_nms`` below: boxes sorted by score, best first; each kept box suppresses the later boxes
of its class whose IoU with it exceeds the threshold; the kept indices returned best first); the
``requires(torchvision)`` check on that method is pointed at it too. Nothing else of torchvision is
touched: without torchvision Transformers picks the PIL image processor (``SamImageProcessorPil``),
whose grid points, crops, mask filtering and RLE are plain numpy / torch. Our numpy NMS in
keras_models/pipelines/mask_generation.py is a separate implementation checked against this one.

The model: tests/vision/test_sam.py's "odd" tiny SAM (image_size 64, 8x8 embeddings, 2 masks per
point), weights from tests/parity.py ``randomize_weights`` with the mask hypernetworks' output layers
scaled by 30 so that mask logits are O(1) (not ~0.05: stability scores then mean something and no
pixel sits within float noise of the threshold). The image is 90x120 (resized to 48x64, padded to 64).
A random SAM does not localise: every mask's box is about the whole image (or crop), so any NMS
threshold below 1 keeps one mask; two calls use ``crops_nms_thresh=1.0`` (an IoU is never above 1:
nothing suppressed) so that many masks, their score order, boxes and RLE are compared, and the NMS
itself is checked against ``_batched_nms`` on random boxes in the test.
"""

import json
import shutil
import sys
import types
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).parent
ROOT = HERE.parents[2]
sys.path.insert(0, str(ROOT))

# (name, pipeline keyword arguments)
CALLS = [
    ("defaults_small_grid", dict(points_per_crop=4)),
    ("filtered", dict(points_per_crop=5, points_per_batch=12, pred_iou_thresh=0.5, stability_score_thresh=0.3,
                      crops_nms_thresh=1.0, output_bboxes_mask=True, output_rle_mask=True)),
    ("offset_threshold", dict(points_per_crop=4, points_per_batch=None, pred_iou_thresh=0.3,
                              stability_score_thresh=0.5, stability_score_offset=0.5, mask_threshold=0.25,
                              crops_nms_thresh=0.5, output_bboxes_mask=True)),
    ("crops", dict(points_per_crop=4, crops_n_layers=1, crop_overlap_ratio=0.25, points_per_batch=16,
                   pred_iou_thresh=0.4, stability_score_thresh=0.2, crops_nms_thresh=1.0, output_bboxes_mask=True,
                   output_rle_mask=True)),
]


def _batched_nms(boxes, scores, idxs, iou_threshold):
    boxes, scores = boxes.double(), scores.double()
    order = torch.sort(scores, descending=True, stable=True).indices
    b = boxes[order]
    area = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    wh = (torch.minimum(b[:, None, 2:], b[None, :, 2:]) - torch.maximum(b[:, None, :2], b[None, :, :2])).clamp(min=0)
    inter = wh[..., 0] * wh[..., 1]
    over = (inter / (area[:, None] + area[None, :] - inter) > iou_threshold) & (idxs[order][:, None] == idxs[order][None])
    over = over.numpy()
    suppressed = np.zeros(len(order), bool)
    keep = []
    for n in range(len(order)):
        if not suppressed[n]:
            keep.append(n)
            suppressed |= over[n]
    return order[torch.tensor(keep, dtype=torch.long)]


def _install_stand_in():
    from transformers.utils import import_utils

    tv, ops, boxes = (types.ModuleType(n) for n in ("torchvision", "torchvision.ops", "torchvision.ops.boxes"))
    boxes.batched_nms = _batched_nms
    ops.boxes, tv.ops = boxes, ops
    sys.modules.update({"torchvision": tv, "torchvision.ops": ops, "torchvision.ops.boxes": boxes})
    import_utils.BACKENDS_MAPPING["torchvision"] = (lambda: True, import_utils.BACKENDS_MAPPING["torchvision"][1])


def main():
    import transformers as T
    from PIL import Image

    from tests.parity import randomize_weights
    from tests.vision.test_sam import _config

    folder = HERE / "mask_generation"
    if folder.exists():
        shutil.rmtree(folder)
    torch.manual_seed(0)
    model = T.SamModel(_config("odd")).eval()
    randomize_weights(model)
    with torch.no_grad():
        for name, p in model.mask_decoder.named_parameters():
            if name.startswith("output_hypernetworks_mlps.") and ".proj_out." in name:
                p.mul_(30.0)
    model.save_pretrained(folder / "model")
    T.SamImageProcessorPil(size={"longest_edge": 64}, pad_size={"height": 64, "width": 64}).save_pretrained(
        folder / "model")
    rng = np.random.RandomState(0)
    Image.fromarray(rng.randint(0, 255, size=(90, 120, 3), dtype=np.uint8)).save(folder / "img0.png")

    pipe = T.pipeline("mask-generation", model=str(folder / "model"), device="cpu")
    assert type(pipe.image_processor).__name__ == "SamImageProcessorPil", type(pipe.image_processor)
    _install_stand_in()
    arrays, meta = {}, {}
    for name, kwargs in CALLS:
        out = pipe(str(folder / "img0.png"), **kwargs)
        masks = np.stack([np.asarray(m) for m in out["masks"]]) if out["masks"] else np.zeros((0, 90, 120), bool)
        arrays[f"{name}/masks"] = np.packbits(masks, axis=-1)
        arrays[f"{name}/scores"] = out["scores"].numpy().astype(np.float32)
        if "bounding_boxes" in out:
            arrays[f"{name}/bounding_boxes"] = out["bounding_boxes"].numpy()
        if "rle_mask" in out:  # every RLE's counts, concatenated, and where each one ends
            counts = [np.asarray(r["counts"], np.int32) for r in out["rle_mask"]]
            arrays[f"{name}/rle_counts"] = np.concatenate(counts) if counts else np.zeros(0, np.int32)
            arrays[f"{name}/rle_ends"] = np.cumsum([len(c) for c in counts]).astype(np.int32)
            assert all(list(r["size"]) == list(masks.shape[1:]) for r in out["rle_mask"])
        meta[name] = {"kwargs": kwargs, "keys": sorted(out), "n": len(out["masks"]), "mask_shape": list(masks.shape)}
        print(name, len(out["masks"]), sorted(out), arrays[f"{name}/scores"][:6])
    np.savez_compressed(HERE / "mask_generation.npz", **arrays)
    (HERE / "mask_generation.json").write_text(json.dumps({"transformers": T.__version__, "calls": meta}, indent=1) + "\n")


if __name__ == "__main__":
    main()

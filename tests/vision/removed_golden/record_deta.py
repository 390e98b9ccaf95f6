"""Records tests/vision/removed_golden/deta/ and deta.npz (the references of tests/vision/test_deta.py).

DETA was removed from Transformers 5, so its outputs were recorded once with Transformers 4.57.1
(models/deprecated/deta), e.g.:
    PYTHONPATH=/tmp/tf4 python tests/vision/removed_golden/record_deta.py

DETA's two-stage model and its image processor's ``post_process_object_detection`` call
torchvision's ``batched_nms``; torchvision was not installable beside this torch, so both ran with
the greedy NMS written below (``_batched_nms``: boxes sorted by score, best first, each suppressing
the later boxes of its own class / level whose IoU with it is above the threshold; the kept indices
returned best first, as torchvision returns them). Our numpy / keras.ops NMS is a separate
implementation checked against this one.

The checkpoints: ``deta``, a 2-stage basic ResNet read at stages 1 and 2 plus one strided extra map
(3 levels, strides 4 / 8 / 16); ``deta_swin``, the same over a 3-stage Swin (window 4) read at
stages 1 and 2 through SwinBackbone's per-stage LayerNorms (only its outputs recorded). Both: d_model 32, 1 encoder / 2 decoder layers, 3 / 2 sampling points, 2 / 4 heads,
GELU, 3 labels, 20 two-stage proposals (6 per level, the last 2 filled from the rest), two_stage and
with_box_refine (as DETA always runs). The input, 78x150 (the second image 60x110 inside padding),
makes exactly 1000 encoder tokens (20x38 + 10x19 + 5x10): the reference picks its NMS candidates as
``topk(sigmoid(logit) * (level == l), 1000)`` per level, so with fewer than 1000 tokens in a level
the rest of the 1000 are ties at 0 from other levels, an order torch leaves undefined; with exactly
1000 tokens every level's candidates are all tokens, a defined set. Weights: kernels ~N(0, 1/fan_in),
vectors and BatchNorm buffers moved off 0/1 (tests/vision/test_detection.py ``_randomize``), seeded;
outputs computed after reloading the saved files.
"""

import shutil
import sys
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).parent
ROOT = HERE.parents[2]
sys.path.insert(0, str(ROOT))

TARGET_SIZES = [(78, 150), (60, 110)]


def inputs():
    rng = np.random.RandomState(0)
    mask = np.ones((2, 78, 150), "int64")
    mask[1, 60:], mask[1, :, 110:] = 0, 0
    return {"pixel_values": rng.randn(2, 78, 150, 3).astype("float32"), "pixel_mask": mask}


def images():
    """Two small uint8 images for the image processor."""
    rng = np.random.RandomState(1)
    return [rng.randint(0, 256, (18, 25, 3), dtype=np.uint8), rng.randint(0, 256, (22, 16, 3), dtype=np.uint8)]


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


def config(kind="deta"):
    import transformers

    if kind == "deta_swin":  # patch 4, a window of 4 (padded maps), stages of 8 / 16 channels read
        backbone = transformers.SwinConfig(embed_dim=8, depths=[1, 2, 1], num_heads=[1, 2, 2], window_size=4,
                                           image_size=32, out_features=["stage1", "stage2"])
    else:
        backbone = transformers.ResNetConfig(embedding_size=8, hidden_sizes=[16, 24], depths=[1, 1],
                                             layer_type="basic", out_features=["stage1", "stage2"])
    return transformers.DetaConfig(
        backbone_config=backbone, num_feature_levels=3, d_model=32, encoder_layers=1, decoder_layers=2,
        encoder_ffn_dim=20, decoder_ffn_dim=24, encoder_attention_heads=2, decoder_attention_heads=4,
        encoder_n_points=3, decoder_n_points=2, two_stage_num_proposals=20, num_labels=3,
        activation_function="gelu")


def main(kind="deta"):
    import transformers
    from transformers.models.deprecated.deta import image_processing_deta as ipd
    from transformers.models.deprecated.deta import modeling_deta as md

    md.batched_nms = ipd.batched_nms = _batched_nms
    md.requires_backends = lambda *a, **k: None  # torchvision: only its batched_nms is used
    from tests.vision.test_detection import _randomize

    folder = HERE / kind
    if folder.exists():
        shutil.rmtree(folder)
    torch.manual_seed(0)
    model = _randomize(md.DetaForObjectDetection(config(kind)).eval())
    model.save_pretrained(folder, safe_serialization=True)
    proc = ipd.DetaImageProcessor(size={"shortest_edge": 24, "longest_edge": 40})
    proc.save_pretrained(folder)
    model = md.DetaForObjectDetection.from_pretrained(folder).eval()

    x = inputs()
    with torch.no_grad():
        out = model(pixel_values=torch.tensor(x["pixel_values"].transpose(0, 3, 1, 2)),
                    pixel_mask=torch.tensor(x["pixel_mask"]))
    expected = {k: getattr(out, k).numpy() for k in ("logits", "pred_boxes", "last_hidden_state")}
    expected["encoder_last_hidden_state"] = out.encoder_last_hidden_state[:1].numpy()  # the unpadded image's
    for i, r in enumerate(proc.post_process_object_detection(out, threshold=0.0, target_sizes=TARGET_SIZES)):
        for k, v in r.items():
            expected[f"post{i}_{k}"] = v.numpy()
    processed = proc(images(), return_tensors="np")
    expected["processed_pixel_values"] = processed["pixel_values"].transpose(0, 2, 3, 1)
    expected["processed_pixel_mask"] = processed["pixel_mask"]
    if kind != "deta":  # the Swin variant: the model's outputs only
        expected = {k: expected[k] for k in ("logits", "pred_boxes", "last_hidden_state")}
    np.savez(HERE / f"{kind}.npz", **expected)
    print(transformers.__version__, {k: v.shape for k, v in expected.items()})


if __name__ == "__main__":
    for kind in sys.argv[1:] or ("deta", "deta_swin"):
        main(kind)

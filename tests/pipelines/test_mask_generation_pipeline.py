"""mask-generation (SAM's automatic "segment everything") against Transformers 5.25's pipeline on a tiny
SAM. Transformers' pipeline needs torchvision's ``batched_nms``, which cannot run here, so its outputs
were recorded once with a stand-in NMS (tests/pipelines/removed_golden/record_mask_generation.py says
how); our numpy NMS is checked against that stand-in on random boxes below.

Pipeline post-processing is backend-independent, so these tests are marked ``backend_independent``
and run in the torch pass only (SAM's numerics are covered by tests/vision/test_sam.py on every
backend).
"""

import json
from pathlib import Path

import numpy as np
import pytest

import keras_models as km
from keras_models.pipelines import PipelineError
from keras_models.pipelines.mask_generation import mask_to_rle, nms, point_grid

pytestmark = pytest.mark.backend_independent

GOLDEN = Path(__file__).parent / "removed_golden"
FOLDER = GOLDEN / "mask_generation"
IMAGE = str(FOLDER / "img0.png")


@pytest.fixture(scope="module")
def pipe():
    return km.pipeline("mask-generation", model=str(FOLDER / "model"))


def _reference():
    meta = json.loads((GOLDEN / "mask_generation.json").read_text())["calls"]
    return meta, dict(np.load(GOLDEN / "mask_generation.npz"))


META, REF = _reference()


@pytest.mark.parametrize("name", list(META))
def test_mask_generation_matches_transformers(pipe, name):
    call = META[name]
    out = pipe(IMAGE, **call["kwargs"])
    assert sorted(out) == call["keys"]
    n, height, width = call["mask_shape"]
    assert len(out["masks"]) == call["n"] == n
    expected = np.unpackbits(REF[f"{name}/masks"], axis=-1, count=width).astype(bool)
    masks = np.stack(out["masks"]) if out["masks"] else np.zeros((0, height, width), bool)
    assert masks.dtype == bool and masks.shape == expected.shape
    # a logit within float rounding of the threshold can land on the other side on another CPU's
    # kernels (one pixel on an AVX2-only Zen 3): at most 0.01% of the mask pixels may differ
    differ = int((masks != expected).sum())
    assert differ <= max(1, expected.size // 10000), f"{name}: {differ} mask pixels differ"
    assert out["scores"].dtype == np.float32 and out["scores"].shape == (n,)
    np.testing.assert_allclose(out["scores"], REF[f"{name}/scores"], atol=1e-4, rtol=0)
    if "bounding_boxes" in out:
        assert np.array_equal(out["bounding_boxes"], REF[f"{name}/bounding_boxes"])
    if "rle_mask" in out:
        counts = np.split(REF[f"{name}/rle_counts"], REF[f"{name}/rle_ends"][:-1]) if n else []
        if differ == 0:
            assert [r["counts"] for r in out["rle_mask"]] == [c.tolist() for c in counts]
        else:  # the recorded RLE is of the recorded masks: ours must encode our own masks
            assert [r["counts"] for r in out["rle_mask"]] == [mask_to_rle(m)["counts"] for m in masks]
        assert all(r["size"] == [height, width] for r in out["rle_mask"])


def test_nms_matches_the_recording_stand_in():
    torch = pytest.importorskip("torch")
    from tests.pipelines.removed_golden.record_mask_generation import _batched_nms

    rng = np.random.RandomState(0)
    for threshold in (0.0, 0.3, 0.7):
        xy = rng.randint(0, 40, (60, 2))
        boxes = np.concatenate([xy, xy + rng.randint(1, 30, (60, 2))], axis=1).astype(np.float32)
        scores = rng.choice(np.linspace(0, 1, 25), 60).astype(np.float32)  # ties: the earlier box first
        ref = _batched_nms(torch.tensor(boxes), torch.tensor(scores), torch.zeros(60), threshold).numpy()
        assert nms(boxes, scores, threshold).tolist() == ref.tolist()


def test_rle_and_grid():
    mask = np.array([[0, 1, 1], [0, 1, 0]], bool)
    assert mask_to_rle(mask) == {"size": [2, 3], "counts": [2, 3, 1]}
    assert mask_to_rle(~np.zeros((2, 2), bool))["counts"] == [0, 4]
    np.testing.assert_allclose(point_grid(2), [[0.25, 0.25], [0.75, 0.25], [0.25, 0.75], [0.75, 0.75]])


def test_mask_generation_bad_arguments(pipe):
    with pytest.raises(PipelineError, match="points_per_batch"):
        pipe(IMAGE, points_per_batch=0)
    with pytest.raises(PipelineError, match="crop_n_points_downscale_factor"):
        pipe(IMAGE, crops_n_layers=1, crop_n_points_downscale_factor=2)
    with pytest.raises(PipelineError, match="pred_iou_thresh"):
        pipe(IMAGE, pred_iou_thresh="high")
    with pytest.raises(PipelineError, match="max_hole_area"):
        pipe(IMAGE, max_hole_area=10)
    with pytest.raises(PipelineError, match="not a mask generator"):
        from keras_models.pipelines.mask_generation import MaskGenerationPipeline

        MaskGenerationPipeline(object())

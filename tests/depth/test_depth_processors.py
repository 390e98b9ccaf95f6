"""DPT / GLPN image processors and ``post_process_depth_estimation`` against Transformers' (PIL
backend). numpy only: run once (the torch pass) under tools/test.sh."""

import os

import numpy as np
import pytest

import keras_models as km
from keras_models.models.depth.processor import DepthImageProcessor, depth_image_processor
from tests.parity import assert_close

pytestmark = pytest.mark.skipif(
    bool(os.environ.get("KM_BACKEND_INDEPENDENT_ONCE")) and os.environ.get("KERAS_BACKEND") != "torch",
    reason="backend-independent (numpy): runs in the torch pass")

CONFIGS = [
    ("DPTImageProcessorPil", {}),
    # Depth Anything's: keep the aspect ratio, multiples of 14, lower bound... and padding
    ("DPTImageProcessorPil", dict(size={"height": 70, "width": 98}, keep_aspect_ratio=True, ensure_multiple_of=14,
                                  resample=3, image_mean=[0.485, 0.456, 0.406], image_std=[0.229, 0.224, 0.225])),
    ("DPTImageProcessorPil", dict(size={"height": 45, "width": 61}, do_pad=True, size_divisor=16, resample=2)),
    ("GLPNImageProcessorPil", {}),
    ("GLPNImageProcessorPil", dict(size_divisor=24, resample=3)),
]


def _images():
    rng = np.random.RandomState(0)
    yy, xx = np.mgrid[0:83, 0:127]
    smooth = np.stack([(xx * 2) % 256, (yy * 3) % 256, (xx + yy) % 256], -1).astype(np.uint8)
    return [smooth, rng.randint(0, 256, (50, 37, 3)).astype(np.uint8)]


@pytest.mark.parametrize("cls_name,kwargs", CONFIGS, ids=[f"{c[:4]}{i}" for i, (c, _) in enumerate(CONFIGS)])
def test_processor_matches_transformers(cls_name, kwargs, tmp_path):
    import transformers

    hf = getattr(transformers, cls_name)(**kwargs)
    hf.save_pretrained(tmp_path)
    ours = depth_image_processor(tmp_path)
    assert isinstance(ours, DepthImageProcessor)
    for img in _images():
        want = hf(images=[img], return_tensors="np")["pixel_values"][0].transpose(1, 2, 0)
        got = ours(img)["pixel_values"][0]
        assert got.shape == want.shape, (cls_name, got.shape, want.shape)
        np.testing.assert_allclose(got, want, atol=1e-5, rtol=0, err_msg=cls_name)
    (tmp_path / "again").mkdir()
    ours.save_pretrained(tmp_path / "again")  # our saved config reads back the same in Transformers
    again = getattr(transformers, cls_name).from_pretrained(tmp_path / "again")
    img = _images()[0]
    np.testing.assert_allclose(again(images=[img], return_tensors="np")["pixel_values"][0].transpose(1, 2, 0),
                               ours(img)["pixel_values"][0], atol=1e-5)


def test_post_process_depth_estimation():
    import torch
    import transformers
    from transformers.modeling_outputs import DepthEstimatorOutput

    depth = np.random.RandomState(0).rand(2, 12, 10).astype("float32") * 5
    out = DepthEstimatorOutput(predicted_depth=torch.from_numpy(depth))
    sizes = [(37, 61), (7, 5)]  # up and down
    for proc in (transformers.DPTImageProcessorPil(), transformers.GLPNImageProcessorPil()):
        theirs = proc.post_process_depth_estimation(out, target_sizes=sizes)
        ours = km.DepthEstimator.post_process_depth_estimation(depth, target_sizes=sizes)
        for a, b in zip(ours, theirs):
            assert_close(a["predicted_depth"], b["predicted_depth"].numpy(), what=type(proc).__name__)
    same = km.DepthEstimator.post_process_depth_estimation({"predicted_depth": depth})
    np.testing.assert_array_equal(same[1]["predicted_depth"], depth[1])
    with pytest.raises(km.errors.InputError, match="target_sizes"):
        km.DepthEstimator.post_process_depth_estimation(depth, target_sizes=[(3, 3)])

"""object-detection, image-segmentation and image-to-image against Transformers' pipelines on the
same tiny checkpoints (image-to-image was removed from Transformers 5: its outputs were recorded
once with Transformers 4.57.1, see removed_golden/record_image_to_image.py).

Pipeline post-processing is backend-independent, so these tests are marked
``backend_independent`` and run in the torch pass only (each model's numerics are covered by its
own parity tests on every backend).
"""

import json
from pathlib import Path

import numpy as np
import pytest

import keras_models as km
from keras_models.pipelines import PipelineError
from tests.parity import _key, cached_folder, hf_reference
from tests.pipelines.refs import assert_same

pytestmark = pytest.mark.backend_independent

SIZES = [(40, 56), (30, 30)]


def _save_images(folder):
    from PIL import Image

    rng = np.random.RandomState(0)
    images = folder.parent / "images"
    images.mkdir(exist_ok=True)
    for i, size in enumerate(SIZES):
        Image.fromarray(rng.randint(0, 255, size=size + (3,), dtype=np.uint8)).save(images / f"img{i}.png")


def _images(folder):
    return [str(folder.parent / "images" / f"img{i}.png") for i in range(len(SIZES))]


def _plain(x):
    """PIL images as {"mode", "pixels"} (pixels as nested int lists); everything else JSON-able."""
    if isinstance(x, dict):
        return {k: _plain(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_plain(v) for v in x]
    if type(x).__module__.startswith("PIL."):
        return {"mode": x.mode, "pixels": np.asarray(x).tolist()}
    if hasattr(x, "tolist"):
        return x.tolist()
    return x


def hf_outputs(task, folder, calls):
    """Transformers' ``pipeline(task, model=folder)`` on each ``(args, kwargs)``, cached as JSON."""
    key = _key(f"hfpipe-{task}", str(folder), json.dumps(calls, sort_keys=True))

    def build(tmp):
        import transformers

        pipe = transformers.pipeline(task, model=str(folder), device="cpu")
        (tmp / "out.json").write_text(json.dumps([_plain(pipe(*a, **kw)) for a, kw in calls]))

    return json.loads((cached_folder(key, build) / "out.json").read_text())


ID2LABEL = {0: "cat", 1: "dog", 2: "car"}


# --- object-detection (DETR, Conditional DETR, YOLOS) ------------------------------------------------
def _detector(kind):
    def build():
        import transformers as T

        resnet = T.ResNetConfig(embedding_size=8, hidden_sizes=[16, 24, 12], depths=[1, 1, 1], layer_type="basic",
                                out_features=["stage2"])
        detr = dict(use_timm_backbone=False, use_pretrained_backbone=False, backbone_config=resnet, d_model=16,
                    encoder_layers=1, decoder_layers=1, encoder_ffn_dim=20, decoder_ffn_dim=24,
                    encoder_attention_heads=2, decoder_attention_heads=2, num_queries=7, id2label=ID2LABEL)
        if kind == "detr":
            return T.DetrForObjectDetection(T.DetrConfig(**detr))
        if kind == "conditional_detr":
            return T.ConditionalDetrForObjectDetection(T.ConditionalDetrConfig(**detr))
        return T.YolosForObjectDetection(T.YolosConfig(
            hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=20, image_size=[32, 48],
            patch_size=8, num_detection_tokens=5, id2label=ID2LABEL))

    return build


def _detector_extras(kind):
    def save(folder, model):
        import transformers as T

        cls = {"detr": T.DetrImageProcessor, "conditional_detr": T.ConditionalDetrImageProcessor,
               "yolos": T.YolosImageProcessor}[kind]
        cls(size={"shortest_edge": 32, "longest_edge": 48}).save_pretrained(folder)
        _save_images(folder)

    return save


def detector_checkpoint(kind):
    inputs = {"pixel_values": np.random.RandomState(0).randn(1, 3, 32, 48).astype("float32")}
    folder, _ = hf_reference(f"pipe-od-{kind}", _detector(kind), inputs, extra_save=_detector_extras(kind), seed=3)
    return folder


@pytest.mark.parametrize("kind", ["detr", "conditional_detr", "yolos"])
def test_object_detection_matches_transformers(kind):
    folder = detector_checkpoint(kind)
    imgs = _images(folder)
    calls = [([imgs[0]], {}), ([imgs], {"threshold": 0.2}), ([imgs[1]], {"threshold": 0.0})]
    expected = hf_outputs("object-detection", folder, calls)
    assert any(len(e) for e in expected[2:])
    pipe = km.pipeline("object-detection", model=folder)
    for (args, kwargs), theirs in zip(calls, expected):
        assert_same(pipe(*args, **kwargs), theirs, path=f"object-detection {kind} {kwargs}")
    assert_same(pipe(images=imgs, threshold=0.2, batch_size=2), expected[1])
    with pytest.raises(PipelineError, match="threshold"):
        pipe(imgs[0], threshold="high")
    with pytest.raises(PipelineError, match="top_k"):
        pipe(imgs[0], top_k=3)


# --- image-segmentation (MaskFormer, Mask2Former, SegFormer) ------------------------------------------
def _segmenter(kind):
    def build():
        import transformers as T

        if kind == "segformer":
            return T.SegformerForSemanticSegmentation(T.SegformerConfig(
                num_encoder_blocks=2, hidden_sizes=[8, 16], depths=[1, 1], sr_ratios=[2, 1], patch_sizes=[7, 3],
                strides=[4, 2], num_attention_heads=[1, 2], mlp_ratios=[2, 2], decoder_hidden_size=16,
                id2label=ID2LABEL, image_size=32))
        if kind == "maskformer":
            backbone = T.ResNetConfig(embedding_size=8, hidden_sizes=[8, 16, 24, 32], depths=[1, 1, 1, 1],
                                      layer_type="basic", out_features=["stage2", "stage3", "stage4"])
            decoder = T.DetrConfig(d_model=32, decoder_layers=1, decoder_attention_heads=2, decoder_ffn_dim=40,
                                   num_queries=6, encoder_layers=1)
            return T.MaskFormerForInstanceSegmentation(T.MaskFormerConfig(
                backbone_config=backbone, decoder_config=decoder, fpn_feature_size=32, mask_feature_size=16,
                id2label=ID2LABEL))
        backbone = T.SwinConfig(embed_dim=16, depths=[1, 1, 1], num_heads=[1, 2, 2], window_size=4, image_size=32,
                                out_features=["stage1", "stage2", "stage3"])
        return T.Mask2FormerForUniversalSegmentation(T.Mask2FormerConfig(
            backbone_config=backbone, feature_size=32, mask_feature_size=16, hidden_dim=32, encoder_feedforward_dim=24,
            encoder_layers=1, decoder_layers=2, num_attention_heads=2, dim_feedforward=40, num_queries=6,
            id2label=ID2LABEL, feature_strides=[4, 8, 16]))

    return build


def _segmenter_extras(kind):
    def save(folder, model):
        import transformers as T

        if kind == "segformer":
            T.SegformerImageProcessor(size={"height": 32, "width": 32}).save_pretrained(folder)
        else:
            cls = T.MaskFormerImageProcessor if kind == "maskformer" else T.Mask2FormerImageProcessor
            # MaskFormer's FPN GroupNorms (32 groups) need more than one pixel at the coarsest level
            edge = 64 if kind == "maskformer" else 32
            cls(size={"shortest_edge": edge, "longest_edge": 96}, size_divisor=32).save_pretrained(folder)
        _save_images(folder)

    return save


def segmenter_checkpoint(kind):
    inputs = {"pixel_values": np.random.RandomState(0).randn(2, 3, 64, 64).astype("float32")}
    folder, _ = hf_reference(f"pipe-seg-{kind}", _segmenter(kind), inputs, extra_save=_segmenter_extras(kind),
                             seed=4)
    return folder


SEGMENTATION_CALLS = {
    "segformer": [([0], {}), ([[0, 1]], {"subtask": "semantic"})],
    "maskformer": [([0], {"threshold": 0.2}), ([1], {"subtask": "instance", "threshold": 0.0}),
                   ([[0, 1]], {"subtask": "semantic"}),
                   ([1], {"subtask": "panoptic", "threshold": 0.1, "overlap_mask_area_threshold": 0.2})],
    "mask2former": [([0], {"threshold": 0.1, "mask_threshold": 0.3}), ([0], {"subtask": "instance", "threshold": 0.0}),
                    ([1], {"subtask": "semantic"})],
}


@pytest.mark.parametrize("kind", sorted(SEGMENTATION_CALLS))
def test_image_segmentation_matches_transformers(kind):
    folder = segmenter_checkpoint(kind)
    imgs = _images(folder)

    def arg(x):
        return [imgs[i] for i in x] if isinstance(x, list) else imgs[x]

    calls = [([arg(a) for a in args], kwargs) for args, kwargs in SEGMENTATION_CALLS[kind]]
    expected = hf_outputs("image-segmentation", folder, calls)
    assert any(len(e) for e in expected)
    pipe = km.pipeline("image-segmentation", model=folder)
    for (args, kwargs), theirs in zip(calls, expected):
        assert_same(_plain(pipe(*args, **kwargs)), theirs, path=f"image-segmentation {kind} {kwargs}")
    with pytest.raises(PipelineError, match="subtask"):
        pipe(imgs[0], subtask="instance" if kind == "segformer" else "depth")


# --- image-to-image (Swin2SR; removed from Transformers 5: recorded with 4.57.1) ------------------------
GOLDEN = Path(__file__).parent / "removed_golden"


def _assert_pixels_close(got, want):
    """uint8 images rounded from float outputs: a value within float rounding of a .5 boundary can
    round the other way on another CPU's kernels (seen on an AVX2-only Zen 3: one of 4608 values, 87
    vs 86), so at most one grey level and 0.1% of the values may differ."""
    assert got.shape == want.shape and got.dtype == want.dtype
    diff = np.abs(got.astype(np.int16) - want.astype(np.int16))
    assert diff.max() <= 1 and (diff > 0).mean() <= 1e-3, (diff.max(), int((diff > 0).sum()))


def test_image_to_image_matches_transformers_4():
    folder = GOLDEN / "image_to_image"
    recorded = np.load(GOLDEN / "image_to_image.npz")
    imgs = [str(folder / f"img{i}.png") for i in range(2)]
    pipe = km.pipeline("image-to-image", model=folder / "model")
    out = pipe(imgs[0])
    assert type(out).__module__.startswith("PIL.") and out.mode == "RGB"
    _assert_pixels_close(np.asarray(out), recorded["img0"])
    both = pipe(imgs, batch_size=2)
    for i, image in enumerate(both):
        _assert_pixels_close(np.asarray(image), recorded[f"img{i}"])
    with pytest.raises(PipelineError, match="unknown argument"):
        pipe(imgs[0], threshold=0.5)


def test_torch_topk_order_replayed():
    """Transformers' instance post-processing keeps PyTorch's unsorted top-k order; ours replays it."""
    import torch

    from keras_models.pipelines.vision_tasks import torch_topk_unsorted

    rng = np.random.RandomState(0)
    for n, k in [(18, 6), (24, 6), (15, 5), (100, 10), (300, 10), (50, 49), (7, 7), (8, 3), (1000, 100)]:
        for t in range(4):
            x = rng.rand(n).astype(np.float32)
            if t % 2:
                x = np.round(x * 5) / 5  # ties
            assert torch_topk_unsorted(x, k) == torch.tensor(x).topk(k, sorted=False).indices.tolist(), (n, k, t)

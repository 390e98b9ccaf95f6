"""DETA (removed from Transformers 5) through km.ObjectDetector, against references recorded with
Transformers 4.57.1 (tests/vision/removed_golden/record_deta.py: the checkpoint, its config and
what it chose are described there). Two-stage with box refinement and per-level NMS proposals,
3 feature levels, a padded batch (the padded tokens' proposals are masked to +inf); over a ResNet,
and (outputs only) over a Swin.

torchvision (which DETA's two-stage model and its post-processing call for ``batched_nms``) was not
installable beside this torch, so the reference ran with an independent greedy NMS written in the
record script; the post-processing is also checked here against a third NMS (``_reference_nms``,
plain Python) at a threshold low enough to suppress boxes.
"""

from pathlib import Path

import keras
import numpy as np
import pytest

import keras_models as km
from tests.parity import assert_close
from tests.vision.removed_golden.record_deta import TARGET_SIZES, images, inputs

GOLDEN = Path(__file__).parent / "removed_golden"


def _run(model, x):
    out = model.predict_on_batch(x) if keras.backend.backend() == "jax" else model(x)
    return {k: keras.ops.convert_to_numpy(v) for k, v in out.items()}


def _reference_nms(boxes, scores, labels, threshold):
    def iou(a, b):
        w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
        h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
        union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - w * h
        return w * h / union if union > 0 else 0.0

    kept = []
    for i in sorted(range(len(scores)), key=lambda i: -scores[i]):
        if all(labels[j] != labels[i] or iou(boxes[i], boxes[j]) <= threshold for j in kept):
            kept.append(i)
    return kept[:100]


def test_deta_parity_and_post_processing(tmp_path):
    expected = dict(np.load(GOLDEN / "deta.npz"))
    model = km.ObjectDetector.from_preset(GOLDEN / "deta")
    assert type(model).__name__ == "DetaObjectDetector" and model.head_from_checkpoint and model.num_classes == 3
    x = inputs()
    out = _run(model, x)
    for k in ("logits", "pred_boxes", "last_hidden_state"):
        assert_close(out[k], expected[k], what=f"deta {k}")
    assert_close(out["encoder_last_hidden_state"][:1], expected["encoder_last_hidden_state"], what="deta encoder")

    # DETA's post-processing (NMS per class): on the reference's own outputs exactly, on ours closely
    for source, atol in ((expected, 1e-6), (out, 1e-4)):
        got = model.post_process_object_detection({k: source[k] for k in ("logits", "pred_boxes")},
                                                  threshold=0.0, target_sizes=TARGET_SIZES)
        for i, r in enumerate(got):
            np.testing.assert_array_equal(r["labels"], expected[f"post{i}_labels"])
            np.testing.assert_allclose(r["scores"], expected[f"post{i}_scores"], atol=atol)
            np.testing.assert_allclose(r["boxes"], expected[f"post{i}_boxes"], atol=atol * 150)
    # a threshold that suppresses: against an independent NMS
    got = model.post_process_object_detection(expected, threshold=0.0, nms_threshold=0.05)
    for i, r in enumerate(got):
        prob = 1 / (1 + np.exp(-expected["logits"][i].reshape(-1)))
        c = expected["logits"].shape[-1]
        b = expected["pred_boxes"][i][np.arange(len(prob)) // c]
        corners = np.concatenate([b[:, :2] - b[:, 2:] / 2, b[:, :2] + b[:, 2:] / 2], axis=1)
        keep = _reference_nms(corners, prob, np.arange(len(prob)) % c, 0.05)
        assert len(keep) < len(prob)
        np.testing.assert_array_equal(r["labels"], np.arange(len(prob))[keep] % c)
        np.testing.assert_allclose(r["scores"], prob[keep], atol=1e-6)
        np.testing.assert_allclose(r["boxes"], corners[keep], atol=1e-6)

    if keras.backend.backend() != "torch":
        return
    # backend-independent, once: the export reloads with the same outputs
    model.save_to_preset(tmp_path / "saved")
    again = km.ObjectDetector.from_preset(tmp_path / "saved")
    assert type(again) is type(model)
    assert_close(_run(again, x)["logits"], expected["logits"], what="deta save_to_preset reload")


def test_deta_swin_backbone():
    # the Swin variant (SwinBackbone's per-stage LayerNorms, windows padded): outputs only
    expected = dict(np.load(GOLDEN / "deta_swin.npz"))
    model = km.ObjectDetector.from_preset(GOLDEN / "deta_swin")
    out = _run(model, inputs())
    assert out["encoder_last_hidden_state"].shape[1] == 1000
    for k in ("logits", "pred_boxes", "last_hidden_state"):
        assert_close(out[k], expected[k], what=f"deta swin {k}")


@pytest.mark.backend_independent
def test_deta_image_processor():
    expected = dict(np.load(GOLDEN / "deta.npz"))
    proc = km.ObjectDetector.preprocessor_from_preset.__func__(km.ObjectDetector, GOLDEN / "deta", {})
    got = proc(images())
    np.testing.assert_allclose(got["pixel_values"], expected["processed_pixel_values"], atol=1e-5)
    np.testing.assert_array_equal(got["pixel_mask"], expected["processed_pixel_mask"])


def test_deta_config_errors():
    from keras_models.errors import ConfigError
    from keras_models.models.detr.deta import DetaSpec

    config = {"model_type": "deta", "two_stage": True, "with_box_refine": False}
    with pytest.raises(ConfigError, match="with_box_refine"):
        DetaSpec.from_hf(config)
    spec = DetaSpec.from_hf({"model_type": "deta"})  # DETA's defaults: a ResNet-50 at stages 2-4, 5 levels
    assert spec.two_stage and spec.assign_first_stage and spec.num_feature_levels == 5
    assert spec.backbone_config["out_features"] == ["stage2", "stage3", "stage4"]

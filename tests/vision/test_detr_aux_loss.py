"""The auxiliary (per decoder layer) terms of the focal-loss detectors' training loss against
Transformers' ``...ForObjectDetection(pixel_values, pixel_mask, labels=...)`` ``loss`` and
``loss_dict`` (``loss_ce_0``, ``loss_bbox_0``, ...), on test_detection's tiny seeded models saved
again with ``auxiliary_loss=True``: Conditional DETR (a LayerNorm between decoder layers, every
layer's boxes offset by the same reference points), Deformable DETR (shared heads), with box
refinement (each layer's own refinement MLP on the references it read, 2-d then boxes) and
two-stage (each layer's own class head). Inference outputs stay Transformers' (and have no
auxiliary keys). YOLOS refuses the option (Transformers' own YOLOS fails on it)."""

import numpy as np
import pytest

from tests.parity import _key, cached_folder
from tests.vision.test_detection import _hf_class, _inputs, reference
from tests.vision.test_detr_loss import _labels, _loss, _outputs

KINDS = ("conditional_detr", "deformable_detr", "deformable_detr-refine", "deformable_detr-two-stage")


def aux_reference(kind):
    folder, _ = reference(kind)

    def build(tmp):
        import torch

        model = _hf_class(kind).from_pretrained(folder, auxiliary_loss=True).eval()
        model.save_pretrained(tmp / "model")
        model = _hf_class(kind).from_pretrained(tmp / "model").eval()
        assert model.config.auxiliary_loss
        inputs = _inputs(kind)
        torch_in = {"pixel_values": torch.tensor(inputs["pixel_values"].transpose(0, 3, 1, 2)),
                    "pixel_mask": torch.tensor(inputs["pixel_mask"])}
        expected = {}
        with torch.no_grad():
            out = model(**torch_in)
            expected["logits"], expected["pred_boxes"] = out.logits.numpy(), out.pred_boxes.numpy()
            for case in (0, 1):
                labels = [{k: torch.tensor(v) for k, v in t.items()} for t in _labels(case)]
                out = model(**torch_in, labels=labels)
                expected[f"{case}/loss"] = out.loss.numpy()
                for k, v in out.loss_dict.items():
                    expected[f"{case}/{k}"] = v.numpy()
        np.savez(tmp / "loss.npz", **expected)

    import transformers

    key = _key(f"detr-aux-loss-{kind}", open(__file__).read(), str(folder), transformers.__version__)
    built = cached_folder(key, build)
    return built / "model", dict(np.load(built / "loss.npz"))


@pytest.mark.one_case_per_pass("kind")
@pytest.mark.parametrize("kind", KINDS)
def test_auxiliary_loss_matches_transformers(kind):
    import keras

    import keras_models as km

    folder, expected = aux_reference(kind)
    model = km.ObjectDetector.from_preset(folder)
    assert model.loss_config["auxiliary_loss"]
    inputs = _inputs(kind)
    if keras.backend.backend() != "jax":  # inference: no auxiliary keys (JAX: one compiled program less)
        out = model(inputs)
        assert not any(k.startswith("auxiliary") for k in out), sorted(out)
    outputs = _outputs(model, inputs)
    for k in ("logits", "pred_boxes"):  # Transformers' outputs (Conditional DETR: its auxiliary_loss LayerNorms)
        np.testing.assert_allclose(keras.ops.convert_to_numpy(outputs[k]), expected[k], atol=1e-4, err_msg=k)
    assert tuple(outputs["auxiliary_logits"].shape)[:2] == (1, 2)  # 2 decoder layers: one auxiliary
    for case in (0, 1):
        loss, parts = _loss(model, outputs, _labels(case))
        want = {k.split("/", 1)[1]: v for k, v in expected.items() if k.startswith(f"{case}/")}
        assert sorted(parts) == sorted(k for k in want if k != "loss"), (kind, case, sorted(parts))
        assert "loss_ce_0" in parts and "loss_giou_0" in parts
        got = {k: float(keras.ops.convert_to_numpy(v)) for k, v in parts.items()}
        got["loss"] = float(keras.ops.convert_to_numpy(loss))
        for k, v in want.items():
            np.testing.assert_allclose(got[k], v, atol=1e-4, rtol=1e-5, err_msg=f"{kind} case {case} {k}")
    if keras.backend.backend() != "jax":  # the public method (eager)
        loss, _ = model.compute_detection_loss(inputs, _labels(0))
        np.testing.assert_allclose(float(keras.ops.convert_to_numpy(loss)), expected["0/loss"], atol=1e-4)


@pytest.mark.backend_independent
def test_auxiliary_loss_refusals():
    import keras_models as km
    from keras_models.errors import ConfigError

    # YOLOS: no decoder (Transformers raises a TypeError on it)
    yolos = km.ObjectDetector.from_preset(reference("yolos")[0], load_weights=False)
    yolos.loss_config["auxiliary_loss"] = True
    with pytest.raises(ConfigError, match="auxiliary_loss.*YOLOS"):
        yolos.compute_detection_loss(_inputs("yolos"), _labels(0))
    # switched on after loading a model built without it: no per-layer states to score
    model = km.ObjectDetector.from_preset(reference("deformable_detr")[0], load_weights=False)
    model.loss_config["auxiliary_loss"] = True
    with pytest.raises(ConfigError, match="auxiliary_loss=True in config.json"):
        model.compute_detection_loss(_inputs("deformable_detr"), _labels(0))

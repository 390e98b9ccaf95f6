"""DETR's Hungarian-matched training loss (keras_models/tasks/detection_loss.py) against
Transformers' ``...ForObjectDetection(pixel_values, pixel_mask, labels=...)`` loss and loss_dict, on
test_detection's tiny seeded models (DETR with ``auxiliary_loss``: the per-layer terms; Conditional
and Deformable DETR: the sigmoid focal kind; YOLOS: no pixel mask). Two label sets: 3 + 1 boxes,
and 2 + 0 boxes (an image without objects: all its slots are "no object" targets). Then ``fit`` on
Transformers-style labels lowers the loss, and bad targets / unsupported configs raise errors
naming them."""

import numpy as np
import pytest

from tests.parity import _key, cached_folder
from tests.vision.test_detection import _hf_class, _inputs, reference

KINDS = ("detr", "conditional_detr", "deformable_detr", "yolos")


def _labels(case):
    rng = np.random.RandomState(7 + case)
    counts = (3, 1) if case == 0 else (2, 0)
    out = []
    for n in counts:
        centers = rng.uniform(0.25, 0.75, (n, 2))
        sizes = rng.uniform(0.1, 0.4, (n, 2))
        out.append({"class_labels": rng.randint(0, 3, n).astype("int64"),
                    "boxes": np.concatenate([centers, sizes], axis=1).astype("float32")})
    return out


def loss_reference(kind):
    folder, _ = reference(kind)

    def build(tmp):
        import torch

        model = _hf_class(kind).from_pretrained(folder).eval()
        inputs = _inputs(kind)
        torch_in = {"pixel_values": torch.tensor(inputs["pixel_values"].transpose(0, 3, 1, 2))}
        if "pixel_mask" in inputs:
            torch_in["pixel_mask"] = torch.tensor(inputs["pixel_mask"])
        expected = {}
        for case in (0, 1):
            labels = [{k: torch.tensor(v) for k, v in t.items()} for t in _labels(case)]
            with torch.no_grad():
                out = model(**torch_in, labels=labels)
            expected[f"{case}/loss"] = out.loss.numpy()
            for k, v in out.loss_dict.items():
                expected[f"{case}/{k}"] = v.numpy()
        np.savez(tmp / "loss.npz", **expected)

    import transformers

    key = _key(f"detr-loss-{kind}", open(__file__).read(), str(folder), transformers.__version__)
    return folder, dict(np.load(cached_folder(key, build) / "loss.npz"))


_MODELS = {}


def _model(kind):
    """One loaded model per kind for this file (the fit test trains the DETR one after its parity case)."""
    import keras_models as km

    if kind not in _MODELS:
        _MODELS[kind] = km.ObjectDetector.from_preset(reference(kind)[0])
    return _MODELS[kind]


def _loss(model, outputs, labels):
    """detection_loss on the outputs; compiled under JAX (one program instead of per-op compiles)."""
    import keras

    from keras_models.tasks.detection_loss import detection_loss, pad_targets

    def fn(o, t):
        return detection_loss(o, t, model.loss_config, not model.no_object_class, model.num_classes)

    if keras.backend.backend() == "jax":
        import jax

        fn = jax.jit(fn)
    return fn(outputs, pad_targets(labels, model.num_classes))


def _outputs(model, inputs):
    """The outputs with the auxiliary layers' logits and boxes: one compiled program under JAX (op
    by op, every op compiles on its own: several times slower), eager elsewhere."""
    import keras

    if keras.backend.backend() == "jax":
        import jax

        return jax.jit(lambda x: model.detection_outputs(x, auxiliary=True))(inputs)
    return model.detection_outputs(inputs, auxiliary=True)


@pytest.mark.one_case_per_pass("kind")
@pytest.mark.parametrize("kind", KINDS)
def test_loss_matches_transformers(kind):
    import keras

    _, expected = loss_reference(kind)
    model = _model(kind)
    outputs = _outputs(model, _inputs(kind))
    for case in (0, 1):
        loss, parts = _loss(model, outputs, _labels(case))
        want = {k.split("/", 1)[1]: v for k, v in expected.items() if k.startswith(f"{case}/")}
        assert sorted(parts) == sorted(k for k in want if k != "loss"), (kind, case)
        got = {k: float(keras.ops.convert_to_numpy(v)) for k, v in parts.items()}
        got["loss"] = float(keras.ops.convert_to_numpy(loss))
        for k, v in want.items():
            np.testing.assert_allclose(got[k], v, atol=1e-4, rtol=1e-5, err_msg=f"{kind} case {case} {k}")
    if kind == "detr":
        assert "loss_ce_0" in parts  # auxiliary_loss=True, 2 decoder layers
    if kind == "yolos" or keras.backend.backend() != "jax":  # the public method (eager), once per pass
        loss, _ = model.compute_detection_loss(_inputs(kind), _labels(1))
        np.testing.assert_allclose(float(keras.ops.convert_to_numpy(loss)), expected["1/loss"], atol=1e-4)


def test_fit_lowers_loss():
    import keras

    model = _model("detr")
    model.compile(optimizer=keras.optimizers.Adam(1e-3))
    # Transformers-style labels; one batch per epoch: each epoch's loss is that of the weights before its step
    losses = model.fit(_inputs("detr"), _labels(0), batch_size=2, epochs=3, shuffle=False, verbose=0).history["loss"]
    assert np.isfinite(losses).all() and losses[-1] < losses[0], losses


@pytest.mark.backend_independent
def test_target_errors_and_matcher():
    from keras_models.errors import InputError
    from keras_models.tasks.detection_loss import hungarian_match, pad_targets

    padded = pad_targets(_labels(1), num_classes=3)
    assert padded["class_labels"].shape == (2, 2) and (padded["class_labels"][1] == -1).all()
    assert pad_targets([{"class_labels": [], "boxes": []}])["class_labels"].shape == (1, 1)
    with pytest.raises(InputError, match="boxes"):
        pad_targets([{"class_labels": [1, 2], "boxes": np.zeros((3, 4))}])
    with pytest.raises(InputError, match="class_labels"):
        pad_targets([{"class_labels": [5], "boxes": np.full((1, 4), 0.5)}], num_classes=3)
    with pytest.raises(InputError, match="width, height"):
        pad_targets([{"class_labels": [0], "boxes": [[0.5, 0.5, -0.1, 0.2]]}])
    with pytest.raises(InputError, match="missing"):
        pad_targets([{"labels": [0]}])
    with pytest.raises(InputError, match="one dict per image"):
        pad_targets(np.zeros((2, 4)))
    # three slots, two targets: each target takes the slot holding its own box and class
    logits = np.full((1, 3, 3), -4.0, np.float32)
    logits[0, 2, 0] = logits[0, 0, 1] = 4.0
    boxes = np.array([[[0.7, 0.7, 0.2, 0.2], [0.5, 0.5, 0.9, 0.9], [0.3, 0.3, 0.2, 0.2]]], np.float32)
    idx = hungarian_match(logits, boxes, np.array([[0, 1, -1]]), boxes[:, [2, 0, 1]], 1.0, 5.0, 2.0, False)
    np.testing.assert_array_equal(idx, [[2, 0, -1]])


def test_unsupported_losses_are_refused():
    import keras_models as km
    from keras_models.errors import ConfigError

    model = km.ObjectDetector.from_preset(reference("conditional_detr")[0], load_weights=False)
    model.loss_config["auxiliary_loss"] = True
    with pytest.raises(ConfigError, match="auxiliary_loss"):
        model.compute_detection_loss(_inputs("conditional_detr"), _labels(0))
    with pytest.raises(ConfigError, match="auxiliary_loss"):
        model.fit(_inputs("conditional_detr"), _labels(0), batch_size=2, epochs=1, verbose=0)

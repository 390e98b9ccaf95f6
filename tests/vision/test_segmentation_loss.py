"""The universal segmenters' Hungarian-matched training loss (keras_models/tasks/segmentation_loss.py)
against Transformers' ``MaskFormerForInstanceSegmentation`` / ``Mask2FormerForUniversalSegmentation``
given ``mask_labels`` and ``class_labels`` (loss and ``get_loss_dict``), on test_maskformer's and
test_mask2former's tiny seeded models with odd loss weights. Two label sets: 3 + 1 segments, and
2 + 0 (an image with no segments). Mask2Former draws random points (torch.rand): the reference's
draws are recorded and fed to our loss (``points``), so both read the same points. Then ``fit`` on
Transformers-style labels lowers the loss, OneFormer refuses training by name, and bad targets raise
errors naming them."""

import json
import shutil

import numpy as np
import pytest

from tests.parity import _key, _versions, cached_folder

H, W = 56, 48  # test_maskformer / test_mask2former's image size
LOSS_FIELDS = {"maskformer": dict(no_object_weight=0.3, mask_weight=10.0, dice_weight=2.0, cross_entropy_weight=1.5),
               "mask2former": dict(no_object_weight=0.2, class_weight=1.5, mask_weight=4.0, dice_weight=3.0,
                                   train_num_points=24, oversample_ratio=2.5, importance_sample_ratio=0.75)}


def _labels(case, num_labels=3):
    rng = np.random.RandomState(11 + case)
    counts = (3, 1) if case == 0 else (2, 0)
    masks, classes = [], []
    for n in counts:
        m = np.zeros((n, H, W), np.float32)
        for j in range(n):  # a random rectangle each
            y0, x0 = rng.randint(0, H - 16), rng.randint(0, W - 16)
            m[j, y0:y0 + rng.randint(8, 16), x0:x0 + rng.randint(8, 16)] = 1
        masks.append(m)
        classes.append(rng.randint(0, num_labels, n).astype("int64"))
    return masks, classes


def _source(kind):
    if kind == "maskformer":
        from tests.vision.test_maskformer import _reference

        x, _, folder, _ = _reference("swin")
        return x, folder
    from tests.vision.test_mask2former import _reference

    x, folder, _ = _reference("post_norm")
    return x, folder


def _points_from_draws(draws, matches, images, max_n, config):
    """The reference's torch.rand draws (per scored layer: one (1, P, 2) per image for the matcher,
    then (pairs, P * oversample, 2) and (pairs, random, 2) in matched-pair order) -> our ``points``
    (one dict per layer, per target slot)."""
    from keras_models.tasks.segmentation_loss import point_counts

    n, over, _, rand = point_counts(config)
    draws, out = list(draws), []
    for match in matches:
        matcher = np.concatenate([draws.pop(0) for _ in range(images)], axis=0)
        sampled = [draws.pop(0)] + ([draws.pop(0)] if rand > 0 else [])
        layer = {"matcher": matcher, "oversampled": np.full((images, max_n, over, 2), 0.5, np.float32),
                 "random": np.full((images, max_n, rand, 2), 0.5, np.float32)}
        row = 0
        for i, (_, tgt) in enumerate(match):
            for j in tgt:
                layer["oversampled"][i, j] = sampled[0][row]
                if rand > 0:
                    layer["random"][i, j] = sampled[1][row]
                row += 1
        out.append(layer)
    assert not draws, "unused draws"
    return out


def loss_reference(kind):
    """(inputs, model folder with the odd loss fields, expected loss / loss_dict per label case,
    Mask2Former's recorded points per case and layer)."""
    x, source = _source(kind)

    def build(tmp):
        import torch
        import transformers as T

        shutil.copytree(source, tmp / "model")
        config = json.loads((tmp / "model" / "config.json").read_text())
        config.update(LOSS_FIELDS[kind])
        (tmp / "model" / "config.json").write_text(json.dumps(config))
        cls = T.MaskFormerForInstanceSegmentation if kind == "maskformer" else T.Mask2FormerForUniversalSegmentation
        model = cls.from_pretrained(tmp / "model").eval()
        pixels = torch.tensor(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))
        expected, points = {}, {}
        for case in (0, 1):
            masks, classes = _labels(case)
            rng = np.random.RandomState(100 + case)
            draws, matches, dicts = [], [], []
            real_rand, matcher_forward, get_loss_dict = torch.rand, model.criterion.matcher.forward, model.get_loss_dict

            def rand(*shape, **kwargs):  # the reference's random points, recorded
                v = rng.uniform(size=tuple(int(d) for d in shape)).astype(np.float32)
                draws.append(v)
                return torch.tensor(v)

            def matcher(*args, **kwargs):
                out = matcher_forward(*args, **kwargs)
                matches.append([(i.numpy(), j.numpy()) for i, j in out])
                return out

            def loss_dict(*args, **kwargs):
                dicts.append(get_loss_dict(*args, **kwargs))
                return dicts[-1]

            torch.rand, model.criterion.matcher.forward, model.get_loss_dict = rand, matcher, loss_dict
            try:
                with torch.no_grad():
                    out = model(pixel_values=pixels, mask_labels=[torch.tensor(m) for m in masks],
                                class_labels=[torch.tensor(c) for c in classes])
            finally:
                torch.rand = real_rand
                del model.criterion.matcher.forward, model.get_loss_dict
            expected[f"{case}/loss"] = out.loss.numpy()
            for k, v in dicts[0].items():
                expected[f"{case}/{k}"] = v.numpy()
            if kind == "mask2former":
                max_n = max(1, max(len(c) for c in classes))
                for layer, pts in enumerate(_points_from_draws(draws, matches, len(masks), max_n,
                                                               LOSS_FIELDS[kind])):
                    for k, v in pts.items():
                        points[f"{case}/{layer}/{k}"] = v
        np.savez(tmp / "loss.npz", **expected)
        np.savez(tmp / "points.npz", **points)

    import inspect
    import sys

    key = _key(f"segloss-{kind}", inspect.getsource(sys.modules[__name__]), str(source), _versions())
    folder = cached_folder(key, build)
    return x, folder / "model", dict(np.load(folder / "loss.npz")), dict(np.load(folder / "points.npz"))


MAX_N = 3  # both label cases padded to 3 targets: one compiled loss under JAX


def _targets(case):
    from keras_models.tasks.segmentation_loss import pad_segmentation_targets

    t = pad_segmentation_targets(*_labels(case), num_classes=3)
    extra = MAX_N - t["class_labels"].shape[1]
    return {"class_labels": np.pad(t["class_labels"], ((0, 0), (0, extra)), constant_values=-1),
            "mask_labels": np.pad(t["mask_labels"], ((0, 0), (0, extra), (0, 0), (0, 0)))}


def _case_points(points, case, pad=True):
    """The recorded points of a label case, per scored layer (padded to MAX_N target slots)."""
    layers = sorted({int(k.split("/")[1]) for k in points if k.startswith(f"{case}/")})
    out = []
    for layer in layers:
        p = {n: points[f"{case}/{layer}/{n}"] for n in ("matcher", "oversampled", "random")}
        if pad:
            for n in ("oversampled", "random"):
                p[n] = np.pad(p[n], ((0, 0), (0, MAX_N - p[n].shape[1]), (0, 0), (0, 0)), constant_values=0.5)
        out.append(p)
    return out


_MODELS = {}


def _model(kind):
    import keras_models as km

    if kind not in _MODELS:
        _MODELS[kind] = km.UniversalSegmenter.from_preset(loss_reference(kind)[1], loss_seed=3)
    return _MODELS[kind]


def _loss(model, outputs, targets, points):
    """segmentation_loss on the outputs; compiled under JAX (one program instead of per-op compiles)."""
    import keras

    from keras_models.tasks.segmentation_loss import segmentation_loss

    def fn(o, t, p):
        return segmentation_loss(o, t, model.loss_config, model.loss_kind, points=p)

    if keras.backend.backend() == "jax":
        import jax

        fn = jax.jit(fn)
    return fn(outputs, targets, points)


def _outputs(model, inputs):
    import keras

    if keras.backend.backend() == "jax":
        import jax

        return jax.jit(lambda x: model.segmentation_outputs(x, auxiliary=True))(inputs)
    return model.segmentation_outputs(inputs, auxiliary=True)


@pytest.mark.one_case_per_pass("kind")
@pytest.mark.parametrize("kind", ["maskformer", "mask2former"])
def test_loss_matches_transformers(kind):
    import keras

    x, _, expected, points = loss_reference(kind)
    model = _model(kind)
    for k, v in LOSS_FIELDS[kind].items():  # no_object_weight: the checkpoint's criterion.empty_weight wins
        assert model.loss_config[k] == (0.1 if k == "no_object_weight" else v), k
    outputs = _outputs(model, {"pixel_values": x})
    for case in (0, 1):
        targets = _targets(case)
        pts = _case_points(points, case) if kind == "mask2former" else None
        loss, parts = _loss(model, {k: v for k, v in outputs.items() if "queries_logits" in k}, targets, pts)
        want = {k.split("/", 1)[1]: v for k, v in expected.items() if k.startswith(f"{case}/")}
        assert sorted(parts) == sorted(k for k in want if k != "loss"), (kind, case, sorted(parts))
        got = {k: float(keras.ops.convert_to_numpy(v)) for k, v in parts.items()}
        got["loss"] = float(keras.ops.convert_to_numpy(loss))
        for k, v in want.items():
            np.testing.assert_allclose(got[k], v, atol=1e-4, rtol=1e-5, err_msg=f"{kind} case {case} {k}")
    if kind == "mask2former":
        assert "loss_dice_1" in parts  # 3 decoder layers: the initial prediction and one more are auxiliary
    if keras.backend.backend() != "jax":  # the public method (eager), once per pass
        masks, classes = _labels(1)
        loss, _ = model.compute_segmentation_loss({"pixel_values": x}, masks, classes,
                                                  points=_case_points(points, 1, pad=False) if kind == "mask2former"
                                                  else None)
        np.testing.assert_allclose(float(keras.ops.convert_to_numpy(loss)), expected["1/loss"], atol=1e-4)


@pytest.mark.one_case_per_pass("kind")
@pytest.mark.parametrize("kind", ["maskformer", "mask2former"])
def test_fit_lowers_loss(kind):
    import keras

    x = loss_reference(kind)[0]
    model = _model(kind)
    if kind == "mask2former":  # more points: a steadier loss (the draws are seeded: _model's loss_seed)
        model.loss_config["train_num_points"] = 256
    # SGD: Adam's per-variable update graph took most of the compiled step's trace/compile time
    model.compile(optimizer=keras.optimizers.SGD(1e-2))
    masks, classes = _labels(0)
    y = {"mask_labels": masks, "class_labels": classes}
    # one batch per epoch: each epoch's loss is that of the weights before its step
    losses = model.fit({"pixel_values": x}, y, batch_size=2, epochs=3, shuffle=False, verbose=0).history["loss"]
    assert np.isfinite(losses).all() and losses[-1] < losses[0], losses


@pytest.mark.backend_independent
def test_target_errors_and_matcher():
    from keras_models.errors import ConfigError, InputError
    from keras_models.tasks.segmentation_loss import assign, loss_config_from_hf, pad_segmentation_targets

    padded = pad_segmentation_targets(*_labels(1), num_classes=3)
    assert padded["mask_labels"].shape == (2, 2, H, W) and (padded["class_labels"][1] == -1).all()
    empty = pad_segmentation_targets([np.zeros((0, 4, 4))], [np.zeros((0,), "int64")])
    assert empty["class_labels"].shape == (1, 1) and empty["mask_labels"].shape == (1, 1, 4, 4)
    with pytest.raises(InputError, match="mask_labels\[0\]"):
        pad_segmentation_targets([np.zeros((2, 4, 4))], [np.array([0])])
    with pytest.raises(InputError, match="class_labels\[0\]"):
        pad_segmentation_targets([np.zeros((1, 4, 4))], [np.array([5])], num_classes=3)
    with pytest.raises(InputError, match="one entry per image"):
        pad_segmentation_targets([np.zeros((1, 4, 4))], [])
    with pytest.raises(InputError, match="mask_labels"):
        pad_segmentation_targets({"masks": []})
    with pytest.raises(ConfigError, match="importance_sample_ratio"):
        loss_config_from_hf({"importance_sample_ratio": 2.0}, "mask2former")
    with pytest.raises(ConfigError, match="train_num_points"):
        loss_config_from_hf({"train_num_points": 0}, "mask2former")
    # three queries, two targets (and a padded slot): each target takes its cheapest free query
    cost = np.array([[[0.9, 0.1, 0.0], [0.2, 0.8, 0.0], [0.5, 0.5, 0.0]]], np.float32)
    np.testing.assert_array_equal(assign(cost, np.array([[0, 1, -1]])), [[1, 0, -1]])


@pytest.mark.backend_independent  # the refusal precedes any computation
def test_oneformer_refuses_training():
    import keras_models as km
    from keras_models.errors import ConfigError
    from tests.vision.test_oneformer import _reference

    model = km.UniversalSegmenter.from_preset(_reference("post_norm")[1], load_weights=False)
    with pytest.raises(ConfigError, match="text_mapper"):
        model.compute_segmentation_loss({"pixel_values": np.zeros((1, 32, 32, 3), "float32")}, *_labels(1))
    with pytest.raises(ConfigError, match="contrastive"):
        model.fit({"pixel_values": np.zeros((1, 32, 32, 3), "float32")},
                  {"mask_labels": [np.zeros((1, 32, 32))], "class_labels": [np.array([0])]}, epochs=1, verbose=0)

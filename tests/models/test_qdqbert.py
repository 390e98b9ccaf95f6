"""QDQBert (removed from Transformers 5) against references recorded with Transformers 4.57.1 on a
stand-in of NVIDIA's pytorch-quantization (tests/models/removed_golden/record_qdqbert.py and
pytorch_quantization_standin.py: the real wheel is not installable here). Every head through
the public ``from_preset``, an odd config, a calibrated checkpoint (stored ``_amax`` on every
quantizer) loaded, used and exported back, the fake-quantisation math on its own, and errors."""

import json
import shutil
from pathlib import Path

import keras
import numpy as np
import pytest
from keras import ops
from safetensors.numpy import load_file, save_file

import keras_models as km
from keras_models.errors import ConfigError, WeightMismatchError
from keras_models.models.qdqbert.backbone import fake_quantize
from tests.parity import assert_close, to_numpy

GOLDEN = Path(__file__).parent / "removed_golden"
FOLDER = GOLDEN / "qdqbert"
HEADS = ("MaskedLM", "TextClassifier", "TokenClassifier", "QuestionAnswerer")


def golden():
    data = dict(np.load(GOLDEN / "qdqbert.npz"))
    return {k[3:]: v for k, v in data.items() if k.startswith("in_")}, data


def check(case, model=None, inputs=None):
    """``case`` (``<config>_<Task>``) from its checkpoint (or ``model``) against the recorded head
    outputs and the backbone's last hidden state."""
    recorded, data = golden()
    inputs = recorded if inputs is None else inputs
    task = case.split("_", 1)[1]
    model = model or getattr(km, task).from_preset(FOLDER / case)
    assert type(model).__name__ == "QDQBert" + task
    mask = inputs["attention_mask"]
    if task != "Backbone":
        assert model.head_from_checkpoint
        out = model(inputs)
        if task == "QuestionAnswerer":
            for k in ("start_logits", "end_logits"):
                assert_close(out[k], data[f"{case}__{k}"], mask=mask, what=f"qdqbert {case} {k}")
        elif task == "TextClassifier":
            assert_close(out, data[f"{case}__logits"], what=f"qdqbert {case}")
        else:
            assert_close(out, data[f"{case}__logits"], mask=mask, what=f"qdqbert {case}")
        model = model.backbone
    # every position: in QDQBert the padding takes part in the per-tensor amax, so it must match too
    assert_close(model(inputs), data[f"{case}__hidden"], what=f"qdqbert {case} backbone")
    return model


@pytest.mark.one_case_per_pass("task")
@pytest.mark.parametrize("task", HEADS)
def test_qdqbert_heads(task):
    check(f"base_{task}")


def test_qdqbert_backbone_and_odd_config():
    """QDQBertModel's checkpoint; 1 layer, relu, eps 1e-6, 3 token types, 4 heads."""
    check("base_Backbone")
    inputs, _ = golden()
    check("odd_TextClassifier", inputs=dict(inputs, token_type_ids=inputs["token_type_ids"] * 2))


@pytest.mark.backend_independent
def test_quantization_is_applied(tmp_path):
    """The same weights read as plain BERT give other outputs (the quantizers are not identities)."""
    inputs, data = golden()
    shutil.copytree(FOLDER / "base_Backbone", tmp_path / "bert")
    config = json.loads((tmp_path / "bert" / "config.json").read_text())
    (tmp_path / "bert" / "config.json").write_text(json.dumps(dict(config, model_type="bert")))
    plain = to_numpy(km.Backbone.from_preset(tmp_path / "bert")(inputs))
    assert np.abs(plain - data["base_Backbone__hidden"]).max() > 1e-2


def test_qdqbert_calibrated_checkpoint(tmp_path):
    """Stored ``_amax`` (0-d per tensor, (out, 1) per weight row) are loaded and used, and
    ``save_to_preset`` writes them back in the same shapes; a dynamic model writes none."""
    model = km.MaskedLM.from_preset(FOLDER / "calibrated_MaskedLM")
    stored = [v for v in model.backbone.non_trainable_variables if "amax" in v.path]
    assert len(stored) == 40 and all(np.min(to_numpy(v)) > 0 for v in stored)
    check("calibrated_MaskedLM", model)
    model.save_to_preset(tmp_path / "saved")
    original, saved = (load_file(p / "model.safetensors") for p in (FOLDER / "calibrated_MaskedLM", tmp_path / "saved"))
    amax = {k for k in original if k.endswith("._amax")}
    assert len(amax) == 40 and amax <= set(saved)
    for k in amax:
        assert saved[k].shape == original[k].shape and np.allclose(saved[k], original[k], rtol=0, atol=0), k
    check("calibrated_MaskedLM", km.MaskedLM.from_preset(tmp_path / "saved"))
    km.MaskedLM.from_preset(FOLDER / "base_MaskedLM").save_to_preset(tmp_path / "dynamic")
    assert not [k for k in load_file(tmp_path / "dynamic" / "model.safetensors") if "amax" in k]


def test_fake_quantize_math():
    """8-bit symmetric fake quantisation: half-to-even rounding, [-128, 127] clamp, dynamic or
    stored amax, per-row weights (reduce over the input axis), zero amax -> zeros, and the
    clipped straight-through gradient."""
    x = np.array([[0.5, 1.5, 2.5, -0.5, 127.0, -127.0], [-3.5, 300.0, 0.25, 0.75, 1.0, -1.0]], "float32")
    got = to_numpy(fake_quantize(ops.convert_to_tensor(x), ops.convert_to_tensor(127.0)))  # scale 1
    want = np.clip(np.round(x), -128, 127)  # np.round is half to even
    np.testing.assert_array_equal(got, want)
    assert got[0, 0] == 0.0 and got[0, 1] == 2.0 and got[0, 2] == 2.0 and got[1, 1] == 127.0
    dyn = to_numpy(fake_quantize(ops.convert_to_tensor(x), ops.convert_to_tensor(-1.0)))  # amax = 300
    np.testing.assert_allclose(dyn, np.clip(np.round(x * (127 / 300.0)), -128, 127) / np.float32(127 / 300.0),
                               rtol=1e-6)
    assert np.all(to_numpy(fake_quantize(ops.convert_to_tensor(x), ops.convert_to_tensor(0.0))) == 0)
    kernel = np.random.RandomState(0).randn(5, 3).astype("float32")  # (in, out): one amax per column
    per_row = to_numpy(fake_quantize(ops.convert_to_tensor(kernel), ops.convert_to_tensor(-np.ones(3, "float32")), 0))
    scale = 127.0 / np.abs(kernel).max(0)
    np.testing.assert_allclose(per_row, np.round(kernel * scale) / scale, rtol=1e-6)
    if keras.backend.backend() == "jax":
        import jax

        grad = jax.grad(lambda v: fake_quantize(v, 2.0).sum())(np.array([1.0, -1.9, 2.5, -3.0], "float32"))
        np.testing.assert_array_equal(np.asarray(grad), [1.0, 1.0, 0.0, 0.0])


def test_qdqbert_errors(tmp_path):
    for key, value in (("is_decoder", True), ("add_cross_attention", True)):
        bad = tmp_path / key
        shutil.copytree(FOLDER / "base_Backbone", bad)
        config = json.loads((bad / "config.json").read_text())
        (bad / "config.json").write_text(json.dumps(dict(config, **{key: value})))
        with pytest.raises(ConfigError, match=key):
            km.Backbone.from_preset(bad)
    bad = tmp_path / "amax"
    shutil.copytree(FOLDER / "calibrated_MaskedLM", bad)
    tensors = load_file(bad / "model.safetensors")
    name = "bert.encoder.layer.0.attention.self.query._weight_quantizer._amax"
    tensors[name] = np.ones((3, 1), "float32")
    save_file(tensors, bad / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(WeightMismatchError, match="query._weight_quantizer._amax"):
        km.MaskedLM.from_preset(bad)


@pytest.mark.backend_independent
def test_standin_matches_the_documented_math():
    """The recording's pytorch-quantization stand-in: per-tensor inputs, per-row weights (axis 0
    of torch's (out, in)), half-to-even, full signed range, stored amax, zero amax."""
    import torch

    from tests.models.removed_golden import pytorch_quantization_standin as standin

    x = torch.tensor([[0.5, 1.5, 2.5, -128.6], [127.0, -0.5, 3.49, 1.0]])
    q = standin.TensorQuantizer(standin.QuantDescriptor(amax=127.0))
    assert q(x).tolist() == [[0.0, 2.0, 2.0, -128.0], [127.0, -0.0, 3.0, 1.0]]
    w = torch.tensor([[1.0, -2.0], [0.1, 0.3]])
    qw = standin.QuantLinear(2, 2).weight_quantizer(w)
    assert qw[0, 1] == -2.0 and qw[1, 1] == pytest.approx(0.3) and qw[1, 0] == pytest.approx(0.1, abs=0.3 / 254)
    dynamic = standin.TensorQuantizer()(x)  # amax = 128.6
    s = 127.0 / 128.6
    assert torch.allclose(dynamic, torch.clamp(torch.round(x * s), -128, 127) / s)
    assert torch.all(standin.TensorQuantizer(standin.QuantDescriptor(amax=0.0))(x) == 0)

"""Text architectures removed from Transformers 5 (NEZHA, ...), against references recorded with
Transformers 4.57.1 (tests/models/removed_golden/record.py: tiny seeded checkpoints + outputs; no
Transformers model is built here). Each family: every head through the public ``from_preset``, the
backbone's last hidden state, and a ``save_to_preset`` reload with equal outputs (Transformers 5
cannot load these checkpoints)."""

from pathlib import Path

import numpy as np
import pytest

import keras_models as km
from tests.parity import assert_close

GOLDEN = Path(__file__).parent / "removed_golden"
ENCODER_TASKS = ("MaskedLM", "TextClassifier", "TokenClassifier", "QuestionAnswerer")


def golden(name):
    data = dict(np.load(GOLDEN / f"{name}.npz"))
    inputs = {k[3:]: v for k, v in data.items() if k.startswith("in_")}
    expected = {}
    for k, v in data.items():
        if "__" in k:
            task, out = k.split("__")
            expected.setdefault(task, {})[out] = v
    return inputs, expected


def check_task(name, task, inputs, want, model=None):
    """``task`` loaded from the recorded checkpoint (or ``model``) against the recorded outputs."""
    mask = inputs["attention_mask"]
    model = model or getattr(km, task).from_preset(GOLDEN / name / task)
    assert model.head_from_checkpoint
    out = model(inputs)
    if task == "QuestionAnswerer":
        for k in ("start_logits", "end_logits"):
            assert_close(out[k], want[k], mask=mask, what=f"{name} {task} {k}")
    elif task == "TextClassifier":
        assert_close(out, want["logits"], what=f"{name} {task}")
    else:
        assert_close(out, want["logits"], mask=mask, what=f"{name} {task}")
    return model


def check_backbone(name, folder, inputs, want, prefix):
    model = km.Backbone.from_preset(folder)
    assert type(model).__name__ == prefix + "Backbone"
    assert_close(model(inputs), want, mask=inputs["attention_mask"], what=f"{name} backbone")
    m = inputs["attention_mask"][..., None].astype("float32")
    pooled = (want * m).sum(1) / m.sum(1)
    assert_close(km.TextEmbedder.from_preset(folder)(inputs), pooled, what=f"{name} TextEmbedder")


# --- NEZHA: functional relative positions (clipped at 3 < sequence length 9) -----------------------
@pytest.mark.parametrize("task", ENCODER_TASKS)
def test_nezha_parity(task):
    inputs, expected = golden("nezha")
    model = check_task("nezha", task, inputs, expected[task])
    assert type(model).__name__ == "Nezha" + task
    if task == "MaskedLM":
        check_backbone("nezha", GOLDEN / "nezha" / task, inputs, expected[task]["hidden"], "Nezha")


def test_nezha_save_to_preset_reloads(tmp_path):
    inputs, expected = golden("nezha")
    model = km.TextClassifier.from_preset(GOLDEN / "nezha" / "TextClassifier")
    model.save_to_preset(tmp_path / "saved")
    check_task("nezha", "TextClassifier", inputs, expected["TextClassifier"],
               km.TextClassifier.from_preset(tmp_path / "saved"))

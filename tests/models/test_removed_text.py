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


# --- Open-Llama: the shared decoder with a LayerNorm'd embedding and tied LM head (defaults), and
# an odd config (own lm_head, no stable embedding, linear rope scaling, gelu) --------------------
@pytest.mark.parametrize("case", ["CausalLM", "CausalLM_odd"])
def test_open_llama_parity(case):
    inputs, expected = golden("open_llama")
    folder, mask = GOLDEN / "open_llama" / case, inputs["attention_mask"]
    model = km.CausalLM.from_preset(folder)
    assert type(model).__name__ == "OpenLlamaCausalLM" and model.head_from_checkpoint
    assert_close(model(inputs), expected[case]["logits"], mask=mask, what=f"open_llama {case}")
    assert_close(model.backbone(inputs), expected[case]["hidden"], mask=mask, what=f"open_llama {case} backbone")
    if case == "CausalLM":  # greedy tokens of the recorded generate(do_sample=False), one row left-padded
        ref = expected["generate"]
        prompt = {"input_ids": ref["prompt"].astype("int32"), "attention_mask": ref["mask"].astype("int32")}
        got = np.asarray(model.generate(prompt, do_sample=False, max_new_tokens=8, pad_token_id=0))
        np.testing.assert_array_equal(got, ref["tokens"])


def test_open_llama_save_to_preset_reloads(tmp_path):
    import json

    inputs, expected = golden("open_llama")
    km.CausalLM.from_preset(GOLDEN / "open_llama" / "CausalLM_odd").save_to_preset(tmp_path / "saved")
    config = json.loads((tmp_path / "saved" / "config.json").read_text())
    assert config["model_type"] == "open-llama" and config["rope_scaling"] == {"type": "linear", "factor": 2.0}
    assert not config["use_stable_embedding"] and not config["shared_input_output_embedding"]
    model = km.CausalLM.from_preset(tmp_path / "saved")
    assert_close(model(inputs), expected["CausalLM_odd"]["logits"], mask=inputs["attention_mask"],
                 what="open_llama saved")

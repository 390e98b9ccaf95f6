"""LayoutLMv2 / LayoutXLM (model_type ``layoutlmv2``) against references recorded once with
detectron2 (tests/models/layoutlmv2_golden/record.py: CI cannot install detectron2). Two tiny
configs (Transformers' defaults with fast_qkv and both attention biases; separate q/k/v, spatial
bias only, visual segment embedding, ResNeXt groups, stride in the 1x1 conv, uneven adaptive
pooling), the backbone and the three heads through the public ``from_preset``, and errors."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

import keras_models as km
from keras_models.errors import ConfigError, InputError
from tests.parity import assert_close, jit_under_jax, to_numpy

GOLDEN = Path(__file__).parent / "layoutlmv2_golden"
TASKS = {"sequence": "TextClassifier", "token": "TokenClassifier", "qa": "QuestionAnswerer"}


def golden(case):
    data = dict(np.load(GOLDEN / f"{case}.npz"))
    inputs = {k[len("input."):]: v for k, v in data.items() if k.startswith("input.")}
    inputs["pixel_values"] = inputs["pixel_values"].astype("float32")
    return inputs, data


def head_folder(tmp_path, case, head):
    """The head checkpoint: the base model's tensors under ``layoutlmv2.`` plus the recorded head's."""
    from safetensors.numpy import load_file, save_file

    folder = tmp_path / f"{case}_{head}"
    folder.mkdir()
    shutil.copy(GOLDEN / f"{case}_{head}" / "config.json", folder / "config.json")
    tensors = {f"layoutlmv2.{k}": v for k, v in load_file(GOLDEN / case / "model.safetensors").items()}
    tensors.update(load_file(GOLDEN / f"{case}_{head}" / "head.safetensors"))
    save_file(tensors, folder / "model.safetensors", metadata={"format": "pt"})
    return folder


@pytest.mark.parametrize("case", ["base", "odd"])
def test_layoutlmv2_backbone_parity(case):
    inputs, data = golden(case)
    model = km.Backbone.from_preset(GOLDEN / case)
    assert type(model).__name__ == "LayoutLMv2Backbone"
    n = inputs["input_ids"].shape[1]
    mask = np.concatenate([inputs["attention_mask"], np.ones((2, data["last_hidden_state"].shape[1] - n), "int64")], 1)
    out = jit_under_jax(lambda x: model(x))(inputs)  # jax: one compile, not ~16 eager ResNet blocks
    assert_close(to_numpy(out), data["last_hidden_state"], mask=mask, what=f"layoutlmv2 {case}")


# CI: torch runs the three heads, jax / tensorflow one each (rotating); the marker names the
# parametrised argument ("head"): under the earlier "task" every head ran in every pass
@pytest.mark.one_case_per_pass("head")
@pytest.mark.parametrize("head", ["sequence", "token", "qa"])
def test_layoutlmv2_head_parity(head, tmp_path):
    inputs, data = golden("base")
    task = TASKS[head]
    model = getattr(km, task).from_preset(head_folder(tmp_path, "base", head))
    assert type(model).__name__ == "LayoutLMv2" + task and model.head_from_checkpoint
    out = jit_under_jax(lambda x: model(x))(inputs)
    if head == "qa":
        for key in ("start_logits", "end_logits"):
            assert_close(to_numpy(out[key]), data[f"qa.{key}"], mask=inputs["attention_mask"], what=f"qa {key}")
    elif head == "token":
        assert_close(to_numpy(out), data["token.logits"], mask=inputs["attention_mask"], what="token logits")
    else:
        assert_close(to_numpy(out), data["sequence.logits"], what="sequence logits")


def test_layoutlmv2_errors(tmp_path):
    inputs, _ = golden("odd")
    model = km.Backbone.from_preset(GOLDEN / "odd")
    with pytest.raises(InputError, match="pixel_values"):
        model({k: v for k, v in inputs.items() if k != "pixel_values"})
    with pytest.raises(InputError, match="multiples of 32"):
        model({**inputs, "pixel_values": inputs["pixel_values"][:, :40]})
    with pytest.raises(InputError, match="bbox"):
        model({**inputs, "bbox": inputs["bbox"] + 2000})
    config = json.loads((GOLDEN / "odd" / "config.json").read_text())
    for change, key in (({"coordinate_size": 3}, "coordinate_size"),
                        ({"max_2d_position_embeddings": 1000}, "max_2d_position_embeddings"),
                        ({"detectron2_config_args": {"MODEL.RESNETS.DEPTH": 18}}, "MODEL.RESNETS.DEPTH"),
                        ({"detectron2_config_args": {"MODEL.RESNETS.DEFORM_ON_PER_STAGE": [False, True, True, True]}},
                         "DEFORM_ON_PER_STAGE")):
        bad = tmp_path / key
        bad.mkdir()
        (bad / "config.json").write_text(json.dumps({**config, **change}))
        with pytest.raises(ConfigError, match=key):
            km.Backbone.from_preset(bad, load_weights=False)



@pytest.mark.backend_independent  # the exported tensors and config do not depend on the backend
def test_layoutlmv2_save_to_preset(tmp_path):
    """``save_to_preset`` writes back every used tensor of the (detectron2-recorded) checkpoint
    bit-exactly under Transformers' names, with a config.json that reloads here to the same outputs
    (Transformers' own reload needs detectron2: not in CI)."""
    from safetensors.numpy import load_file

    inputs, _ = golden("base")
    folder = head_folder(tmp_path, "base", "token")
    model = km.TokenClassifier.from_preset(folder)
    source = load_file(folder / "model.safetensors")
    model.save_to_preset(tmp_path / "saved")
    saved = {}
    for f in sorted((tmp_path / "saved").glob("*.safetensors")):
        saved.update(load_file(f))
    # the pooler no LayoutLMv2 head uses is a known-unused weight (the encoders' convention): not written
    assert set(source) - set(saved) == {"layoutlmv2.pooler.dense.weight", "layoutlmv2.pooler.dense.bias"}
    assert set(saved) <= set(source)
    for name, tensor in saved.items():
        np.testing.assert_array_equal(tensor, source[name], err_msg=name)
    config = json.loads((tmp_path / "saved" / "config.json").read_text())
    assert config["model_type"] == "layoutlmv2" and config["architectures"] == ["LayoutLMv2ForTokenClassification"]
    again = km.TokenClassifier.from_preset(tmp_path / "saved")
    assert_close(to_numpy(again(inputs)), to_numpy(model(inputs)), atol=1e-6, what="layoutlmv2 reload")


# On every backend (issue 15: a fit step per architecture). Compiling the train step of the
# ResNet-50-FPN + encoder costs 35-50 s per jax / tensorflow pass on the loaded 2-core box.
def test_layoutlmv2_fit_step():
    """One ``fit`` step of a fresh token head on the small ``odd`` backbone (96x64 pages) trains:
    finite loss, and the head and the encoder move."""
    inputs, _ = golden("odd")
    model = km.TokenClassifier.from_preset(GOLDEN / "odd", num_classes=3)
    before = [np.array(to_numpy(w)) for w in model.trainable_weights]
    labels = np.random.default_rng(0).integers(0, 3, inputs["input_ids"].shape)
    history = model.fit(inputs, labels, epochs=1, batch_size=2, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    after = [to_numpy(w) for w in model.trainable_weights]
    assert sum(not np.array_equal(a, b) for a, b in zip(before, after)) > len(before) // 2

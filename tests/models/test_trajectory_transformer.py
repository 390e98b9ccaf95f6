"""Trajectory Transformer (``trajectory_transformer``, removed from Transformers 5) against references
recorded with Transformers 4.57.1 (tests/models/removed_golden/record_graph_traj.py; Transformers 5
cannot load these checkpoints, so our ``save_to_preset`` output is checked by reloading it here).

Two checkpoints: "weighted" (transition_dim 7 = observation 3 + action 2 + reward + value, loss
weights 5 / 2 / 3, 13 tokens, block_size 16) and "unweighted" (transition_dim 6 while the masked
value keys come every 8 positions, 11 tokens = block_size: the head's last transition is partial,
unit weights, a -100 target). Both have stop tokens and a loss mask with zeros."""

import json
from pathlib import Path

import numpy as np
import pytest

import keras_models as km
from keras_models.errors import ConfigError, InputError
from tests.parity import assert_close, jit_under_jax

GOLDEN = Path(__file__).parent / "removed_golden"
CASES = ("weighted", "unweighted")


def golden(case):
    d = np.load(GOLDEN / "trajectory_transformer.npz")
    prefix = f"{case}__"
    inputs = {k[len(prefix) + 3:]: d[k] for k in d.files if k.startswith(prefix + "in_")}
    return inputs, {k[len(prefix):]: d[k] for k in d.files if k.startswith(prefix) and "__in_" not in k}


def check(model, inputs, want, what):
    def run(x):
        return model(x), model.backbone(x), model({"trajectories": x["trajectories"]})

    out, hidden, plain = jit_under_jax(run)(inputs)
    assert_close(out["logits"], want["logits"], what=f"{what} logits")
    assert_close(out["loss"], want["loss"], what=f"{what} loss")
    assert_close(hidden, want["hidden"], what=f"{what} backbone hidden state")
    assert set(plain) == {"logits"}  # without targets: logits only
    assert_close(plain["logits"], want["logits"], what=f"{what} logits without targets")


def assert_same_tensors(saved, recorded):
    from safetensors.numpy import load_file

    a, b = load_file(saved / "model.safetensors"), load_file(recorded / "model.safetensors")
    assert set(a) == set(b)
    for k in b:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)


@pytest.mark.parametrize("case", CASES)
def test_trajectory_transformer_logits_loss_and_hidden_state(case, tmp_path):
    inputs, want = golden(case)
    folder = GOLDEN / "trajectory_transformer" / case
    model = km.TrajectoryPredictor.from_preset(folder)
    assert type(model).__name__ == "TrajectoryTransformerTrajectoryPredictor" and model.head_from_checkpoint
    check(model, inputs, want, case)
    # save_to_preset: the recorded checkpoint's config keys and tensors, reloaded here
    model.save_to_preset(tmp_path / "saved")
    config = json.loads((tmp_path / "saved" / "config.json").read_text())
    assert config["model_type"] == "trajectory_transformer"
    assert config["architectures"] == ["TrajectoryTransformerModel"]
    recorded = json.loads((folder / "config.json").read_text())
    for key in ("vocab_size", "transition_dim", "observation_dim", "action_dim", "block_size", "n_layer", "n_head",
                "n_embd", "action_weight", "reward_weight", "value_weight"):
        assert config[key] == recorded[key], key
    assert_same_tensors(tmp_path / "saved", folder)
    reloaded = km.TrajectoryPredictor.from_preset(tmp_path / "saved")
    assert reloaded.head_from_checkpoint and reloaded.backbone.spec == model.backbone.spec


def test_trajectory_transformer_backbone_round_trip_and_errors(tmp_path):
    import shutil

    from tests.parity import assert_keras_round_trip

    inputs, want = golden("unweighted")
    folder = GOLDEN / "trajectory_transformer" / "unweighted"
    backbone = km.Backbone.from_preset(folder)
    assert type(backbone).__name__ == "TrajectoryTransformerBackbone"
    assert_close(backbone({"trajectories": inputs["trajectories"]}), want["hidden"], what="Backbone.from_preset")
    model = km.TrajectoryPredictor.from_preset(folder)
    assert_keras_round_trip(model, inputs, tmp_path)
    with pytest.raises(InputError, match="block_size=11"):  # longer than the position table
        model({"trajectories": np.zeros((1, 12), "int32")})
    with pytest.raises(InputError, match="trajectories"):
        model({"input_ids": inputs["trajectories"]})
    weighted, _ = golden("weighted")
    model = km.TrajectoryPredictor.from_preset(GOLDEN / "trajectory_transformer" / "weighted")
    with pytest.raises(InputError, match="weighted loss"):  # 12 tokens: not (7 x transitions) - 1
        model({k: v[:, :12] for k, v in weighted.items()})
    for key, value in (("n_head", 5), ("transition_dim", 0), ("action_weight", "five")):
        bad = tmp_path / f"bad_{key}"
        shutil.copytree(folder, bad)
        config = json.loads((bad / "config.json").read_text())
        config[key] = value
        (bad / "config.json").write_text(json.dumps(config))
        with pytest.raises(ConfigError, match=key):
            km.TrajectoryPredictor.from_preset(bad)

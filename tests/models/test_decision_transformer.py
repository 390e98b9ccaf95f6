"""Decision Transformer: km.TrajectoryPredictor's state / action / return predictions and the
backbone's hidden state against tiny random Transformers models (left-padded trajectories,
compared at the real steps), export reloaded by Transformers, a .keras round trip, config and
input errors."""

import numpy as np
import pytest

import keras_models as km
from tests.parity import assert_backbone_close, assert_close, cached_folder, hf_reference, jit_under_jax, to_numpy

STATE, ACT, EP, STEPS = 5, 3, 50, 4
PREDS = ("state_preds", "action_preds", "return_preds")
CASES = {
    # tanh actions, gelu_new MLP of its own width, two heads
    "gelu_tanh": dict(hidden_size=16, n_layer=2, n_head=2, n_inner=24, activation_function="gelu_new"),
    # the default relu MLP (4 x hidden), unscaled attention scores, linear actions, another epsilon
    "relu_linear": dict(hidden_size=12, n_layer=1, n_head=3, action_tanh=False, scale_attn_weights=False,
                        layer_norm_epsilon=1e-3),
}


def _build(case):
    def build():
        import transformers

        config = transformers.DecisionTransformerConfig(state_dim=STATE, act_dim=ACT, max_ep_len=EP, n_positions=32,
                                                        bos_token_id=0, eos_token_id=0, **CASES[case])
        return transformers.DecisionTransformerModel(config)
    build.__name__ = f"build_{case}"
    return build


def _inputs():
    rng = np.random.RandomState(5)
    return {"states": rng.randn(2, STEPS, STATE).astype("float32"),
            "actions": rng.uniform(-1, 1, (2, STEPS, ACT)).astype("float32"),
            "returns_to_go": rng.randn(2, STEPS, 1).astype("float32"),
            "timesteps": rng.randint(0, EP, (2, STEPS)).astype("int64"),
            "attention_mask": np.array([[1] * STEPS, [0] + [1] * (STEPS - 1)], "int64")}  # row 1 left-padded


_MODELS = {}


def _load(case):
    if case not in _MODELS:
        inputs = _inputs()
        folder, expected = hf_reference(f"dt-{case}", _build(case), inputs)

        def record(tmp):
            import torch
            import transformers

            hf = transformers.DecisionTransformerModel.from_pretrained(folder).eval()
            with torch.no_grad():
                out = hf(**{k: torch.tensor(v) for k, v in inputs.items()})
            np.savez(tmp / "preds.npz", **{k: out[k].numpy() for k in PREDS})

        preds = np.load(cached_folder(f"dt-preds-{folder.parent.name}", record) / "preds.npz")
        expected.update({k: preds[k] for k in PREDS})
        _MODELS[case] = (km.TrajectoryPredictor.from_preset(folder), folder, inputs, expected)
    return _MODELS[case]


@pytest.mark.parametrize("case", sorted(CASES))
def test_decision_transformer_predictions_and_hidden_state(case):
    model, _, inputs, expected = _load(case)
    assert type(model).__name__ == "DecisionTransformerTrajectoryPredictor" and model.head_from_checkpoint
    out, hidden = (to_numpy(t) for t in jit_under_jax(lambda x: (model(x), model.backbone(x)))(inputs))
    steps = inputs["attention_mask"]
    for key in PREDS:
        assert_close(out[key], expected[key], mask=steps, what=f"{case} {key}")
    assert_backbone_close(model, inputs, expected, mask=np.repeat(steps, 3, axis=1), what=case, hidden=hidden)


def test_decision_transformer_reloads_in_transformers(tmp_path):
    import torch
    import transformers

    model, _, inputs, expected = _load("gelu_tanh")
    model.save_to_preset(tmp_path / "p")
    hf = transformers.DecisionTransformerModel.from_pretrained(tmp_path / "p").eval()
    with torch.no_grad():
        out = hf(**{k: torch.tensor(v) for k, v in inputs.items()})
    for key in PREDS:
        assert_close(out[key].numpy(), expected[key], mask=inputs["attention_mask"], what=f"re-exported {key}")


def test_decision_transformer_keras_round_trip_backbone_and_inputs(tmp_path):
    from keras_models.errors import InputError
    from tests.parity import assert_keras_round_trip

    model, folder, inputs, expected = _load("relu_linear")
    assert_keras_round_trip(model, inputs, tmp_path)
    backbone = km.Backbone.from_preset(folder)
    assert type(backbone).__name__ == "DecisionTransformerBackbone"
    assert_close(to_numpy(backbone(inputs)), expected["last_hidden_state"],
                 mask=np.repeat(inputs["attention_mask"], 3, axis=1), what="Backbone.from_preset")
    with pytest.raises(InputError, match="returns_to_go"):
        model({k: v for k, v in inputs.items() if k != "returns_to_go"})
    with pytest.raises(InputError, match="states"):
        model({**inputs, "states": inputs["states"][..., :2]})


@pytest.mark.parametrize("key,value", [("add_cross_attention", True), ("state_dim", 0),
                                       ("scale_attn_by_inverse_layer_idx", True), ("action_tanh", "yes")])
def test_decision_transformer_bad_config_names_the_key(tmp_path, key, value):
    import json
    import shutil

    from keras_models.errors import ConfigError

    _, folder, _, _ = _load("relu_linear")
    bad = tmp_path / "bad"
    shutil.copytree(folder, bad)
    config = json.loads((bad / "config.json").read_text())
    config[key] = value
    (bad / "config.json").write_text(json.dumps(config))
    with pytest.raises(ConfigError, match=key):
        km.TrajectoryPredictor.from_preset(bad)

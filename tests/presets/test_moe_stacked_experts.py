"""MoE experts stored stacked ([gate | up] fused) although the checkpoint keeps one MLP per expert:
loading fills the stacked tensors from the per-expert tensors (weight-map ``Rule.part``), saving
writes the per-expert tensors back bit-exactly; the list layout (``moe_stacked_experts=False``,
.keras files saved before) still computes the same and saves the same tensors; LoRA targets naming
expert projections warn that the routed experts get no adapter."""

import logging

import numpy as np
import pytest

import keras_models as km
from keras_models.errors import WeightMismatchError
from tests.parity import cached_folder, to_numpy


def _qwen3_moe(tmp):
    import torch
    import transformers as t

    torch.manual_seed(0)
    # layer 0 MoE (4 experts top-2 of width 8), layer 1 dense (mlp_only_layers)
    cfg = t.Qwen3MoeConfig(vocab_size=64, hidden_size=16, num_hidden_layers=2, num_attention_heads=4,
                           num_key_value_heads=2, head_dim=4, intermediate_size=20, moe_intermediate_size=8,
                           num_experts=4, num_experts_per_tok=2, norm_topk_prob=True, mlp_only_layers=[1],
                           max_position_embeddings=32)
    model = t.Qwen3MoeForCausalLM(cfg).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0.0, 0.3)
    model.save_pretrained(tmp)


def _folder():
    return cached_folder("moe_stacked_qwen3", _qwen3_moe)


def _tensors(folder):
    from safetensors.numpy import load_file

    return load_file(str(next(iter(sorted(folder.glob("*.safetensors"))))))


INPUTS = {"input_ids": np.array([[5, 9, 2, 33, 7, 1]], "int32"), "attention_mask": np.ones((1, 6), "int32")}


def test_loads_stacked_and_saves_per_expert_tensors_bit_exactly(tmp_path):
    model = km.CausalLM.from_preset(_folder())
    moe = model.backbone.blocks[0].mlp
    assert moe.stacked and moe.experts == [] and tuple(moe.expert_gate_up.shape) == (4, 16, 16)
    want = _tensors(_folder())
    e2 = "model.layers.0.mlp.experts.2."
    np.testing.assert_array_equal(to_numpy(moe.expert_gate_up)[2, :, :8], want[e2 + "gate_proj.weight"].T)
    np.testing.assert_array_equal(to_numpy(moe.expert_gate_up)[2, :, 8:], want[e2 + "up_proj.weight"].T)
    np.testing.assert_array_equal(to_numpy(moe.expert_down)[2], want[e2 + "down_proj.weight"].T)
    model.save_to_preset(tmp_path / "p")
    got = _tensors(tmp_path / "p")
    assert sorted(got) == sorted(want)
    for name, value in want.items():
        assert got[name].dtype == value.dtype and np.array_equal(got[name], value), name


# the list layout's numerics on every backend: tests/test_moe_dispatch.py (list cases)
@pytest.mark.backend_independent
def test_list_layout_computes_and_saves_the_same(tmp_path):
    import keras

    model = km.CausalLM.from_preset(_folder())
    stacked = model.backbone
    cls = type(stacked)
    listed = cls.from_config({**stacked.get_config(), "moe_stacked_experts": False})
    listed.build_from_dummy()
    moe, lst = stacked.blocks[0].mlp, listed.blocks[0].mlp
    assert not lst.stacked and len(lst.experts) == 4
    by_path = {v.path.split("/", 1)[1]: v for v in stacked.weights}
    gu, down = to_numpy(moe.expert_gate_up), to_numpy(moe.expert_down)
    for v in listed.weights:
        key = v.path.split("/", 1)[1]
        if key in by_path:
            v.assign(to_numpy(by_path[key]))
    for e, expert in enumerate(lst.experts):
        expert.gate.kernel.assign(gu[e, :, :8])
        expert.up.kernel.assign(gu[e, :, 8:])
        expert.down.kernel.assign(down[e])
    np.testing.assert_allclose(to_numpy(listed(INPUTS)), to_numpy(stacked(INPUTS)), atol=1e-5)
    # a .keras file of the list layout (as saved before the experts were stacked) reloads as a list
    listed.save(tmp_path / "list.keras")
    again = keras.saving.load_model(tmp_path / "list.keras")
    assert not again.blocks[0].mlp.stacked
    np.testing.assert_allclose(to_numpy(again(INPUTS)), to_numpy(stacked(INPUTS)), atol=1e-5)
    # and its weight map writes the per-expert tensors as the stacked one does
    from keras_models.presets.weight_map import export_rules

    mine = dict(export_rules(listed.weight_rules()))
    theirs = dict(export_rules(stacked.weight_rules()))
    assert sorted(mine) == sorted(theirs)
    for name in theirs:
        assert np.array_equal(mine[name], theirs[name]), name


@pytest.mark.backend_independent
def test_part_rules_must_cover_the_variable():
    import keras

    from keras_models.presets.weight_map import TRANSPOSE, Rule, load_rules

    var = keras.Variable(np.zeros((2, 3, 4), "float32"))

    class Reader:
        folder = "fake"
        data = {"a": np.ones((4, 3), "float32")}

        def keys(self):
            return list(self.data)

        def shape(self, name):
            return self.data[name].shape

        def dtype(self, name):
            return "float32"

        def get(self, name):
            return self.data[name]

    with pytest.raises(WeightMismatchError, match="do not add up"):
        load_rules([Rule("a", var, TRANSPOSE, part=(0,))], Reader())
    Reader.data["b"] = 2 * np.ones((4, 3), "float32")
    load_rules([Rule("a", var, TRANSPOSE, part=(0,)), Rule("b", var, TRANSPOSE, part=(1,))], Reader())
    np.testing.assert_array_equal(to_numpy(var)[:, 0, 0], [1.0, 2.0])


@pytest.mark.backend_independent
def test_lora_on_expert_names_adapts_the_stacked_experts(caplog):
    """(Issue 19: the routed experts get per-expert adapters; tests/models/test_moe_lora.py.)"""
    from keras_models.layers.moe import MoE

    model = km.CausalLM.from_preset(_folder())
    with caplog.at_level(logging.WARNING, logger="keras_models"):
        found = model.enable_lora(2, target_names=("q_proj", "query", "up"))
    moe = [layer for layer in model.backbone._flatten_layers() if isinstance(layer, MoE) and layer.stacked]
    assert moe and all(layer.lora_targets == ("gate_up",) for layer in moe)
    assert found >= 2 + len(moe)  # queries + the dense layer's up projection + the experts' [gate | up]
    assert "routed experts none" not in caplog.text

"""LoRA on stacked MoE experts (issue 19): per-expert A (experts, in, r) / B (experts, r, out)
factors on the fused [gate | up] and down tensors (keras_models.layers.moe). Enabling them keeps the
outputs, one fit step trains only them and lowers the loss (eager torch dispatch, tf.function and
jax jit), and adapters travel in PEFT's format: PEFT's ``target_parameters`` adapter on Transformers'
tiny Mixtral / Qwen2-MoE gives PEFT's logits in ours, ours loads in PEFT, merging and presets keep them."""

import json

import keras
import numpy as np
import pytest

import keras_models as km
from keras_models.errors import PresetError
from keras_models.layers.moe import MoE
from tests.parity import _key, assert_close, cached_folder, hf_reference, to_numpy

IDS = np.array([[5, 9, 14, 3, 22, 7], [11, 4, 30, 8, 2, 1]], "int32")
MASK = np.ones_like(IDS)
EXPERT_PARAMS = ["mlp.experts.gate_up_proj", "mlp.experts.down_proj"]


def _mixtral():
    import transformers

    return transformers.MixtralForCausalLM(transformers.MixtralConfig(
        vocab_size=48, hidden_size=16, intermediate_size=24, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, num_local_experts=4, num_experts_per_tok=2, tie_word_embeddings=False))


def _qwen2_moe():
    import transformers

    return transformers.Qwen2MoeForCausalLM(transformers.Qwen2MoeConfig(
        vocab_size=48, hidden_size=16, intermediate_size=32, moe_intermediate_size=12,
        shared_expert_intermediate_size=20, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
        num_experts=4, num_experts_per_tok=2, norm_topk_prob=False, tie_word_embeddings=False))


# kind: (builder, PEFT target_modules, PEFT target_parameters, our target names)
CASES = {
    "mixtral": (_mixtral, ["q_proj"], EXPERT_PARAMS, ("query", "gate", "up", "down")),
    # only the experts' down tensor (PEFT's single, un-nested ParamWrapper); the shared expert's
    # Dense down projection gets a plain adapter too
    "qwen2_moe": (_qwen2_moe, ["down_proj"], ["mlp.experts.down_proj"], ("down",)),
}


def _reference(kind):
    """(base folder, PEFT adapter folder, PEFT's logits with it) built once per run."""
    builder, modules, params, _ = CASES[kind]
    folder, _ = hf_reference(f"moe-lora-base-{kind}", builder, {"input_ids": IDS, "attention_mask": MASK})

    def build(tmp):
        import peft
        import torch

        model = type(builder()).from_pretrained(folder).eval()
        config = peft.LoraConfig(r=2, lora_alpha=6, target_modules=modules, target_parameters=params,
                                 lora_dropout=0.0)
        model = peft.get_peft_model(model, config)
        rng = np.random.RandomState(3)
        with torch.no_grad():  # nonzero adapters (PEFT starts lora_B at zero)
            for name, p in model.named_parameters():
                if "lora_" in name:
                    p.copy_(torch.from_numpy(rng.randn(*p.shape).astype("float32") * 0.5))
            out = model.eval()(input_ids=torch.tensor(IDS), attention_mask=torch.tensor(MASK)).logits.numpy()
        model.save_pretrained(tmp / "adapter")
        np.save(tmp / "logits.npy", out)

    ref = cached_folder(_key(f"moe-lora-peft-{kind}", repr(CASES[kind][1:])), build)
    return folder, ref / "adapter", np.load(ref / "logits.npy")


def _logits(model):
    return to_numpy(model({"input_ids": IDS, "attention_mask": MASK}))


def _moes(model):
    return [layer for layer in model.backbone._flatten_layers() if isinstance(layer, MoE) and layer.stacked]


def test_enable_lora_keeps_outputs_and_one_fit_step_trains_only_the_adapters():
    folder, _, _ = _reference("mixtral")
    model = km.CausalLM.from_preset(folder)
    plain = _logits(model)
    n = model.enable_lora(2, target_names=("gate", "up", "down"), lora_alpha=4)
    moes = _moes(model)
    assert n == 2 * len(moes) == 4 and all(m.lora_targets == ("gate_up", "down") for m in moes)
    moe = moes[0]
    a, b = moe.lora_variables("gate_up")
    assert tuple(a.shape) == (4, 16, 2) and tuple(b.shape) == (4, 2, 48)
    assert not np.any(to_numpy(b)) and np.any(to_numpy(a))  # B starts at zero
    assert_close(_logits(model), plain, atol=0.0, what="LoRA enabled, untrained")
    lora = {v.path for m in moes for t in m.lora_targets for v in m.lora_variables(t)}
    trainable = {v.path for v in model.backbone.trainable_variables}
    assert trainable == lora, trainable ^ lora  # the stacked experts, router and the rest frozen

    before = {v.path: to_numpy(v).copy() for v in model.backbone.variables}
    model.compile(optimizer=keras.optimizers.SGD(0.5),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    labels = np.roll(IDS, -1, axis=1)

    def loss():  # eagerly: no second compiled function (evaluate) for the CI budget
        return float(to_numpy(model.loss(labels, model({"input_ids": IDS, "attention_mask": MASK}))))

    loss0 = loss()
    model.fit({"input_ids": IDS, "attention_mask": MASK}, labels, batch_size=2, epochs=1, verbose=0)
    loss1 = loss()
    assert loss1 < loss0 - 1e-4, (loss0, loss1)
    changed = {v.path for v in model.backbone.variables if not np.array_equal(to_numpy(v), before[v.path])}
    assert changed and changed <= lora, changed - lora
    assert {v.path for m in moes for t in m.lora_targets for v in m.lora_variables(t)[1:]} <= changed  # every B

    # every dispatch path reads the adapted experts (eager torch / tf, traced conds, gathered, dense)
    rng = np.random.RandomState(0)
    x = keras.ops.convert_to_tensor(rng.randn(2, 3, 16).astype("float32"))
    w = keras.ops.convert_to_tensor((np.eye(4)[rng.randint(0, 4, (2, 3))] * 0.7).astype("float32"))
    modes = ("dense", "gathered", "looped") if keras.backend.backend() == "jax" else ("dense", "gathered", "traced", "eager")
    outs = {mode: to_numpy(moe.routed(x, w, mode)) for mode in modes}  # (jax: dense / gathered / looped)
    for mode, out in outs.items():
        assert_close(out, outs["dense"], atol=1e-5, what=f"dispatch {mode}")
    moe.lora_enabled = False
    assert np.abs(to_numpy(moe.routed(x, w, "dense")) - outs["dense"]).max() > 1e-4  # the adapters act
    moe.lora_enabled = True

    # the layer's config recreates the adapters (a .keras file); merging keeps the outputs
    trained = _logits(model)
    clone = MoE.from_config(moe.get_config())
    clone.build((None, None, 16))
    assert clone.lora_targets == moe.lora_targets and clone.lora_rank == 2 and clone.lora_alpha == 4
    clone.set_weights(moe.get_weights())
    assert_close(to_numpy(clone.routed(x, w, "dense")), outs["dense"], atol=1e-6, what="from_config")
    assert model.merge_lora_weights() == len(moes)
    assert not [v for v in model.variables if "lora" in v.path]
    assert_close(_logits(model), trained, atol=1e-5, what="merged")


@pytest.mark.one_case_per_pass("kind")  # the mapping is backend-independent; the LoRA math is tested above
@pytest.mark.parametrize("kind", sorted(CASES))
def test_peft_expert_adapter_loads_merges_and_saves(kind, tmp_path):
    folder, adapter, expected = _reference(kind)
    model = km.CausalLM.from_preset(folder)
    plain = _logits(model)
    model.load_lora_weights(adapter)
    assert_close(_logits(model), expected, what=f"{kind} with PEFT's expert adapter")
    assert np.abs(plain - expected).max() > 1e-2
    trainable = [v.path for v in model.backbone.trainable_variables]
    assert trainable and all("lora" in p for p in trainable), trainable
    model.save_lora_weights(tmp_path / "ours")
    again = km.CausalLM.from_preset(folder)
    again.load_lora_weights(tmp_path / "ours")
    assert_close(_logits(again), _logits(model), atol=1e-6, what=f"{kind}: our adapter reloaded")
    model.save_to_preset(tmp_path / "live")  # live adapters: merged into the saved experts
    assert_close(_logits(km.CausalLM.from_preset(tmp_path / "live")), expected, what=f"{kind}: live preset")
    model.merge_lora_weights()
    assert not [v for v in model.variables if "lora" in v.path]
    assert_close(_logits(model), expected, what=f"{kind} merged")


@pytest.mark.backend_independent  # the PEFT side is torch; ours is the mapping tested above
@pytest.mark.parametrize("kind", sorted(CASES))
def test_our_expert_adapter_loads_in_peft(kind, tmp_path):
    """Our adapter folder in PEFT, and a preset saved with live adapters in Transformers, give PEFT's
    logits; the adapters enable_lora made take PEFT's values."""
    import peft
    import torch

    folder, adapter, expected = _reference(kind)
    builder, modules, params, names = CASES[kind]
    model = km.CausalLM.from_preset(folder)
    model.enable_lora(2, target_names=names, lora_alpha=6)
    if kind == "qwen2_moe":
        assert all(m.lora_targets == ("down",) for m in _moes(model))
    model.load_lora_weights(adapter)
    model.save_lora_weights(tmp_path / "ours")
    config = json.loads((tmp_path / "ours" / "adapter_config.json").read_text())
    assert config["r"] == 2 and config["lora_alpha"] == 6
    assert config["target_parameters"] == sorted(f"model.layers.{i}.{p}" for i in range(2) for p in params)
    model.save_to_preset(tmp_path / "merged")
    cls = type(builder())
    inputs = dict(input_ids=torch.tensor(IDS), attention_mask=torch.tensor(MASK))
    with torch.no_grad():
        hf = peft.PeftModel.from_pretrained(cls.from_pretrained(folder), tmp_path / "ours").eval()
        got = hf(**inputs).logits.numpy()
        merged = cls.from_pretrained(tmp_path / "merged").eval()(**inputs).logits.numpy()
    assert_close(got, expected, what=f"{kind}: our adapter in PEFT")
    assert_close(merged, expected, what=f"{kind}: merged preset in Transformers")


@pytest.mark.backend_independent
def test_bad_expert_adapters_are_refused(tmp_path):
    from safetensors.numpy import load_file

    from keras_models.presets.safetensors_io import save_file

    folder, adapter, _ = _reference("mixtral")
    tensors = dict(load_file(adapter / "adapter_model.safetensors"))
    config = json.loads((adapter / "adapter_config.json").read_text())
    key = "base_model.model.model.layers.0.mlp.experts.lora_A.weight"
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "adapter_config.json").write_text(json.dumps(config))
    save_file({**tensors, key: tensors[key][:, :-1].copy()}, bad / "adapter_model.safetensors")
    model = km.CausalLM.from_preset(folder)
    with pytest.raises(PresetError, match="do not fit the 4 experts' down_proj"):
        model.load_lora_weights(bad)
    assert not [v for v in model.variables if "lora" in v.path]  # nothing changed
    with pytest.raises(ValueError, match="targets="):
        _moes(model)[0].enable_lora(2, targets=("up",))

"""LoRA adapters in PEFT's format: PEFT's own adapters load into our models and give PEFT's outputs;
ours load in PEFT with the same outputs; merging and save_to_preset keep the adapted outputs."""

import json

import keras
import numpy as np
import pytest

import keras_models as km
from keras_models.errors import PresetError
from tests.parity import _key, assert_close, cached_folder, hf_reference, to_numpy

IDS = np.array([[5, 9, 14, 3, 22, 7], [11, 4, 30, 8, 2, 0]], "int32")
MASK = np.array([[1, 1, 1, 1, 1, 1], [1, 1, 1, 1, 1, 0]], "int32")


def _llama():
    import transformers

    return transformers.LlamaForCausalLM(transformers.LlamaConfig(
        vocab_size=48, hidden_size=16, intermediate_size=24, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, tie_word_embeddings=False))


def _gpt2():
    import transformers

    return transformers.GPT2LMHeadModel(transformers.GPT2Config(vocab_size=48, n_embd=16, n_layer=2, n_head=2,
                                                                n_positions=16))


def _bert():
    import transformers

    return transformers.BertForSequenceClassification(transformers.BertConfig(
        vocab_size=48, hidden_size=16, intermediate_size=24, num_hidden_layers=2, num_attention_heads=2,
        num_labels=3))


# kind: (builder, our task, PEFT target modules, our Dense names, PEFT options)
CASES = {
    "llama": (_llama, km.CausalLM, ["q_proj", "v_proj", "down_proj"], ("query", "value", "down"), {}),
    "gpt2": (_gpt2, km.CausalLM, ["c_attn"], ("qkv",), {"fan_in_fan_out": True}),
    "bert": (_bert, km.TextClassifier, ["query", "value"], ("query", "value"),
             {"modules_to_save": ["classifier"], "task_type": "SEQ_CLS"}),
}


def _reference(kind):
    """(base folder, PEFT adapter folder, PEFT's outputs with the adapter) built once per run."""
    builder, _, targets, _, options = CASES[kind]
    inputs = {"input_ids": IDS, "attention_mask": MASK}
    folder, _ = hf_reference(f"lora-base-{kind}", builder, inputs)

    def build(tmp):
        import peft
        import torch

        cls = type(builder())
        model = cls.from_pretrained(folder).eval()
        config = peft.LoraConfig(r=2, lora_alpha=6, target_modules=targets, lora_dropout=0.0, **options)
        model = peft.get_peft_model(model, config)
        rng = np.random.RandomState(3)
        with torch.no_grad():  # nonzero adapters (PEFT starts lora_B at zero) and a changed head
            for name, p in model.named_parameters():
                if "lora_" in name or "modules_to_save" in name:
                    p.copy_(torch.from_numpy(rng.randn(*p.shape).astype("float32") * 0.5))
            out = model.eval()(input_ids=torch.tensor(IDS), attention_mask=torch.tensor(MASK)).logits.numpy()
        model.save_pretrained(tmp / "adapter")
        np.save(tmp / "logits.npy", out)

    ref = cached_folder(_key(f"lora-peft-{kind}", repr(CASES[kind][2:])), build)
    return folder, ref / "adapter", np.load(ref / "logits.npy")


def _logits(model):
    return to_numpy(model({"input_ids": IDS, "attention_mask": MASK}))


def _masked(x):
    return x if x.ndim == 2 else x * MASK[..., None]


@pytest.mark.one_case_per_pass("kind")  # the mapping is backend-independent; Keras' LoRA math is shared
@pytest.mark.parametrize("kind", sorted(CASES))
def test_peft_adapter_loads_merges_and_saves(kind, tmp_path):
    folder, adapter, expected = _reference(kind)
    task = CASES[kind][1]
    model = task.from_preset(folder)
    plain = _logits(model)
    n = model.load_lora_weights(adapter)
    assert n == 2 * len(CASES[kind][3])  # two layers
    assert_close(_masked(_logits(model)), _masked(expected), what=f"{kind} with PEFT's adapter")
    assert np.abs(_masked(plain) - _masked(expected)).max() > 1e-2  # the adapter changes the outputs
    trainable = [v.path for v in model.backbone.trainable_variables]
    assert trainable and all("lora_kernel" in p for p in trainable), trainable
    # our own adapter folder reloads into a fresh model
    model.save_lora_weights(tmp_path / "ours")
    again = task.from_preset(folder)
    again.load_lora_weights(tmp_path / "ours")
    assert_close(_logits(again), _logits(model), atol=1e-6, what=f"{kind} our adapter reloaded")
    # merged: plain Dense layers, same outputs; a preset saved from it needs no adapter
    assert model.merge_lora_weights() == n
    assert not [v for v in model.variables if "lora" in v.path]
    assert_close(_masked(_logits(model)), _masked(expected), what=f"{kind} merged")
    model.save_to_preset(tmp_path / "merged")
    assert_close(_masked(_logits(task.from_preset(tmp_path / "merged"))), _masked(expected),
                 what=f"{kind} merged preset")


@pytest.mark.parametrize("kind", sorted(CASES))
def test_lora_adapter_reloads_in_transformers(kind, tmp_path):
    """Our adapter folder in PEFT, and save_to_preset of a model with live adapters (merged) in
    Transformers, give PEFT's outputs."""
    import peft
    import torch
    import transformers

    folder, adapter, expected = _reference(kind)
    builder, task, targets, names, _ = CASES[kind]
    model = task.from_preset(folder)
    assert model.enable_lora(2, target_names=names, lora_alpha=6) == 2 * len(names)
    model.load_lora_weights(adapter)  # PEFT's values into the adapters enable_lora made
    model.save_lora_weights(tmp_path / "ours")
    config = json.loads((tmp_path / "ours" / "adapter_config.json").read_text())
    assert config["peft_type"] == "LORA" and config["r"] == 2 and config["lora_alpha"] == 6
    model.save_to_preset(tmp_path / "merged")
    cls = type(builder())
    inputs = dict(input_ids=torch.tensor(IDS), attention_mask=torch.tensor(MASK))
    with torch.no_grad():
        hf = peft.PeftModel.from_pretrained(cls.from_pretrained(folder), tmp_path / "ours").eval()
        got = hf(**inputs).logits.numpy()
        merged = cls.from_pretrained(tmp_path / "merged").eval()(**inputs).logits.numpy()
    assert_close(_masked(got), _masked(expected), what=f"{kind}: our adapter in PEFT")
    assert_close(_masked(merged), _masked(expected), what=f"{kind}: merged preset in Transformers")


def test_bad_adapters_are_refused_naming_the_fault(tmp_path):
    folder, adapter, _ = _reference("llama")
    gpt2_folder, gpt2_adapter, _ = _reference("gpt2")
    model = km.CausalLM.from_preset(folder)
    with pytest.raises(PresetError, match="no LoRA adapters"):
        model.save_lora_weights(tmp_path / "none")
    with pytest.raises(PresetError, match="c_attn"):  # another model's adapter: the module is named
        model.load_lora_weights(gpt2_adapter)
    assert not [v for v in model.variables if "lora" in v.path]  # nothing was half-applied
    bad = tmp_path / "dora"
    bad.mkdir()
    config = json.loads((adapter / "adapter_config.json").read_text())
    (bad / "adapter_config.json").write_text(json.dumps({**config, "use_dora": True}))
    (bad / "adapter_model.safetensors").write_bytes((adapter / "adapter_model.safetensors").read_bytes())
    with pytest.raises(PresetError, match="use_dora"):
        model.load_lora_weights(bad)
    with pytest.raises(PresetError, match="adapter_config.json"):
        model.load_lora_weights(tmp_path)
    with pytest.raises(ValueError, match="its Dense layers"):
        model.enable_lora(2, target_names=("no_such_layer",))

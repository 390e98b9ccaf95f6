"""Gemma 3n text (Gemma3nForCausalLM): its own backbone (AltUp, LAuReL, per-layer inputs, KV
sharing, gaussian top-k activation sparsity), so its own test file: logits and the final hidden
state on a left- and right-padded batch, the KV-cache decode, greedy generate, the Transformers
reload, the .keras round trip and config errors.

The tiny config is odd on purpose: 3 AltUp copies, 5 layers (sliding, sliding, full, sliding,
full) of different MLP widths with the last 2 sharing the K/V of layers 1 and 2, a sliding window
of 3 (smaller than the sequence), sparsity on a sharing and a non-sharing layer, a per-layer
table smaller than the vocabulary (ids past it read row 0), linear rope scaling on the full
layers and a soft-cap of 5."""

import json
import shutil

import numpy as np
import pytest

import keras_models as km
from tests.parity import (assert_backbone_close, assert_close, assert_keras_round_trip, cached_folder,
                          hf_reference, jit_under_jax, to_numpy)

VOCAB, SEQ = 61, 9


def _build():
    import transformers

    cfg = transformers.Gemma3nTextConfig(
        vocab_size=VOCAB, vocab_size_per_layer_input=40, hidden_size=16, hidden_size_per_layer_input=4,
        intermediate_size=[24, 16, 20, 24, 12], num_hidden_layers=5, num_attention_heads=4, num_key_value_heads=2,
        head_dim=8, layer_types=["sliding_attention", "sliding_attention", "full_attention", "sliding_attention",
                                 "full_attention"],
        sliding_window=3, num_kv_shared_layers=2, activation_sparsity_pattern=[0.0, 0.6, 0.0, 0.95, 0.0],
        altup_num_inputs=3, laurel_rank=3, final_logit_softcapping=5.0, max_position_embeddings=64,
        rope_parameters={"full_attention": {"rope_type": "linear", "factor": 2.0, "rope_theta": 1000.0},
                         "sliding_attention": {"rope_type": "default", "rope_theta": 50.0}},
        pad_token_id=0, bos_token_id=1, eos_token_id=2)
    return transformers.Gemma3nForCausalLM(cfg)


def _inputs():
    rng = np.random.RandomState(3)
    ids = rng.randint(3, VOCAB, size=(3, SEQ)).astype("int64")
    mask = np.ones_like(ids)
    ids[1, 6:], mask[1, 6:] = 0, 0  # right padding
    ids[2, :4], mask[2, :4] = 0, 0  # left padding
    positions = np.maximum(np.cumsum(mask, axis=1) - 1, 0)  # what generate gives Transformers
    return {"input_ids": ids, "attention_mask": mask, "position_ids": positions}


def _reference():
    return hf_reference("gemma3n-text", _build, _inputs())


def test_gemma3n_logits_hidden_and_cache_match_transformers():
    inputs = _inputs()
    folder, expected = _reference()
    model = km.CausalLM.from_preset(folder)
    assert type(model).__name__ == "Gemma3nCausalLM"
    assert model.backbone.kv_sources == (None, None, None, 1, 2)
    mask = inputs["attention_mask"]
    def run(x):
        hidden = model.backbone(x)
        return hidden, model.logits(hidden)

    hidden, logits = jit_under_jax(run)(inputs)
    assert_close(logits, expected["logits"], mask=mask, what="gemma3n logits")
    assert_backbone_close(model, inputs, expected, mask=mask, hidden=hidden, what="gemma3n")
    # the KV cache, in chunks of 3 (one compiled step; later chunks past the sliding window), equal
    # to the full forward
    rows = [0, 2]
    ids = inputs["input_ids"][rows].astype("int32")
    full_mask = np.zeros((2, SEQ + 3), "int32")
    cache = model.init_cache(2, SEQ + 3)
    step, got = jit_under_jax(model.call_with_cache), []
    for start, stop in ((0, 3), (3, 6), (6, SEQ)):
        full_mask[:, start:stop] = mask[rows, start:stop]
        out, cache = step(ids[:, start:stop], cache, np.int32(start), full_mask)
        got.append(to_numpy(out))
    assert_close(np.concatenate(got, axis=1), expected["logits"][rows], mask=mask[rows], what="gemma3n cached")


def test_gemma3n_greedy_generate_matches_transformers():
    source, _ = _reference()
    inputs = _inputs()
    ids = np.zeros((2, 7), "int64")
    mask = np.zeros((2, 7), "int64")
    ids[0], mask[0] = inputs["input_ids"][0, :7], 1
    ids[1, 3:], mask[1, 3:] = inputs["input_ids"][1, :4], 1
    kw = dict(do_sample=False, max_new_tokens=6, pad_token_id=0, eos_token_id=None)

    def build(tmp):
        import torch
        import transformers

        hf = transformers.AutoModelForCausalLM.from_pretrained(source).eval()
        with torch.no_grad():
            out = hf.generate(input_ids=torch.tensor(ids), attention_mask=torch.tensor(mask),
                              output_logits=True, return_dict_in_generate=True, **kw)
        np.save(tmp / "greedy.npy", out.sequences.numpy())
        top = [np.sort(step.float().numpy(), axis=1)[:, ::-1] for step in out.logits]
        np.save(tmp / "margins.npy", np.asarray([t[:, 0] - t[:, 1] for t in top]))

    folder = cached_folder(f"gemma3n-greedy-{source.parent.name}", build)
    expected = np.load(folder / "greedy.npy")
    assert np.load(folder / "margins.npy").min() > 1e-4  # no near-ties for round-off to break
    model = km.CausalLM.from_preset(source)
    got = np.asarray(model.generate({"input_ids": ids.astype("int32"), "attention_mask": mask.astype("int32")}, **kw))
    np.testing.assert_array_equal(got, expected)
    assert len(set(expected[:, 7:].ravel().tolist())) > 1


def test_gemma3n_export_reloads_in_transformers(tmp_path):
    import torch
    import transformers

    inputs = _inputs()
    folder, expected = _reference()
    model = km.CausalLM.from_preset(folder)
    model.save_to_preset(tmp_path / "p")
    saved = json.loads((tmp_path / "p" / "config.json").read_text())
    assert saved["model_type"] == "gemma3n_text" and saved["architectures"] == ["Gemma3nForCausalLM"]
    hf = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "p").eval()
    with torch.no_grad():
        out = hf(**{k: torch.tensor(v) for k, v in inputs.items()}).logits.numpy()
    assert_close(out, expected["logits"], mask=inputs["attention_mask"], what="gemma3n re-exported")
    assert_keras_round_trip(model, {k: v[:1].astype("int32") for k, v in inputs.items()}, tmp_path, atol=1e-5)


@pytest.mark.backend_independent
def test_bad_gemma3n_configs_are_named(tmp_path):
    from keras_models.errors import ConfigError

    folder, _ = _reference()
    config = json.loads((folder / "config.json").read_text())
    for key, bad in (("intermediate_size", [8, 8]), ("activation_sparsity_pattern", [0.0, 1.5, 0.0, 0.0, 0.0]),
                     ("layer_types", ["sliding_attention"] * 4 + ["chunked_attention"]), ("num_kv_shared_layers", 5),
                     ("altup_active_idx", 3), ("use_bidirectional_attention", True), ("num_key_value_heads", 3)):
        target = tmp_path / key
        shutil.copytree(folder, target)
        (target / "config.json").write_text(json.dumps({**config, key: bad}))
        with pytest.raises(ConfigError, match=f"config.json.*{key}"):
            km.CausalLM.from_preset(target)

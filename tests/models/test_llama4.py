"""Llama 4 text: the NoPE layers' attention temperature, which depends on the buffer slot (so a
left-padded row is *not* padding-invariant, in Transformers either): full rows for the forward and
cached passes, and greedy generation of a left-padded batch against Transformers' generate.
(Chunked attention, interleaved rope, q/k norm and the MoE are covered by the llama4_chunked_moe
case of test_decoders.py.)"""

import numpy as np
import pytest

import keras_models as km
from tests.models.decoder_cases import SEQ, VOCAB
from tests.parity import assert_close, cached_folder, hf_reference, jit_under_jax, to_numpy


def _build():
    import transformers

    # floor_scale 3 and attn_scale 0.7: the queries of NoPE layers 1 and 3 are scaled by
    # 1, 1, 1.49, 1.49, 1.49, 1.77 ... along the slots; no q/k norm; chunks of 3; every layer MoE
    cfg = transformers.Llama4TextConfig(
        vocab_size=VOCAB, hidden_size=16, num_hidden_layers=4, num_attention_heads=4, num_key_value_heads=1,
        head_dim=4, intermediate_size=8, intermediate_size_mlp=12, num_local_experts=3, num_experts_per_tok=1,
        no_rope_layer_interval=2, attention_chunk_size=3, use_qk_norm=False, floor_scale=3, attn_scale=0.7,
        max_position_embeddings=64, tie_word_embeddings=True, pad_token_id=0, bos_token_id=1, eos_token_id=2,
        rope_parameters={"rope_type": "default", "rope_theta": 100.0})
    return transformers.Llama4ForCausalLM(cfg)


def _inputs():
    rng = np.random.RandomState(4)
    ids = rng.randint(3, VOCAB, size=(2, SEQ)).astype("int64")
    return {"input_ids": ids, "attention_mask": np.ones_like(ids)}


def test_temperature_tuning_forward_and_cache_match_transformers():
    inputs = _inputs()
    folder, expected = hf_reference("llama4-temperature", _build, inputs)
    model = km.CausalLM.from_preset(folder)
    assert model.backbone.options["nope_query_temperature"] == (3.0, 0.7)
    out = jit_under_jax(lambda x: model(x))(inputs)
    assert_close(out, expected["logits"], what="llama4 temperature logits")
    cache = model.init_cache(2, SEQ + 2)
    ids, mask = inputs["input_ids"].astype("int32"), np.zeros((2, SEQ + 2), "int32")
    step, got = jit_under_jax(model.call_with_cache), []
    for start, stop in ((0, 4), (4, SEQ)):
        mask[:, start:stop] = 1
        logits, cache = step(ids[:, start:stop], cache, np.int32(start), mask)
        got.append(to_numpy(logits))
    assert_close(np.concatenate(got, axis=1), expected["logits"], what="llama4 temperature cached")


def test_greedy_generate_left_padded_matches_transformers():
    inputs = _inputs()
    source, _ = hf_reference("llama4-temperature", _build, inputs)
    ids = np.zeros((2, 7), "int64")
    mask = np.zeros((2, 7), "int64")
    ids[0], mask[0] = inputs["input_ids"][0, :7], 1
    ids[1, 3:], mask[1, 3:] = inputs["input_ids"][1, :4], 1
    kw = dict(do_sample=False, max_new_tokens=8, pad_token_id=0)

    def build(tmp):
        import torch
        import transformers

        torch.manual_seed(0)
        hf = transformers.AutoModelForCausalLM.from_pretrained(source).eval()
        with torch.no_grad():
            for p in hf.parameters():
                p.add_(torch.randn_like(p) * 0.3)
        hf.save_pretrained(tmp / "model")
        with torch.no_grad():
            out = hf.generate(input_ids=torch.tensor(ids), attention_mask=torch.tensor(mask),
                              output_logits=True, return_dict_in_generate=True, **kw)
        np.save(tmp / "greedy.npy", out.sequences.numpy())
        top = [np.sort(step.float().numpy(), axis=1)[:, ::-1] for step in out.logits]
        np.save(tmp / "margins.npy", np.asarray([t[:, 0] - t[:, 1] for t in top]))

    folder = cached_folder("llama4-greedy-temperature", build)
    expected = np.load(folder / "greedy.npy")
    assert np.load(folder / "margins.npy").min() > 1e-4  # no near-ties for round-off to break
    model = km.CausalLM.from_preset(folder / "model")
    got = np.asarray(model.generate({"input_ids": ids.astype("int32"), "attention_mask": mask.astype("int32")}, **kw))
    np.testing.assert_array_equal(got, expected)
    assert len(set(expected[:, 7:].ravel().tolist())) > 1


@pytest.mark.backend_independent
def test_bad_llama4_configs_are_named(tmp_path):
    import json
    import shutil

    from keras_models.errors import ConfigError

    folder, _ = hf_reference("llama4-temperature", _build, _inputs())
    config = json.loads((folder / "config.json").read_text())
    for key, bad in (("no_rope_layers", [1, 0]), ("moe_layers", [0, 7]), ("layer_types", ["sliding_attention"] * 4),
                     ("interleave_moe_layer_step", 0)):
        target = tmp_path / key
        shutil.copytree(folder, target)
        broken = {**config, key: bad}
        if key == "interleave_moe_layer_step":
            broken.pop("moe_layers")
        (target / "config.json").write_text(json.dumps(broken))
        with pytest.raises(ConfigError, match=f"config.json.*{key}"):
            km.CausalLM.from_preset(target)

"""RWKV (v4): CausalLM logits and final hidden state against tiny random Transformers models
(right-padded batch; a left-padded row equals the unpadded one), the recurrent state fed chunk by
chunk equal to the full forward pass, greedy generate equal to Transformers', export reloaded by
Transformers, a .keras round trip and config errors."""

import numpy as np
import pytest

import keras_models as km
from tests.parity import assert_backbone_close, assert_close, cached_folder, hf_reference, jit_under_jax, to_numpy

VOCAB, SEQ, PAD = 61, 8, 3
N = SEQ - PAD

# rescale_every=1 halves after every block (and scales the second block's outputs by 1/2); "narrow" has a WKV
# width unlike the hidden size, tied embeddings and no rescaling (Transformers sizes its cached state
# by hidden_size, so its reference runs without the cache)
CASES = {
    "rescaled": dict(hidden_size=16, num_hidden_layers=2, intermediate_size=40, rescale_every=1,
                     layer_norm_epsilon=1e-6),
    "narrow": dict(hidden_size=16, num_hidden_layers=2, attention_hidden_size=24, intermediate_size=24,
                   rescale_every=0, tie_word_embeddings=True, use_cache=False),
}


def _build(case):
    def build():
        import transformers

        return transformers.RwkvForCausalLM(transformers.RwkvConfig(vocab_size=VOCAB, context_length=64,
                                                                    **CASES[case]))
    build.__name__ = f"build_{case}"
    return build


def _inputs():
    rng = np.random.RandomState(3)
    ids = rng.randint(1, VOCAB, size=(2, SEQ)).astype("int64")
    mask = np.ones_like(ids)
    ids[1, N:], mask[1, N:] = 0, 0
    return {"input_ids": ids, "attention_mask": mask}


_MODELS = {}


def _load(case):
    if case not in _MODELS:
        inputs = _inputs()
        folder, expected = hf_reference(f"rwkv-{case}", _build(case), inputs)
        _MODELS[case] = (km.CausalLM.from_preset(folder), folder, inputs, expected)
    return _MODELS[case]


@pytest.mark.parametrize("case", sorted(CASES))
def test_rwkv_logits_and_hidden_state(case):
    model, _, inputs, expected = _load(case)
    assert type(model).__name__ == "RwkvCausalLM" and model.head_from_checkpoint
    # rows: full, right-padded, and the right-padded row moved to the end (left padding)
    ids = np.concatenate([inputs["input_ids"], np.zeros((1, SEQ), "int64")])
    mask = np.concatenate([inputs["attention_mask"], np.zeros((1, SEQ), "int64")])
    ids[2, PAD:], mask[2, PAD:] = inputs["input_ids"][1, :N], 1

    def run(x):
        hidden = model.backbone(x)
        return model.logits(hidden), hidden

    out, hidden = (to_numpy(t) for t in jit_under_jax(run)({"input_ids": ids, "attention_mask": mask}))
    assert_close(out[:2], expected["logits"], mask=inputs["attention_mask"], what=f"{case} right-padded")
    assert_close(out[2, PAD:], expected["logits"][1, :N], what=f"{case} left-padded")
    assert_backbone_close(model, inputs, expected, mask=inputs["attention_mask"], what=case, hidden=hidden[:2])


def test_rwkv_state_decoding_matches_full_forward():
    """A left-padded buffer fed in chunks of 3 (the state, token shift included, carried into a
    multi-token chunk), then one token at a time (compiled under JAX): the logits of the full pass."""
    model, _, inputs, expected = _load("rescaled")
    ids, mask = np.zeros((2, SEQ + 2), "int32"), np.zeros((2, SEQ + 2), "int32")
    ids[0, :SEQ], mask[0, :SEQ] = inputs["input_ids"][0], 1
    ids[1, PAD:SEQ], mask[1, PAD:SEQ] = inputs["input_ids"][1, :N], 1
    step = jit_under_jax(model.call_with_cache)
    cache = model.init_cache(2, SEQ + 2)
    seen, out = np.zeros_like(mask), []
    for start, stop in [(0, 3), (3, 6), (6, 7), (7, 8)]:
        seen[:, start:stop] = mask[:, start:stop]
        logits, cache = step(ids[:, start:stop], cache, np.int32(start), seen)
        out.append(to_numpy(logits))
    got = np.concatenate(out, axis=1)
    assert_close(got[0], expected["logits"][0], what="state decoding row 0")
    assert_close(got[1, PAD:SEQ], expected["logits"][1, :N], what="state decoding left-padded row")


@pytest.mark.one_case_per_pass("beams")
@pytest.mark.parametrize("beams", [1, 3])
def test_rwkv_generate_matches_transformers(beams):
    """Greedy (and beam search, whose reordering gathers the recurrent state's rows) tokens equal
    Transformers' generate; the left-padded row equals Transformers' generation from the unpadded
    prompt (Transformers ignores the mask; it beam-searches RWKV only without its cache)."""
    model, source, inputs, _ = _load("rescaled")
    prompts = [inputs["input_ids"][0, :6], inputs["input_ids"][1, :4]]
    kw = dict(do_sample=False, max_new_tokens=8, pad_token_id=0, eos_token_id=None, num_beams=beams)

    def build(tmp):
        import torch
        import transformers

        hf = transformers.AutoModelForCausalLM.from_pretrained(source).eval()
        rows, margins = [], []
        for p in prompts:
            with torch.no_grad():
                out = hf.generate(input_ids=torch.tensor(p[None]), output_logits=True, return_dict_in_generate=True,
                                  use_cache=beams == 1, **kw)
            rows.append(out.sequences.numpy()[0, len(p):])
            for logits in out.logits if beams == 1 else ():
                top = np.sort(logits.float().numpy()[0])[::-1]
                margins.append(float(top[0] - top[1]))
        np.save(tmp / "new.npy", np.stack(rows))
        np.save(tmp / "margins.npy", np.asarray(margins + [1.0]))

    folder = cached_folder(f"rwkv-generate-{beams}-{source.parent.name}", build)
    expected = np.load(folder / "new.npy")
    assert np.load(folder / "margins.npy").min() > 1e-4  # greedy: no near-tie another backend could break
    ids, mask = np.zeros((2, 6), "int32"), np.zeros((2, 6), "int32")
    ids[0], mask[0] = prompts[0], 1
    ids[1, 2:], mask[1, 2:] = prompts[1], 1
    got = np.asarray(model.generate({"input_ids": ids, "attention_mask": mask}, **kw))
    np.testing.assert_array_equal(got[:, :6], ids)
    np.testing.assert_array_equal(got[:, 6:], expected)
    assert len(set(expected.ravel().tolist())) > 2


def test_rwkv_export_reloads_in_transformers(tmp_path):
    import torch
    import transformers

    for case in sorted(CASES):
        model, _, inputs, expected = _load(case)
        model.save_to_preset(tmp_path / case)
        hf = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / case).eval()
        with torch.no_grad():
            out = hf(input_ids=torch.tensor(inputs["input_ids"]), use_cache=False).logits.numpy()
        assert_close(out, expected["logits"], mask=inputs["attention_mask"], what=f"{case} re-exported")


def test_rwkv_keras_round_trip_and_backbone(tmp_path):
    from tests.parity import assert_close_low_precision, assert_keras_round_trip

    model, folder, inputs, expected = _load("narrow")
    assert_keras_round_trip(model, inputs, tmp_path)
    # bf16: the WKV state and time_decay / time_first stay float32 (as Transformers keeps them)
    half = km.CausalLM.from_preset(folder, dtype="bfloat16")
    assert_close_low_precision(to_numpy(jit_under_jax(half)(inputs)).astype("float32"), expected["logits"], 0.05,
                               mask=inputs["attention_mask"], what="bf16 logits")
    backbone = km.Backbone.from_preset(folder)
    assert type(backbone).__name__ == "RwkvBackbone"
    assert_close(to_numpy(backbone(inputs)), expected["last_hidden_state"], mask=inputs["attention_mask"],
                 what="Backbone.from_preset")


@pytest.mark.parametrize("key,value", [("rescale_every", -1), ("attention_hidden_size", 0),
                                       ("intermediate_size", "wide"), ("hidden_size", 0)])
def test_rwkv_bad_config_names_the_key(tmp_path, key, value):
    import json
    import shutil

    from keras_models.errors import ConfigError

    _, folder, _, _ = _load("narrow")
    bad = tmp_path / "bad"
    shutil.copytree(folder, bad)
    config = json.loads((bad / "config.json").read_text())
    config[key] = value
    (bad / "config.json").write_text(json.dumps(config))
    with pytest.raises(ConfigError, match=key):
        km.CausalLM.from_preset(bad)

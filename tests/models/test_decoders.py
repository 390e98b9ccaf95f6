"""Decoder-only families: CausalLM logits parity with tiny random Transformers models (right and
left padding), KV-cache decoding equal to the full forward pass, and export back to HF."""

import numpy as np
import pytest

import keras_models as km
from tests.models.decoder_cases import CASES, SEQ, VOCAB
from tests.parity import assert_close, hf_reference, to_numpy

PAD = 3  # the second row is right-padded by PAD tokens


def _inputs():
    rng = np.random.RandomState(1)
    ids = rng.randint(3, VOCAB, size=(2, SEQ)).astype("int64")
    mask = np.ones_like(ids)
    ids[1, SEQ - PAD:] = 0
    mask[1, SEQ - PAD:] = 0
    return {"input_ids": ids, "attention_mask": mask}


_MODELS = {}


def _load(case):
    if case not in _MODELS:
        inputs = _inputs()
        folder, expected = hf_reference(f"dec-{case}", CASES[case], inputs)
        _MODELS[case] = (km.CausalLM.from_preset(folder), folder, inputs, expected["logits"])
    return _MODELS[case]


@pytest.mark.parametrize("case", sorted(CASES))
def test_logits_right_and_left_padding(case):
    model, _, inputs, expected = _load(case)
    assert model.head_from_checkpoint
    mask = inputs["attention_mask"]
    assert_close(model(inputs), expected, mask=mask, what=f"{case} right-padded")
    # Left padding: the padded row moved to the end must give the same logits on its real tokens.
    n = SEQ - PAD
    left = {k: v.copy() for k, v in inputs.items()}
    left["input_ids"][1] = np.concatenate([np.zeros(PAD, "int64"), inputs["input_ids"][1, :n]])
    left["attention_mask"][1] = np.concatenate([np.zeros(PAD, "int64"), np.ones(n, "int64")])
    out = to_numpy(model(left))
    assert_close(out[1, PAD:], expected[1, :n], what=f"{case} left-padded")


# longrope switches factors on the longest position of each call (as Transformers does), so a
# prefill shorter than original_max_position_embeddings legitimately differs from one full pass.
CACHE_CASES = sorted(c for c in CASES if "longrope" not in c)


@pytest.mark.parametrize("case", CACHE_CASES)
def test_kv_cache_matches_full_forward(case):
    """Prefill a left-padded prompt, then decode token by token through the fixed-size cache."""
    from keras import ops

    model, _, inputs, expected = _load(case)
    n = SEQ - PAD
    max_len = SEQ + 2
    ids = np.zeros((2, max_len), "int64")
    mask = np.zeros((2, max_len), "int64")
    ids[0, :SEQ] = inputs["input_ids"][0]
    mask[0, :SEQ] = 1
    ids[1, PAD:SEQ] = inputs["input_ids"][1, :n]  # left-padded row
    mask[1, PAD:SEQ] = 1
    prompt = SEQ - 4
    cache = model.init_cache(2, max_len)
    step_mask = mask.copy()
    step_mask[:, prompt:] = 0
    logits, cache = model.call_with_cache(ids[:, :prompt], cache, ops.convert_to_tensor(0), step_mask)
    got = [to_numpy(logits)]
    for i in range(prompt, SEQ):
        step_mask[:, i] = mask[:, i]
        logits, cache = model.call_with_cache(ids[:, i : i + 1], cache, ops.convert_to_tensor(i), step_mask)
        got.append(to_numpy(logits))
    got = np.concatenate(got, axis=1)
    assert_close(got[0], expected[0], what=f"{case} cached row 0")
    assert_close(got[1, PAD:SEQ], expected[1, :n], what=f"{case} cached left-padded row")


@pytest.mark.parametrize("case", sorted(CASES))
def test_export_reloads_in_transformers(case, tmp_path):
    import torch
    import transformers

    model, _, inputs, expected = _load(case)
    model.save_to_preset(tmp_path / "p")
    hf = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "p").eval()
    with torch.no_grad():
        out = hf(**{k: torch.tensor(v) for k, v in inputs.items()}).logits.numpy()
    assert_close(out, expected, mask=inputs["attention_mask"], what=f"{case} re-exported")

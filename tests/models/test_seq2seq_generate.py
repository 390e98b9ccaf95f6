"""Seq2SeqLM.generate (greedy and beam search) against Transformers' generate on tiny models."""

import numpy as np
import pytest

import keras_models as km
from tests.models.test_seq2seq_parity import _bart_like, _t5, seq2seq_inputs
from tests.parity import cached_folder


def _t5_model():
    return _t5(feed_forward_proj="gated-gelu", untie=True, num_layers=1)


def _bart_model():
    return _bart_like("BartForConditionalGeneration", "BartConfig", forced_eos_token_id=2,
                      encoder_layers=1, decoder_layers=1)


def _mbart_model():  # target-language style forced BOS, pre-norm
    return _bart_like("MBartForConditionalGeneration", "MBartConfig", forced_bos_token_id=7,
                      forced_eos_token_id=2, encoder_layers=1, decoder_layers=1)


BUILDERS = {"t5": (_t5_model, 0), "bart": (_bart_model, 1), "mbart": (_mbart_model, 1)}
SETTINGS = {
    "greedy": dict(max_new_tokens=6),
    "beam4": dict(max_new_tokens=6, num_beams=4, length_penalty=1.3, early_stopping=False),
}


def _reference(name, setting):
    import inspect

    src = inspect.getsource(inspect.getmodule(_reference)) + inspect.getsource(inspect.getmodule(_t5))
    return generate_reference(f"s2sgen-{name}", *BUILDERS[name], setting, src)


def generate_reference(key_prefix, builder, pad, setting, src):
    """Build (once, cached) a tiny Transformers seq2seq model from ``builder`` and its ``generate``
    output under SETTINGS[setting] on padded encoder inputs. ``src`` (the defining modules' source)
    keys the cache. Returns (model folder, encoder inputs, expected ids)."""
    import hashlib

    inputs = seq2seq_inputs(pad, 0)
    enc = {"input_ids": inputs["input_ids"], "attention_mask": inputs["attention_mask"]}
    key = f"{key_prefix}-{setting}-" + hashlib.sha1(src.encode()).hexdigest()[:10]

    def build(tmp):
        import torch

        torch.manual_seed(0)
        model = builder().eval()
        with torch.no_grad():
            for p in model.parameters():
                p.add_(torch.randn_like(p) * 0.02)
        model.save_pretrained(tmp / "model")
        with torch.no_grad():
            out = model.generate(**{k: torch.tensor(v) for k, v in enc.items()}, do_sample=False,
                                 **SETTINGS[setting])
        np.save(tmp / "expected.npy", out.numpy())

    folder = cached_folder(key, build)
    return folder / "model", enc, np.load(folder / "expected.npy")


SETTINGS["greedy_forced_bos"] = dict(max_new_tokens=6, forced_bos_token_id=7)
RUNS = [(n, s) for n in ("t5", "bart") for s in ("greedy", "beam4")] + [
    ("mbart", "greedy_forced_bos"),
    # more of the same engine paths (compile time): not in CI
    pytest.param("mbart", "beam4", marks=pytest.mark.slow),
]


@pytest.mark.parametrize("name,setting", RUNS)
def test_generate_matches_transformers(name, setting):
    folder, enc, expected = _reference(name, setting)
    model = km.Seq2SeqLM.from_preset(folder)
    out = np.asarray(model.generate(enc, do_sample=False, **SETTINGS[setting]))
    assert out.shape == expected.shape, (out, expected)
    np.testing.assert_array_equal(out, expected)
    if "forced_bos_token_id" in SETTINGS[setting]:
        assert (out[:, 1] == SETTINGS[setting]["forced_bos_token_id"]).all()


def test_cached_decoding_matches_full_pass():
    """call_decoder_with_cache one token at a time (cross K/V precomputed in the cache) equals the
    teacher-forced pass."""
    import keras

    folder, enc, _ = _reference("t5", "greedy")
    model = km.Seq2SeqLM.from_preset(folder)
    dec = np.array([[0, 5, 9], [0, 7, 2]], "int32")
    full = model({**enc, "decoder_input_ids": dec})
    states = model.encode(enc)
    cache = model.init_cache(2, 4, states)
    mask = np.zeros((2, 4), "int32")
    steps = []
    for i in range(dec.shape[1]):
        mask[:, i] = 1
        logits, cache = model.call_decoder_with_cache(dec[:, i:i + 1], states, enc["attention_mask"],
                                                      cache, np.int32(i), mask)
        steps.append(keras.ops.convert_to_numpy(logits))
    np.testing.assert_allclose(np.concatenate(steps, axis=1), keras.ops.convert_to_numpy(full),
                               atol=1e-4)


def test_generate_refuses_a_cache_larger_than_memory():
    """T5 has no position limit: max_new_tokens=10**9 used to try to allocate ~1 TB after a minute;
    the cache size is estimated first and refused with GenerationError."""
    from keras_models.generation.config import GenerationError

    folder, enc, _ = _reference("t5", "greedy")
    model = km.Seq2SeqLM.from_preset(folder)
    with pytest.raises(GenerationError, match="GiB.*lower max_new_tokens"):
        model.generate(enc, do_sample=False, max_new_tokens=10**9)

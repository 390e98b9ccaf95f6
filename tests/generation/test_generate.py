"""generate() on tiny random checkpoints against Transformers' generate (exact token equality)."""

import numpy as np
import pytest

import keras_models as km
from keras_models.generation import GenerationError, TextIteratorStreamer, TokenCallbackStreamer
from tests.generation.helpers import left_padded, reference, vocab_size

SCALE = 12.0  # weight noise 0.24: decisive logits, so greedy ties cannot hide a bug


def _prompts(seed=0):
    return left_padded(3, [7, 4, 1], vocab_size(), seed=seed)


CASES = [
    # greedy, batched left-padded prompts of 7/4/1 tokens, two eos ids that the output contains
    (_prompts(0), dict(do_sample=False, max_new_tokens=9, eos_token_id="auto")),
    # beam search
    (_prompts(1), dict(do_sample=False, num_beams=3, max_new_tokens=7, eos_token_id="auto")),
    # beam search, length penalty, early stopping "never", two returned sequences
    (_prompts(2), dict(do_sample=False, num_beams=3, max_new_tokens=6, length_penalty=-0.7,
                       early_stopping="never", num_return_sequences=2)),
]
# repetition penalty + no-repeat n-grams + min_new_tokens come from the checkpoint's generation_config.json
FILE_CONFIG = dict(repetition_penalty=1.6, no_repeat_ngram_size=2, min_new_tokens=3, max_new_tokens=8,
                   eos_token_id=[5, 9])
FILE_CASE = (_prompts(3), dict(do_sample=False))
TEXT_CASE = ({"text": "the quick brown fox"}, dict(do_sample=False, max_new_tokens=12, stop_strings="auto"))


_LOADED = {}


def _load(family):
    if family not in _LOADED:
        folder, expected = reference(family, CASES, scale=SCALE)
        _LOADED[family] = (km.CausalLM.from_preset(folder), expected)
    return _LOADED[family]


@pytest.fixture(scope="module")
def llama():
    return _load("llama")


def _ids(inputs):
    return {k: v.astype("int32") for k, v in inputs.items()}


@pytest.mark.parametrize("family,case", [("llama", 0), ("llama", 1), ("llama", 2), ("gpt2", 0), ("gpt2", 1)])
def test_matches_transformers(family, case):
    model, expected = _load(family)
    inputs, kw = CASES[case]
    kw = dict(kw)
    if kw.get("eos_token_id") == "auto":
        kw["eos_token_id"] = expected[f"case{case}_eos"].tolist()
    out = model.generate(_ids(inputs), **kw)
    ref = expected[f"case{case}"]
    assert out.shape == ref.shape, (out, ref)
    np.testing.assert_array_equal(out, ref)
    if "eos_token_id" in kw and "num_beams" not in kw:  # the eos ids occur: stopping was exercised
        assert np.isin(out[:, inputs["input_ids"].shape[1]:], kw["eos_token_id"]).any()


def test_generation_config_file_defaults():
    folder, expected = reference("llama", [FILE_CASE], scale=SCALE, generation_config=FILE_CONFIG)
    model = km.CausalLM.from_preset(folder)
    assert model.generation_config.repetition_penalty == 1.6
    out = model.generate(_ids(FILE_CASE[0]), **FILE_CASE[1])
    np.testing.assert_array_equal(out, expected["case0"])


def test_strings_stop_strings_and_streamers():
    folder, expected = reference("llama", [TEXT_CASE], scale=SCALE)
    model = km.CausalLM.from_preset(folder)
    tok = model.preprocessor.tokenizer
    stop = str(expected["case0_stop"])
    ref_ids = expected["case0"][0]
    prompt_len = len(tok(TEXT_CASE[0]["text"], return_tensors=None)["input_ids"])
    ref_new = tok.decode(ref_ids[prompt_len:], skip_special_tokens=True)
    assert stop in ref_new
    tokens, texts = [], TextIteratorStreamer(tok, skip_prompt=True)

    class Both:
        def put(self, v):
            texts.put(v)
            cb.put(v)

        def end(self):
            texts.end()
            cb.end()

    cb = TokenCallbackStreamer(tokens.extend)
    out = model.generate(TEXT_CASE[0]["text"], max_new_tokens=12, stop_strings=stop, streamer=Both(),
                         return_full_text=False)
    assert out == ref_new
    assert tokens == ref_ids[prompt_len:].tolist()
    assert "".join(texts) == ref_new
    full = model.generate([TEXT_CASE[0]["text"]], max_new_tokens=12, stop_strings=[stop])
    assert full == [TEXT_CASE[0]["text"] + ref_new]


def test_sampling_is_reproducible_with_a_seed(llama):
    model, _ = llama
    inputs = _ids(_prompts(4))
    kw = dict(do_sample=True, max_new_tokens=8, top_k=20, top_p=0.95, temperature=1.5, min_p=0.01)
    a = model.generate(inputs, seed=7, **kw)
    b = model.generate(inputs, seed=7, **kw)
    c = model.generate(inputs, seed=8, **kw)
    np.testing.assert_array_equal(a, b)
    assert a.shape[1] == inputs["input_ids"].shape[1] + 8
    assert (a != c).any()
    np.testing.assert_array_equal(a[:, :7], inputs["input_ids"])


def test_bad_arguments_raise(llama):
    model, _ = llama
    inputs = _ids(_prompts(0))
    for kw, name in [(dict(top_p=0.0), "top_p"), (dict(top_p=1.2), "top_p"), (dict(max_new_tokens=-1), "max_new_tokens"),
                     (dict(temperature=-1.0, do_sample=True), "temperature"), (dict(num_beams=0), "num_beams")]:
        with pytest.raises(GenerationError, match=name):
            model.generate(inputs, **kw)
    with pytest.raises(TypeError, match="max_new_tokenz"):
        model.generate(inputs, max_new_tokenz=3)
    with pytest.raises(GenerationError, match="context"):
        model.generate({"input_ids": np.ones((1, 70), "int32")}, max_new_tokens=2)
    with pytest.raises(GenerationError, match="context"):
        model.generate(inputs, max_new_tokens=60)
    with pytest.raises(GenerationError, match="streamer"):
        model.generate(inputs, max_new_tokens=2, streamer=lambda ids: None)
    with pytest.raises(GenerationError, match="attention_mask"):
        model.generate({"input_ids": inputs["input_ids"], "attention_mask": inputs["attention_mask"][:, :2]})

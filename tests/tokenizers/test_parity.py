"""Ids, masks and decoded text equal transformers.AutoTokenizer's, for every checkpoint format."""

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tok_corpus import CORPUS, PAIRS
from tok_refs import BUILDERS, hf_tokenizer, our_tokenizer, ref_dir

NAMES = sorted(BUILDERS)


def _hf_call(hf, *args, **kwargs):
    out = hf(*args, **kwargs)
    return {k: list(v) for k, v in out.items()}


def _norm(x):
    if isinstance(x, np.ndarray):
        x = x.tolist()
    if isinstance(x, (list, tuple)):
        return [_norm(v) for v in x]
    return x


def _assert_same(ours, ref, context):
    assert sorted(ours) == sorted(ref), (context, sorted(ours), sorted(ref))
    for key in ref:
        assert _norm(ours[key]) == _norm(ref[key]), (context, key, _norm(ours[key]), _norm(ref[key]))


@pytest.mark.parametrize("name", NAMES)
def test_single_texts(name):
    hf, ours = hf_tokenizer(name), our_tokenizer(name)
    for text in CORPUS:
        ref = hf(text)
        got = ours(text, return_tensors=None)
        _assert_same(got, dict(ref), (name, text[:80]))
        ids = ref["input_ids"]
        assert ours.decode(ids) == hf.decode(ids), (name, text[:80])
        assert ours.decode(ids, skip_special_tokens=True) == hf.decode(ids, skip_special_tokens=True)
        assert ours.convert_ids_to_tokens(ids) == hf.convert_ids_to_tokens(ids)
        assert ours.encode(text, add_special_tokens=False) == hf.encode(text, add_special_tokens=False)


@pytest.mark.parametrize("name", NAMES)
def test_properties(name):
    hf, ours = hf_tokenizer(name), our_tokenizer(name)
    assert ours.vocab_size == hf.vocab_size
    assert len(ours) == len(hf)
    for key in ("bos", "eos", "unk", "sep", "pad", "cls", "mask"):
        assert getattr(ours, f"{key}_token") == (
            None if getattr(hf, f"{key}_token") is None else str(getattr(hf, f"{key}_token"))
        ), key
        assert getattr(ours, f"{key}_token_id") == getattr(hf, f"{key}_token_id"), key
    assert ours.model_max_length == hf.model_max_length
    assert ours.padding_side == hf.padding_side
    assert ours.model_input_names == hf.model_input_names
    assert sorted(ours.all_special_ids) == sorted(hf.all_special_ids)
    assert ours.get_vocab() == hf.get_vocab()


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("side", ["right", "left"])
def test_batches_pairs_padding_truncation(name, side):
    hf, ours = hf_tokenizer(name), our_tokenizer(name)
    if hf.pad_token is None:  # pad with eos, on fresh copies (the shared ones stay as loaded)
        from transformers import AutoTokenizer

        from keras_models.tokenizers import Tokenizer

        hf, ours = AutoTokenizer.from_pretrained(str(ref_dir(name))), Tokenizer.from_preset(ref_dir(name))
        hf.pad_token = hf.eos_token
        ours.pad_token = ours.eos_token
    firsts, seconds = [p[0] for p in PAIRS], [p[1] for p in PAIRS]
    cases = [
        dict(padding=True),
        dict(padding="longest", truncation=True, max_length=24),
        dict(padding="max_length", truncation=True, max_length=40),
        dict(padding=True, pad_to_multiple_of=8),
    ]
    for kwargs in cases:
        ref = _hf_call(hf, firsts, seconds, padding_side=side, **kwargs)
        got = ours(firsts, seconds, padding_side=side, **kwargs)
        _assert_same(got, ref, (name, side, kwargs))
    ref = _hf_call(hf, CORPUS, padding=True, truncation=True, max_length=32, padding_side=side)
    got = ours(CORPUS, padding=True, truncation=True, max_length=32, padding_side=side)
    _assert_same(got, ref, (name, side, "corpus"))
    assert ours.batch_decode(got["input_ids"]) == hf.batch_decode(ref["input_ids"])
    assert ours.batch_decode(got["input_ids"], skip_special_tokens=True) == hf.batch_decode(
        ref["input_ids"], skip_special_tokens=True
    )


@pytest.mark.parametrize("name", NAMES)
def test_offsets_and_masks(name):
    hf, ours = hf_tokenizer(name), our_tokenizer(name)
    texts = CORPUS[2:12]
    kw = dict(return_offsets_mapping=True, return_special_tokens_mask=True, return_length=True)
    for text in texts:
        ref = hf(text, **kw)
        got = ours(text, return_tensors=None, **kw)
        _assert_same(got, dict(ref), (name, text))


@pytest.mark.parametrize("name", NAMES)
def test_max_length_defaults_to_model_max_length(name):
    hf, ours = hf_tokenizer(name), our_tokenizer(name)
    text = CORPUS[-1]
    ref = hf(text, truncation=True)
    got = ours(text, truncation=True, return_tensors=None)
    _assert_same(got, dict(ref), name)


@pytest.mark.parametrize("name", NAMES)
@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
@given(text=st.text(max_size=60), pair=st.one_of(st.none(), st.text(max_size=20)))
def test_hypothesis_unicode(name, text, pair):
    hf, ours = hf_tokenizer(name), our_tokenizer(name)
    ref = hf(text, pair)
    got = ours(text, pair, return_tensors=None)
    _assert_same(got, dict(ref), (name, text, pair))
    assert ours.decode(ref["input_ids"]) == hf.decode(ref["input_ids"])


@pytest.mark.parametrize("name", ["bert_json", "roberta_json", "xlmr_spm"])
def test_overflow_with_stride_for_question_answering(name):
    hf, ours = hf_tokenizer(name), our_tokenizer(name)
    questions = ["What is the capital?", "Who?"]
    contexts = [CORPUS[-1][:600], "A short context about Привет and 日本語."]
    kw = dict(
        truncation="only_second",
        max_length=48,
        stride=12,
        return_overflowing_tokens=True,
        return_offsets_mapping=True,
        padding="max_length",
    )
    ref = hf(questions, contexts, **kw)
    got = ours(questions, contexts, return_tensors=None, **kw)
    _assert_same(got, {k: ref[k] for k in ref}, name)
    arrays = ours(questions, contexts, **kw)
    assert arrays["input_ids"].shape == (len(ref["input_ids"]), 48)


@pytest.mark.parametrize("name", ["t5_spm", "bert_json"])
def test_text_target_gives_labels(name):
    hf, ours = hf_tokenizer(name), our_tokenizer(name)
    src, tgt = ["translate: hello", "a b"], ["Привет", "longer target text here"]
    ref = hf(src, text_target=tgt, padding=True)
    got = ours(src, text_target=tgt, padding=True, return_tensors=None)
    _assert_same(got, dict(ref), name)
    assert ours(text_target="x y", return_tensors=None)["input_ids"] == hf(text_target="x y")["input_ids"]


@pytest.mark.parametrize("name", NAMES)
@settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
@given(data=st.data())
def test_hypothesis_decode_random_ids(name, data):
    hf, ours = hf_tokenizer(name), our_tokenizer(name)
    ids = data.draw(st.lists(st.integers(0, len(hf) - 1), max_size=40))
    assert ours.decode(ids) == hf.decode(ids)
    assert ours.decode(ids, skip_special_tokens=True) == hf.decode(ids, skip_special_tokens=True)
    assert ours.convert_ids_to_tokens(ids) == hf.convert_ids_to_tokens(ids)


@pytest.mark.parametrize("name", NAMES)
@settings(max_examples=10, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
@given(
    texts=st.lists(st.tuples(st.text(max_size=40), st.text(max_size=20)), min_size=1, max_size=4),
    side=st.sampled_from(["left", "right"]),
    max_length=st.integers(8, 40),
)
def test_hypothesis_padded_pair_batches(name, texts, side, max_length):
    hf, ours = hf_tokenizer(name), our_tokenizer(name)
    if hf.pad_token is None:
        return  # covered with pad = eos in test_batches_pairs_padding_truncation
    firsts, seconds = [t[0] for t in texts], [t[1] for t in texts]
    kw = dict(padding=True, truncation="longest_first", max_length=max_length, padding_side=side)
    try:
        ref = _hf_call(hf, firsts, seconds, **kw)
    except Exception as e:  # e.g. max_length shorter than the special tokens of a pair
        with pytest.raises(Exception, match=str(e)[:20]):
            ours(firsts, seconds, **kw)
        return
    _assert_same(ours(firsts, seconds, **kw), ref, (name, texts, side, max_length))

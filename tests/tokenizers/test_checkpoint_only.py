"""Checkpoints that ship no tokenizer.json, loaded from the files their hub repositories hold, with
ids and decoding equal to Transformers': BERTweet / PhoBERT (fastBPE vocab.txt + bpe.codes), HerBERT
(XLM-style vocab.json + merges.txt). mLUKE (MLukeTokenizer over an XLM-R sentencepiece.bpe.model) is
refused: Transformers' class does not give XLM-R's ids (see test_mluke_is_refused)."""

import shutil

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tok_corpus import CORPUS, PAIRS
from tok_refs import assert_same_encoding as _assert_same
from tok_refs import assert_same_padded, assert_same_vocab_and_specials
from tok_refs import CHECKPOINT_ONLY_BUILDERS, checkpoint_hf_tokenizer, checkpoint_our_tokenizer, checkpoint_ref_dir

from keras_models.errors import TokenizerFileError
from keras_models.tokenizers import Tokenizer

NAMES = sorted(n for n in CHECKPOINT_ONLY_BUILDERS if n != "mluke_spm")


@pytest.mark.parametrize("name", NAMES)
def test_single_texts_and_decode(name):
    hf, ours = checkpoint_hf_tokenizer(name), checkpoint_our_tokenizer(name)
    unknown = 0
    for text in CORPUS + [p[0] for p in PAIRS]:
        ref = hf(text)
        _assert_same(ours(text, return_tensors=None), ref, (name, text[:80]))
        ids = ref["input_ids"]
        unknown += ids.count(hf.unk_token_id)
        assert ours.decode(ids) == hf.decode(ids), (name, text[:80])
        assert ours.decode(ids, skip_special_tokens=True) == hf.decode(ids, skip_special_tokens=True)
        assert ours.convert_ids_to_tokens(ids) == hf.convert_ids_to_tokens(ids)
    assert unknown > 0  # the reference vocabulary leaves pieces out: the unknown path is exercised


@pytest.mark.parametrize("name", NAMES)
def test_empty_pair_on_a_single_text(name):
    # Transformers' python-only classes (BERTweet, PhoBERT) keep an empty pair, its fast ones drop it
    hf, ours = checkpoint_hf_tokenizer(name), checkpoint_our_tokenizer(name)
    for text in ("", "Hello world!"):
        _assert_same(ours(text, "", return_tensors=None), hf(text, ""), (name, text))


@pytest.mark.parametrize("name", NAMES)
def test_properties(name):
    hf, ours = checkpoint_hf_tokenizer(name), checkpoint_our_tokenizer(name)
    assert_same_vocab_and_specials(hf, ours)
    assert ours.model_input_names == hf.model_input_names
    assert ours.padding_side == hf.padding_side
    assert sorted(ours.all_special_ids) == sorted(hf.all_special_ids)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("side", ["right", "left"])
def test_pairs_padding_truncation(name, side):
    hf, ours = checkpoint_hf_tokenizer(name), checkpoint_our_tokenizer(name)
    assert_same_padded(hf, ours, name, [p[0] for p in PAIRS], [p[1] for p in PAIRS], side=side)


@pytest.mark.parametrize("name", NAMES)
@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
@given(text=st.text(max_size=40), pair=st.one_of(st.none(), st.text(max_size=15)), data=st.data())
def test_hypothesis_texts_and_random_ids(name, text, pair, data):
    hf, ours = checkpoint_hf_tokenizer(name), checkpoint_our_tokenizer(name)
    _assert_same(ours(text, pair, return_tensors=None), hf(text, pair), (name, text, pair))
    ids = data.draw(st.lists(st.integers(0, len(hf) - 1), max_size=20))
    assert ours.decode(ids) == hf.decode(ids)
    assert ours.decode(ids, skip_special_tokens=True) == hf.decode(ids, skip_special_tokens=True)


def _copy(name, tmp_path):
    out = tmp_path / name
    shutil.copytree(checkpoint_ref_dir(name), out)
    return out


@pytest.mark.parametrize(
    "line", ["th e</w>\n", "t h e 12\n", "t h many\n"], ids=["no-count", "extra-field", "bad-count"]
)
def test_malformed_bpe_codes_names_the_file(tmp_path, line):
    folder = _copy("phobert_fastbpe", tmp_path)
    codes = folder / "bpe.codes"
    codes.write_text(codes.read_text(encoding="utf-8") + line, encoding="utf-8")
    with pytest.raises(TokenizerFileError, match=r"bpe\.codes line \d+"):
        Tokenizer.from_preset(folder)


def test_missing_or_undecodable_fastbpe_files(tmp_path):
    folder = _copy("bertweet_fastbpe", tmp_path)
    (folder / "bpe.codes").write_bytes(b"a b 1\n\xff\xfe c 2\n")
    with pytest.raises(TokenizerFileError, match="bpe.codes"):
        Tokenizer.from_preset(folder)
    (folder / "bpe.codes").unlink()
    with pytest.raises(TokenizerFileError, match="no bpe.codes"):
        Tokenizer.from_preset(folder)
    folder = _copy("phobert_fastbpe", tmp_path)
    (folder / "vocab.txt").write_text("ok 1\nnocount\n", encoding="utf-8")
    with pytest.raises(TokenizerFileError, match=r"vocab\.txt line 2"):
        Tokenizer.from_preset(folder)


def test_bertweet_tweet_normalisation_is_refused(tmp_path):
    folder = checkpoint_ref_dir("bertweet_fastbpe")
    with pytest.raises(TokenizerFileError, match="normalization=True"):
        Tokenizer.from_preset(folder, normalization=True)


@pytest.mark.parametrize("name", ["herbert_vocab", "phobert_fastbpe"])
def test_save_pretrained_round_trip(name, tmp_path):
    from transformers import AutoTokenizer

    hf, ours = checkpoint_hf_tokenizer(name), checkpoint_our_tokenizer(name)
    ours.save_pretrained(tmp_path)
    reloaded, reloaded_hf = Tokenizer.from_preset(tmp_path), AutoTokenizer.from_pretrained(str(tmp_path))
    firsts, seconds = [p[0] for p in PAIRS], [p[1] for p in PAIRS]
    for text in CORPUS:
        assert reloaded(text, return_tensors=None)["input_ids"] == hf(text)["input_ids"], (name, text[:60])
        assert reloaded_hf(text)["input_ids"] == hf(text)["input_ids"], (name, text[:60])
    assert reloaded(firsts, seconds, return_tensors=None)["input_ids"] == hf(firsts, seconds)["input_ids"]
    assert reloaded_hf(firsts, seconds)["input_ids"] == hf(firsts, seconds)["input_ids"]


def test_herbert_malformed_merges_names_the_file(tmp_path):
    folder = _copy("herbert_vocab", tmp_path)
    merges = folder / "merges.txt"
    merges.write_text(merges.read_text(encoding="utf-8") + "a b c\n", encoding="utf-8")
    with pytest.raises(TokenizerFileError, match=r"merges\.txt line \d+"):
        Tokenizer.from_preset(folder)


def test_mluke_is_refused():
    """Transformers' MLukeTokenizer (v5) numbers pieces as the SentencePiece file does (<unk> 0, <s> 1, pad
    and mask appended), not with XLM-R's fairseq layout (<s> 0, <pad> 1, </s> 2, <unk> 3, pieces shifted
    by one) that mLUKE checkpoints were trained with. The XLM-R pipeline would then disagree with
    Transformers and matching Transformers would give the model wrong ids, so the class is refused.
    If this first assertion fails, Transformers now uses the XLM-R layout: map the class to it."""
    from tok_refs import hf_tokenizer

    folder = checkpoint_ref_dir("mluke_spm")
    mluke, xlmr = checkpoint_hf_tokenizer("mluke_spm"), hf_tokenizer("xlmr_spm")
    text = "Hello world!"
    assert mluke(text)["input_ids"] != xlmr(text)["input_ids"]
    assert mluke.tokenize(text) == xlmr.tokenize(text)  # same pieces, other ids
    with pytest.raises(TokenizerFileError, match=r"sentencepiece\.bpe\.model.*MLukeTokenizer"):
        Tokenizer.from_preset(folder)


def test_fastbpe_tokenizer_copies_and_pickles():
    import copy
    import pickle

    hf, ours = checkpoint_hf_tokenizer("bertweet_fastbpe"), checkpoint_our_tokenizer("bertweet_fastbpe")
    firsts, seconds = [p[0] for p in PAIRS], [p[1] for p in PAIRS]
    ref = hf(firsts, seconds, padding=True)["input_ids"]
    for clone in (copy.deepcopy(ours), pickle.loads(pickle.dumps(ours))):
        assert clone(firsts, seconds, padding=True, return_tensors=None)["input_ids"] == ref
        assert clone.decode(ref[0]) == hf.decode(ref[0])
    assert ours(firsts, seconds, padding=True, return_tensors=None)["input_ids"] == ref

"""ProphetNet checkpoints (microsoft/prophetnet-large-uncased): a WordPiece vocabulary in
``prophetnet.tokenizer`` read by Transformers' python-only ProphetNetTokenizer (its own BERT basic
tokenizer, [SEP] appended to each sequence, no [CLS], [X_SEP] a named special token), no tokenizer.json.
Ids, tokens, decoding and properties equal Transformers'; what we save reloads in both."""

import hashlib
import inspect
import json
import shutil
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tok_corpus import CORPUS, PAIRS, TRAINING_TEXT
from tok_refs import _cached_build, _hf_from, _ours_from, assert_same_texts, assert_same_vocab_and_specials
from tok_refs import PADDING_CASES, assert_same_empty_pairs, assert_same_padded
from tok_refs import assert_same_encoding as _assert_same

from keras_models.errors import TokenizerFileError
from keras_models.tokenizers import Tokenizer

SPECIALS = ["[PAD]", "[CLS]", "[SEP]", "[UNK]", "[MASK]", "[X_SEP]", "[unused0]", "[unused1]"]


def _vocab_file(out: Path, lowercase: bool) -> Path:
    """A small trained WordPiece vocabulary ("##" pieces; a limited alphabet, so some words are unknown)
    after ProphetNet's special tokens and [unused*] slots."""
    from tokenizers import Tokenizer as RustTokenizer
    from tokenizers import models, normalizers, pre_tokenizers, trainers

    tok = RustTokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=lowercase)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    trainer = trainers.WordPieceTrainer(vocab_size=300, special_tokens=SPECIALS, limit_alphabet=70, show_progress=False)
    tok.train_from_iterator(TRAINING_TEXT, trainer)
    path = out / "vocab.tmp"
    path.write_text("".join(t + "\n" for t, _ in sorted(tok.get_vocab().items(), key=lambda kv: kv[1])), encoding="utf-8")
    return path


def _saved(lowercase=True, **kwargs):
    """The folder ProphetNetTokenizer(vocab_file=...).save_pretrained writes."""

    def build(out: Path):
        from transformers import ProphetNetTokenizer

        vocab = _vocab_file(out, lowercase)
        ProphetNetTokenizer(vocab_file=str(vocab), do_lower_case=lowercase, **kwargs).save_pretrained(str(out))
        vocab.unlink()

    return build


def _hub_style(out: Path):
    """As the hub repository holds it: the vocabulary, config.json naming the model type and a
    tokenizer_config.json without a class, special tokens or clean-up flag (the class defaults apply)."""
    src = _build("uncased")
    shutil.copy(src / "prophetnet.tokenizer", out / "prophetnet.tokenizer")
    (out / "config.json").write_text(json.dumps({"model_type": "prophetnet"}), encoding="utf-8")
    (out / "tokenizer_config.json").write_text(json.dumps({"do_lower_case": True, "model_max_length": 512}))


BUILDERS = {
    "uncased": _saved(),
    # cased, no spaces around CJK characters (so NFC and the accents matter), short max length, left padding
    "cased": _saved(lowercase=False, tokenize_chinese_chars=False, model_max_length=64, padding_side="left"),
    # lower-cased but accents kept, no decode clean-up
    "uncased_accents": _saved(strip_accents=False, clean_up_tokenization_spaces=False),
    # WordPiece straight on whitespace-split words
    "no_basic": _saved(do_basic_tokenize=False),
    "hub": _hub_style,
}
NAMES = sorted(BUILDERS)
_SOURCE = inspect.getsource(inspect.getmodule(_saved))
_VERSION = hashlib.sha1(_SOURCE[: _SOURCE.index("NAMES = sorted")].encode()).hexdigest()[:8]  # the builders
EXTRA = [
    "Hello [SEP] world [X_SEP] next [MASK]x [PAD][UNK] [unused0] [CLS] [sep]",
    "ΟΔΟΣ ΑΣ. Σ σ ς İstanbul ﬁne cafe\u0301 Cafe\u0301 e\u0301\u0301",
    "𫠠𫤟 (CJK ext E, outside the Rust BERT range) 東京",
    "do not won ' t , ! ? . x ##y a##b ## ####",
    "\x00\x7f\u00ad\ufffd\u180e\u2028\u2029\x1c\x85 controls",
    "x" * 120 + " long word",
]


def _build(name: str) -> Path:
    """The cached reference folder ``name`` (tok_refs' cache; the key follows the builders' source)."""
    key = f"prophetnet-{_VERSION}-{name}"
    return _cached_build({key: BUILDERS[name]}, key)


def _hf(name):
    return _hf_from(str(_build(name)))


def _ours(name):
    return _ours_from(str(_build(name)))


@pytest.mark.parametrize("name", NAMES)
def test_single_texts_and_decode(name):
    hf, ours = _hf(name), _ours(name)
    assert type(hf).__name__ == "ProphetNetTokenizer" and ours.class_name == "ProphetNetTokenizer"
    all_ids = assert_same_texts(hf, ours, CORPUS + EXTRA + [p[0] for p in PAIRS], name)
    for ids in all_ids:
        assert ours.decode(ids, clean_up_tokenization_spaces=False) == hf.decode(ids, clean_up_tokenization_spaces=False)
    unknown = sum(ids.count(hf.unk_token_id) for ids in all_ids)
    pieces = sum(t.startswith("##") for ids in all_ids for t in hf.convert_ids_to_tokens(ids))
    assert unknown > 0 and pieces > 0  # the unknown and "##" paths are exercised


@pytest.mark.parametrize("name", NAMES)
def test_properties(name):
    hf, ours = _hf(name), _ours(name)
    assert_same_vocab_and_specials(hf, ours)
    assert ours.get_added_vocab() == hf.get_added_vocab()
    assert ours.special_tokens_map == hf.special_tokens_map  # x_sep_token included
    assert ours.special_tokens_map["x_sep_token"] == hf.x_sep_token == "[X_SEP]"
    assert ours.all_special_tokens == hf.all_special_tokens
    assert ours.all_special_ids == hf.all_special_ids
    assert ours.model_input_names == hf.model_input_names == ["input_ids", "attention_mask"]
    assert ours.padding_side == hf.padding_side
    assert ours.model_max_length == hf.model_max_length
    assert ours.clean_up_tokenization_spaces == hf.clean_up_tokenization_spaces
    tokens = list(hf.get_vocab()) + ["not-in-vocab", "[unused0]", "##s"]
    assert ours.convert_tokens_to_ids(tokens) == hf.convert_tokens_to_ids(tokens)
    ids = list(range(len(hf)))
    assert ours.convert_ids_to_tokens(ids) == hf.convert_ids_to_tokens(ids)
    assert ours.convert_ids_to_tokens(ids, skip_special_tokens=True) == hf.convert_ids_to_tokens(
        ids, skip_special_tokens=True
    )


@pytest.mark.parametrize("name", ["uncased", "cased"])
@pytest.mark.parametrize("side", ["right", "left"])
def test_pairs_batches_padding_truncation(name, side):
    hf, ours = _hf(name), _ours(name)
    with_types = ({"padding": True, "return_token_type_ids": True, "return_special_tokens_mask": True},
                  {"padding": "max_length", "truncation": "longest_first", "max_length": 40,
                   "return_token_type_ids": True})
    assert_same_padded(hf, ours, name, [p[0] for p in PAIRS], [p[1] for p in PAIRS], side=side,
                       cases=PADDING_CASES + with_types)
    assert_same_padded(hf, ours, name, CORPUS, side=side, decode=False, cases=(
        {"padding": True}, {"padding": True, "truncation": True, "max_length": 12, "return_token_type_ids": True}))
    assert_same_empty_pairs(hf, ours, name)
    # a pair is "a [SEP] b [SEP]" with token types 0 then 1
    ref = hf("Hello world!", "How are you?", return_token_type_ids=True)
    _assert_same(ours("Hello world!", "How are you?", return_tensors=None, return_token_type_ids=True), ref, name)
    sep = hf.sep_token_id
    assert ref["input_ids"].count(sep) == 2 and ref["input_ids"][-1] == sep and hf.cls_token_id is None


@pytest.mark.parametrize("name", ["uncased", "cased", "no_basic"])
@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
@given(text=st.text(max_size=40), pair=st.one_of(st.none(), st.text(max_size=15)), data=st.data())
def test_hypothesis_texts_and_random_ids(name, text, pair, data):
    hf, ours = _hf(name), _ours(name)
    _assert_same(ours(text, pair, return_tensors=None), hf(text, pair), (name, text, pair))
    assert ours.tokenize(text) == hf.tokenize(text), (name, text)
    ids = data.draw(st.lists(st.integers(0, len(hf) - 1), max_size=20))
    assert ours.decode(ids) == hf.decode(ids)
    assert ours.decode(ids, skip_special_tokens=True) == hf.decode(ids, skip_special_tokens=True)


def test_added_tokens_match_the_raw_text():
    """The python class matches added tokens on the text as written (before its lower-casing), whatever
    their `normalized` flag; those read from tokenizer_config.json and those added later alike."""
    from transformers import AutoTokenizer

    folder = _build("uncased")
    hf, ours = AutoTokenizer.from_pretrained(str(folder)), Tokenizer.from_preset(folder)
    for tok in (hf, ours):
        assert tok.add_tokens(["NewWord", "zz"]) == 2
        assert tok.add_special_tokens({"extra_special_tokens": ["<sp>"]}) == 1
    text = "a NewWord newword NEWWORD zz<sp>b the quick"
    _assert_same(ours(text, return_tensors=None), hf(text), text)
    assert ours.tokenize(text) == hf.tokenize(text)
    ids = hf(text)["input_ids"]
    assert ours.decode(ids) == hf.decode(ids)
    assert ours.decode(ids, skip_special_tokens=True) == hf.decode(ids, skip_special_tokens=True)
    assert ours.all_special_ids == hf.all_special_ids


@pytest.mark.parametrize("name", ["uncased", "cased", "hub"])
def test_save_pretrained_round_trip(name, tmp_path):
    from transformers import AutoTokenizer

    hf = _hf(name)
    ours = Tokenizer.from_preset(_build(name))
    ours.add_tokens(["NewWord"])
    hf_added = AutoTokenizer.from_pretrained(str(_build(name)))
    hf_added.add_tokens(["NewWord"])
    written = ours.save_pretrained(tmp_path)
    assert sorted(Path(p).name for p in written) == ["prophetnet.tokenizer", "tokenizer_config.json"]
    assert json.loads((tmp_path / "tokenizer_config.json").read_text())["tokenizer_class"] == "ProphetNetTokenizer"
    reloaded, reloaded_hf = Tokenizer.from_preset(tmp_path), AutoTokenizer.from_pretrained(str(tmp_path))
    assert type(reloaded_hf).__name__ == type(hf).__name__ and len(reloaded_hf) == len(hf) + 1
    firsts, seconds = [p[0] for p in PAIRS], [p[1] for p in PAIRS]
    for text in CORPUS + EXTRA + ["a NewWord newword"]:
        expected = hf_added(text)["input_ids"]
        assert reloaded(text, return_tensors=None)["input_ids"] == expected, (name, text[:60])
        assert reloaded_hf(text)["input_ids"] == expected, (name, text[:60])
    assert reloaded(firsts, seconds, return_tensors=None)["input_ids"] == hf(firsts, seconds)["input_ids"]
    assert reloaded_hf(firsts, seconds)["input_ids"] == hf(firsts, seconds)["input_ids"]
    ids = hf_added(CORPUS[3] + " NewWord")["input_ids"]
    assert reloaded.decode(ids) == reloaded_hf.decode(ids) == hf_added.decode(ids)
    assert reloaded.get_vocab() == reloaded_hf.get_vocab() == hf_added.get_vocab()
    for key in ("padding_side", "model_max_length", "clean_up_tokenization_spaces", "all_special_tokens"):
        assert getattr(reloaded, key) == getattr(reloaded_hf, key) == getattr(hf, key), key
    # saving again over the same folder (the vocabulary file is its own source) keeps it whole
    reloaded.save_pretrained(tmp_path)
    assert Tokenizer.from_preset(tmp_path).get_vocab() == hf_added.get_vocab()


def _copy(name, tmp_path):
    out = tmp_path / name
    shutil.copytree(_build(name), out)
    return out


def test_missing_or_unsupported_files_name_the_problem(tmp_path):
    folder = _copy("uncased", tmp_path)
    (folder / "prophetnet.tokenizer").unlink()
    with pytest.raises(TokenizerFileError, match=r"no prophetnet\.tokenizer.*ProphetNetTokenizer"):
        Tokenizer.from_preset(folder)
    folder = _copy("uncased", tmp_path / "b")
    path = folder / "tokenizer_config.json"
    config = json.loads(path.read_text())
    path.write_text(json.dumps({**config, "never_split": ["hello"]}))
    with pytest.raises(TokenizerFileError, match=r"never_split"):
        Tokenizer.from_preset(folder)
    path.write_text(json.dumps({**config, "unk_token": "<missing>"}))
    with pytest.raises(TokenizerFileError, match=r"prophetnet\.tokenizer has no unknown token '<missing>'"):
        Tokenizer.from_preset(folder)
    (folder / "prophetnet.tokenizer").write_bytes(b"[PAD]\n\xff\xfe\n")
    path.write_text(json.dumps(config))
    with pytest.raises(TokenizerFileError, match=r"prophetnet\.tokenizer is not valid UTF-8"):
        Tokenizer.from_preset(folder)

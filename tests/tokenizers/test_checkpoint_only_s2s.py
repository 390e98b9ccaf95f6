"""Encoder-decoder checkpoints whose tokenizer class is python-only in Transformers and whose repositories
ship no tokenizer.json, loaded with ids and decoding equal to Transformers':
ByT5 (UTF-8 bytes, no vocabulary file at all) and BARTpho (SentencePiece pieces renumbered by dict.txt)."""

import copy
import json
import pickle
import shutil

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tok_corpus import CORPUS, PAIRS
from tok_refs import assert_same_encoding as _assert_same
from tok_refs import assert_same_empty_pairs, assert_same_padded, assert_same_vocab_and_specials
from tok_refs import S2S_BUILDERS, s2s_hf_tokenizer, s2s_our_tokenizer, s2s_ref_dir

from keras_models.errors import TokenizerFileError
from keras_models.tokenizers import Tokenizer

NAMES = sorted(S2S_BUILDERS)
EXTRA = [
    "a </s> b <pad>x<extra_id_1> y <unk>  z",
    "<extra_id_0> sentinel <extra_id_4>",
    "\x00\x7f\xad ctrl",
    "x <mask>y  <mask> <s>z</s> Hello , world . don't",
    "Tiếng Việt là ngôn ngữ chính thức của Việt Nam.",
]


@pytest.mark.parametrize("name", NAMES)
def test_single_texts_and_decode(name):
    hf, ours = s2s_hf_tokenizer(name), s2s_our_tokenizer(name)
    for text in CORPUS + EXTRA + [p[0] for p in PAIRS]:
        ref = hf(text)
        _assert_same(ours(text, return_tensors=None), ref, (name, text[:80]))
        ids = ref["input_ids"]
        assert ours.decode(ids) == hf.decode(ids), (name, text[:80])
        assert ours.decode(ids, skip_special_tokens=True) == hf.decode(ids, skip_special_tokens=True)
        assert ours.convert_ids_to_tokens(ids) == hf.convert_ids_to_tokens(ids)
        assert ours.tokenize(text) == hf.tokenize(text)
    batch = [hf(t)["input_ids"] for t in CORPUS]
    assert ours.batch_decode(batch) == hf.batch_decode(batch)


@pytest.mark.parametrize("name", NAMES)
def test_properties(name):
    hf, ours = s2s_hf_tokenizer(name), s2s_our_tokenizer(name)
    assert_same_vocab_and_specials(hf, ours)
    assert ours.model_input_names == hf.model_input_names
    assert ours.padding_side == hf.padding_side
    assert ours.model_max_length == hf.model_max_length
    assert sorted(ours.all_special_ids) == sorted(hf.all_special_ids)
    tokens = list(hf.get_vocab())
    assert ours.convert_tokens_to_ids(tokens) == hf.convert_tokens_to_ids(tokens)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("side", ["right", "left"])
def test_pairs_padding_truncation(name, side):
    hf, ours = s2s_hf_tokenizer(name), s2s_our_tokenizer(name)
    assert_same_padded(hf, ours, name, [p[0] for p in PAIRS], [p[1] for p in PAIRS], side=side)
    assert_same_empty_pairs(hf, ours, name)


@pytest.mark.parametrize("name", NAMES)
@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
@given(text=st.text(max_size=40), pair=st.one_of(st.none(), st.text(max_size=15)), data=st.data())
def test_hypothesis_texts_and_random_ids(name, text, pair, data):
    hf, ours = s2s_hf_tokenizer(name), s2s_our_tokenizer(name)
    _assert_same(ours(text, pair, return_tensors=None), hf(text, pair), (name, text, pair))
    ids = data.draw(st.lists(st.integers(0, len(hf) - 1), max_size=20))
    assert ours.decode(ids) == hf.decode(ids)
    assert ours.decode(ids, skip_special_tokens=True) == hf.decode(ids, skip_special_tokens=True)


def test_byt5_invalid_utf8_is_dropped_as_transformers_does():
    hf, ours = s2s_hf_tokenizer("byt5_hub"), s2s_our_tokenizer("byt5_hub")

    def b(*data):  # byte ids
        return [x + 3 for x in data]

    cases = [
        b(0xE6, 0x97) + b(ord("a")) + [1, 259] + b(0xC3),  # cut 3-byte char, lone lead byte
        b(0xEF, 0xBF, 0xBD) + b(0xFF) + b(ord("z")),  # a real U+FFFD is kept, 0xFF dropped
        b(0x80, 0x80) + [0, 2] + b(0xF0, 0x9F, 0x98, 0x80),  # continuation bytes alone, then an emoji
    ]
    for ids in cases:
        for skip in (False, True):
            assert ours.decode(ids, skip_special_tokens=skip) == hf.decode(ids, skip_special_tokens=skip), ids
    assert ours.batch_decode(cases) == hf.batch_decode(cases)
    assert "\ufffd" in ours.decode(cases[1]) and "\ufffd" not in ours.decode(cases[0])


def test_byt5_pipeline_is_rust_only_and_fast():
    """No Python pre-tokenizer: the pipeline serializes, copies and pickles as a plain Rust tokenizer."""
    hf, ours = s2s_hf_tokenizer("byt5_hub"), s2s_our_tokenizer("byt5_hub")
    assert ours.python_pre_tokenizer is None
    json.loads(ours.backend_tokenizer.to_str())
    text = CORPUS[-1] * 4
    for clone in (copy.deepcopy(ours), pickle.loads(pickle.dumps(ours))):
        assert clone(text, return_tensors=None)["input_ids"] == hf(text)["input_ids"]
        assert clone.decode(hf(text)["input_ids"]) == hf.decode(hf(text)["input_ids"])


@pytest.mark.parametrize("name", NAMES)
def test_save_pretrained_round_trip(name, tmp_path):
    from transformers import AutoTokenizer

    hf, ours = s2s_hf_tokenizer(name), s2s_our_tokenizer(name)
    ours.save_pretrained(tmp_path)
    reloaded, reloaded_hf = Tokenizer.from_preset(tmp_path), AutoTokenizer.from_pretrained(str(tmp_path))
    assert type(reloaded_hf).__name__ == type(hf).__name__ and len(reloaded_hf) == len(hf)
    firsts, seconds = [p[0] for p in PAIRS], [p[1] for p in PAIRS]
    for text in CORPUS + EXTRA:
        assert reloaded(text, return_tensors=None)["input_ids"] == hf(text)["input_ids"], (name, text[:60])
        assert reloaded_hf(text)["input_ids"] == hf(text)["input_ids"], (name, text[:60])
    assert reloaded(firsts, seconds, return_tensors=None)["input_ids"] == hf(firsts, seconds)["input_ids"]
    assert reloaded_hf(firsts, seconds)["input_ids"] == hf(firsts, seconds)["input_ids"]
    ids = hf(CORPUS[9])["input_ids"][:-3] + ([0xE6 + 3] if name.startswith("byt5") else [])
    assert reloaded.decode(ids) == reloaded_hf.decode(ids) == hf.decode(ids)
    assert reloaded.get_vocab() == reloaded_hf.get_vocab() == hf.get_vocab()


def _copy(name, tmp_path):
    out = tmp_path / name
    shutil.copytree(s2s_ref_dir(name), out)
    return out


def test_byt5_malformed_config_names_the_file(tmp_path):
    folder = _copy("byt5_hub", tmp_path)
    path = folder / "tokenizer_config.json"
    config = json.loads(path.read_text(encoding="utf-8"))
    path.write_text(json.dumps(config)[:-5], encoding="utf-8")
    with pytest.raises(TokenizerFileError, match=r"tokenizer_config\.json is not valid JSON"):
        Tokenizer.from_preset(folder)
    for bad, match in ((dict(extra_ids="125"), "'extra_ids' must be"), (dict(extra_ids=7), "extra_ids=7")):
        path.write_text(json.dumps({**config, **bad}), encoding="utf-8")
        with pytest.raises(TokenizerFileError, match=rf"tokenizer_config\.json.*{match}"):
            Tokenizer.from_preset(folder)
    (folder / "special_tokens_map.json").unlink()
    path.write_text(json.dumps({**config, "eos_token": "<pad>"}), encoding="utf-8")
    with pytest.raises(TokenizerFileError, match=r"pad / eos / unk tokens must differ.*tokenizer_config\.json"):
        Tokenizer.from_preset(folder)


def test_bartpho_pieces_outside_dict_are_unknown_and_copies_pickle():
    hf, ours = s2s_hf_tokenizer("bartpho"), s2s_our_tokenizer("bartpho")
    firsts, seconds = [p[0] for p in PAIRS], [p[1] for p in PAIRS]
    ref = hf(firsts, seconds, padding=True)["input_ids"]
    assert sum(row.count(hf.unk_token_id) for row in ref) > 0  # the unknown path is exercised
    for clone in (copy.deepcopy(ours), pickle.loads(pickle.dumps(ours))):
        assert clone(firsts, seconds, padding=True, return_tensors=None)["input_ids"] == ref
        assert clone.decode(ref[0]) == hf.decode(ref[0])
    assert ours(firsts, seconds, padding=True, return_tensors=None)["input_ids"] == ref


@pytest.mark.parametrize(
    "content, match",
    [
        ("▁a 3\n\n▁b 2\n", r"dict\.txt line 2 is empty"),
        ("▁a 3\n▁b 2\n▁a 1\n", r"dict\.txt line 3: '▁a' is already"),
        (b"\xff\xfe 3\n", r"dict\.txt is not valid UTF-8"),
    ],
    ids=["empty-line", "repeated", "not-utf8"],
)
def test_bartpho_malformed_dict_names_the_file(tmp_path, content, match):
    folder = _copy("bartpho", tmp_path)
    path = folder / "dict.txt"
    path.write_bytes(content if isinstance(content, bytes) else content.encode("utf-8"))
    with pytest.raises(TokenizerFileError, match=match):
        Tokenizer.from_preset(folder)


def test_bartpho_missing_or_corrupt_files(tmp_path):
    folder = _copy("bartpho", tmp_path)
    (folder / "sentencepiece.bpe.model").write_bytes(b"\x0a\xff\xff\xff")
    with pytest.raises(TokenizerFileError, match=r"sentencepiece\.bpe\.model"):
        Tokenizer.from_preset(folder)
    (folder / "sentencepiece.bpe.model").unlink()
    with pytest.raises(TokenizerFileError, match=r"no sentencepiece\.bpe\.model.*BartphoTokenizer"):
        Tokenizer.from_preset(folder)
    folder = _copy("bartpho", tmp_path / "b")
    (folder / "dict.txt").unlink()
    with pytest.raises(TokenizerFileError, match=r"no dict\.txt"):
        Tokenizer.from_preset(folder)


@pytest.mark.filterwarnings("ignore:This sequence already has")
def test_byt5_eos_not_repeated_after_a_final_eos():
    """Transformers' ByT5Tokenizer appends eos only when the sequence does not end with it already.
    Corners left as they are: Transformers truncates the text's own eos as content, so when truncation
    (left-side, or cutting right after an eos inside the text as in "a</s></s>") leaves the row ending
    with eos it adds none and the row is one shorter; its special_tokens_mask is then one longer than the
    ids. We drop the text's final eos before encoding and always append one."""
    hf, ours = s2s_hf_tokenizer("byt5_hub"), s2s_our_tokenizer("byt5_hub")
    texts = ["x </s>", "x </s>  ", "</s>", "a</s></s>", "x</s> \n", "ab</s>", "abc </s>", "no eos"]
    for text in texts:
        _assert_same(ours(text, return_tensors=None), hf(text), text)
        _assert_same(ours(text, "y</s>", return_tensors=None), hf(text, "y</s>"), text)
    for kw in (
        dict(truncation=True, max_length=3),
        dict(truncation=True, max_length=4),
        dict(padding="max_length", max_length=8),
    ):
        cut = [t for t in texts if t != "a</s></s>"]
        assert ours(cut, return_tensors=None, **kw)["input_ids"] == hf(cut, **kw)["input_ids"], kw
    assert ours("x </s>", add_special_tokens=False, return_tensors=None)["input_ids"] == [123, 1]

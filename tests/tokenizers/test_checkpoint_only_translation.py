"""Translation checkpoints that ship no tokenizer.json (python-only classes in Transformers), loaded
from their own files with ids and decoding equal to Transformers': Marian (source.spm / target.spm over
a shared vocab.json, targets via ``text_target=``), M2M100 (SentencePiece BPE over a fairseq vocab.json,
``__xx__`` language prefixes from src_lang / tgt_lang, both language lists), PLBart (fairseq-offset
SentencePiece ids, ``</s> [lang]`` suffixes, base / multi language codes)."""

import shutil

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tok_corpus import CORPUS, PAIRS
from tok_refs import assert_same_encoding as _assert_same
from tok_refs import assert_same_padded
from tok_refs import translation_hf_tokenizer as checkpoint_hf_tokenizer
from tok_refs import translation_our_tokenizer as checkpoint_our_tokenizer
from tok_refs import translation_ref_dir as checkpoint_ref_dir

from keras_models.errors import TokenizerFileError
from keras_models.tokenizers import Tokenizer

NAMES = ["marian_spm", "m2m100_spm", "m2m100_wmt21_spm", "m2m100_listed_spm", "plbart_base_spm", "plbart_multi_spm"]
LANGUAGES_NOT_ADDED = {"m2m100_spm", "m2m100_wmt21_spm"}  # config does not list the language tokens
TEXTS = CORPUS + [p[0] for p in PAIRS] + [">>fr<< x __en__ y __de__", ">>fr<<Hi", "__fr__", "a</s>>>fr<< b"]


def _texts(name):
    if name == "plbart_multi_spm":  # its vocabulary has no <mask> (see test_plbart_multi_has_no_mask)
        return [t for t in TEXTS if "<mask>" not in t]
    return TEXTS


def _assert_decodes(hf, ours, ids, context):
    for skip in (False, True):
        assert ours.decode(ids, skip_special_tokens=skip) == hf.decode(ids, skip_special_tokens=skip), (context, skip)


@pytest.mark.parametrize("name", NAMES)
def test_source_and_target_texts_and_decode(name):
    hf, ours = checkpoint_hf_tokenizer(name), checkpoint_our_tokenizer(name)
    unknown = differs = 0
    for text in _texts(name):
        ref = hf(text, text_target=text)
        _assert_same(ours(text, text_target=text, return_tensors=None), ref, (name, text[:80]))
        _assert_same(ours(text_target=text, return_tensors=None), hf(text_target=text), (name, text[:80]))
        for ids in (ref["input_ids"], ref["labels"]):
            unknown += ids.count(hf.unk_token_id)
            _assert_decodes(hf, ours, ids, (name, text[:80]))
            assert ours.convert_ids_to_tokens(ids) == hf.convert_ids_to_tokens(ids)
        differs += ref["input_ids"] != ref["labels"]
    assert unknown > 0  # the unknown path is exercised
    if name != "plbart_base_spm":  # other segmentation (Marian's target.spm) or another language token
        assert differs > 0


@pytest.mark.parametrize("name", NAMES)
def test_properties(name):
    hf, ours = checkpoint_hf_tokenizer(name), checkpoint_our_tokenizer(name)
    languages = len(getattr(hf, "lang_token_to_id", {}))  # M2M100's ids after vocab.json
    # Transformers' M2M100 leaves its language tokens out of vocab_size (and, unless the config lists
    # them as special tokens, out of len() / get_vocab()); ours count them: they are ids the model has
    assert ours.vocab_size == hf.vocab_size + languages
    if name in LANGUAGES_NOT_ADDED:
        assert ours.get_vocab() == {**hf.get_vocab(), **hf.lang_token_to_id}
        assert len(ours) == len(hf) + languages
    else:
        assert len(ours) == len(hf)
        assert ours.get_vocab() == hf.get_vocab()
    for key in ("bos", "eos", "unk", "sep", "pad", "cls", "mask"):
        if name == "plbart_multi_spm" and key == "mask":
            continue
        expected = getattr(hf, f"{key}_token")
        assert getattr(ours, f"{key}_token") == (None if expected is None else str(expected)), key
        assert getattr(ours, f"{key}_token_id") == getattr(hf, f"{key}_token_id"), key
    assert ours.model_input_names == hf.model_input_names
    assert ours.padding_side == hf.padding_side
    if name == "plbart_multi_spm":
        assert sorted(ours.all_special_ids + [hf.unk_token_id]) == sorted(hf.all_special_ids)
    else:
        assert sorted(ours.all_special_ids) == sorted(hf.all_special_ids)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("side", ["right", "left"])
def test_pairs_targets_padding_truncation(name, side):
    hf, ours = checkpoint_hf_tokenizer(name), checkpoint_our_tokenizer(name)
    firsts, seconds = [p[0] for p in PAIRS], [p[1] for p in PAIRS]
    assert_same_padded(hf, ours, name, firsts, seconds, side=side, decode=False)
    for ref in assert_same_padded(hf, ours, (name, "target"), firsts, text_target=seconds, side=side, decode=False):
        for row in ref["input_ids"] + ref["labels"]:
            _assert_decodes(hf, ours, row, (name, row))


@pytest.mark.parametrize("name", NAMES)
@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
@given(text=st.text(max_size=40), pair=st.one_of(st.none(), st.text(max_size=15)), data=st.data())
def test_hypothesis_texts_and_random_ids(name, text, pair, data):
    hf, ours = checkpoint_hf_tokenizer(name), checkpoint_our_tokenizer(name)
    _assert_same(ours(text, pair, return_tensors=None), hf(text, pair), (name, text, pair))
    _assert_same(ours(text_target=text, return_tensors=None), hf(text_target=text), (name, text))
    ids = data.draw(st.lists(st.integers(0, len(ours) - 1), max_size=20))
    _assert_decodes(hf, ours, ids, (name, ids))


@pytest.mark.parametrize("name", NAMES)
def test_save_pretrained_round_trip(name, tmp_path):
    from transformers import AutoTokenizer

    hf, ours = checkpoint_hf_tokenizer(name), checkpoint_our_tokenizer(name)
    ours.save_pretrained(tmp_path)
    reloaded, reloaded_hf = Tokenizer.from_preset(tmp_path), AutoTokenizer.from_pretrained(str(tmp_path))
    assert type(reloaded_hf) is type(hf)
    firsts, seconds = [p[0] for p in PAIRS], [p[1] for p in PAIRS]
    ref = hf(firsts, text_target=seconds)
    for tok in (reloaded_hf, lambda *a, **k: reloaded(*a, return_tensors=None, **k)):
        out = tok(firsts, text_target=seconds)
        assert out["input_ids"] == ref["input_ids"] and out["labels"] == ref["labels"]
        for text in _texts(name):
            assert tok(text)["input_ids"] == hf(text)["input_ids"], (name, text[:60])


def _copy(name, tmp_path):
    out = tmp_path / name
    shutil.copytree(checkpoint_ref_dir(name), out)
    return out


@pytest.mark.parametrize("missing", ["source.spm", "target.spm", "vocab.json"])
def test_marian_missing_file_is_named(tmp_path, missing):
    folder = _copy("marian_spm", tmp_path)
    (folder / missing).unlink()
    with pytest.raises(TokenizerFileError, match=f"no {missing}"):
        Tokenizer.from_preset(folder)


@pytest.mark.parametrize(
    "file,content,message",
    [
        ("vocab.json", b"{not json", r"vocab\.json is not valid JSON"),
        ("vocab.json", b'{"</s>": 0, "<unk>": "1"}', r"vocab\.json must map"),
        ("vocab.json", b'{"</s>": 0, "<unk>": 2}', r"vocab\.json must number"),
        ("vocab.json", b'{"</s>": 0, "<pad>": 1}', r"vocab\.json has no unknown token"),
        ("target.spm", b"\x0a\xff\xff", r"target\.spm is corrupted"),
        ("source.spm", b"", r"source\.spm holds no pieces"),
    ],
)
def test_marian_malformed_file_is_named(tmp_path, file, content, message):
    folder = _copy("marian_spm", tmp_path)
    (folder / file).write_bytes(content)
    with pytest.raises(TokenizerFileError, match=message):
        Tokenizer.from_preset(folder)


def test_marian_language_codes():
    """A language code of vocab.json at the start of the text is one token (multilingual opus-mt models);
    ours also splits one out elsewhere (Transformers only at the start): a known difference."""
    hf, ours = checkpoint_hf_tokenizer("marian_spm"), checkpoint_our_tokenizer("marian_spm")
    code = hf.convert_tokens_to_ids(">>fr<<")
    for text in (">>fr<< Hello world", ">>fr<<Hello", ">>fr<<", "Bonjour</s>>>fr<< le monde"):
        ref = hf(text, text_target=text)
        assert code in ref["input_ids"] and code in ref["labels"]
        _assert_same(ours(text, text_target=text, return_tensors=None), ref, text)
        _assert_decodes(hf, ours, ref["input_ids"], text)
    assert code not in hf("Hello >>fr<<")["input_ids"]
    assert code in ours("Hello >>fr<<", return_tensors=None)["input_ids"]


def test_marian_target_side_copies_and_pickles():
    import copy
    import pickle

    hf, ours = checkpoint_hf_tokenizer("marian_spm"), checkpoint_our_tokenizer("marian_spm")
    firsts, seconds = [p[0] for p in PAIRS], [p[1] for p in PAIRS]
    ref = hf(firsts, text_target=seconds, padding=True)
    for clone in (copy.deepcopy(ours), pickle.loads(pickle.dumps(ours))):
        out = clone(firsts, text_target=seconds, padding=True, return_tensors=None)
        assert out["input_ids"] == ref["input_ids"] and out["labels"] == ref["labels"]


@pytest.mark.parametrize("src,tgt", [("de", "en"), ("zh", "fr"), ("en", None)])
def test_m2m100_language_settings(src, tgt):
    from transformers import AutoTokenizer

    folder = checkpoint_ref_dir("m2m100_spm")
    kw = {"src_lang": src, "tgt_lang": tgt}
    hf, ours = AutoTokenizer.from_pretrained(str(folder), **kw), Tokenizer.from_preset(folder, **kw)
    firsts, seconds = [p[0] for p in PAIRS], [p[1] for p in PAIRS]
    ref = hf(firsts, seconds, padding=True)
    _assert_same(ours(firsts, seconds, padding=True, return_tensors=None), ref, kw)
    assert {row[0] for row in ref["input_ids"]} == {hf.lang_token_to_id[f"__{src}__"]}
    if tgt is None:
        with pytest.raises(ValueError, match="tgt_lang"):
            ours(firsts, text_target=seconds, return_tensors=None)
    else:
        ref = hf(firsts, text_target=seconds, padding=True, truncation=True, max_length=12)
        out = ours(firsts, text_target=seconds, padding=True, truncation=True, max_length=12, return_tensors=None)
        _assert_same(out, ref, kw)
        assert {row[0] for row in ref["labels"]} == {hf.lang_token_to_id[f"__{tgt}__"]}
    with pytest.raises(ValueError, match="src_lang='xx'"):
        Tokenizer.from_preset(folder, src_lang="xx")


@pytest.mark.parametrize("missing", ["sentencepiece.bpe.model", "vocab.json"])
def test_m2m100_missing_file_is_named(tmp_path, missing):
    folder = _copy("m2m100_spm", tmp_path)
    (folder / missing).unlink()
    with pytest.raises(TokenizerFileError, match=f"no {missing}"):
        Tokenizer.from_preset(folder)


def test_m2m100_malformed_files_are_named(tmp_path):
    folder = _copy("m2m100_spm", tmp_path)
    (folder / "vocab.json").write_text("[1, 2]", encoding="utf-8")
    with pytest.raises(TokenizerFileError, match=r"vocab\.json must map"):
        Tokenizer.from_preset(folder)
    folder = _copy("m2m100_spm", tmp_path / "b")
    (folder / "sentencepiece.bpe.model").write_bytes(b"\x0a\xff\xff")
    with pytest.raises(TokenizerFileError, match=r"sentencepiece\.bpe\.model is corrupted"):
        Tokenizer.from_preset(folder)
    shutil.copy(checkpoint_ref_dir("marian_spm") / "source.spm", folder / "sentencepiece.bpe.model")
    with pytest.raises(TokenizerFileError, match=r"sentencepiece\.bpe\.model is unigram"):
        Tokenizer.from_preset(folder)
    with pytest.raises(TokenizerFileError, match="language_codes 'wmt22'"):
        Tokenizer.from_preset(checkpoint_ref_dir("m2m100_spm"), language_codes="wmt22")


def test_plbart_multi_has_no_mask():
    """PLBart's multi vocabulary has no <mask>: Transformers still names "<mask>" its mask token, with
    the unknown token's id, which one id-to-token vocabulary cannot express. Ours has no mask token."""
    hf, ours = checkpoint_hf_tokenizer("plbart_multi_spm"), checkpoint_our_tokenizer("plbart_multi_spm")
    assert hf.mask_token == "<mask>" and hf.mask_token_id == hf.unk_token_id
    assert ours.mask_token is None and "<mask>" not in ours.get_vocab()


@pytest.mark.parametrize(
    "name,src,tgt", [("plbart_base_spm", "python", "java"), ("plbart_base_spm", "__en_XX__", None),
                     ("plbart_multi_spm", "go", "ruby"), ("plbart_multi_spm", None, None)]
)
def test_plbart_language_settings(name, src, tgt):
    from transformers import AutoTokenizer

    folder = checkpoint_ref_dir(name)
    kw = {"src_lang": src, "tgt_lang": tgt}
    hf, ours = AutoTokenizer.from_pretrained(str(folder), **kw), Tokenizer.from_preset(folder, **kw)
    firsts, seconds = [p[0] for p in PAIRS], [p[1] for p in PAIRS]
    for extra in (dict(padding=True), dict(padding="max_length", truncation=True, max_length=16)):
        ref = hf(firsts, seconds, **extra)
        _assert_same(ours(firsts, seconds, return_tensors=None, **extra), ref, (name, kw, extra))
        ref = hf(firsts, text_target=seconds, **extra)
        _assert_same(ours(firsts, text_target=seconds, return_tensors=None, **extra), ref, (name, kw, extra))
        for row in ref["input_ids"] + ref["labels"]:
            _assert_decodes(hf, ours, row, (name, kw))
    with pytest.raises(ValueError, match="src_lang='cobol'"):
        Tokenizer.from_preset(folder, src_lang="cobol")


def test_plbart_malformed_files_are_named(tmp_path):
    folder = _copy("plbart_base_spm", tmp_path)
    (folder / "sentencepiece.bpe.model").write_bytes(b"\x0a\xff\xff")
    with pytest.raises(TokenizerFileError, match=r"sentencepiece\.bpe\.model is corrupted"):
        Tokenizer.from_preset(folder)
    shutil.copy(checkpoint_ref_dir("m2m100_spm") / "sentencepiece.bpe.model", folder / "sentencepiece.bpe.model")
    with pytest.raises(TokenizerFileError, match=r"sentencepiece\.bpe\.model is BPE"):
        Tokenizer.from_preset(folder)
    (folder / "sentencepiece.bpe.model").unlink()
    with pytest.raises(TokenizerFileError, match=r"no sentencepiece\.bpe\.model"):
        Tokenizer.from_preset(folder)
    with pytest.raises(TokenizerFileError, match="language_codes 'all'"):
        Tokenizer.from_preset(checkpoint_ref_dir("plbart_base_spm"), language_codes="all")

"""FSMT checkpoints (facebook/wmt19-*): vocab-src.json + vocab-tgt.json + merges.txt for a python-only
Transformers class (Moses normalisation + tokenisation via sacremoses, "</w>" BPE, ids from the source
vocabulary, decoding through the target vocabulary + Moses detokenisation), loaded with ids, pieces
and decoding equal to Transformers'."""

import json
import sys
from collections import Counter
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tok_corpus import CORPUS, PAIRS, TRAINING_TEXT
from tok_refs import assert_same_padded, assert_same_texts, assert_same_vocab_and_specials, reference_accessors
from tok_refs import assert_same_encoding as _assert_same

from keras_models.errors import TokenizerFileError
from keras_models.tokenizers import Tokenizer

SPECIALS = ["<s>", "<pad>", "</s>", "<unk>"]  # ids 0..3, as in the hub vocabularies


def _fsmt_files(out: Path, langs=("en", "de"), lower=False):
    """Merges trained with "</w>" word ends on the Moses-tokenised texts; the source vocabulary keeps
    the pieces seen at least twice, the target one a different order and fewer pieces (so the two
    differ and some pieces are unknown)."""
    import sacremoses
    from tokenizers import Tokenizer as RustTokenizer
    from tokenizers import models, pre_tokenizers, trainers
    from transformers import FSMTTokenizer

    moses = sacremoses.MosesTokenizer(lang=langs[0])
    texts = [moses.tokenize(t.lower() if lower else t, aggressive_dash_splits=True, return_str=True, escape=True)
             for t in TRAINING_TEXT]
    rust = RustTokenizer(models.BPE(end_of_word_suffix="</w>"))
    rust.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    rust.train_from_iterator(texts, trainers.BpeTrainer(vocab_size=300, end_of_word_suffix="</w>", show_progress=False))
    merges = json.loads(rust.to_str())["model"]["merges"]
    merges = [m if isinstance(m, list) else m.split(" ") for m in merges]
    (out / "merges.txt").write_text("".join(f"{a} {b} {9000 - i}\n" for i, (a, b) in enumerate(merges)), encoding="utf-8")
    base = {s: i for i, s in enumerate(SPECIALS)}
    for name in ("vocab-src.json", "vocab-tgt.json"):
        (out / name).write_text(json.dumps(base), encoding="utf-8")
    pieces = FSMTTokenizer(langs=list(langs), src_vocab_file=str(out / "vocab-src.json"),
                           tgt_vocab_file=str(out / "vocab-tgt.json"), merges_file=str(out / "merges.txt"),
                           do_lower_case=lower)
    counts = Counter(p for text in TRAINING_TEXT for p in pieces.tokenize(text))
    ranked = [p for p, c in sorted(counts.items(), key=lambda pc: (-pc[1], pc[0])) if p not in base]
    src = dict(base, **{p: 4 + i for i, p in enumerate(p for p in ranked if counts[p] >= 2)})
    tgt = dict(base, **{p: 4 + i for i, p in enumerate(sorted(ranked[: len(ranked) * 2 // 3]))})
    (out / "vocab-src.json").write_text(json.dumps(src, ensure_ascii=False), encoding="utf-8")
    (out / "vocab-tgt.json").write_text(json.dumps(tgt, ensure_ascii=False), encoding="utf-8")


def _saved(langs=("en", "de"), **kwargs):
    def build(out: Path):
        from transformers import FSMTTokenizer

        lower = kwargs.get("do_lower_case", False)
        _fsmt_files(out, langs, lower)
        FSMTTokenizer(langs=list(langs), src_vocab_file=str(out / "vocab-src.json"),
                      tgt_vocab_file=str(out / "vocab-tgt.json"), merges_file=str(out / "merges.txt"),
                      **kwargs).save_pretrained(str(out))

    return build


BUILDERS = {
    "fsmt_en_de": _saved(),
    "fsmt_de_en_lower": _saved(("de", "en"), do_lower_case=True, model_max_length=40, padding_side="left"),
}
NAMES = sorted(BUILDERS)


ref_dir, hf_tok, our_tok = reference_accessors(BUILDERS)


EXTRA = [
    '"Hello," she said -- "it\'s 1,000,000.50 dollars!" (really?) x-ray e-mail',
    "Quotes „German“ «guillemets» ‘single’ … and “curly” — dashes – here; 5 % & <tag> [a|b] {c}",
    "ΟΔΟΣ. İstanbul Müller straße naïve café 日本語 😀 ，。！？（）１２３",
    "<s> x </s> <unk> y<pad>z",
    "tabs\tand\nnewlines\r\n  spaces\u00a0nbsp\u200bzero",
    "Don't won't can't I'm you're U.S.A. e.g. 3.14 $5 @user #tag http://example.com/a?b=c",
]
TEXTS = CORPUS + EXTRA + [p[0] for p in PAIRS]


@pytest.mark.parametrize("name", NAMES)
def test_single_texts_tokens_and_decode(name):
    hf, ours = hf_tok(name), our_tok(name)
    assert type(hf).__name__ == "FSMTTokenizer"
    all_ids = assert_same_texts(hf, ours, TEXTS, name)
    assert sum(ids.count(hf.unk_token_id) for ids in all_ids) > 5  # the unknown path is exercised


@pytest.mark.parametrize("name", NAMES)
def test_properties_and_target_decoding(name):
    hf, ours = hf_tok(name), our_tok(name)
    assert_same_vocab_and_specials(hf, ours, keys=("bos", "eos", "unk", "sep", "pad"))
    assert ours.model_input_names == hf.model_input_names
    assert ours.padding_side == hf.padding_side and ours.model_max_length == hf.model_max_length
    assert sorted(ours.all_special_ids) == sorted(hf.all_special_ids)
    tokens = list(hf.get_vocab())
    assert ours.convert_tokens_to_ids(tokens) == hf.convert_tokens_to_ids(tokens)
    # ids decode through the TARGET vocabulary (different order, fewer pieces, ids past it unknown)
    tgt = json.loads((ref_dir(name) / "vocab-tgt.json").read_text(encoding="utf-8"))
    ids = list(range(len(hf) + 3))
    assert ours.convert_ids_to_tokens(ids) == hf.convert_ids_to_tokens(ids)
    assert ours.convert_ids_to_tokens(5) == hf.convert_ids_to_tokens(5)
    assert ours.convert_ids_to_tokens(ids) != [t for t, _ in sorted(hf.get_vocab().items(), key=lambda x: x[1])]
    assert tgt != hf.get_vocab()
    rows = [list(range(4, 40)), list(range(40, 90)) + [2], [0, 7, 1, 9, 3, 2, 2 + len(tgt)]]
    assert ours.batch_decode(rows) == hf.batch_decode(rows)
    assert ours.batch_decode(rows, skip_special_tokens=True) == hf.batch_decode(rows, skip_special_tokens=True)
    assert ours.decode(rows[0], clean_up_tokenization_spaces=True) == hf.decode(rows[0], clean_up_tokenization_spaces=True)


@pytest.mark.parametrize("name", NAMES)
def test_batches_padding_truncation_and_targets(name):
    hf, ours = hf_tok(name), our_tok(name)
    firsts, seconds = [p[0] for p in PAIRS], [p[1] for p in PAIRS]
    for side in ("right", "left"):
        assert_same_padded(hf, ours, name, TEXTS, side=side)
        assert_same_padded(hf, ours, name, firsts, seconds, side=side)
        assert_same_padded(hf, ours, name, firsts, text_target=seconds, side=side)
        assert_same_padded(hf, ours, name, text_target=seconds, side=side)


_ALPHABET = st.sampled_from(list("abdehilnorstuwABEHT.,!?()'\"-_&<>|[]{}@#$%0123456789 \n\t\u00a0ΣσİéЖ日😀„“…–—"))


@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
@given(
    text=st.one_of(st.text(max_size=40), st.text(_ALPHABET, max_size=40)),
    data=st.data(),
)
def test_hypothesis_texts_and_random_ids(text, data):
    hf, ours = hf_tok("fsmt_en_de"), our_tok("fsmt_en_de")
    _assert_same(ours(text, return_tensors=None), hf(text), text)
    assert ours.tokenize(text) == hf.tokenize(text), text
    ids = data.draw(st.lists(st.integers(0, len(hf) - 1), max_size=20))
    assert ours.decode(ids) == hf.decode(ids)
    assert ours.decode(ids, skip_special_tokens=True) == hf.decode(ids, skip_special_tokens=True)


@pytest.mark.parametrize("name", NAMES)
def test_save_pretrained_round_trip(name, tmp_path):
    from transformers import AutoTokenizer

    hf, ours = hf_tok(name), our_tok(name)
    written = ours.save_pretrained(tmp_path)
    assert {Path(p).name for p in written} >= {"vocab-src.json", "vocab-tgt.json", "merges.txt", "tokenizer_config.json"}
    assert not (tmp_path / "tokenizer.json").exists()
    reloaded, reloaded_hf = Tokenizer.from_preset(tmp_path), AutoTokenizer.from_pretrained(str(tmp_path))
    assert type(reloaded_hf).__name__ == "FSMTTokenizer" and len(reloaded_hf) == len(hf)
    assert reloaded_hf.padding_side == hf.padding_side and reloaded_hf.do_lower_case == hf.do_lower_case
    batch = [hf(t)["input_ids"] for t in TEXTS]
    for text in TEXTS:
        ids = hf(text)["input_ids"]
        assert reloaded(text, return_tensors=None)["input_ids"] == ids == reloaded_hf(text)["input_ids"], (name, text[:60])
    assert reloaded.batch_decode(batch) == reloaded_hf.batch_decode(batch) == hf.batch_decode(batch)


def test_missing_file_and_bad_langs(tmp_path):
    import shutil

    for missing in ("vocab-src.json", "vocab-tgt.json", "merges.txt"):
        folder = tmp_path / missing
        shutil.copytree(ref_dir("fsmt_en_de"), folder)
        (folder / missing).unlink()
        with pytest.raises(TokenizerFileError, match=missing):
            Tokenizer.from_preset(folder)
    folder = tmp_path / "langs"
    shutil.copytree(ref_dir("fsmt_en_de"), folder)
    config = json.loads((folder / "tokenizer_config.json").read_text())
    config["langs"] = ["en"]
    (folder / "tokenizer_config.json").write_text(json.dumps(config))
    with pytest.raises(TokenizerFileError, match="langs"):
        Tokenizer.from_preset(folder)


def test_without_sacremoses_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "sacremoses", None)  # import sacremoses -> ImportError
    with pytest.raises(ImportError, match=r"sacremoses.*pip install keras-models\[moses\]"):
        Tokenizer.from_preset(ref_dir("fsmt_en_de"))


def test_importing_keras_models_does_not_import_sacremoses():
    import subprocess

    code = "import sys, keras_models, keras_models.tokenizers; print('sacremoses' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_copy_and_pickle_keep_the_moses_pipeline():
    import copy
    import pickle

    hf, ours = hf_tok("fsmt_en_de"), our_tok("fsmt_en_de")
    for clone in (copy.deepcopy(ours), pickle.loads(pickle.dumps(ours))):
        for text in EXTRA:
            ids = hf(text)["input_ids"]
            assert clone(text, return_tensors=None)["input_ids"] == ids, text
            assert clone.decode(ids) == hf.decode(ids), text
    assert ours(EXTRA[0], return_tensors=None)["input_ids"] == hf(EXTRA[0])["input_ids"]  # original intact


def test_hub_style_folder_named_by_config_json(tmp_path):
    """As facebook/wmt19-* hold it: tokenizer_config.json without tokenizer_class, config.json model_type."""
    import shutil

    from transformers import AutoTokenizer

    folder = tmp_path / "hub"
    shutil.copytree(ref_dir("fsmt_en_de"), folder)
    config = json.loads((folder / "tokenizer_config.json").read_text())
    hub = {"langs": config["langs"], "model_max_length": 1024, "do_lower_case": False}
    (folder / "tokenizer_config.json").write_text(json.dumps(hub))
    (folder / "config.json").write_text(json.dumps({"model_type": "fsmt", "langs": config["langs"]}))
    ours, hf = Tokenizer.from_preset(folder), AutoTokenizer.from_pretrained(str(folder))
    assert type(hf).__name__ == "FSMTTokenizer" and ours.class_name == "FSMTTokenizer"
    for text in EXTRA:
        ids = hf(text)["input_ids"]
        assert ours(text, return_tensors=None)["input_ids"] == ids and ours.decode(ids) == hf.decode(ids), text

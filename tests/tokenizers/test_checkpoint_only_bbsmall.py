"""BlenderbotSmall checkpoints (blenderbot_small-90M, blenderbot-90M): vocab.json + merges.txt for a
python-only Transformers class (lower-cased words, punctuation split off, "@@" BPE pieces whose merged
symbols are not in the vocabulary, no tokenizer.json), loaded with ids, pieces and decoding equal to
Transformers'; and a tiny BlenderbotSmall model saved with the tokenizer generating the same text."""

import copy
import json
import pickle
import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tok_corpus import CORPUS, PAIRS, TRAINING_TEXT
from tok_refs import assert_same_empty_pairs, assert_same_padded, assert_same_texts, assert_same_vocab_and_specials
from tok_refs import reference_accessors
from tok_refs import assert_same_encoding as _assert_same

import keras_models as km
from keras_models.errors import TokenizerFileError
from keras_models.tokenizers import Tokenizer

SPECIALS = ["__null__", "__start__", "__end__", "__unk__"]  # ids 0..3, as in the hub vocabularies


def _bbsmall_files(out: Path, min_count: int = 2):
    """Merges trained with "</w>" word ends on the lower-cased texts; the vocabulary keeps only the
    pieces Transformers' class gives at least ``min_count`` times, so characters, pieces and merged
    symbols outside it are unknown, as in real checkpoints."""
    from tokenizers import Tokenizer as RustTokenizer
    from tokenizers import models, pre_tokenizers, trainers
    from transformers import BlenderbotSmallTokenizer

    rust = RustTokenizer(models.BPE(end_of_word_suffix="</w>"))
    rust.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    trainer = trainers.BpeTrainer(vocab_size=200, end_of_word_suffix="</w>", show_progress=False)
    rust.train_from_iterator([t.lower() for t in TRAINING_TEXT], trainer)
    merges = json.loads(rust.to_str())["model"]["merges"]
    merges = [m if isinstance(m, list) else m.split(" ") for m in merges]
    (out / "merges.txt").write_text("#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in merges), encoding="utf-8")
    vocab = {s: i for i, s in enumerate(SPECIALS)}
    (out / "vocab.json").write_text(json.dumps(vocab), encoding="utf-8")
    pieces = BlenderbotSmallTokenizer(str(out / "vocab.json"), str(out / "merges.txt"))
    counts = Counter(p for text in TRAINING_TEXT + ["a\nb\n"] for p in pieces.tokenize(text))
    for piece, count in sorted(counts.items(), key=lambda pc: (-pc[1], pc[0])):
        if count >= min_count and piece not in vocab:
            vocab[piece] = len(vocab)
    (out / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")


def _saved(**kwargs):
    """The folder Transformers' BlenderbotSmallTokenizer(...).save_pretrained writes."""

    def build(out: Path):
        from transformers import BlenderbotSmallTokenizer

        _bbsmall_files(out)
        BlenderbotSmallTokenizer(str(out / "vocab.json"), str(out / "merges.txt"), **kwargs).save_pretrained(str(out))

    return build


def _hub_style(out: Path):
    """As the hub repositories hold them: no tokenizer_class, config.json naming blenderbot-small,
    the special tokens in special_tokens_map.json."""
    _bbsmall_files(out)
    specials = dict(bos_token="__start__", eos_token="__end__", unk_token="__unk__", pad_token="__null__")
    (out / "special_tokens_map.json").write_text(json.dumps(specials), encoding="utf-8")
    (out / "tokenizer_config.json").write_text(json.dumps({"model_max_length": 512}), encoding="utf-8")
    (out / "config.json").write_text(json.dumps({"model_type": "blenderbot-small"}), encoding="utf-8")


BUILDERS = {
    "bbsmall_saved": _saved(),
    "bbsmall_flags": _saved(model_max_length=48, padding_side="left"),
    "bbsmall_hub": _hub_style,
}
NAMES = sorted(BUILDERS)


ref_dir, hf_tok, our_tok = reference_accessors(BUILDERS)


EXTRA = [
    "Don't STOP... it's  (really) fine!?\nNew LINE'\nafter quote' \n\nend\n",
    "__start__ x __end__ __UNK__ y__null__z __unk__ __newln__",
    "ΟΔΟΣ. İstanbul (x) a.b.c!? ,,, ''' ((",
    "sep\x1cchars\x1d not\x1espaces\x1f here \x85 nel",
    "The Quick, Brown (fox) jumps... Over the lazy dog's back!",
]
TEXTS = CORPUS + EXTRA + [p[0] for p in PAIRS]


@pytest.mark.parametrize("name", NAMES)
def test_single_texts_tokens_and_decode(name):
    hf, ours = hf_tok(name), our_tok(name)
    assert type(hf).__name__ == "BlenderbotSmallTokenizer"
    all_ids = assert_same_texts(hf, ours, TEXTS, name)
    assert sum(ids.count(hf.unk_token_id) for ids in all_ids) > 10  # the unknown path is exercised


@pytest.mark.parametrize("name", NAMES)
def test_properties(name):
    hf, ours = hf_tok(name), our_tok(name)
    assert_same_vocab_and_specials(hf, ours)
    assert (ours.bos_token_id, ours.eos_token_id, ours.unk_token_id, ours.pad_token_id) == (1, 2, 3, 0)
    assert ours.model_input_names == hf.model_input_names
    assert ours.padding_side == hf.padding_side
    assert ours.model_max_length == hf.model_max_length
    assert sorted(ours.all_special_ids) == sorted(hf.all_special_ids)
    assert sorted(ours.all_special_tokens) == sorted(hf.all_special_tokens)
    tokens = list(hf.get_vocab())
    assert ours.convert_tokens_to_ids(tokens) == hf.convert_tokens_to_ids(tokens)
    ids = list(range(len(hf)))
    assert ours.convert_ids_to_tokens(ids) == hf.convert_ids_to_tokens(ids)


@pytest.mark.parametrize("name", NAMES)
def test_batches_pairs_padding_truncation(name):
    hf, ours = hf_tok(name), our_tok(name)
    firsts, seconds = [p[0] for p in PAIRS], [p[1] for p in PAIRS]
    for side in ("right", "left"):
        assert_same_padded(hf, ours, name, firsts, seconds, side=side)
        assert_same_padded(hf, ours, name, TEXTS, side=side)
    assert_same_empty_pairs(hf, ours, name)


_ALPHABET = st.sampled_from(list("abdehilnorstuwABEHT.,!?()'_ \n\t\r\x1c\x85\u00a0ΣσİéЖ日😀@"))


@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
@given(
    text=st.one_of(st.text(max_size=40), st.text(_ALPHABET, max_size=40)),
    pair=st.one_of(st.none(), st.text(_ALPHABET, max_size=15)),
    data=st.data(),
)
def test_hypothesis_texts_and_random_ids(text, pair, data):
    hf, ours = hf_tok("bbsmall_saved"), our_tok("bbsmall_saved")
    _assert_same(ours(text, pair, return_tensors=None), hf(text, pair), (text, pair))
    assert ours.tokenize(text) == hf.tokenize(text), text
    ids = data.draw(st.lists(st.integers(0, len(hf) - 1), max_size=20))
    assert ours.decode(ids) == hf.decode(ids)
    assert ours.decode(ids, skip_special_tokens=True) == hf.decode(ids, skip_special_tokens=True)


@pytest.mark.parametrize("name", NAMES)
def test_save_pretrained_round_trip(name, tmp_path):
    from transformers import AutoTokenizer

    hf, ours = hf_tok(name), our_tok(name)
    written = ours.save_pretrained(tmp_path)
    assert {Path(p).name for p in written} >= {"vocab.json", "merges.txt", "tokenizer_config.json"}
    assert not (tmp_path / "tokenizer.json").exists()
    reloaded, reloaded_hf = Tokenizer.from_preset(tmp_path), AutoTokenizer.from_pretrained(str(tmp_path))
    assert type(reloaded_hf).__name__ == "BlenderbotSmallTokenizer" and len(reloaded_hf) == len(hf)
    for text in TEXTS:
        assert reloaded(text, return_tensors=None)["input_ids"] == hf(text)["input_ids"], (name, text[:60])
        assert reloaded_hf(text)["input_ids"] == hf(text)["input_ids"], (name, text[:60])
        assert reloaded.tokenize(text) == hf.tokenize(text)
    firsts, seconds = [p[0] for p in PAIRS], [p[1] for p in PAIRS]
    assert reloaded(firsts, seconds, return_tensors=None)["input_ids"] == hf(firsts, seconds)["input_ids"]
    assert reloaded_hf(firsts, seconds)["input_ids"] == hf(firsts, seconds)["input_ids"]
    ids = hf(EXTRA[0])["input_ids"]
    assert reloaded.decode(ids) == reloaded_hf.decode(ids) == hf.decode(ids)
    assert reloaded.get_vocab() == reloaded_hf.get_vocab() == hf.get_vocab()
    assert (reloaded.padding_side, reloaded.model_max_length) == (hf.padding_side, hf.model_max_length)
    assert (reloaded_hf.padding_side, reloaded_hf.model_max_length) == (hf.padding_side, hf.model_max_length)


def test_copies_and_pickles_keep_the_python_splitter():
    hf, ours = hf_tok("bbsmall_saved"), our_tok("bbsmall_saved")
    ref = hf(TEXTS, padding=True)["input_ids"]
    for clone in (copy.deepcopy(ours), pickle.loads(pickle.dumps(ours))):
        assert clone(TEXTS, padding=True, return_tensors=None)["input_ids"] == ref
        assert clone.decode(ref[-1]) == hf.decode(ref[-1])
        assert clone.tokenize(EXTRA[0]) == hf.tokenize(EXTRA[0])


def test_missing_or_malformed_files_name_the_file(tmp_path):
    folder = tmp_path / "t"
    shutil.copytree(ref_dir("bbsmall_saved"), folder)
    (folder / "merges.txt").write_bytes(b"#version: 0.2\n\xff\xfe x\n")
    with pytest.raises(TokenizerFileError, match=r"merges\.txt are not valid UTF-8"):
        Tokenizer.from_preset(folder)
    (folder / "merges.txt").write_text("#version: 0.2\na b c\n", encoding="utf-8")
    with pytest.raises(TokenizerFileError, match=r"merges\.txt line 2: expected 'left right'"):
        Tokenizer.from_preset(folder)
    (folder / "merges.txt").unlink()
    with pytest.raises(TokenizerFileError, match=r"no merges\.txt.*BlenderbotSmallTokenizer"):
        Tokenizer.from_preset(folder)
    shutil.copy(ref_dir("bbsmall_saved") / "merges.txt", folder / "merges.txt")
    (folder / "vocab.json").write_text(json.dumps({"a": 0, "b": 1}), encoding="utf-8")
    with pytest.raises(TokenizerFileError, match=r"vocab\.json has no unknown token '__unk__'"):
        Tokenizer.from_preset(folder)
    (folder / "vocab.json").write_text("[1, 2]", encoding="utf-8")
    with pytest.raises(TokenizerFileError, match=r"vocab\.json must map token strings to integer ids"):
        Tokenizer.from_preset(folder)


# ----------------------------------------------------------------------------- the model side
GEN_TEXTS = ["Hello world! How are you?", "the lazy dog's data, (model) token."]


def _model_folder():
    """A tiny random BlenderbotSmallForConditionalGeneration saved with the tokenizer, and Transformers'
    greedy generate + decode of GEN_TEXTS (built once, cached)."""
    from tests.parity import cached_folder

    def build(tmp):
        import torch
        import transformers
        from transformers import AutoTokenizer

        folder = tmp / "model"
        shutil.copytree(ref_dir("bbsmall_saved"), folder)
        (folder / ".complete").unlink()
        tok = AutoTokenizer.from_pretrained(str(folder))
        torch.manual_seed(0)
        config = transformers.BlenderbotSmallConfig(
            vocab_size=len(tok), d_model=32, encoder_layers=1, decoder_layers=1, encoder_attention_heads=4,
            decoder_attention_heads=4, encoder_ffn_dim=37, decoder_ffn_dim=41, max_position_embeddings=128,
            init_std=0.3, pad_token_id=0, bos_token_id=1, eos_token_id=2, decoder_start_token_id=1,
            scale_embedding=True,
        )
        model = transformers.BlenderbotSmallForConditionalGeneration(config).eval()
        model.save_pretrained(str(folder))
        expected = {}
        for text in GEN_TEXTS:
            with torch.no_grad():
                out = model.generate(**tok(text, return_tensors="pt"), max_new_tokens=5, do_sample=False)
            expected[text] = [tok.decode(out[0], skip_special_tokens=True), out[0].tolist()]
        (tmp / "expected.json").write_text(json.dumps(expected, ensure_ascii=False), encoding="utf-8")

    folder = cached_folder("bbsmall-tok-generate-v1", build)
    return folder / "model", json.loads((folder / "expected.json").read_text(encoding="utf-8"))


@pytest.mark.all_backends
def test_seq2seq_lm_generate_text_matches_transformers():
    folder, expected = _model_folder()
    model = km.Seq2SeqLM.from_preset(folder)
    for text, (string, ids) in expected.items():
        assert len(ids) > 2 and any(i > 3 for i in ids), ids  # real tokens were generated
        assert model.generate(text, max_new_tokens=5) == string, text
        out = np.asarray(model.generate(our_tok("bbsmall_saved")(text, return_tensors=None), max_new_tokens=5))
        assert out[0].tolist() == ids, text

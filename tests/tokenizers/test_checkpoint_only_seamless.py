"""SeamlessM4TTokenizer from the tokenizer.json (+ tokenizer_config.json) that SeamlessM4T / v2
repositories hold, with ids and decoding equal to Transformers': ``__src__ A </s>`` for inputs and
``</s> __tgt__ A </s>`` for ``text_target=``, with src_lang / tgt_lang from the config (codes with or
without underscores) or the defaults (eng / fra; a code missing from the vocabulary becomes <unk>).
Models: tests/audio/test_seamless_m4t.py."""

import json
from pathlib import Path

import pytest
from tok_corpus import CORPUS, PAIRS
from tok_refs import (_train_spm, _write_json, assert_same_padded, assert_same_texts, assert_same_vocab_and_specials,
                      reference_accessors)

CODES = ["__eng__", "__fra__", "__deu__"]
EXTRA = ["__fra__ hello __eng__ x", "tab\there\nnl", "  lead  and  inner   spaces  ", "ﬁ ligature Ⅻ"]


def _hub(config):
    """A SentencePiece BPE model converted and saved by Transformers: tokenizer.json + config."""
    def build(out: Path):
        from transformers import AutoTokenizer

        src = out / "spm"
        src.mkdir()
        _train_spm(src / "sentencepiece.bpe.model", vocab_size=300, model_type="bpe", bos_id=0, pad_id=1, eos_id=2,
                   unk_id=3)
        _write_json(src / "tokenizer_config.json", {"tokenizer_class": "SeamlessM4TTokenizer",
                                                    "additional_special_tokens": CODES, **config})
        AutoTokenizer.from_pretrained(str(src)).save_pretrained(str(out))
        _write_json(out / "config.json", {"model_type": "seamless_m4t"})
        for f in src.iterdir():
            f.unlink()
        src.rmdir()

    return build


BUILDERS = {
    "seamless_default": _hub({}),
    "seamless_deu_eng": _hub({"src_lang": "__deu__", "tgt_lang": "eng"}),
}
_ref_dir, hf_tok, our_tok = reference_accessors(BUILDERS)


@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_like_transformers(name):
    hf, ours = hf_tok(name), our_tok(name)
    assert type(ours).__name__ == "Tokenizer" and ours.class_name == "SeamlessM4TTokenizer"
    assert_same_vocab_and_specials(hf, ours)
    assert_same_texts(hf, ours, CORPUS + EXTRA, name)
    firsts, seconds = [p[0] for p in PAIRS], [p[1] for p in PAIRS]
    assert_same_padded(hf, ours, name, firsts, seconds)
    assert_same_padded(hf, ours, name, firsts, text_target=seconds, cases=({"padding": True},))


def test_unknown_language_is_unk(tmp_path):
    from transformers import AutoTokenizer

    from keras_models.tokenizers import Tokenizer

    folder = _ref_dir("seamless_default")
    for f in folder.iterdir():
        (tmp_path / f.name).write_bytes(f.read_bytes())
    config = json.loads((tmp_path / "tokenizer_config.json").read_text())
    (tmp_path / "tokenizer_config.json").write_text(json.dumps({**config, "src_lang": "xyz"}))
    hf, ours = AutoTokenizer.from_pretrained(str(tmp_path)), Tokenizer.from_preset(tmp_path)
    assert ours("Hello", return_tensors=None)["input_ids"] == hf("Hello")["input_ids"]
    assert hf("Hello")["input_ids"][0] == hf.unk_token_id


def test_language_overrides():
    from transformers import AutoTokenizer

    from keras_models.tokenizers import Tokenizer

    folder = _ref_dir("seamless_default")
    for kw in ({"src_lang": "deu"}, {"src_lang": "__fra__", "tgt_lang": "deu"}):
        ours, hf = Tokenizer.from_preset(folder, **kw), AutoTokenizer.from_pretrained(str(folder), **kw)
        assert ours("Hello world", text_target="Bonjour", return_tensors=None) == dict(
            hf("Hello world", text_target="Bonjour"))

"""mBART-architecture checkpoints with their own SentencePiece tokenizers, loaded from the files their hub
repositories hold (a lone sentencepiece.bpe.model, or with the tokenizer.json Transformers writes), with
ids and decoding equal to Transformers':

* mBART-50: MBart50Tokenizer(Fast): fairseq ids, the 52 language codes appended (extra special tokens),
  ``src_lang A </s>`` for inputs and ``tgt_lang ... </s>`` for ``text_target``.
* BARThez: BarthezTokenizer(Fast): the model's own ids and normalizer; tokenizer.json's <s> A </s>
  template (Transformers 5 adds no <s> / </s> when it converts a lone .model file, nor do we).
Model: the mbart parity case (pre-norm, final layer norms) in tests/models/test_seq2seq_parity.py.
"""

import json
import shutil
from pathlib import Path

import pytest
from tok_corpus import CORPUS, PAIRS
from tok_refs import _train_spm, _write_json, assert_same_padded, assert_same_texts, assert_same_vocab_and_specials
from tok_refs import reference_accessors

EXTRA = ["  lead  and  inner   spaces  ", "x <mask>y  <mask> <s>z</s> en_XX Hello ro_RO", "tab\there\nnl",
         "ﬁ ligature Ⅻ", "Şeful ONU declară că nu există o soluţie militară în Siria"]
FAIRSEQ_SPM = dict(vocab_size=300, model_type="unigram", bos_id=0, pad_id=1, eos_id=2, unk_id=3)


def _spm_folder(class_name, config, model_type="mbart"):
    def build(out: Path):
        _train_spm(out / "sentencepiece.bpe.model", **FAIRSEQ_SPM)
        _write_json(out / "tokenizer_config.json", {"tokenizer_class": class_name, **config})
        _write_json(out / "config.json", {"model_type": model_type})

    return build


def _mbart50_hub(out: Path):
    """facebook/mbart-large-50-*: the codes also listed in special_tokens_map.json, src/tgt languages set."""
    _spm_folder("MBart50Tokenizer", {"src_lang": "ro_RO", "tgt_lang": "de_DE", "model_max_length": 1024})(out)
    from keras_models.tokenizers.translation import MBART50_LANGUAGE_CODES

    _write_json(out / "special_tokens_map.json", {
        "additional_special_tokens": list(MBART50_LANGUAGE_CODES), "bos_token": "<s>", "cls_token": "<s>",
        "eos_token": "</s>", "mask_token": {"content": "<mask>", "lstrip": True, "normalized": True,
                                            "rstrip": False, "single_word": False},
        "pad_token": "<pad>", "sep_token": "</s>", "unk_token": "<unk>"})


def _saved(source):
    def build(out: Path):
        from transformers import AutoTokenizer

        AutoTokenizer.from_pretrained(str(_ref_dir(source))).save_pretrained(str(out))

    return build


def _barthez_hub(out: Path):
    """moussaKam/barthez: sentencepiece.bpe.model + a tokenizer.json holding the <s> A </s> template."""
    _saved("barthez_spm")(out)
    data = json.loads((out / "tokenizer.json").read_text(encoding="utf-8"))
    data["post_processor"] = {
        "type": "TemplateProcessing",
        "single": [{"SpecialToken": {"id": "<s>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}},
                   {"SpecialToken": {"id": "</s>", "type_id": 0}}],
        "pair": [{"SpecialToken": {"id": "<s>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}},
                 {"SpecialToken": {"id": "</s>", "type_id": 0}}, {"SpecialToken": {"id": "</s>", "type_id": 0}},
                 {"Sequence": {"id": "B", "type_id": 0}}, {"SpecialToken": {"id": "</s>", "type_id": 0}}],
        "special_tokens": {"<s>": {"id": "<s>", "ids": [0], "tokens": ["<s>"]},
                           "</s>": {"id": "</s>", "ids": [2], "tokens": ["</s>"]}}}
    _write_json(out / "tokenizer.json", data)
    shutil.copy(_ref_dir("barthez_spm") / "sentencepiece.bpe.model", out / "sentencepiece.bpe.model")


BUILDERS = {
    "mbart50_spm": _spm_folder("MBart50Tokenizer", {}),
    "mbart50_hub": _mbart50_hub,
    "mbart50_json": _saved("mbart50_hub"),
    "barthez_spm": _spm_folder("BarthezTokenizer", {}),
    "barthez_hub": _barthez_hub,
}
_ref_dir, hf_tok, our_tok = reference_accessors(BUILDERS)


@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_like_transformers(name):
    hf, ours = hf_tok(name), our_tok(name)
    assert_same_vocab_and_specials(hf, ours)
    assert ours.special_tokens_map == hf.special_tokens_map
    assert ours.all_special_tokens == hf.all_special_tokens
    assert ours.model_max_length == hf.model_max_length and ours.padding_side == hf.padding_side
    assert_same_texts(hf, ours, CORPUS + EXTRA, name)
    firsts, seconds = [p[0] for p in PAIRS], [p[1] for p in PAIRS]
    for side in ("right", "left"):
        assert_same_padded(hf, ours, name, firsts, seconds, side=side)
    assert_same_padded(hf, ours, name, firsts, text_target=seconds, cases=({"padding": True},))


def test_mbart50_languages():
    from transformers import AutoTokenizer

    from keras_models.tokenizers import Tokenizer

    folder = str(_ref_dir("mbart50_spm"))
    for kw in ({}, {"src_lang": "fr_XX"}, {"src_lang": "ja_XX", "tgt_lang": "sl_SI"}):
        hf, ours = AutoTokenizer.from_pretrained(folder, **kw), Tokenizer.from_preset(folder, **kw)
        text, target = "Hello world", "Bonjour le monde"
        assert ours(text, text_target=target, return_tensors=None) == dict(hf(text, text_target=target))
        assert ours(text_target=target, return_tensors=None) == dict(hf(text_target=target))
    with pytest.raises(ValueError, match=r"src_lang='xx_YY'"):
        Tokenizer.from_preset(folder, src_lang="xx_YY")

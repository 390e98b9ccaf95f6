"""GPT-Sw3 (GPTSw3Tokenizer, python-only in Transformers: SentencePiece after its own clean-up) over the
spiece.model its checkpoints hold, with ids and decoding equal to Transformers', for a BPE model with
byte fallback and a unigram one. Model: the gpt2 parity case (tests/models/test_decoders.py); GPT-Sw3's
config.json names model_type gpt2."""

import json
import random
from pathlib import Path

import pytest
from tok_corpus import CORPUS, PAIRS
from tok_refs import _train_spm, _write_json, assert_same_padded, assert_same_texts, assert_same_vocab_and_specials
from tok_refs import reference_accessors

from keras_models.errors import TokenizerFileError
from keras_models.tokenizers import Tokenizer

EXTRA = ["a\u2009thin\u3000space\x07bell\u00adsoft\u200bzero", "  lead  and  inner   spaces  ",
         "<s>Hi<|endoftext|><pad>x<unk> y", "e\u0301 composed", "tab\there\nnl\r\n", "🙂 Émile Ｆｕｌｌ"]


def _sw3(model_type):
    def build(out: Path):
        _train_spm(out / "spiece.model", vocab_size=500, model_type=model_type, unk_id=0, bos_id=2, eos_id=1,
                   pad_id=3, byte_fallback=model_type == "bpe", character_coverage=0.98, bos_piece="<s>",
                   eos_piece="<|endoftext|>", pad_piece="<pad>")
        _write_json(out / "tokenizer_config.json", {
            "tokenizer_class": "GPTSw3Tokenizer", "do_lower_case": False, "remove_space": False,
            "keep_accents": False, "bos_token": "<s>", "eos_token": "<|endoftext|>", "unk_token": "<unk>",
            "pad_token": "<pad>", "model_max_length": 2048})
        _write_json(out / "config.json", {"model_type": "gpt2"})

    return build


BUILDERS = {"gpt_sw3_bpe": _sw3("bpe"), "gpt_sw3_unigram": _sw3("unigram")}
ref_dir, hf_tok, our_tok = reference_accessors(BUILDERS)


@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_like_transformers(name):
    hf, ours = hf_tok(name), our_tok(name)
    assert_same_vocab_and_specials(hf, ours)
    assert ours.all_special_tokens == hf.all_special_tokens
    assert_same_texts(hf, ours, CORPUS + EXTRA, name)
    firsts, seconds = [p[0] for p in PAIRS], [p[1] for p in PAIRS]
    for side in ("right", "left"):
        assert_same_padded(hf, ours, name, firsts, seconds, side=side)
    rng = random.Random(0)  # random ids: byte pieces that make no character, special tokens anywhere
    rows = [[rng.randrange(len(hf)) for _ in range(rng.randrange(1, 20))] for _ in range(40)]
    for skip in (False, True):
        assert ours.batch_decode(rows, skip_special_tokens=skip) == hf.batch_decode(rows, skip_special_tokens=skip)


def test_flags_the_class_ignores_are_refused(tmp_path):
    src = ref_dir("gpt_sw3_bpe")
    (tmp_path / "spiece.model").write_bytes((src / "spiece.model").read_bytes())
    config = json.loads((src / "tokenizer_config.json").read_text())
    (tmp_path / "tokenizer_config.json").write_text(json.dumps({**config, "do_lower_case": True}))
    with pytest.raises(TokenizerFileError, match="do_lower_case=True"):
        Tokenizer.from_preset(tmp_path)
    (tmp_path / "spiece.model").unlink()
    with pytest.raises(TokenizerFileError, match="no spiece.model"):
        Tokenizer.from_preset(tmp_path)


def test_save_and_reload(tmp_path):
    from transformers import AutoTokenizer

    ours = our_tok("gpt_sw3_bpe")
    ours.save_pretrained(tmp_path)
    again, theirs = Tokenizer.from_preset(tmp_path), AutoTokenizer.from_pretrained(str(tmp_path))
    for text in CORPUS[:6] + EXTRA:
        assert again(text, return_tensors=None)["input_ids"] == theirs(text)["input_ids"] == ours.encode(text)

"""Reformer's tokenizer from a lone spiece.model (as google/reformer-crime-and-punishment ships it):
ids, tokens, decoding and padded batches equal Transformers' ReformerTokenizer (ReformerTokenizerFast
is the same class in Transformers 5) on tiny SentencePiece BPE models: one found through config.json's
model_type only, one with user-defined pieces and a pad token named in tokenizer_config.json, and
the tokenizer.json folder Transformers saves from it."""

from pathlib import Path

import pytest
from tok_corpus import CORPUS, PAIRS
from tok_refs import _train_spm, _write_json, assert_same_padded, assert_same_texts, assert_same_vocab_and_specials
from tok_refs import reference_accessors

EXTRA = ["  lead  and  inner   spaces  ", "x <sep>y  [X] </s>z<pad> <unk>", "tab\there\nnl", "ﬁ ligature Ⅻ ½ …",
         "Hello world, this is  a test."]
SPM = dict(vocab_size=300, model_type="bpe", pad_id=0, eos_id=1, unk_id=2, bos_id=-1)


def _by_model_type(out: Path):
    _train_spm(out / "spiece.model", **SPM)
    _write_json(out / "config.json", {"model_type": "reformer"})


def _user_pieces(out: Path):
    _train_spm(out / "spiece.model", user_defined_symbols=["<sep>", "[X]"], **SPM)
    _write_json(out / "tokenizer_config.json", {"tokenizer_class": "ReformerTokenizerFast", "pad_token": "<pad>",
                                                "model_max_length": 524288})


def _saved(out: Path):
    """What Transformers 5 saves: tokenizer.json (and spiece.model) with the class named."""
    from transformers import AutoTokenizer

    AutoTokenizer.from_pretrained(str(_ref_dir("reformer_user_pieces"))).save_pretrained(str(out))


BUILDERS = {"reformer_model_type": _by_model_type, "reformer_user_pieces": _user_pieces, "reformer_saved": _saved}
_ref_dir, hf_tok, our_tok = reference_accessors(BUILDERS)


@pytest.mark.backend_independent
@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_reformer_tokenizer_like_transformers(name):
    hf, ours = hf_tok(name), our_tok(name)
    assert type(hf).__name__ == "ReformerTokenizer"
    assert_same_vocab_and_specials(hf, ours)
    assert ours.special_tokens_map == hf.special_tokens_map
    assert ours.all_special_tokens == hf.all_special_tokens
    assert ours.model_max_length == hf.model_max_length
    assert_same_texts(hf, ours, CORPUS + EXTRA, name)
    if hf.pad_token is not None:
        firsts, seconds = [p[0] for p in PAIRS], [p[1] for p in PAIRS]
        for side in ("right", "left"):
            assert_same_padded(hf, ours, name, firsts, seconds, side=side)

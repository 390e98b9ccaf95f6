"""CPM's and CPM-Ant's jieba-based tokenizers (keras_models/tokenizers/cpm.py) against recorded references.

* CPM (``CpmTokenizer``): Transformers 5 dropped the jieba step (its CpmTokenizerFast hooks
  ``_batch_encode_plus``, which 5.x never calls; the python CpmTokenizer, 4.57.1's too, never segments),
  so the reference is Transformers 4.57.1's CpmTokenizerFast, recorded once with rjieba in
  cpm_golden/cpm.json by cpm_golden/record_cpm.py (the folder cpm_golden/cpm/ is what it saved).
* CPM-Ant (``CpmAntTokenizer``, python-only, still in Transformers 5): recorded once with Transformers
  5.25 and rjieba in cpm_golden/cpmant.json by cpm_golden/record_cpmant.py (the suite does not install
  rjieba; keras_models segments with the `jieba` package, ``HMM=False``, the same algorithm and dictionary).

Each text: ids with and without special tokens (and CPM's token types: 2 on <cls>), tokens, decoding
with and without special tokens; a padded batch (CPM: right, pad type 3; CPM-Ant: left); a round trip
through save_pretrained, copy and pickle; the error when jieba is missing.
"""

import copy
import json
import pickle
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("jieba")

from keras_models.tokenizers import Tokenizer  # noqa: E402

GOLDEN = Path(__file__).parent / "cpm_golden"
NAMES = ("cpm", "cpmant")
CLASSES = {"cpm": "CpmTokenizer", "cpmant": "CpmAntTokenizer"}


def _ref(name):
    return json.loads((GOLDEN / f"{name}.json").read_text(encoding="utf-8"))


def _check(tok, ref, name):
    assert (tok.vocab_size, len(tok)) == (ref["vocab_size"], ref["len"])
    for case in ref["cases"]:
        text = case["text"]
        enc = tok(text, return_tensors=None)
        assert enc["input_ids"] == case["ids"], text
        assert enc["attention_mask"] == case["attention_mask"], text
        if "token_type_ids" in case:
            assert enc["token_type_ids"] == case["token_type_ids"], text
        else:
            assert sorted(enc) == case["keys"], text
        assert tok.encode(text, add_special_tokens=False) == case["no_specials"], text
        assert tok.tokenize(text) == case["tokens"], text
        assert tok.decode(case["ids"]) == case["decode"], text
        assert tok.decode(case["ids"], skip_special_tokens=True) == case["decode_skip"], text
    batch = ref["batch"]
    got = tok(batch["texts"], padding=True)
    for key in batch:
        if key != "texts":
            assert np.asarray(got[key]).tolist() == batch[key], (name, key)
    assert tok.batch_decode(batch["input_ids"], skip_special_tokens=name == "cpm") == ref["batch_decode"]


@pytest.mark.parametrize("name", NAMES)
def test_ids_and_decoding_like_reference(name, tmp_path):
    tok, ref = Tokenizer.from_preset(GOLDEN / name), _ref(name)
    assert type(tok).__name__ == CLASSES[name]
    _check(tok, ref, name)
    # save_pretrained keeps the class (and so the segmentation); copies and pickles keep the pipeline
    tok.save_pretrained(tmp_path)
    assert json.loads((tmp_path / "tokenizer_config.json").read_text())["tokenizer_class"] == CLASSES[name]
    reloaded = Tokenizer.from_preset(tmp_path)
    for other in (reloaded, copy.deepcopy(tok), pickle.loads(pickle.dumps(tok))):
        _check(other, ref, name)


def test_without_jieba_loading_names_the_package_and_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "jieba", None)  # import jieba -> ImportError
    for name in NAMES:
        with pytest.raises(ImportError, match=r"jieba.*keras-models\[chinese\]"):
            Tokenizer.from_preset(GOLDEN / name)


def test_bad_files_are_named(tmp_path):
    from keras_models.errors import TokenizerFileError

    (tmp_path / "vocab.txt").write_text("<s>\n</s>\n<unk>\n<pad>\n</n>\nab\n", encoding="utf-8")
    (tmp_path / "tokenizer_config.json").write_text(json.dumps({"tokenizer_class": "CpmAntTokenizer"}))
    with pytest.raises(TokenizerFileError, match="space_token"):
        Tokenizer.from_preset(tmp_path)
    cpm = tmp_path / "cpm"
    cpm.mkdir()
    (cpm / "spiece.model").write_bytes((GOLDEN / "cpm" / "spiece.model").read_bytes())
    (cpm / "tokenizer_config.json").write_text(json.dumps({"tokenizer_class": "CpmTokenizer"}))
    with pytest.raises(TokenizerFileError, match="tokenizer.json"):
        Tokenizer.from_preset(cpm)

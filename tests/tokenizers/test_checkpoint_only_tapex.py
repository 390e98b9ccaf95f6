"""TAPEX (python-only TapexTokenizer): table + query flattened, lower-cased, BART byte-level BPE.

Transformers 5 no longer has TapexTokenizer (AutoTokenizer cannot load these folders), so the
reference is its output recorded with Transformers 4.57.1 in tapex_golden/ (see record.py there):
a tokenizer folder written by TapexTokenizer.save_pretrained and the ids it gave.
"""

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from keras_models.tokenizers.tokenizer import Tokenizer

GOLDEN = Path(__file__).parent / "tapex_golden"
DATA = json.loads((GOLDEN / "expected.json").read_text(encoding="utf-8"))
CASES = {c["name"]: c for c in DATA["cases"]}


class _Frame:
    """A minimal DataFrame look-alike (no pandas): .columns and .itertuples only."""

    def __init__(self, cols):
        self.columns = list(cols)
        self._rows = list(zip(*cols.values()))

    def itertuples(self, index=False):
        return iter(self._rows)


@pytest.fixture(scope="module")
def tok():
    return Tokenizer.from_preset(str(GOLDEN / "tokenizer"))


def _table(spec, kind):
    def one(name):
        cols = DATA["tables"][name]
        return {"frame": pd.DataFrame(cols), "dict": cols, "duck": _Frame(cols)}[kind]

    return [one(n) for n in spec] if isinstance(spec, list) else one(spec)


@pytest.mark.parametrize("kind", ["frame", "dict", "duck"])
@pytest.mark.parametrize("name", sorted(CASES))
def test_cases_match_reference(tok, name, kind):
    case = CASES[name]
    out = tok(_table(case["table"], kind), case["query"], answer=case["answer"], return_tensors=None, **case["kwargs"])
    assert {k: out[k] for k in case["expected"]} == case["expected"]


def test_keywords_and_numpy_output(tok):
    case = CASES["batch_tables"]
    out = tok(table=_table(case["table"], "frame"), query=case["query"], padding=True)
    np.testing.assert_array_equal(out["input_ids"], np.array(case["expected"]["input_ids"], dtype=np.int32))
    np.testing.assert_array_equal(out["attention_mask"], np.array(case["expected"]["attention_mask"]))


def test_random_tables(tok):
    for case in DATA["random_tables"]:
        got = tok(pd.DataFrame(case["table"]), case["query"], return_tensors=None)["input_ids"]
        assert got == case["input_ids"], case
        assert tok(table=case["table"], query=case["query"], return_tensors=None)["input_ids"] == case["input_ids"]


def test_max_cell_length_override(tok):
    # max_cell_length=8 is saved in the folder; a call-time value changes the cut
    table = DATA["tables"]["long_cells"]
    short = tok(table=table, max_cell_length=2, return_tensors=None)["input_ids"]
    default = tok(table=table, return_tensors=None)["input_ids"]
    assert tok(table=table, max_cell_length=8, return_tensors=None)["input_ids"] == default
    assert len(short) < len(default)


def test_decode_tokenize_specials(tok):
    extra = DATA["extra"]
    ids = CASES["table_query"]["expected"]["input_ids"]
    assert tok.decode(ids) == extra["decode"]
    assert tok.decode(ids, skip_special_tokens=True) == extra["decode_skip"]
    assert tok.convert_ids_to_tokens(ids) == extra["convert"]
    for text, pieces in extra["texts"].items():
        assert tok.tokenize(text) == pieces
    assert tok.vocab_size == extra["vocab_size"] and len(tok) == extra["len"]
    for key, (token, idx) in extra["specials"].items():
        assert getattr(tok, key) == token and getattr(tok, key + "_id") == idx
    assert tok.class_name == "TapexTokenizer"


def test_save_reload(tok, tmp_path):
    tok.save_pretrained(tmp_path)
    config = json.loads((tmp_path / "tokenizer_config.json").read_text())
    assert config["tokenizer_class"] == "TapexTokenizer" and config["max_cell_length"] == 8
    assert (tmp_path / "vocab.json").read_bytes() == (GOLDEN / "tokenizer" / "vocab.json").read_bytes()
    assert (tmp_path / "merges.txt").read_bytes() == (GOLDEN / "tokenizer" / "merges.txt").read_bytes()
    again = Tokenizer.from_preset(str(tmp_path))
    for case in CASES.values():
        out = again(_table(case["table"], "dict"), case["query"], return_tensors=None, **case["kwargs"])
        assert out["input_ids"] == case["expected"]["input_ids"]


def test_do_lower_case_false(tmp_path):
    shutil.copytree(GOLDEN / "tokenizer", tmp_path / "t")
    path = tmp_path / "t" / "tokenizer_config.json"
    config = json.loads(path.read_text())
    config["do_lower_case"] = False
    path.write_text(json.dumps(config))
    cased = Tokenizer.from_preset(str(tmp_path / "t"))
    table = DATA["tables"]["one"]
    # the flattened text goes through the BPE as written: compare with the plain tokenization of it
    flat = "Hi col : Only Column row 1 : Single Value"
    ids = cased(table=table, query="Hi", max_cell_length=100, return_tensors=None)["input_ids"]
    assert ids == [0] + cased.convert_tokens_to_ids(cased.tokenize(flat)) + [2]


def test_errors(tok, tmp_path):
    with pytest.raises(ValueError, match="table"):
        tok("plain text")
    with pytest.raises(ValueError, match="table"):
        tok(table=[1, 2])
    with pytest.raises(ValueError, match="table"):
        tok(table="a string")
    with pytest.raises(ValueError, match="query"):
        tok(table=DATA["tables"]["one"], query=3)
    with pytest.raises(ValueError, match="2 tables but 3 queries"):
        tok(table=[DATA["tables"]["one"]] * 2, query=["a", "b", "c"])
    with pytest.raises(ValueError, match="same number of cells"):
        tok(table={"a": [1, 2], "b": ["x"]})
    with pytest.raises(TypeError, match="cell None"):
        tok(table={"a": [None]})
    with pytest.raises(TypeError, match="cell 1.5"):
        tok(table={"a": [1.5]})
    with pytest.raises(ValueError, match="drop_rows_to_fit"):
        tok(table=DATA["tables"]["one"], query="q", truncation="drop_rows_to_fit", max_length=8)
    # a non-TAPEX tokenizer names the TAPEX-only argument
    shutil.copytree(GOLDEN / "tokenizer", tmp_path / "bart")
    path = tmp_path / "bart" / "tokenizer_config.json"
    config = json.loads(path.read_text())
    config["tokenizer_class"] = "BartTokenizer"
    path.write_text(json.dumps(config))
    bart = Tokenizer.from_preset(str(tmp_path / "bart"))
    with pytest.raises(TypeError, match="TAPEX arguments"):
        bart("x", table=DATA["tables"]["one"])

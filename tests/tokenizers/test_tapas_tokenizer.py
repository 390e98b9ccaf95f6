"""keras_models' TapasTokenizer against Transformers' (python-only) TapasTokenizer: ids and the
seven token types for tables with numbers, dates, ordinals and empty cells, with and without
drop-rows-to-fit truncation, cell trimming and stripped column names."""

import numpy as np
import pandas as pd
import pytest

from keras_models.errors import InputError
from keras_models.models.tapas import TapasTokenizer

WORDS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "[EMPTY]", "actors", "brad", "pitt", "age", "number", "of",
         "movies", "how", "many", "has", "george", "played", "in", "?", "is", "old", "56", "45", "59", "87", "53", "69",
         "the", "a", "##s", "act", "##or", "1", "2", "0", "5", ",", ".", "-", "born", "march", "jan", "2007", "2010",
         "first", "more", "than", "60", "date", "##5", "##6", "##0", "3", "##rd", "4", "9", "8", "7", "6", "##9", "##8",
         "##7", "##1", "##2", "##3", "##4", "total", "sum", "#", "$"]

ACTORS = pd.DataFrame({
    "Actors": ["Brad Pitt", "Leonardo Di Caprio", "George Clooney", "?"], "Age": ["56", "45", "59", ""],
    "Number of movies": ["87", "53", "69", "1,250"], "Born": ["March 5, 2010", "Jan 2007", "2010", "first"],
    "Rank": ["1st", "3rd", "2nd", "n/a"]})
DATES = pd.DataFrame({"Date": ["2010-05-03", "05-03-2010", "3 May 2009", "Sept 3", "1999s"],
                      "Value": ["$1,000", "2.5", "-3", "12", "twelve"], "x": ["a", "a", "b", "c", "a"]})
QUERIES = ["How many movies has George Clooney played in?", "how old is brad pitt", "more than 60 movies",
           "born after march 2007", "[MASK] movies first", "total of 45.5 and -3", ""]


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    import transformers

    path = tmp_path_factory.mktemp("tapas_tok")
    (path / "vocab.txt").write_text("\n".join(WORDS) + "\n")
    transformers.TapasTokenizer(str(path / "vocab.txt"), model_max_length=64).save_pretrained(path / "saved")
    return path


def _pair(folder, **options):
    import transformers

    if not options:
        return (transformers.TapasTokenizer.from_pretrained(folder / "saved"),
                TapasTokenizer.from_preset(folder / "saved"))
    from keras_models.tokenizers.builders import read_wordpiece_vocab

    return (transformers.TapasTokenizer(str(folder / "vocab.txt"), **options),
            TapasTokenizer(read_wordpiece_vocab(folder / "vocab.txt"), **options))


CASES = [
    ({}, ACTORS, QUERIES, dict(padding=True)),
    ({}, ACTORS, QUERIES, dict(padding=True, truncation=True, max_length=30)),
    ({"cell_trim_length": 2}, ACTORS, QUERIES, dict(padding=True, truncation=True, max_length=40)),
    ({"strip_column_names": True}, ACTORS, QUERIES[:3], dict(padding="max_length", max_length=60)),
    ({}, DATES, ["value less than 3", "after 2009", "the 3rd of may 2010 twelve"], dict(padding=True)),
    ({}, DATES, "value less than 3", {}),
]


@pytest.mark.parametrize("case", range(len(CASES)))
def test_ids_and_token_types_match_transformers(folder, case):
    options, table, queries, call = CASES[case]
    hf, ours = _pair(folder, **options)
    want = hf(table=table, queries=queries, return_tensors="np", **call)
    got = ours(table, queries, **call)
    for key in ("input_ids", "attention_mask", "token_type_ids"):
        np.testing.assert_array_equal(got[key], want[key], err_msg=key)
    types = got["token_type_ids"]
    assert (types[..., 4] > 0).any() and (types[..., 6] > 0).any(), "no ranks or relations: the check is empty"


def test_errors(folder):
    hf, ours = _pair(folder)
    with pytest.raises(InputError, match="max_length"):
        ours(ACTORS, QUERIES[0], truncation=True, max_length=12)  # Transformers: ValueError too
    with pytest.raises(InputError, match="string"):
        ours(pd.DataFrame({"a": [1, 2]}), "q")
    with pytest.raises(InputError, match="padding=True"):
        ours(ACTORS, QUERIES[:2])
    with pytest.raises(InputError, match="truncation"):
        ours(ACTORS, "q", truncation="longest_first")


def test_tokenizer_from_preset_gives_the_table_tokenizer(folder):
    import keras_models as km

    tok = km.Tokenizer.from_preset(folder / "saved")
    assert isinstance(tok, TapasTokenizer)
    hf, _ = _pair(folder)
    want = hf(table=ACTORS, queries=QUERIES[:2], padding=True)
    got = tok(table=ACTORS, queries=QUERIES[:2], padding=True)
    assert np.asarray(got["input_ids"]).tolist() == want["input_ids"]
    assert np.asarray(got["token_type_ids"]).tolist() == np.asarray(want["token_type_ids"]).tolist()

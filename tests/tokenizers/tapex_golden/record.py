"""Records tests/tokenizers/tapex_golden/ (the reference for test_checkpoint_only_tapex.py).

Transformers 5 no longer ships TapexTokenizer, so its outputs were recorded once with Transformers
4.57.1 (models/deprecated/tapex), e.g.:
    pip install --no-deps --target /tmp/tf4 transformers==4.57.1 huggingface_hub==0.36.0 tokenizers==0.22.1
    PYTHONPATH=/tmp/tf4 python tests/tokenizers/tapex_golden/record.py
"""

import json
import random
from pathlib import Path

import pandas as pd
from tokenizers import ByteLevelBPETokenizer
from transformers import TapexTokenizer

HERE = Path(__file__).parent
SPECIALS = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]
CORPUS = [
    "col : year | city | country | nation row 1 : 1896 | athens | greece | Greece",
    "row 2 : 1900 | paris | france | France row 3 : 1904 | st. louis | usa | United States",
    "which city hosted the olympic games in 2004? how many medals did Athens win?",
    "Hello World, the quick brown fox jumps over the lazy dog. Émile Zola à Paris 東京",
] * 5

TABLES = {
    "olympics": {"Year": ["1896", "1900", "1904", "2004", "2008", "2012"],
                 "City": ["Athens", "Paris", "St. Louis", "Athens", "Beijing", "London"]},
    "ints": {"Rank": [1, 2, 3], "Name": ["Alice Smith", "BOB", "carol"]},
    "long_cells": {"Text": ["the quick brown fox jumps over the lazy dog again and again", "short"],
                   "Note": ["Émile Zola à Paris 東京 hello world hello world", "  "]},
    "empty": {"A": [], "B": []},
    "one": {"Only Column": ["Single Value"]},
}


def main():
    rng = random.Random(0)
    folder = HERE / "tokenizer"
    folder.mkdir(exist_ok=True)
    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(CORPUS, vocab_size=400, min_frequency=2, special_tokens=SPECIALS, show_progress=False)
    bpe.save_model(str(folder))
    tok = TapexTokenizer(vocab_file=str(folder / "vocab.json"), merges_file=str(folder / "merges.txt"),
                         max_cell_length=8)
    tok.save_pretrained(str(folder))
    tok = TapexTokenizer.from_pretrained(str(folder))
    frames = {k: pd.DataFrame(v) for k, v in TABLES.items()}
    cases = []

    def record(name, table, query=None, answer=None, **kwargs):
        t = [frames[n] for n in table] if isinstance(table, list) else frames[table]
        out = tok(t, query, answer=answer, **kwargs)
        cases.append({"name": name, "table": table, "query": query, "answer": answer, "kwargs": kwargs,
                      "expected": {k: v for k, v in out.items()}})

    record("table_only", "olympics")
    record("table_query", "olympics", "Which City hosted in 2004?")
    record("table_query_answer", "olympics", "Which city hosted in 2004?", answer=["Athens"])
    record("ints", "ints", "Who is RANK 2?")
    record("long_cells", "long_cells", "what note?")
    record("empty_table", "empty", "Nothing here?")
    record("one_cell", "one")
    record("batch_tables", ["olympics", "ints", "one"], "Which?", padding=True)
    record("batch_queries", "ints", ["Who is first?", "rank of carol", "x"], padding="max_length", max_length=60)
    record("batch_both", ["olympics", "one"], ["In 2008?", "Only?"], padding=True, truncation=True, max_length=24)
    record("truncation", "olympics", "Which city?", truncation=True, max_length=16)
    record("no_specials", "one", "q", add_special_tokens=False)
    cell_chars = "abcXYZ 19é|:"
    random_tables = []
    for i in range(12):
        n_rows, n_cols = rng.randint(1, 3), rng.randint(1, 3)
        cols = {f"C{i}{j}": ["".join(rng.choice(cell_chars) for _ in range(rng.randint(0, 30))) for _ in range(n_rows)]
                for j in range(n_cols)}
        q = "".join(rng.choice(cell_chars) for _ in range(rng.randint(0, 12)))
        out = tok(pd.DataFrame(cols), q)
        random_tables.append({"table": cols, "query": q, "input_ids": out["input_ids"]})
    ids = cases[1]["expected"]["input_ids"]
    extra = {
        "decode": tok.decode(ids),
        "decode_skip": tok.decode(ids, skip_special_tokens=True),
        "texts": {t: tok.tokenize(t) for t in ["Hello World", "Émile à Paris", "row 1 : x | y"]},
        "convert": tok.convert_ids_to_tokens(ids),
        "vocab_size": tok.vocab_size,
        "len": len(tok),
        "specials": {k: [getattr(tok, k), getattr(tok, k + "_id")] for k in
                     ["bos_token", "eos_token", "sep_token", "cls_token", "unk_token", "pad_token", "mask_token"]},
    }
    data = {"tables": TABLES, "cases": cases, "random_tables": random_tables, "extra": extra}
    (HERE / "expected.json").write_text(json.dumps(data, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()

"""TAPEX end to end: a tiny random BartForConditionalGeneration saved with the TAPEX tokenizer folder
(vocab.json + merges.txt + tokenizer_config.json naming TapexTokenizer, no tokenizer.json);
``Seq2SeqLM.from_preset(folder)`` attaches our TapexTokenizer, and generating from its encoding of
(table, query) gives Transformers' ids. Transformers 5 has no TapexTokenizer: the encoding it would
give is the one recorded in tests/tokenizers/tapex_golden (tokenizer parity:
tests/tokenizers/test_checkpoint_only_tapex.py), the generated ids come from Transformers' BART and
the expected string from Transformers' BartTokenizer over the same vocab.json + merges.txt."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

import keras_models as km
from tests.models.seq2seq_text import reference

GOLDEN = Path(__file__).parents[1] / "tokenizers" / "tapex_golden"
DATA = json.loads((GOLDEN / "expected.json").read_text(encoding="utf-8"))
CASES = ["table_query", "ints", "long_cells"]


def _build(tmp):
    import torch
    import transformers

    folder = tmp / "model"
    shutil.copytree(GOLDEN / "tokenizer", folder)
    config = transformers.BartConfig(
        vocab_size=DATA["extra"]["len"], d_model=32, encoder_layers=1, decoder_layers=1, encoder_attention_heads=4,
        decoder_attention_heads=4, encoder_ffn_dim=37, decoder_ffn_dim=41, max_position_embeddings=128,
        init_std=0.2, pad_token_id=1, bos_token_id=0, eos_token_id=2, decoder_start_token_id=2,
        forced_bos_token_id=None, forced_eos_token_id=None)
    torch.manual_seed(0)
    model = transformers.BartForConditionalGeneration(config).eval()
    model.save_pretrained(folder)
    files = tmp / "bart_files"  # BART's tokenizer over the same files (Transformers 5 reads them via from_pretrained)
    files.mkdir()
    for name in ("vocab.json", "merges.txt"):
        shutil.copyfile(folder / name, files / name)
    bart = transformers.BartTokenizer.from_pretrained(files)
    assert len(bart) == DATA["extra"]["len"]
    expected = {}
    for name in CASES:
        ids = next(c for c in DATA["cases"] if c["name"] == name)["expected"]["input_ids"]
        with torch.no_grad():
            out = model.generate(torch.tensor([ids]), max_new_tokens=6, do_sample=False, num_beams=1)
        expected[name] = {"ids": out[0].tolist(), "text": bart.decode(out[0], skip_special_tokens=True)}
    (tmp / "expected.json").write_text(json.dumps(expected))


@pytest.mark.parametrize("name", CASES)
def test_generate_from_table_matches_transformers(name):
    folder, expected = reference("s2s-tapex-text", _build, DATA["cases"])
    assert not (folder / "tokenizer.json").exists()
    model = km.Seq2SeqLM.from_preset(folder)
    tok = model.preprocessor.tokenizer
    assert tok.class_name == "TapexTokenizer"
    case = next(c for c in DATA["cases"] if c["name"] == name)
    encoding = tok(table=DATA["tables"][case["table"]], query=case["query"])
    assert encoding["input_ids"][0].tolist() == case["expected"]["input_ids"]
    ref = expected[name]
    assert len(ref["ids"]) > 2
    ids = np.asarray(model.generate(encoding, max_new_tokens=6, do_sample=False))
    assert ids[0].tolist() == ref["ids"]
    assert tok.decode(ids[0], skip_special_tokens=True) == ref["text"]

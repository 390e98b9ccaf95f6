"""CPM (checkpoint-only: GPT-2 weights + CPM's jieba tokenizer) through ``km.CausalLM.from_preset``.

The folder is what CPM-Generate ships: a GPT-2 checkpoint (here a tiny random GPT2LMHeadModel written by
Transformers' save_pretrained) beside CPM's tokenizer files (tests/tokenizers/cpm_golden/cpm/). The
attached tokenizer must be the jieba-segmenting CpmTokenizer, its ids for a Chinese prompt those of
Transformers 4.57.1's CpmTokenizerFast (recorded in cpm_golden/cpm.json: Transformers 5 skips the
segmentation), then logits and greedy tokens equal Transformers' GPT-2 on those ids. GPT-2 numerics
themselves are covered by tests/models/test_decoders.py; the tokenizer by
tests/tokenizers/test_cpm_tokenizers.py.
"""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

import keras_models as km
from tests.parity import assert_close, hf_reference

pytest.importorskip("jieba")

GOLDEN = Path(__file__).parents[1] / "tokenizers" / "cpm_golden"
CASE = json.loads((GOLDEN / "cpm.json").read_text(encoding="utf-8"))["cases"][1]  # Chinese, English, newline
GENERATE = dict(max_new_tokens=5, do_sample=False)


def _gpt2():
    from transformers import GPT2Config, GPT2LMHeadModel

    vocab = json.loads((GOLDEN / "cpm.json").read_text(encoding="utf-8"))["len"]
    cfg = GPT2Config(vocab_size=vocab, n_embd=16, n_layer=1, n_head=2, n_positions=64, bos_token_id=1,
                     eos_token_id=2, pad_token_id=5)
    return GPT2LMHeadModel(cfg)


def _inputs():
    return {"input_ids": np.asarray([CASE["ids"]], dtype="int64")}


def _save(folder, model):
    import torch

    for path in (GOLDEN / "cpm").iterdir():
        shutil.copyfile(path, folder / path.name)
    with torch.no_grad():
        out = model.generate(input_ids=torch.tensor(_inputs()["input_ids"]), **GENERATE)
    np.save(folder / "generated.npy", out.numpy())


def test_cpm_causal_lm_tokenizes_and_generates_like_transformers():
    folder, expected = hf_reference("cpm_gpt2", _gpt2, _inputs(), extra_save=_save)
    model = km.CausalLM.from_preset(folder)
    tok = model.preprocessor.tokenizer
    assert type(tok).__name__ == "CpmTokenizer"
    ids = tok(CASE["text"])["input_ids"]
    assert np.asarray(ids).tolist() == [CASE["ids"]]
    assert_close(model.predict_on_batch({"input_ids": ids}), expected["logits"], what="logits")
    out = model.generate({"input_ids": ids}, **GENERATE)
    generated = np.load(folder / "generated.npy")
    np.testing.assert_array_equal(np.asarray(out), generated)
    # the new tokens decode through CPM's decoder (spaces dropped, "\u2582" / "\u2583" back to " " / "\n")
    text = tok.decode(generated[0])
    assert text.startswith(CASE["decode"].replace("<sep><cls>", ""))

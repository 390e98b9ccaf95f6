"""GPTSAN-japanese (removed from Transformers 5) against references recorded with Transformers 4.57.1
(tests/models/removed_golden/record_gptsan.py: a tiny checkpoint with switch layers over capacity,
an extra dense layer and a spout; see its docstring): logits with a prefix and left padding, with
a spout, greedy generation, ``save_to_preset`` and bad configs."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

import keras_models as km
from keras_models.errors import ConfigError, InputError, TokenizerFileError
from tests.parity import assert_close, to_numpy

GOLDEN = Path(__file__).parent / "removed_golden"
FOLDER = GOLDEN / "gptsan" / "CausalLM"


def golden():
    data = dict(np.load(GOLDEN / "gptsan.npz"))
    return {k[3:]: v for k, v in data.items() if k.startswith("in_")}, data


def test_gptsan_parity_and_generate():
    inputs, data = golden()
    model = km.CausalLM.from_preset(FOLDER)
    assert type(model).__name__ == "GPTSanJapaneseCausalLM" and model.head_from_checkpoint
    mask = inputs["attention_mask"]
    prefixed = {k: inputs[k] for k in ("input_ids", "attention_mask", "token_type_ids")}
    assert_close(model(prefixed), data["CausalLM__logits"], mask=mask, what="gptsan logits (prefix)")
    assert_close(model.backbone(prefixed), data["CausalLM__hidden"], mask=mask, what="gptsan hidden")
    spout = {k: inputs[k] for k in ("input_ids", "attention_mask", "spout")}
    assert_close(model(spout), data["spout__logits"], mask=mask, what="gptsan logits (spout)")
    # greedy tokens of a prefixed prompt batch, one row left-padded; the experts' capacity is
    # exceeded along the way (the cache carries each expert's count)
    prompt = {"input_ids": data["generate__prompt"].astype("int32"),
              "attention_mask": data["generate__mask"].astype("int32"),
              "token_type_ids": data["generate__types"].astype("int32")}
    got = to_numpy(model.generate(prompt, do_sample=False, max_new_tokens=8, pad_token_id=3))
    np.testing.assert_array_equal(got, data["generate__tokens"])


def test_gptsan_save_to_preset_reloads(tmp_path):
    inputs, data = golden()
    km.CausalLM.from_preset(FOLDER).save_to_preset(tmp_path / "saved")
    config = json.loads((tmp_path / "saved" / "config.json").read_text())
    assert config["model_type"] == "gptsan-japanese" and config["num_ext_layers"] == 1
    assert config["expert_capacity"] == 3 and config["router_bias"] and config["d_spout"] == 6
    model = km.CausalLM.from_preset(tmp_path / "saved")
    spout = {k: inputs[k] for k in ("input_ids", "attention_mask", "spout")}
    assert_close(model(spout), data["spout__logits"], mask=inputs["attention_mask"], what="gptsan saved")


def test_gptsan_errors(tmp_path):
    base = json.loads((FOLDER / "config.json").read_text())
    for change, match in (({"router_dtype": "bfloat16"}, "router_dtype"),
                          ({"num_heads": 3}, "num_heads"),
                          ({"num_switch_layers": 0, "num_ext_layers": 0}, "num_ext_layers")):
        folder = tmp_path / "bad"
        shutil.copytree(FOLDER, folder, dirs_exist_ok=True)
        (folder / "config.json").write_text(json.dumps({**base, **change}))
        with pytest.raises(ConfigError, match=match):
            km.Backbone.from_preset(folder)
    (folder / "config.json").write_text(json.dumps({**base, "d_spout": 0}))
    model = km.Backbone.from_preset(folder, load_weights=False)
    with pytest.raises(InputError, match="d_spout=0"):
        model({"input_ids": np.ones((1, 3), "int32"), "spout": np.ones((1, 6), "float32")})


@pytest.mark.backend_independent
def test_gptsan_tokenizer(tmp_path):
    """GPTSanJapaneseTokenizer (4.57.1) over a small vocab.txt / emoji.json: pieces, ids, token
    types (``prefix_text``, a separator in the text), decoding and ``do_clean_text``; batches pad
    the rows on the right (4.57.1's own batch encoding fails, so they are checked row by row)."""
    ref = json.loads((GOLDEN / "gptsan.json").read_text(encoding="utf-8"))
    folder = GOLDEN / "gptsan" / "tokenizer"
    tok = km.Tokenizer.from_preset(folder)
    assert type(tok).__name__ == "GPTSanJapaneseTokenizer"
    for i, (text, prefix) in enumerate(zip(ref["texts"], ref["prefixes"])):
        assert tok.tokenize(text) == ref["tokenize"][i]
        assert tok(text, return_tensors=None) == ref["single"][i]
        assert tok(text, prefix_text=prefix, return_tensors=None) == ref["prefix"][i]
        assert tok(prefix + "<|segmenter|>" + text, return_tensors=None) == ref["sep_in_text"][i]
        ids = ref["prefix"][i]["input_ids"]
        assert tok.decode(ids) == ref["decode"][i]
        assert tok.decode(ids, skip_special_tokens=True) == ref["decode_skip"][i]
    clean = type(tok).from_preset(folder, do_clean_text=True)
    assert [clean.tokenize(t) for t in ref["clean_texts"]] == ref["clean"]
    batch = tok(list(zip(ref["prefixes"], ref["texts"])))
    for i, row in enumerate(ref["sep_in_text"]):
        n = len(row["input_ids"])
        assert batch["input_ids"][i, :n].tolist() == row["input_ids"]
        assert batch["token_type_ids"][i, :n].tolist() == row["token_type_ids"]
        assert batch["attention_mask"][i].sum() == n and (batch["input_ids"][i, n:] == tok.pad_token_id).all()
    tok.save_to_preset(tmp_path)
    again = km.Tokenizer.from_preset(tmp_path)
    assert again(ref["texts"][0], prefix_text="世界", return_tensors=None) == ref["prefix"][0]
    (tmp_path / "emoji.json").write_text("[]")
    with pytest.raises(TokenizerFileError, match="emoji"):
        km.Tokenizer.from_preset(tmp_path)

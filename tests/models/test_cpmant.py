"""CPM-Ant against a tiny random Transformers CpmAntForCausalLM: logits and hidden states on a
left-padded batch (padding = id 0, as Transformers reads it), greedy generate with the KV cache
equal to Transformers', save_to_preset reloaded by Transformers, a .keras round trip and bad config
values.
CpmAntTokenizer (jieba): tests/tokenizers/test_cpm_tokenizers.py."""

import json

import numpy as np
import pytest

import keras_models as km
from keras_models.errors import ConfigError
from tests.parity import assert_backbone_close, assert_close, assert_keras_round_trip, hf_reference

GENERATE = dict(max_new_tokens=6, do_sample=False)


def _cpmant():
    from transformers import CpmAntConfig, CpmAntForCausalLM

    cfg = CpmAntConfig(vocab_size=60, hidden_size=32, num_attention_heads=4, dim_head=8, dim_ff=40,
                       num_hidden_layers=2, position_bias_num_buckets=16, position_bias_max_distance=20,
                       prompt_types=3, prompt_length=4, segment_types=3, eps=1e-5, init_std=0.5,
                       pad_token_id=0, eos_token_id=1, bos_token_id=2)
    return CpmAntForCausalLM(cfg)


def _inputs():
    rng = np.random.RandomState(0)
    ids = rng.randint(3, 60, size=(2, 7)).astype("int64")
    ids[1, :3] = 0  # left padding
    return {"input_ids": ids}


def _save_generate(folder, model):
    import torch

    ids = torch.tensor(_inputs()["input_ids"])
    with torch.no_grad():
        out = model.generate(input_ids=ids, attention_mask=(ids != 0).long(), **GENERATE)
    np.save(folder / "generated.npy", out.numpy())


def _reference():
    return hf_reference("cpmant", _cpmant, _inputs(), extra_save=_save_generate)


def test_logits_hidden_and_generate_match_transformers():
    folder, expected = _reference()
    x = _inputs()
    mask = (x["input_ids"] != 0).astype("int32")
    model = km.CausalLM.from_preset(folder)
    assert type(model).__name__ == "CpmAntCausalLM"
    assert_close(model.predict_on_batch(x), expected["logits"], mask=mask, what="logits")
    assert_backbone_close(model, x, expected, mask=mask)
    out = model.generate({"input_ids": x["input_ids"], "attention_mask": mask}, **GENERATE)
    np.testing.assert_array_equal(np.asarray(out), np.load(folder / "generated.npy"))


def test_save_to_preset_reloads_in_transformers(tmp_path):
    import torch
    from transformers import CpmAntForCausalLM

    folder, expected = _reference()
    model = km.CausalLM.from_preset(folder)
    model.save_to_preset(tmp_path / "saved")
    hf = CpmAntForCausalLM.from_pretrained(tmp_path / "saved").eval()
    x = _inputs()
    with torch.no_grad():
        logits = hf(input_ids=torch.tensor(x["input_ids"])).logits.numpy()
    assert_close(logits, expected["logits"], mask=x["input_ids"] != 0, what="reloaded logits")
    assert_keras_round_trip(model, x, tmp_path)


def test_bad_config_values_raise(tmp_path):
    folder, _ = _reference()
    config = json.loads((folder / "config.json").read_text())
    for key, value in (("prompt_types", 2), ("segment_types", 1), ("dim_head", 0)):
        bad = tmp_path / key
        bad.mkdir()
        (bad / "config.json").write_text(json.dumps(dict(config, **{key: value})))
        with pytest.raises(ConfigError, match=key):
            km.Backbone.from_preset(bad)

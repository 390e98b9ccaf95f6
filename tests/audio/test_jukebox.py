"""Jukebox (removed from Transformers 5) against references recorded with Transformers 4.57.1
(tests/audio/removed_golden/record_jukebox.py): the VQ-VAE's codes and decoded audio, every prior's
logits and losses (top merged lyrics+music prior with timing conditioning; two upsamplers conditioned
on the upper level's codes), the labels' metadata, and the tokenizer's ids. Sampling is not covered
(no reference: see the recording script)."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

import keras_models as km
from keras_models.errors import ConfigError, InputError
from keras_models.models.jukebox import JukeboxBackbone, JukeboxTokenizer
from tests.parity import assert_close, to_numpy

GOLDEN = Path(__file__).parent / "removed_golden"
FOLDER = GOLDEN / "jukebox" / "merged"


@pytest.fixture(scope="module")
def model_and_data():
    return km.Backbone.from_preset(FOLDER), dict(np.load(GOLDEN / "jukebox.npz"))


def test_jukebox_vqvae(model_and_data):
    model, data = model_and_data
    assert isinstance(model, JukeboxBackbone)
    codes = model.encode(data["in_audio"])
    for lvl in range(3):
        np.testing.assert_array_equal(to_numpy(codes[lvl]), data[f"merged__codes_{lvl}"])
    for start in range(3):
        assert_close(model.decode([data[f"merged__codes_{lvl}"] for lvl in range(start, 3)], start_level=start),
                     data[f"merged__decoded_{start}"], what=f"jukebox decode from level {start}")


@pytest.mark.parametrize("level", [0, 1, 2])
def test_jukebox_priors(model_and_data, level):
    model, data = model_and_data
    music = [data[f"merged__codes_{lvl}"] for lvl in (2, 1, 0)]  # prior levels: coarsest first
    labels = data["merged__labels"][level]
    labels = labels[labels != -9][None].repeat(2, 0)
    meta = model.get_metadata(labels, level, start=0, total_length=32, offset=0)
    np.testing.assert_array_equal(meta, data[f"merged__prior{level}_metadata"])
    out = model.prior_logits(level, music[level], [music[level - 1]] if level else [], meta)
    assert_close(out["logits"], data[f"merged__prior{level}_logits"], what=f"jukebox prior {level} logits")
    for k in ("loss", "encoder_loss", "next_token_prediction_loss"):
        assert_close(out[k], data[f"merged__prior{level}_{k}"], what=f"jukebox prior {level} {k}")


def test_jukebox_tokenizer():
    ref = json.loads((GOLDEN / "jukebox" / "tokenizer_ids.json").read_text())
    for name, folder in (("v3", FOLDER), ("v2", GOLDEN / "jukebox" / "tokenizer_v2")):
        tok = JukeboxTokenizer.from_preset(folder)
        for case, want in zip(ref["cases"], ref["ids"][name]):
            assert tok(*case)["input_ids"] == want, (name, case)


def test_jukebox_errors(model_and_data, tmp_path):
    model, data = model_and_data
    with pytest.raises(InputError, match="input_values"):
        model.encode(data["in_audio"][:, :30])
    with pytest.raises(InputError, match="music_tokens_conds"):
        model.prior_logits(1, data["merged__codes_1"], [], data["merged__prior1_metadata"])
    base = json.loads((FOLDER / "config.json").read_text())
    for change, match in (({"prior_config_list": [{**base["prior_config_list"][0], "num_layers": 16},
                                                  *base["prior_config_list"][1:]]}, "prime_attn"),
                          ({"prior_config_list": [{**base["prior_config_list"][0],
                                                   "attention_pattern": "full_dense_attention"},
                                                  *base["prior_config_list"][1:]]}, "attention_pattern"),
                          ({"vqvae_config": {}}, "levels")):
        folder = tmp_path / "bad"
        shutil.copytree(FOLDER, folder, dirs_exist_ok=True)
        (folder / "config.json").write_text(json.dumps({**base, **change}))
        with pytest.raises(ConfigError, match=match):
            km.Backbone.from_preset(folder)

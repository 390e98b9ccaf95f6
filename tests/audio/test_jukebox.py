"""Jukebox (removed from Transformers 5) against references recorded with Transformers 4.57.1
(tests/audio/removed_golden/record_jukebox.py): the VQ-VAE's codes and decoded audio, every prior's
logits and losses (top merged lyrics+music prior with timing conditioning, 16 layers of the released
enc_dec_with_lyrics pattern so prime attention at layer 15; a 48-layer one for every type of it, dense at
layer 47 included; two upsamplers conditioned on the upper level's codes), the labels' metadata, the tokenizer's ids, and greedy sampling (top_k=1):
ancestral over all three levels, continued from a waveform's codes, and the top level over two
overlapping windows, equal codes (and the top prior's raw lyrics+music ids) and decoded audio."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

import keras_models as km
from keras_models.errors import ConfigError, InputError
from keras_models.models.jukebox import JukeboxBackbone, JukeboxTokenizer
from tests.parity import assert_close, jit_under_jax, to_numpy

GOLDEN = Path(__file__).parent / "removed_golden"
FOLDER = GOLDEN / "jukebox" / "merged"
_FACTORED = ("block_attn", "transpose_block_attn", "prev_block_attn")


def _prime_audio():
    return dict(np.load(GOLDEN / "jukebox.npz"))["in_audio"][:, :16]


@pytest.fixture(scope="module")
def model_and_data():
    return km.Backbone.from_preset(FOLDER), dict(np.load(GOLDEN / "jukebox.npz"))


def test_jukebox_vqvae(model_and_data):
    model, data = model_and_data
    assert isinstance(model, JukeboxBackbone)
    codes = jit_under_jax(model.encode)(data["in_audio"])
    for lvl in range(3):
        np.testing.assert_array_equal(to_numpy(codes[lvl]), data[f"merged__codes_{lvl}"])
    for start in range(3):
        decode = jit_under_jax(lambda codes: model.decode(codes, start_level=start))
        assert_close(decode([data[f"merged__codes_{lvl}"] for lvl in range(start, 3)]),
                     data[f"merged__decoded_{start}"], what=f"jukebox decode from level {start}")


@pytest.mark.parametrize("level", [0, 1, 2])
def test_jukebox_priors(model_and_data, level):
    model, data = model_and_data
    music = [data[f"merged__codes_{lvl}"] for lvl in (2, 1, 0)]  # prior levels: coarsest first
    labels = data["merged__labels"][level]
    labels = labels[labels != -9][None].repeat(2, 0)
    meta = model.get_metadata(labels, level, start=0, total_length=32, offset=0)
    np.testing.assert_array_equal(meta, data[f"merged__prior{level}_metadata"])
    out = jit_under_jax(lambda *a: model.prior_logits(level, *a))(music[level], [music[level - 1]] if level else [],
                                                                  meta)
    assert_close(out["logits"], data[f"merged__prior{level}_logits"], what=f"jukebox prior {level} logits")
    for k in ("loss", "encoder_loss", "next_token_prediction_loss"):
        assert_close(out[k], data[f"merged__prior{level}_{k}"], what=f"jukebox prior {level} {k}")


@pytest.fixture
def one_torch_thread():
    """The sampling loop runs ~100 steps of 8-wide ops: on a loaded 2-core box torch's intra-op
    threads cost ~20x the ops themselves (8.6 s vs 0.3 s), so this test runs torch on one thread."""
    import keras

    if keras.backend.backend() != "torch":
        yield
        return
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(n)


def test_jukebox_sampling(model_and_data, one_torch_thread):
    model, _ = model_and_data
    ref = dict(np.load(GOLDEN / "jukebox_sample.npz"))
    labels = [ref[f"labels_{lvl}"] for lvl in range(3)]
    top, merged = model.priors[0], []
    sample = top.sample

    def recording(*args):  # the top prior's raw lyrics+music ids, as the recording script keeps them
        out = sample(*args)
        merged.append(out[1])
        return out

    top.sample = recording
    cases = {"ancestral": lambda: model.ancestral_sample(labels, n_samples=2, sample_length=32, top_k=1),
             "primed": lambda: model.continue_sample([ref[f"primes_{lvl}"] for lvl in range(3)], labels,
                                                     sample_length=32, top_k=1),
             "top_windows": lambda: model.ancestral_sample(labels, n_samples=2, sample_length=48, sample_levels=[0],
                                                           top_k=1)}
    try:
        for name, run in cases.items():
            merged.clear()
            out = run()
            for lvl in range(3):
                np.testing.assert_array_equal(out["music_tokens"][lvl], ref[f"{name}__codes_{lvl}"], err_msg=name)
            want = [ref[k] for k in sorted(ref) if k.startswith(f"{name}__top_merged_")]
            assert len(merged) == len(want), name
            for got, exp in zip(merged, want):
                np.testing.assert_array_equal(got, exp, err_msg=name)
            assert_close(out["audio_values"], ref[f"{name}__audio"], what=f"jukebox {name} audio")
    finally:
        top.sample = sample
    # primed_sample = continue_sample from the waveform's codes (in prior order)
    primed = model.primed_sample(_prime_audio(), labels, sample_length=32, top_k=1, sample_levels=[0])
    np.testing.assert_array_equal(primed["music_tokens"][0], ref["primed__codes_0"])
    # drawn (top_k=0 / top_p): the same tokens for a seed, in range
    a, b = (model.ancestral_sample([x[:1] for x in labels], n_samples=2, sample_length=32, sample_levels=[0],
                                   top_p=0.9, seed=3) for _ in range(2))
    np.testing.assert_array_equal(a["music_tokens"][0], b["music_tokens"][0])
    assert a["music_tokens"][0].shape == (2, 4) and (a["music_tokens"][0] >= 0).all()
    with pytest.raises(InputError, match="labels"):
        model.ancestral_sample(labels[:2], sample_length=32)
    with pytest.raises(InputError, match="sample_levels"):
        model.ancestral_sample(labels, n_samples=2, sample_length=32, sample_levels=[3])


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
    for change, match in (({"prior_config_list": [{**base["prior_config_list"][0], "is_encoder_decoder": False},
                                                  *base["prior_config_list"][1:]]}, "lyric encoder"),
                          ({"prior_config_list": [{**base["prior_config_list"][0],
                                                   "attention_pattern": "full_dense_attention"},
                                                  *base["prior_config_list"][1:]]}, "attention_pattern"),
                          ({"vqvae_config": {}}, "levels")):
        folder = tmp_path / "bad"
        shutil.copytree(FOLDER, folder, dirs_exist_ok=True)
        (folder / "config.json").write_text(json.dumps({**base, **change}))
        with pytest.raises(ConfigError, match=match):
            km.Backbone.from_preset(folder)


def _merged48():
    model = km.Backbone.from_preset(GOLDEN / "jukebox" / "merged48")
    assert [i for i, f in enumerate(model.priors[0].attn_funcs) if f not in _FACTORED] == [15, 31, 47]
    return model


def test_jukebox_every_attention_type():
    """A 48-layer enc_dec_with_lyrics top prior (merged48): every type of the released pattern (prime
    attention at layers 15 and 31, dense at 47): logits and losses equal 4.57.1's."""
    model = _merged48()
    data = dict(np.load(GOLDEN / "jukebox.npz"))
    out = jit_under_jax(lambda *a: model.prior_logits(0, *a))(data["merged48__codes_2"], [],
                                                              data["merged48__prior0_metadata"])
    assert_close(out["logits"], data["merged48__prior0_logits"], what="jukebox 48-layer top prior logits")
    for k in ("loss", "encoder_loss", "next_token_prediction_loss"):
        assert_close(out[k], data[f"merged48__prior0_{k}"], what=f"jukebox 48-layer top prior {k}")


# CI time: in the torch pass only (compiling the 48-layer sampling step costs ~10 s per jax / tensorflow
# pass); the sampling step's prime attention runs on every backend in test_jukebox_sampling's 16-layer prior.
@pytest.mark.backend_independent
def test_jukebox_every_attention_type_sampling(one_torch_thread):
    """The 48-layer top prior's greedy window (its dense layer 47 in the sampling step) equals 4.57.1's."""
    model = _merged48()
    ref = dict(np.load(GOLDEN / "jukebox_sample.npz"))
    labels = [ref[f"labels_{lvl}"] for lvl in range(3)]
    out = model.ancestral_sample(labels, n_samples=2, sample_length=32, sample_levels=[0], top_k=1)
    np.testing.assert_array_equal(out["music_tokens"][0], ref["l48__ancestral_top__codes_0"])
    assert_close(out["audio_values"], ref["l48__ancestral_top__audio"], what="jukebox 48-layer sample audio")


@pytest.mark.backend_independent  # configuration checks and variable shapes only
def test_jukebox_released_config_builds():
    """openai/jukebox-1b-lyrics's prior settings (Transformers 4.57.1's JukeboxPriorConfig defaults: a
    72-layer enc_dec_with_lyrics top prior over 384 lyrics + 6144 music positions in 64 blocks, prime
    attention at layers 15, 31, 63 and dense at 47; raw_column_previous_row_attention upsamplers), at a tiny
    width: the model builds (no weights)."""
    top = dict(hidden_size=8, n_heads=2, attention_multiplier=0.25 * 4, mlp_multiplier=1.0, blocks=64, n_ctx=6144,
               num_layers=72, nb_relevant_lyric_tokens=384, is_encoder_decoder=True, attention_pattern="enc_dec_with_lyrics",
               music_vocab_size=2048, lyric_vocab_size=80, metadata_dims=[604, 7898], res_conv_width=128,
               res_conv_depth=3, res_downs_t=[3, 2, 2], res_strides_t=[2, 2, 2], res_dilation_growth_rate=1,
               timing_dims=64, mask=True, level=0, merged_decoder=True)
    ups = [dict(top, level=lvl, n_ctx=8192, blocks=128, num_layers=3, nb_relevant_lyric_tokens=0,
                is_encoder_decoder=False, attention_pattern="raw_column_previous_row_attention", merged_decoder=False)
           for lvl in (1, 2)]
    config = {"vqvae_config": dict(levels=3, embed_dim=4, nb_discrete_codes=2048, res_conv_width=4, res_conv_depth=1,
                                   multipliers=[2, 1, 1], res_downs_t=[3, 2, 2], res_strides_t=[2, 2, 2],
                                   res_dilation_growth_rate=3, conv_input_shape=1),
              "prior_config_list": [top, *ups], "sampling_rate": 44100, "timing_dims": 64, "min_duration": 0,
              "max_duration": 600.0, "max_nb_genres": 5}
    model = JukeboxBackbone(**JukeboxBackbone.config_kwargs(config))
    prior = model.priors[0]
    assert prior.n_ctx == 6528 and prior.block_ctx == 102 and prior.prime_len == 448
    assert [i for i, f in enumerate(prior.attn_funcs) if f == "prime_attn"] == [15, 31, 63]
    assert prior.attn_funcs[47] == "dense_attn"
    prior.build()
    assert len(prior.params) > 72 * 12

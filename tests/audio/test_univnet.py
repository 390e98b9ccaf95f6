"""UnivNet against tiny random Transformers models: the waveform given the same noise, on a padded
batch (Transformers' padding_mask only gives waveform_lengths), for two configs: two LVC blocks
(odd and even strides, kernel sizes 3 and 5, dilations (1, 2) and (1, 3, 2), leaky slope 0.1) and
one block (stride 3, kernel-predictor conv size 5, no kernel-predictor residual blocks); drawn noise
(seeded, deterministic); a .keras round trip; save_to_preset reloaded by Transformers; bad config
values named."""

import json

import numpy as np
import pytest

import keras_models as km
from tests.parity import assert_close, cached_folder, jit_under_jax, randomize_weights, to_numpy

COMMON = dict(model_in_channels=8, kernel_predictor_hidden_channels=8, num_mel_bins=6)
CASES = {
    "two_blocks": dict(model_hidden_channels=4, resblock_kernel_sizes=[3, 5], resblock_stride_sizes=[2, 3],
                       resblock_dilation_sizes=[[1, 2], [1, 3, 2]], kernel_predictor_num_blocks=2,
                       leaky_relu_slope=0.1),
    "one_block": dict(model_hidden_channels=6, resblock_kernel_sizes=[3], resblock_stride_sizes=[3],
                      resblock_dilation_sizes=[[2]], kernel_predictor_num_blocks=0, kernel_predictor_conv_size=5),
}
FRAMES = 7


def _inputs(case):
    rng = np.random.RandomState(5)
    mel = rng.randn(2, FRAMES, COMMON["num_mel_bins"]).astype("float32")
    mask = np.ones((2, FRAMES), "int64")
    mask[1, 5:] = 0
    mel[1, 5:] = -11.5129  # the feature extractor's padding value (log of its floor)
    noise = rng.randn(2, FRAMES, COMMON["model_in_channels"]).astype("float32")
    return {"input_features": mel, "noise_sequence": noise, "padding_mask": mask}


def _reference(case):
    def build(tmp):
        import torch
        import transformers

        torch.manual_seed(0)
        model = transformers.UnivNetModel(transformers.UnivNetConfig(**COMMON, **CASES[case])).eval()
        randomize_weights(model)
        model.save_pretrained(tmp / "model")
        with torch.no_grad():
            out = model(**{k: torch.tensor(v) for k, v in _inputs(case).items()})
        np.savez(tmp / "expected.npz", waveforms=out.waveforms.numpy(), lengths=out.waveform_lengths.numpy())

    folder = cached_folder(f"audio-univnet-{case}-{_key()}", build)
    return folder / "model", dict(np.load(folder / "expected.npz"))


def _key():
    import hashlib
    import inspect
    import sys

    import transformers

    return hashlib.sha1((inspect.getsource(sys.modules[__name__]) + transformers.__version__).encode()).hexdigest()[:10]


@pytest.mark.parametrize("case", sorted(CASES))
def test_waveform_parity(case, tmp_path):
    folder, expected = _reference(case)
    model = km.Backbone.from_preset(folder)
    inputs = _inputs(case)
    assert expected["waveforms"].std() > 0.05, "degenerate reference"
    out = model.predict_on_batch(inputs)
    assert_close(out["waveforms"], expected["waveforms"], what=f"{case} waveforms")
    np.testing.assert_array_equal(to_numpy(out["waveform_lengths"]), expected["lengths"])
    if case == "one_block":
        # drawn noise: deterministic for a seed, of the waveform's shape; .keras round trip
        import keras

        draw = jit_under_jax(lambda mel: model({"input_features": mel}, seed=3)["waveforms"])
        a, b = (to_numpy(draw(inputs["input_features"][:1])) for _ in range(2))
        np.testing.assert_array_equal(a, b)
        assert a.shape == (1, FRAMES * 3)
        c, d = (model.predict_on_batch({"input_features": inputs["input_features"]})["waveforms"] for _ in range(2))
        assert c.shape == (2, FRAMES * 3) and np.abs(c - d).max() > 1e-3, "unseeded noise should differ per call"
        from keras_models.errors import InputError

        with pytest.raises(InputError, match="input_features"):
            model({"input_features": inputs["input_features"][:, :3]})
        model.save(tmp_path / "m.keras")
        restored = keras.saving.load_model(tmp_path / "m.keras")
        assert type(restored) is type(model) and restored.spec == model.spec
        assert_close(restored.predict_on_batch(inputs)["waveforms"], expected["waveforms"], what="restored")


def test_univnet_reloads_in_transformers(tmp_path):
    import torch
    import transformers

    for case in sorted(CASES):
        folder, expected = _reference(case)
        km.Backbone.from_preset(folder).save_to_preset(tmp_path / case)
        model = transformers.UnivNetModel.from_pretrained(tmp_path / case).eval()
        with torch.no_grad():
            out = model(**{k: torch.tensor(v) for k, v in _inputs(case).items()})
        np.testing.assert_allclose(out.waveforms.numpy(), expected["waveforms"], atol=1e-6)


def test_bad_config_is_named(tmp_path):
    from keras_models.errors import ConfigError

    folder, _ = _reference("two_blocks")
    config = json.loads((folder / "config.json").read_text())
    for key, value in (("resblock_kernel_sizes", [3, 4]), ("resblock_stride_sizes", [3]),
                       ("kernel_predictor_hidden_channels", 5), ("kernel_predictor_conv_size", 2),
                       ("resblock_dilation_sizes", [[1], [0]]), ("leaky_relu_slope", "x")):
        bad = tmp_path / key
        bad.mkdir()
        for f in folder.iterdir():
            (bad / f.name).write_bytes(f.read_bytes())
        (bad / "config.json").write_text(json.dumps({**config, key: value}))
        with pytest.raises(ConfigError, match=key):
            km.Backbone.from_preset(bad)


def test_feature_extractor_equals_transformers(tmp_path):
    from transformers import UnivNetFeatureExtractor

    from keras_models.errors import ConfigError

    rng = np.random.RandomState(0)
    waves = [0.3 * rng.randn(700).astype("float32"), 0.3 * rng.randn(530).astype("float32")]
    for i, kwargs in enumerate((
            dict(sampling_rate=8000, num_mel_bins=10, hop_length=64, win_length=256, filter_length=256,
                 model_in_channels=5),
            dict(sampling_rate=8000, num_mel_bins=12, hop_length=80, win_length=256, filter_length=None, fmin=50.0,
                 fmax=3000.0, do_normalize=True, model_in_channels=3, compression_factor=2.0))):
        theirs = UnivNetFeatureExtractor(**kwargs)
        theirs.save_pretrained(tmp_path / str(i))
        ours = km.AudioFeatureExtractor.from_preset(tmp_path / str(i))
        for call in ({}, dict(pad_end=True, pad_length=2), dict(padding=False),
                     dict(max_length=600, padding="max_length", pad_to_multiple_of=7)):
            want = theirs(waves, sampling_rate=8000, generator=np.random.default_rng(1),
                          return_tensors=None if call.get("padding") is False else "np", **call)
            got = ours(waves, sampling_rate=8000, generator=np.random.default_rng(1), **call)
            assert list(got) == list(want.keys())
            for k in want.keys():
                assert len(got[k]) == len(want[k])
                for a, b in zip(got[k], want[k]):
                    assert a.dtype == np.asarray(b).dtype
                    np.testing.assert_array_equal(a, np.asarray(b))
    ours.save_pretrained(tmp_path / "ours")
    assert UnivNetFeatureExtractor.from_pretrained(tmp_path / "ours").n_fft == 256
    for key, value in (("win_length", 100), ("win_function", "hamming_window"), ("fmax", -1.0)):
        with pytest.raises(ConfigError, match=key):
            type(ours)(**{**kwargs, key: value})

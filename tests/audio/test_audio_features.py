"""Audio feature extractors (numpy) against Transformers' extractors on a padded batch of
different lengths, and the input errors that name the bad input."""

import numpy as np
import pytest

import keras_models as km
from keras_models.errors import InputError

RNG = np.random.RandomState(0)
WAVES = [RNG.randn(n).astype("float32") * 0.1 for n in (8000, 5000, 6173)]


def _pair(tmp_path, hf_extractor):
    hf_extractor.save_pretrained(tmp_path)
    return km.AudioFeatureExtractor.from_preset(tmp_path)


@pytest.mark.parametrize("mask", [True, False])
def test_wav2vec2_extractor(tmp_path, mask):
    import transformers

    hf = transformers.Wav2Vec2FeatureExtractor(return_attention_mask=mask, padding_value=0.0)
    ours = _pair(tmp_path, hf)
    assert type(ours).__name__ == "Wav2Vec2FeatureExtractor"
    for kw in ({"padding": True}, {"padding": "max_length", "max_length": 7000, "truncation": True}):
        ref = hf(WAVES, sampling_rate=16000, return_tensors="np", **kw)
        got = ours(WAVES, sampling_rate=16000, **kw)
        assert sorted(got) == sorted(ref.keys())
        for k in ref:
            assert got[k].shape == ref[k].shape
            np.testing.assert_allclose(got[k], ref[k], atol=1e-4)
    one = ours(WAVES[0], sampling_rate=16000)["input_values"]  # a single utterance: a batch of one
    assert one.shape == (1, 8000)


@pytest.mark.parametrize("n_mels,call_mask", [(80, False), (40, True)])
def test_whisper_extractor(tmp_path, n_mels, call_mask):
    import transformers

    hf = transformers.WhisperFeatureExtractor(feature_size=n_mels, chunk_length=2)
    ours = _pair(tmp_path, hf)
    assert type(ours).__name__ == "WhisperFeatureExtractor"
    ref = hf(WAVES, sampling_rate=16000, return_tensors="np", return_attention_mask=call_mask)
    got = ours(WAVES, sampling_rate=16000, return_attention_mask=call_mask)
    assert got["input_features"].shape == ref["input_features"].shape == (3, n_mels, 200)
    np.testing.assert_allclose(got["input_features"], ref["input_features"], atol=1e-4)
    if call_mask:
        np.testing.assert_array_equal(got["attention_mask"], ref["attention_mask"])
    # do_normalize and a longer-than-chunk waveform (cut to chunk_length seconds)
    long = [RNG.randn(40000).astype("float32"), WAVES[1]]
    ref = hf(long, sampling_rate=16000, return_tensors="np", do_normalize=True)
    got = ours(long, sampling_rate=16000, do_normalize=True)
    np.testing.assert_allclose(got["input_features"], ref["input_features"], atol=1e-4)
    assert sorted(got) == sorted(ref.keys())
    np.testing.assert_array_equal(got["attention_mask"], ref["attention_mask"])


def test_ast_extractor(tmp_path):
    import transformers

    hf = transformers.ASTFeatureExtractor(num_mel_bins=24, max_length=40)
    ours = _pair(tmp_path, hf)
    ref = hf(WAVES, sampling_rate=16000, return_tensors="np")
    got = ours(WAVES, sampling_rate=16000)
    assert got["input_values"].shape == ref["input_values"].shape == (3, 40, 24)
    np.testing.assert_allclose(got["input_values"], ref["input_values"], atol=1e-4)


def test_save_round_trip(tmp_path):
    import transformers

    ours = _pair(tmp_path / "a", transformers.WhisperFeatureExtractor(feature_size=40))
    ours.save_pretrained(tmp_path / "b")
    again = transformers.WhisperFeatureExtractor.from_pretrained(tmp_path / "b")
    assert again.feature_size == 40 and again.n_samples == ours.n_samples


def test_bad_audio_names_the_input(tmp_path):
    import transformers

    ours = _pair(tmp_path, transformers.Wav2Vec2FeatureExtractor())
    with pytest.raises(InputError, match="empty"):
        ours([], sampling_rate=16000)
    with pytest.raises(InputError, match=r"waveforms\[1\].*empty"):
        ours([WAVES[0], np.zeros(0, "float32")], sampling_rate=16000)
    with pytest.raises(InputError, match="shape"):
        ours(np.zeros((2, 3, 100), "float32"), sampling_rate=16000)
    bad = WAVES[1].copy()
    bad[7] = np.nan
    with pytest.raises(InputError, match=r"waveforms\[1\].*NaN"):
        ours([WAVES[0], bad], sampling_rate=16000)
    with pytest.raises(InputError, match="8000 Hz"):
        ours(WAVES[0], sampling_rate=4000)
    with pytest.raises(InputError, match="resample=False"):
        ours(WAVES[0], sampling_rate=22050, resample=False)


def test_resampling_or_a_named_missing_package(tmp_path):
    import transformers

    ours = _pair(tmp_path, transformers.Wav2Vec2FeatureExtractor(do_normalize=False))
    try:
        import scipy.signal  # noqa: F401
    except ImportError:
        with pytest.raises(InputError, match="scipy"):
            ours(WAVES[0], sampling_rate=32000)
        return
    got = ours(WAVES[0], sampling_rate=32000)["input_values"]
    assert got.shape == (1, 4000)


def test_processor_config_nested_by_transformers5(tmp_path):
    """A processor saved by Transformers 5 (``WhisperProcessor.save_pretrained``) nests the feature
    extractor in processor_config.json, with no preprocessor_config.json: it loads the same."""
    import transformers

    rng = np.random.RandomState(0)
    extractor = transformers.WhisperFeatureExtractor(feature_size=40, chunk_length=2)
    transformers.WhisperProcessor(extractor, transformers.WhisperTokenizer.from_pretrained(
        _whisper_tokenizer_folder(tmp_path))).save_pretrained(tmp_path / "proc")
    assert not (tmp_path / "proc" / "preprocessor_config.json").exists()
    assert "feature_extractor" in (tmp_path / "proc" / "processor_config.json").read_text()
    ours = km.AudioFeatureExtractor.from_preset(tmp_path / "proc")
    audio = rng.randn(8000).astype("float32")
    want = extractor(audio, sampling_rate=16000, return_tensors="np")["input_features"]
    np.testing.assert_allclose(ours(audio, sampling_rate=16000)["input_features"], want, atol=1e-4)


def _whisper_tokenizer_folder(tmp_path):
    import json

    folder = tmp_path / "tok"
    folder.mkdir()
    vocab = {t: i for i, t in enumerate(["<|endoftext|>", "a", "b", "Ġ", "ab"])}
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "merges.txt").write_text("#version: 0.2\na b\n")
    return folder

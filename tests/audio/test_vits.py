"""VITS against tiny random Transformers models. With noise_scale = noise_scale_duration = 0 the
outputs are a pure function of the weights and the inputs, so waveform, sequence_lengths,
spectrogram and the text encoder's hidden states are compared exactly (fp32 tolerance) on a padded
batch, for the stochastic duration predictor (spline flows; speaking_rate 1.3, gelu, 2 heads,
window 2, no attention biases) and the deterministic one (speaking_rate 0.7, relu, window 3,
a 2-speaker model with speaker embeddings); a compiled call with output_frames under jax;
save_to_preset reloaded by Transformers; a .keras round trip; bad config values named."""

import json

import numpy as np
import pytest

import keras_models as km
from tests.parity import assert_close, cached_folder, jit_under_jax, randomize_weights, to_numpy

COMMON = dict(vocab_size=20, hidden_size=16, num_hidden_layers=2, num_attention_heads=2, ffn_dim=24, flow_size=8,
              spectrogram_bins=10, upsample_initial_channel=16, upsample_rates=[2, 3], upsample_kernel_sizes=[4, 5],
              resblock_kernel_sizes=[3, 5], resblock_dilation_sizes=[[1, 2], [1, 3]], depth_separable_num_layers=2,
              duration_predictor_flow_bins=4, duration_predictor_num_flows=2, duration_predictor_filter_channels=12,
              prior_encoder_num_flows=2, prior_encoder_num_wavenet_layers=2, posterior_encoder_num_wavenet_layers=2,
              wavenet_kernel_size=3, noise_scale=0.0, noise_scale_duration=0.0, layer_norm_eps=1e-4)
CASES = {
    "stochastic": dict(use_stochastic_duration_prediction=True, speaking_rate=1.3, hidden_act="gelu", window_size=2,
                       use_bias=False, ffn_kernel_size=2, duration_predictor_tail_bound=3.0),
    "deterministic": dict(use_stochastic_duration_prediction=False, speaking_rate=0.7, window_size=3,
                          num_speakers=2, speaker_embedding_size=6, wavenet_dilation_rate=2, leaky_relu_slope=0.2),
}


def _inputs(case):
    rng = np.random.RandomState(3)
    ids = rng.randint(1, COMMON["vocab_size"], size=(2, 7)).astype("int64")
    mask = np.ones_like(ids)
    ids[1, 5:] = 0
    mask[1, 5:] = 0
    out = {"input_ids": ids, "attention_mask": mask}
    if case == "deterministic":
        out["speaker_id"] = 1
    return out


def _torch_inputs(case):
    import torch

    return {k: (torch.tensor(v) if isinstance(v, np.ndarray) else v) for k, v in _inputs(case).items()}


def _key():
    import hashlib
    import inspect
    import sys

    import transformers

    return hashlib.sha1((inspect.getsource(sys.modules[__name__]) + transformers.__version__).encode()).hexdigest()[:10]


def _reference(case):
    def build(tmp):
        import torch
        import transformers

        torch.manual_seed(0)
        model = transformers.VitsModel(transformers.VitsConfig(**COMMON, **CASES[case])).eval()
        randomize_weights(model)
        with torch.no_grad():  # durations of a few frames per token (log-durations near 0.5)
            dp = model.duration_predictor
            if CASES[case]["use_stochastic_duration_prediction"]:
                dp.flows[0].translate.fill_(-1.0)  # the last flow run in reverse
            else:
                dp.proj.bias.fill_(0.8)
        model.save_pretrained(tmp / "model")
        model = transformers.VitsModel.from_pretrained(tmp / "model").eval()
        with torch.no_grad():
            out = model(**_torch_inputs(case), output_hidden_states=True)
        np.savez(tmp / "expected.npz", waveform=out.waveform.numpy(), lengths=out.sequence_lengths.numpy(),
                 spectrogram=out.spectrogram.numpy().transpose(0, 2, 1),
                 **{f"hidden_{i}": h.numpy() for i, h in enumerate(out.hidden_states)})

    folder = cached_folder(f"audio-vits-{case}-{_key()}", build)
    return folder / "model", dict(np.load(folder / "expected.npz"))


@pytest.mark.one_case_per_pass("case")
@pytest.mark.parametrize("case", sorted(CASES))
def test_vits_parity(case):
    folder, expected = _reference(case)
    model = km.Backbone.from_preset(folder)
    inputs = _inputs(case)
    assert expected["waveform"].std() > 0.05, "degenerate reference"
    assert expected["spectrogram"].shape[1] > 2 * inputs["input_ids"].shape[1], "too few frames for the expansion"
    out = to_numpy(model.synthesize(inputs, output_hidden_states=True))  # compiled (jax, tensorflow)
    np.testing.assert_array_equal(out["sequence_lengths"], expected["lengths"])
    assert out["waveform"].shape == expected["waveform"].shape
    assert_close(out["waveform"], expected["waveform"], what=f"{case} waveform")
    assert_close(out["spectrogram"], expected["spectrogram"], what=f"{case} spectrogram")
    for i, h in enumerate(out["hidden_states"]):
        assert_close(h, expected[f"hidden_{i}"], what=f"{case} hidden state {i}")


def test_vits_speaking_rate_noise_and_keras_round_trip(tmp_path):
    """A speaking rate given at call time (synthesize and the eager call) and seeded noise, on torch
    and tensorflow (the config's speaking rates are in the parity test on every backend); .keras."""
    import keras
    import torch
    import transformers

    folder, expected = _reference("stochastic")
    model = km.Backbone.from_preset(folder)
    inputs = _inputs("stochastic")
    if keras.backend.backend() != "jax":  # jax: each new frame count is a compilation (the parity test has one)
        ref = transformers.VitsModel.from_pretrained(folder).eval()
        with torch.no_grad():
            want = ref(**_torch_inputs("stochastic"), speaking_rate=0.8)
        for out in map(to_numpy, (model.synthesize(inputs, speaking_rate=0.8), model(inputs, speaking_rate=0.8))):
            np.testing.assert_array_equal(out["sequence_lengths"], want.sequence_lengths.numpy())
            assert out["waveform"].shape == tuple(want.waveform.shape)
            assert_close(out["waveform"], want.waveform.numpy(), what="speaking_rate 0.8 waveform")
        noisy = [to_numpy(model.synthesize(inputs, noise_scale=0.5, noise_scale_duration=0.5, seed=1))
                 for _ in range(2)]
        np.testing.assert_array_equal(noisy[0]["waveform"], noisy[1]["waveform"])
        assert np.abs(noisy[0]["spectrogram"][:, :5] - expected["spectrogram"][:, :5]).max() > 1e-3, "no noise"
    model.save(tmp_path / "m.keras")
    restored = keras.saving.load_model(tmp_path / "m.keras")
    assert type(restored) is type(model) and restored.spec == model.spec
    for a, b in zip(model.weights, restored.weights):  # (outputs: the parity test; one compilation less here)
        assert a.path == b.path
        np.testing.assert_array_equal(to_numpy(a), to_numpy(b))


def test_vits_tokenizer_equals_transformers(tmp_path):
    from transformers import VitsTokenizer

    from keras_models.errors import InputError

    vocab = {c: i for i, c in enumerate(list("_abcde fgh'-") + ["ñ", "ţ", "A"])}
    (tmp_path / "vocab.json").write_text(json.dumps(vocab))
    texts = ["Abc De!", "  hé ñx  ", "ab<pad>c", "<unk>ab<pad>", "", "AAa țţ", "x"]
    for i, kw in enumerate((dict(), dict(add_blank=False), dict(normalize=False), dict(language="ron"))):
        theirs = VitsTokenizer(str(tmp_path / "vocab.json"), phonemize=False, **kw)
        theirs.save_pretrained(tmp_path / str(i))
        ours = km.Tokenizer.from_preset(tmp_path / str(i))
        for t in texts:
            assert ours.encode(t) == theirs(t).input_ids, (kw, t)
            assert ours.decode(theirs(t).input_ids) == theirs.decode(theirs(t).input_ids)
        want, got = theirs(texts, padding=True), ours(texts)
        np.testing.assert_array_equal(got["input_ids"], np.array(want["input_ids"]))
        np.testing.assert_array_equal(got["attention_mask"], np.array(want["attention_mask"]))
    ours.save_to_preset(tmp_path / "ours")
    again = VitsTokenizer.from_pretrained(tmp_path / "ours")
    assert again(texts[0]).input_ids == ours.encode(texts[0])
    theirs = VitsTokenizer(str(tmp_path / "vocab.json"))  # phonemize=True (the default)
    theirs.save_pretrained(tmp_path / "phon")
    try:
        import phonemizer  # noqa: F401
    except ImportError:
        with pytest.raises(InputError, match="phonemize"):
            km.Tokenizer.from_preset(tmp_path / "phon").encode("abc")


def test_vits_reloads_in_transformers(tmp_path):
    import torch
    import transformers

    for case in sorted(CASES):
        folder, expected = _reference(case)
        km.Backbone.from_preset(folder).save_to_preset(tmp_path / case)
        model = transformers.VitsModel.from_pretrained(tmp_path / case).eval()
        with torch.no_grad():
            out = model(**_torch_inputs(case))
        np.testing.assert_array_equal(out.sequence_lengths.numpy(), expected["lengths"])
        np.testing.assert_allclose(out.waveform.numpy(), expected["waveform"], atol=1e-6)


def test_vits_bad_config_is_named(tmp_path):
    from keras_models.errors import ConfigError

    folder, _ = _reference("stochastic")
    config = json.loads((folder / "config.json").read_text())
    for key, value in (("upsample_kernel_sizes", [4]), ("depth_separable_channels", 4), ("wavenet_kernel_size", 4),
                       ("window_size", 0), ("speaking_rate", 0), ("hidden_act", "nope"),
                       ("num_attention_heads", 3), ("resblock_dilation_sizes", [[1], [0]])):
        bad = tmp_path / key
        bad.mkdir()
        for f in folder.iterdir():
            (bad / f.name).write_bytes(f.read_bytes())
        (bad / "config.json").write_text(json.dumps({**config, key: value}))
        with pytest.raises(ConfigError, match=key):
            km.Backbone.from_preset(bad)


def test_vits_tf_graph_any_length(monkeypatch):
    """tensorflow: synthesize's graph (KM_VITS_TF_GRAPH, on by default) is traced once for every text
    and frame count (the second shape relaxes them) and equals the eager path (the switch off)."""
    import keras

    if keras.backend.backend() != "tensorflow":
        pytest.skip("the tensorflow graph path")
    folder, _ = _reference("stochastic")
    model = km.Backbone.from_preset(folder)
    inputs = _inputs("stochastic")
    for n in (7, 4, 6):  # static trace, relaxed trace, reuse
        feed = {k: v[:, :n] for k, v in inputs.items()}
        monkeypatch.setenv("KM_VITS_TF_GRAPH", "1")
        graph = to_numpy(model.synthesize(feed))
        monkeypatch.setenv("KM_VITS_TF_GRAPH", "0")
        eager = to_numpy(model.synthesize(feed))
        assert graph["waveform"].shape == eager["waveform"].shape
        assert_close(graph["waveform"], eager["waveform"], what=f"{n} tokens waveform")
    traced = [v for k, v in model._km_compiled.items() if k[-1] is True]
    assert traced and all(len(f._list_all_concrete_functions()) <= 2 for f in traced)

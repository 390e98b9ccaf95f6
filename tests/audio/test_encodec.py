"""EnCodec against tiny random Transformers models: codes (exactly equal) and decoded audio on a
padded batch, for a 24 kHz-style config (mono, causal weight-normalised convs, reflect padding, one
chunk, its higher bandwidth: two codebooks) and a 48 kHz-style one (stereo, normalize, overlapping
chunks joined by overlap-add, centred time-group-normalised convs, constant padding, no conv
shortcut, two residual layers, one codebook); the forward call (given / default bandwidth); a
.keras round trip; EncodecFeatureExtractor against Transformers'; save_to_preset reloaded by
Transformers; bad config values named."""

import json

import numpy as np
import pytest

import keras_models as km
from tests.parity import assert_close, cached_folder, randomize_weights, to_numpy

RNG = np.random.RandomState(3)
COMMON = dict(hidden_size=8, num_filters=4, codebook_size=16, sampling_rate=1000, kernel_size=5, last_kernel_size=3)
CASES = {
    # frame rate 167 Hz, 4 bits: 1.0 kbps -> 1 quantizer, 2.0 -> 2 (the model's)
    "mono": dict(upsampling_ratios=[3, 2], target_bandwidths=[1.0, 2.0], num_lstm_layers=2, residual_kernel_size=5,
                 dilation_growth_rate=3),
    # 60-sample chunks every 45 samples (overlap 0.25), per-chunk RMS scales
    # frame rate 250 Hz: 1.0 kbps -> 1 quantizer
    "stereo_chunked": dict(upsampling_ratios=[2, 2], target_bandwidths=[1.0], audio_channels=2, normalize=True,
                           chunk_length_s=0.06, overlap=0.25, use_causal_conv=False, norm_type="time_group_norm",
                           pad_mode="constant", use_conv_shortcut=False, num_residual_layers=2, num_lstm_layers=1),
}
BANDWIDTH = {"mono": 2.0, "stereo_chunked": 1.0}  # the forward call: the given one / the default (first)


def _inputs(case):
    channels = CASES[case].get("audio_channels", 1)
    x = RNG.__class__(4).randn(2, channels, 150).astype("float32")
    mask = np.ones((2, 150), "int64")
    mask[1, 101:] = 0
    x[1, :, 101:] = 0.0
    return x, mask


def _reference(case):
    """(folder, expected): the model saved, and its encode / decode / forward outputs."""

    def build(tmp):
        import torch
        import transformers

        torch.manual_seed(0)
        model = transformers.EncodecModel(transformers.EncodecConfig(**{**COMMON, **CASES[case]})).eval()
        randomize_weights(model)
        with torch.no_grad():  # codebooks (buffers: zeros in Transformers' init) spread like the embeddings
            emb = model.encoder(torch.tensor(_inputs(case)[0][..., :60])).transpose(1, 2).reshape(-1, COMMON["hidden_size"])
            for i, layer in enumerate(model.quantizer.layers):
                noise = torch.randn_like(layer.codebook.embed) * emb.std(0) * 0.5 ** i
                layer.codebook.embed.copy_(noise + (emb.mean(0) if i == 0 else 0.0))
        model.save_pretrained(tmp / "model")
        model = transformers.EncodecModel.from_pretrained(tmp / "model").eval()
        x, mask = (torch.tensor(a) for a in _inputs(case))
        with torch.no_grad():
            enc = model.encode(x, mask, bandwidth=BANDWIDTH[case], return_dict=True)
            audio = model.decode(enc.audio_codes, enc.audio_scales, mask, last_frame_pad_length=enc.last_frame_pad_length,
                                 return_dict=True).audio_values
            fwd = model(x, padding_mask=mask, bandwidth=BANDWIDTH[case])
        out = {"codes": enc.audio_codes.numpy(), "audio": audio.numpy(), "pad": np.array(enc.last_frame_pad_length),
               "fwd_codes": fwd.audio_codes.numpy(), "fwd_audio": fwd.audio_values.numpy()}
        if enc.audio_scales[0] is not None:
            out["scales"] = torch.stack(enc.audio_scales).numpy()
        np.savez(tmp / "expected.npz", **out)

    folder = cached_folder(f"audio-encodec-{case}-{_key()}", build)
    return folder / "model", dict(np.load(folder / "expected.npz"))


def _key():
    import hashlib
    import inspect
    import sys

    import transformers

    return hashlib.sha1((inspect.getsource(sys.modules[__name__]) + transformers.__version__).encode()).hexdigest()[:10]


@pytest.mark.parametrize("case", sorted(CASES))
def test_codes_and_audio_parity(case, tmp_path):
    folder, expected = _reference(case)
    model = km.Backbone.from_preset(folder)
    x, mask = _inputs(case)
    enc = model.encode(x, mask, bandwidth=BANDWIDTH[case])
    codes = to_numpy(enc["audio_codes"])
    assert len(np.unique(codes)) > 3, "degenerate reference: the codes hardly vary"
    np.testing.assert_array_equal(codes, expected["codes"])
    assert enc["last_frame_pad_length"] == int(expected["pad"])
    if "scales" in expected:
        assert_close(np.stack([to_numpy(s) for s in enc["audio_scales"]]), expected["scales"], what="scales")
    else:
        assert all(s is None for s in enc["audio_scales"])
    audio = model.decode(enc["audio_codes"], enc["audio_scales"], mask, enc["last_frame_pad_length"])
    assert_close(audio, expected["audio"], what=f"{case} audio")
    out = model({"input_values": x, "padding_mask": mask}, **({"bandwidth": 2.0} if case == "mono" else {}))
    np.testing.assert_array_equal(to_numpy(out["audio_codes"]), expected["fwd_codes"])
    assert_close(out["audio_values"], expected["fwd_audio"], what=f"{case} forward audio")
    if case == "stereo_chunked":  # .keras round trip: class, config, every variable, one decoded chunk
        import keras

        model.save(tmp_path / "m.keras")
        restored = keras.saving.load_model(tmp_path / "m.keras")
        assert type(restored) is type(model) and restored.spec == model.spec
        assert [v.path for v in restored.weights] == [v.path for v in model.weights]
        for a, b in zip(restored.weights, model.weights):
            np.testing.assert_array_equal(a.numpy(), b.numpy())
        chunk = enc["audio_codes"][0]
        assert_close(restored.decode_frame(chunk, enc["audio_scales"][0]), to_numpy(model.decode_frame(
            chunk, enc["audio_scales"][0])), atol=1e-6, what="restored decode")


def test_encodec_reloads_in_transformers(tmp_path):
    import torch
    import transformers

    for case in sorted(CASES):
        folder, expected = _reference(case)
        km.Backbone.from_preset(folder).save_to_preset(tmp_path / case)
        model = transformers.EncodecModel.from_pretrained(tmp_path / case).eval()
        x, mask = (torch.tensor(a) for a in _inputs(case))
        with torch.no_grad():
            fwd = model(x, padding_mask=mask, bandwidth=BANDWIDTH[case])
        np.testing.assert_array_equal(fwd.audio_codes.numpy(), expected["fwd_codes"])
        np.testing.assert_allclose(fwd.audio_values.numpy(), expected["fwd_audio"], atol=1e-5)


def test_feature_extractor_equals_transformers(tmp_path):
    from transformers import EncodecFeatureExtractor

    rng = np.random.RandomState(0)
    for i, (kwargs, waves) in enumerate((
            (dict(feature_size=1, sampling_rate=8000), [rng.randn(130).astype("float32"), rng.randn(97).astype("float32")]),
            (dict(feature_size=2, sampling_rate=8000, chunk_length_s=0.01, overlap=0.25),
             [rng.randn(2, 230).astype("float32"), rng.randn(2, 215).astype("float32")]))):
        theirs = EncodecFeatureExtractor(**kwargs)
        theirs.save_pretrained(tmp_path / str(i))
        ours = km.AudioFeatureExtractor.from_preset(tmp_path / str(i))
        cut = {"truncation": True, "padding": False, **({} if i else {"max_length": 90})}
        for call in ({}, cut):
            want = theirs(waves, sampling_rate=8000, return_tensors="np", **call)
            got = ours(waves, sampling_rate=8000, **call)
            assert sorted(got) == sorted(want.keys())
            for k in want.keys():
                np.testing.assert_array_equal(got[k], want[k])


def test_bad_config_is_named(tmp_path):
    from keras_models.errors import ConfigError

    folder, _ = _reference("mono")
    config = json.loads((folder / "config.json").read_text())
    for key, value in (("norm_type", "batch_norm"), ("pad_mode", "circular"), ("codebook_size", 100),
                       ("overlap", 1.5), ("chunk_length_s", 10**7)):
        bad = tmp_path / key
        bad.mkdir()
        for f in folder.iterdir():
            (bad / f.name).write_bytes(f.read_bytes())
        (bad / "config.json").write_text(json.dumps({**config, key: value}))
        with pytest.raises(ConfigError, match=key):
            km.Backbone.from_preset(bad)
    from keras_models.models.encodec import EncodecFeatureExtractor

    for key, value in (("overlap", "x"), ("chunk_length_s", 0), ("feature_size", 3)):
        with pytest.raises(ConfigError, match=key):
            EncodecFeatureExtractor(**{key: value})


def test_legacy_weight_norm_names(tmp_path):
    """Checkpoints saved before torch's parametrized weight norm name its tensors ``conv.weight_g`` /
    ``conv.weight_v`` (as the hub's EnCodec checkpoints): they load to the same variables."""
    from safetensors.numpy import load_file, save_file

    folder, _ = _reference("mono")
    tensors = load_file(folder / "model.safetensors")
    legacy = {k.replace("parametrizations.weight.original0", "weight_g").replace("parametrizations.weight.original1",
                                                                                   "weight_v"): v
              for k, v in tensors.items()}
    assert sum(k.endswith("weight_g") for k in legacy) > 10
    for f in folder.iterdir():
        if f.name != "model.safetensors":
            (tmp_path / f.name).write_bytes(f.read_bytes())
    save_file(legacy, tmp_path / "model.safetensors", metadata={"format": "pt"})
    want, got = km.Backbone.from_preset(folder), km.Backbone.from_preset(tmp_path)
    for a, b in zip(got.weights, want.weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy())

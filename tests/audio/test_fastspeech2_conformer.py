"""FastSpeech2ConformerHifiGan (the FastSpeech2-Conformer vocoder) against a tiny random
Transformers model: odd options (three upsamplings with kernels != 2 x rate, unequal dilations,
slope 0.3, a normalised input with non-trivial mean / scale) on a batch and a batch of one
spectrogram; the export reloaded by Transformers; a .keras round trip; bad configs refused naming
the key.

The acoustic model (FastSpeech2ConformerModel): spectrogram, encoder state, durations, pitch and
energy on a padded batch at speaking speed 1 and 1.6, bad configs, .keras, the Transformers reload."""

import json

import keras
import numpy as np
import pytest

import keras_models as km
from keras_models.errors import ConfigError
from tests.parity import assert_close, hf_reference


def _hifigan():
    import torch
    from transformers import FastSpeech2ConformerHifiGan, FastSpeech2ConformerHifiGanConfig

    cfg = FastSpeech2ConformerHifiGanConfig(model_in_dim=6, upsample_initial_channel=16, upsample_rates=(2, 3, 1),
                                            upsample_kernel_sizes=(4, 5, 3), resblock_kernel_sizes=(3, 5),
                                            resblock_dilation_sizes=((1, 2), (1, 3, 2)), leaky_relu_slope=0.3,
                                            normalize_before=True)
    model = FastSpeech2ConformerHifiGan(cfg)
    with torch.no_grad():  # buffers the parity helper leaves alone
        model.mean.uniform_(-1, 1)
        model.scale.uniform_(0.5, 2)
    return model


def _reference():
    spectrogram = np.random.RandomState(3).randn(2, 7, 6).astype("float32")

    def record(folder, model):
        import torch

        with torch.no_grad():
            np.save(folder / "waveform.npy", model(torch.tensor(spectrogram)).numpy())

    folder, _ = hf_reference("fastspeech2_conformer_hifigan", _hifigan, {"spectrogram": spectrogram},
                             extra_save=record)
    return folder, spectrogram


def test_fastspeech2_conformer_hifigan_matches_transformers(tmp_path):
    folder, spectrogram = _reference()
    vocoder = km.Backbone.from_preset(folder)
    assert type(vocoder).__name__ == "FastSpeech2ConformerHifiGanBackbone"
    got = vocoder.predict_on_batch({"spectrogram": spectrogram})
    assert got.shape == (2, 7 * 6)
    assert_close(got, np.load(folder / "waveform.npy"), what="waveform")
    assert_close(vocoder.predict_on_batch(spectrogram[:1]), got[:1], what="batch of one")
    cfg = json.loads((folder / "config.json").read_text())
    for key, value in (("upsample_kernel_sizes", [4, 4, 3]), ("resblock_kernel_sizes", [3, 4]),
                       ("upsample_rates", [2, 3])):
        (tmp_path / key).mkdir()
        (tmp_path / key / "config.json").write_text(json.dumps(dict(cfg, **{key: value})))
        with pytest.raises(ConfigError, match=key):
            km.Backbone.from_preset(tmp_path / key, load_weights=False)
    # .keras round trip
    vocoder.save(tmp_path / "v.keras")
    restored = keras.saving.load_model(tmp_path / "v.keras")
    assert type(restored).__name__ == "FastSpeech2ConformerHifiGanBackbone"
    np.testing.assert_allclose(restored.predict_on_batch(spectrogram), got, atol=1e-6)


def test_fastspeech2_conformer_hifigan_reloads_in_transformers(tmp_path):
    import torch
    from transformers import FastSpeech2ConformerHifiGan

    folder, spectrogram = _reference()
    km.Backbone.from_preset(folder).save_to_preset(tmp_path / "vocoder")
    saved = json.loads((tmp_path / "vocoder" / "config.json").read_text())
    assert saved["model_type"] == "fastspeech2_conformer_hifigan" and "sampling_rate" not in saved
    hf = FastSpeech2ConformerHifiGan.from_pretrained(tmp_path / "vocoder").eval()
    with torch.no_grad():
        waveform = hf(torch.tensor(spectrogram)).numpy()
    assert_close(waveform, np.load(folder / "waveform.npy"), what="reloaded waveform")
    # the defaults (8, 8, 2, 2 / 16, 16, 4, 4) are FastSpeech2Conformer's, not SpeechT5's
    (tmp_path / "defaults").mkdir()
    (tmp_path / "defaults" / "config.json").write_text(json.dumps({"model_type": "fastspeech2_conformer_hifigan"}))
    spec = km.Backbone.from_preset(tmp_path / "defaults", load_weights=False).spec
    assert spec.upsample_rates == (8, 8, 2, 2) and spec.upsample_kernel_sizes == (16, 16, 4, 4)


# --- the acoustic model (FastSpeech2ConformerModel) -------------------------------------------------
IDS = np.array([[3, 5, 7, 9, 2, 11], [4, 6, 8, 2, 0, 0]], "int32")
MASK = (np.arange(6)[None] < np.array([[6], [4]])).astype("int32")
OUTPUTS = ("spectrogram", "encoder_last_hidden_state", "duration_outputs", "pitch_outputs", "energy_outputs")


def _acoustic():
    from transformers import FastSpeech2ConformerConfig, FastSpeech2ConformerModel

    # odd options: pre-norm decoder, concat-after encoder, unequal heads / depths, kernels 3 and 5,
    # a 3-wide pitch embedding, a 3-layer post-net, 6 mel bins
    cfg = FastSpeech2ConformerConfig(
        hidden_size=16, vocab_size=20, num_mel_bins=6, encoder_num_attention_heads=2, encoder_layers=1,
        encoder_linear_units=24, decoder_layers=2, decoder_num_attention_heads=4, decoder_linear_units=20,
        speech_decoder_postnet_layers=3, speech_decoder_postnet_units=12, speech_decoder_postnet_kernel=3,
        encoder_kernel_size=3, decoder_kernel_size=5, duration_predictor_layers=2, duration_predictor_channels=8,
        pitch_predictor_layers=2, pitch_predictor_channels=8, energy_predictor_layers=1, energy_predictor_channels=8,
        pitch_embed_kernel_size=3, decoder_normalize_before=True, encoder_concat_after=True)
    return FastSpeech2ConformerModel(cfg)


def _hf_outputs(model, speed):
    import torch

    model.config.speaking_speed = speed
    with torch.no_grad():
        o = model(input_ids=torch.tensor(IDS).long(), attention_mask=torch.tensor(MASK).long(), return_dict=True)
    model.config.speaking_speed = 1.0
    return {k: getattr(o, k).numpy() for k in OUTPUTS}


def _acoustic_reference():
    def record(folder, model):
        import torch
        from transformers import FastSpeech2ConformerModel

        with torch.no_grad():  # durations of a few frames each (the random bias makes them 0 or huge)
            model.duration_predictor.linear.bias.fill_(1.0)
        model.save_pretrained(folder)
        model = FastSpeech2ConformerModel.from_pretrained(folder).eval()
        for speed in (1.0, 1.6):
            np.savez(folder / f"expected_{speed}.npz", **_hf_outputs(model, speed))

    folder, _ = hf_reference("fastspeech2_conformer", _acoustic, {"input_ids": IDS, "attention_mask": MASK},
                             extra_save=record)
    return folder


def _check(outputs, expected, what):
    for k in OUTPUTS:
        got = np.asarray(keras.ops.convert_to_numpy(outputs[k]))
        assert got.shape == expected[k].shape, (what, k, got.shape, expected[k].shape)
        if k == "duration_outputs":
            np.testing.assert_array_equal(got, expected[k])
        else:
            assert_close(got, expected[k], what=f"{what} {k}")


def test_fastspeech2_conformer_matches_transformers(tmp_path):
    folder = _acoustic_reference()
    model = km.Backbone.from_preset(folder)
    assert type(model).__name__ == "FastSpeech2ConformerBackbone"
    inputs = {"input_ids": IDS, "attention_mask": MASK}
    _check(model(inputs), dict(np.load(folder / "expected_1.0.npz")), "speed 1")
    # speaking_speed from config.json
    cfg = json.loads((folder / "config.json").read_text())
    fast = tmp_path / "fast"
    fast.mkdir()
    (fast / "config.json").write_text(json.dumps(dict(cfg, speaking_speed=1.6)))
    (fast / "model.safetensors").symlink_to(folder / "model.safetensors")
    _check(km.Backbone.from_preset(fast)(inputs), dict(np.load(folder / "expected_1.6.npz")), "speed 1.6")
    # bad configs name the key
    for key, value in (("encoder_kernel_size", 4), ("decoder_num_attention_heads", 3), ("num_speakers", 4),
                       ("use_cnn_in_conformer", False), ("speaking_speed", 0)):
        (tmp_path / key).mkdir()
        (tmp_path / key / "config.json").write_text(json.dumps(dict(cfg, **{key: value})))
        with pytest.raises(ConfigError, match=key):
            km.Backbone.from_preset(tmp_path / key, load_weights=False)
    # .keras round trip
    model.save(tmp_path / "m.keras")
    restored = keras.saving.load_model(tmp_path / "m.keras")
    _check(restored(inputs), dict(np.load(folder / "expected_1.0.npz")), ".keras")


def test_fastspeech2_conformer_reloads_in_transformers(tmp_path):
    from transformers import FastSpeech2ConformerModel

    folder = _acoustic_reference()
    km.Backbone.from_preset(folder).save_to_preset(tmp_path / "out")
    hf = FastSpeech2ConformerModel.from_pretrained(tmp_path / "out").eval()
    expected = dict(np.load(folder / "expected_1.0.npz"))
    got = _hf_outputs(hf, 1.0)
    for k in OUTPUTS:
        assert_close(got[k], expected[k], what=f"reloaded {k}")


# --- FastSpeech2ConformerWithHifiGan: both in one checkpoint ----------------------------------------
def test_fastspeech2_conformer_with_hifigan_matches_transformers(tmp_path):
    """End to end (the acoustic model and vocoder references above, combined): outputs and waveform
    equal to Transformers' FastSpeech2ConformerWithHifiGan; the export reloads in Transformers."""
    import torch
    from transformers import (FastSpeech2ConformerHifiGan, FastSpeech2ConformerModel, FastSpeech2ConformerWithHifiGan,
                              FastSpeech2ConformerWithHifiGanConfig)

    acoustic = FastSpeech2ConformerModel.from_pretrained(_acoustic_reference()).eval()
    vocoder = FastSpeech2ConformerHifiGan.from_pretrained(_reference()[0]).eval()
    cfg = FastSpeech2ConformerWithHifiGanConfig(model_config=acoustic.config.to_dict(),
                                                vocoder_config=vocoder.config.to_dict())
    combined = FastSpeech2ConformerWithHifiGan(cfg).eval()
    combined.model.load_state_dict(acoustic.state_dict())
    combined.vocoder.load_state_dict(vocoder.state_dict())
    combined.save_pretrained(tmp_path / "ref")
    with torch.no_grad():
        o = combined(input_ids=torch.tensor(IDS).long(), attention_mask=torch.tensor(MASK).long(), return_dict=True)
    model = km.Backbone.from_preset(tmp_path / "ref")
    assert type(model).__name__ == "FastSpeech2ConformerWithHifiGanBackbone"
    got = model({"input_ids": IDS, "attention_mask": MASK})
    _check(got, {k: getattr(o, k).numpy() for k in OUTPUTS}, "with HiFi-GAN")
    assert_close(keras.ops.convert_to_numpy(got["waveform"]), o.waveform.numpy(), what="waveform")
    model.save_to_preset(tmp_path / "out")
    hf = FastSpeech2ConformerWithHifiGan.from_pretrained(tmp_path / "out").eval()
    with torch.no_grad():
        w = hf(input_ids=torch.tensor(IDS).long(), attention_mask=torch.tensor(MASK).long(), return_dict=True).waveform
    assert_close(w.numpy(), o.waveform.numpy(), what="reloaded waveform")

"""FastSpeech2ConformerHifiGan (the FastSpeech2-Conformer vocoder) against a tiny random
Transformers model: odd options (three upsamplings with kernels != 2 x rate, unequal dilations,
slope 0.3, a normalised input with non-trivial mean / scale) on a batch and an unbatched
spectrogram; the export reloaded by Transformers; a .keras round trip; bad configs refused naming
the key. The acoustic model (``fastspeech2_conformer``) is not implemented yet."""

import json

import numpy as np
import pytest

import keras_models as km
from keras_models.errors import ConfigError
from tests.parity import assert_close, hf_reference


def _hifigan():
    import torch
    from transformers import FastSpeech2ConformerHifiGan, FastSpeech2ConformerHifiGanConfig

    cfg = FastSpeech2ConformerHifiGanConfig(model_in_dim=5, upsample_initial_channel=16, upsample_rates=(2, 3, 1),
                                            upsample_kernel_sizes=(4, 5, 3), resblock_kernel_sizes=(3, 5),
                                            resblock_dilation_sizes=((1, 2), (1, 3, 2)), leaky_relu_slope=0.3,
                                            normalize_before=True)
    model = FastSpeech2ConformerHifiGan(cfg)
    with torch.no_grad():  # buffers the parity helper leaves alone
        model.mean.uniform_(-1, 1)
        model.scale.uniform_(0.5, 2)
    return model


def _reference():
    spectrogram = np.random.RandomState(3).randn(2, 7, 5).astype("float32")

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
    import keras

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

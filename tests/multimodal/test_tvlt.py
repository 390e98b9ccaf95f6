"""TVLT (removed from Transformers 5) against references recorded with Transformers 4.57.1
(tests/multimodal/tvlt_golden/record.py: tiny seeded checkpoints, inputs and outputs; no
Transformers model is built here).

* the classifier (non-square image patches, 3 of 4 frames, 2 audio channels, no qkv bias, mean
  pooling = no final norm, gelu_new) on a batch padded in both modalities: logits and the base
  model's last hidden state, through the public ``from_preset``;
* a bare TvltModel (final norm, qkv bias, relu, no masks) through ``km.Backbone.from_preset``;
* in the torch pass, ``save_to_preset`` reloaded and a ``.keras`` round trip;
* the image processor and feature extractor (numpy; backend independent) equal to Transformers';
* bad inputs / configs raise typed errors.
"""

import json
import shutil
import sys
from pathlib import Path

import keras
import numpy as np
import pytest

import keras_models as km
from keras_models.errors import ConfigError, InputError
from keras_models.models.tvlt import (TvltAudioVisualClassifier, TvltFeatureExtractor, TvltImageProcessor,
                                      TvltProcessor)
from tests.parity import assert_close, assert_keras_round_trip, to_numpy

GOLDEN = Path(__file__).parent / "tvlt_golden"
sys.path.insert(0, str(GOLDEN))
from record import IMAGE_PROCESSOR_KWARGS  # noqa: E402

sys.path.remove(str(GOLDEN))
DATA = dict(np.load(GOLDEN / "tvlt.npz"))
CLS_INPUTS = {k: DATA["cls_" + k] for k in ("pixel_values", "audio_values", "pixel_mask", "audio_mask")}


def test_tvlt_classifier(tmp_path):
    model = TvltAudioVisualClassifier.from_preset(GOLDEN / "tvlt")
    assert model.head_from_checkpoint and model.backbone.final_norm is None
    assert_close(to_numpy(model(CLS_INPUTS)), DATA["cls_logits"], what="tvlt logits")
    assert_close(to_numpy(model.backbone(CLS_INPUTS)), DATA["cls_hidden"], what="tvlt hidden")
    if keras.backend.backend() == "torch":
        model.save_to_preset(tmp_path / "preset")
        again = TvltAudioVisualClassifier.from_preset(tmp_path / "preset")
        assert_close(to_numpy(again(CLS_INPUTS)), DATA["cls_logits"], what="save_to_preset reload")
        assert_keras_round_trip(model, CLS_INPUTS, tmp_path)


def test_tvlt_backbone():
    model = km.Backbone.from_preset(GOLDEN / "tvlt_base")
    assert type(model).__name__ == "TvltBackbone"
    x = {"pixel_values": DATA["base_pixel_values"], "audio_values": DATA["base_audio_values"]}
    assert_close(to_numpy(model(x)), DATA["base_hidden"], what="tvlt base hidden")
    # fewer frames and time steps than configured (temporal / time tables sliced)
    short = {"pixel_values": x["pixel_values"][:, :1], "audio_values": x["audio_values"][:, :4]}
    assert to_numpy(model(short)).shape == (2, 1 + 4 + 2, 16)
    with pytest.raises(InputError, match="pixel_values"):
        model({"pixel_values": x["pixel_values"][:, :, :4], "audio_values": x["audio_values"]})
    with pytest.raises(InputError, match="frequency"):
        model({"pixel_values": x["pixel_values"], "audio_values": x["audio_values"][:, :, :4]})
    with pytest.raises(InputError, match="audio_mask"):
        model({**x, "audio_mask": np.ones((2, 3), "float32")})


@pytest.mark.backend_independent
def test_tvlt_processors():
    ip = TvltImageProcessor(**IMAGE_PROCESSOR_KWARGS)
    frames = DATA["proc_frames"]
    out = ip([list(frames[0]), list(frames[1])])
    np.testing.assert_allclose(out["pixel_values"], DATA["proc_pixel_values"].transpose(0, 1, 3, 4, 2), atol=1e-5)
    np.testing.assert_array_equal(out["pixel_mask"], DATA["proc_pixel_mask"])
    # a shorter video is padded with zero frames, masked out
    ragged = ip([list(frames[0]), list(frames[1][:2])])
    assert ragged["pixel_values"].shape == out["pixel_values"].shape and not ragged["pixel_values"][1, 2].any()
    assert ragged["pixel_mask"][1].sum() == 2 * 9
    with pytest.raises(InputError, match="num_frames"):
        ip([list(frames[0]) * 2])

    # the feature extractor as Transformers reloads it from the processor's file (hop recomputed)
    proc = TvltProcessor.from_preset(GOLDEN / "tvlt")
    fe = proc.feature_extractor
    assert isinstance(fe, TvltFeatureExtractor) and fe.hop_length == 16000 // 86
    audio = fe([DATA["proc_wave0"], DATA["proc_wave1"]], sampling_rate=16000)
    np.testing.assert_allclose(audio["audio_values"], DATA["proc_audio_values"].transpose(0, 2, 3, 1), atol=1e-5)
    np.testing.assert_array_equal(audio["audio_mask"], DATA["proc_audio_mask"])
    both = proc(videos=[list(frames[0])], audio=DATA["proc_wave0"], sampling_rate=16000)
    assert set(both) == {"pixel_values", "pixel_mask", "audio_values", "audio_mask"}
    assert km.AudioFeatureExtractor.from_preset(GOLDEN / "tvlt").hop_length == fe.hop_length


@pytest.mark.backend_independent
def test_tvlt_bad_config(tmp_path):
    folder = tmp_path / "bad"
    shutil.copytree(GOLDEN / "tvlt_base", folder)
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "audio_patch_size": [4, 0]}))
    with pytest.raises(ConfigError, match="audio_patch_size"):
        km.Backbone.from_preset(folder)
    with pytest.raises(ConfigError, match="patch_size"):
        TvltFeatureExtractor(patch_size=[16])

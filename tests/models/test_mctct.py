"""M-CTC-T (``mctct``, removed from Transformers 5) against references recorded with Transformers
4.57.1 (tests/models/removed_golden/record_mctct.py: a tiny seeded MCTCTForCTC and its outputs; no
Transformers model is built here, and Transformers 5 cannot load these checkpoints or our exports,
so a ``save_to_preset`` output is checked by reloading it here).

The checkpoint: two input channels of 6 features, a 5-wide stride-2 subsampling convolution, four
heads of 4, a distance table (max_position_embeddings 6) shorter than the 12 subsampled frames,
gelu, eps 1e-6; the batch's second row padded (attention_mask 0 after 15 of 23 frames)."""

import json
import shutil
from pathlib import Path

import keras
import numpy as np
import pytest

import keras_models as km
from keras_models.errors import ConfigError
from tests.parity import assert_close, jit_under_jax

GOLDEN = Path(__file__).parent / "removed_golden"
FOLDER = GOLDEN / "mctct" / "SpeechRecognizer"


def golden():
    d = dict(np.load(GOLDEN / "mctct.npz"))
    inputs = {"input_features": d["in_input_features"], "attention_mask": d["in_attention_mask"].astype("int32")}
    return inputs, d


def check(model, inputs, d, what):
    def run(x):
        return model(x), model.backbone(x), model({"input_features": x["input_features"][:1]})

    logits, hidden, unmasked = jit_under_jax(run)(inputs)
    assert_close(logits, d["SpeechRecognizer__logits"], what=f"{what} logits")
    assert_close(hidden, d["SpeechRecognizer__hidden"], what=f"{what} hidden state")
    assert_close(unmasked, d["SpeechRecognizer__logits"][:1], what=f"{what} without attention_mask")


def test_mctct_parity(tmp_path):
    inputs, d = golden()
    model = km.SpeechRecognizer.from_preset(FOLDER)
    assert type(model).__name__ == "MCTCTSpeechRecognizer" and model.head_from_checkpoint
    assert type(km.Backbone.from_preset(FOLDER)).__name__ == "MCTCTBackbone"
    check(model, inputs, d, "mctct")
    lengths = keras.ops.convert_to_numpy(model.backbone.output_lengths(np.array([23, 15])))
    np.testing.assert_array_equal(lengths, d["frame_mask"].sum(-1))
    # save_to_preset: the config keys and tensor names of the recorded checkpoint, reloaded here
    model.save_to_preset(tmp_path / "saved")
    config = json.loads((tmp_path / "saved" / "config.json").read_text())
    assert config["model_type"] == "mctct" and config["architectures"] == ["MCTCTForCTC"]
    assert config["conv_kernel"] == [5] and config["input_channels"] == 2 and config["attention_head_dim"] == 4
    from safetensors import safe_open

    with safe_open(tmp_path / "saved" / "model.safetensors", "np") as f, \
            safe_open(FOLDER / "model.safetensors", "np") as g:
        assert set(f.keys()) == set(g.keys())
    check(km.SpeechRecognizer.from_preset(tmp_path / "saved"), inputs, d, "mctct saved")
    # .keras round trip
    model.save(tmp_path / "m.keras")
    restored = keras.saving.load_model(tmp_path / "m.keras")
    assert type(restored) is type(model)
    check(restored, inputs, d, "mctct .keras")


@pytest.mark.backend_independent
@pytest.mark.parametrize("key,value", [("conv_glu_dim", 2), ("attention_head_dim", 5), ("conv_kernel", [5, 3]),
                                       ("conv_stride", [0]), ("hidden_act", "nope"), ("num_conv_layers", 2),
                                       ("max_position_embeddings", 0)])
def test_mctct_bad_config(key, value, tmp_path):
    shutil.copytree(FOLDER, tmp_path / "m")
    path = tmp_path / "m" / "config.json"
    config = json.loads(path.read_text())
    config[key] = value
    path.write_text(json.dumps(config))
    with pytest.raises(ConfigError, match=key if key != "num_conv_layers" else "conv_"):
        km.SpeechRecognizer.from_preset(tmp_path / "m")

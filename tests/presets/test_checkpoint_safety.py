"""Checkpoint readers refuse what would load garbage or read outside the preset: integer/bool
tensors for float variables, and shard names in model.safetensors.index.json that leave the
folder. Each error names the file and the tensor or shard."""

import json
import shutil

import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

import keras_models as km
from keras_models.errors import CheckpointError, WeightMismatchError
from tests.presets.fixtures import tiny_classifier


@pytest.fixture
def preset(tmp_path):
    folder = tiny_classifier()[0]
    out = tmp_path / "preset"
    shutil.copytree(folder, out)
    return out


def test_integer_tensor_for_a_float_variable_is_refused_not_cast(preset):
    tensors = load_file(preset / "model.safetensors")
    name = next(k for k in tensors if k.endswith("attention.self.query.weight"))
    tensors[name] = np.round(tensors[name] * 100).astype(np.int8)
    save_file(tensors, preset / "model.safetensors")
    with pytest.raises(WeightMismatchError) as info:
        km.TextClassifier.from_preset(preset)
    assert name in str(info.value) and "int8" in str(info.value) and "quantization_config" in str(info.value)


def _shard(preset, shard_name):
    tensors = load_file(preset / "model.safetensors")
    (preset / "model.safetensors").unlink()
    save_file(tensors, preset / "model-00001-of-00001.safetensors")
    index = {"metadata": {}, "weight_map": {k: "model-00001-of-00001.safetensors" for k in tensors}}
    first = sorted(tensors)[0]
    index["weight_map"][first] = shard_name
    (preset / "model.safetensors.index.json").write_text(json.dumps(index))


@pytest.mark.parametrize("shard_name", ["/etc/passwd", "../outside.safetensors", "sub/../../x.safetensors",
                                        "notes.txt", ""])
def test_shard_names_must_stay_inside_the_preset(preset, shard_name):
    (preset.parent / "outside.safetensors").write_bytes(b"SECRET-BYTES")
    _shard(preset, shard_name)
    with pytest.raises(CheckpointError) as info:
        km.TextClassifier.from_preset(preset)
    message = str(info.value)
    assert "model.safetensors.index.json" in message and "SECRET" not in message and "root:" not in message


def test_a_valid_sharded_preset_still_loads(preset):
    _shard(preset, "model-00001-of-00001.safetensors")
    model = km.TextClassifier.from_preset(preset)
    assert model.num_classes == 3

"""Loading: dtypes, shards, and every kind of bad input gives a typed error naming the culprit."""

import json
import shutil
import struct
from pathlib import Path

import ml_dtypes
import numpy as np
import pytest

import keras_models as km
from keras_models.errors import (
    CheckpointError,
    ConfigError,
    PresetError,
    UnknownArchitectureError,
    WeightMismatchError,
)
from keras_models.presets.safetensors_io import CheckpointReader, SafetensorsFile, save_file
from tests.parity import assert_close, assert_close_low_precision, to_numpy
from tests.presets.fixtures import tiny_classifier


@pytest.fixture
def preset(tmp_path):
    """A private, writable copy of the tiny classifier checkpoint."""
    folder, inputs, expected = tiny_classifier()
    dst = tmp_path / "preset"
    shutil.copytree(folder, dst)
    return dst, inputs, expected


def _tensors(folder):
    st = SafetensorsFile(folder / "model.safetensors")
    return {k: np.array(st.get(k)) for k in st.keys()}


def _rewrite(folder, tensors):
    save_file(tensors, folder / "model.safetensors", metadata={"format": "pt"})


# --- dtypes and layouts ------------------------------------------------------------------------
@pytest.mark.parametrize("stored", ["float16", "bfloat16"])
def test_half_precision_checkpoint_loads_exactly(preset, stored):
    folder, inputs, _ = preset
    dt = np.dtype(ml_dtypes.bfloat16) if stored == "bfloat16" else np.dtype(stored)
    tensors = {k: (v.astype(dt) if v.dtype.kind == "f" else v) for k, v in _tensors(folder).items()}
    _rewrite(folder, tensors)
    model = km.TextClassifier.from_preset(folder)  # fp32 model from a half-precision file
    got = to_numpy(model.backbone.token_embedding.embeddings)
    want = tensors["bert.embeddings.word_embeddings.weight"].astype(np.float32)
    np.testing.assert_array_equal(got, want)


def test_dtype_argument_sets_policy(preset):
    folder, inputs, expected = preset
    model = km.TextClassifier.from_preset(folder, dtype="bfloat16")
    assert model.backbone.token_embedding.embeddings.dtype == "bfloat16"
    assert_close_low_precision(model(inputs), expected, rel=0.05, what="bf16 logits")
    mixed = km.Backbone.from_preset(folder, dtype="mixed_float16")
    assert mixed.token_embedding.embeddings.dtype == "float32"
    assert mixed.compute_dtype == "float16"


def test_sharded_checkpoint(preset):
    folder, inputs, expected = preset
    tensors = _tensors(folder)
    names = sorted(tensors)
    half = len(names) // 2
    weight_map = {}
    for i, part in enumerate((names[:half], names[half:])):
        fname = f"model-0000{i + 1}-of-00002.safetensors"
        save_file({k: tensors[k] for k in part}, folder / fname)
        weight_map.update({k: fname for k in part})
    (folder / "model.safetensors").unlink()
    (folder / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    model = km.TextClassifier.from_preset(folder)
    assert_close(model(inputs), expected, what="sharded")
    (folder / "model-00002-of-00002.safetensors").unlink()
    with pytest.raises(CheckpointError, match="model-00002-of-00002.safetensors"):
        km.TextClassifier.from_preset(folder)


def test_reader_reads_one_tensor_at_a_time(preset):
    folder, _, _ = preset
    reader = CheckpointReader(folder)
    name = "bert.embeddings.word_embeddings.weight"
    arr = reader.get(name)
    assert arr.shape == reader.shape(name) and arr.dtype == np.float32
    # An owned buffer (not a view keeping the file mapped), with the right values.
    assert arr.base is not None and not isinstance(arr.base, np.memmap)
    from safetensors.numpy import load_file

    np.testing.assert_array_equal(arr, load_file(str(folder / "model.safetensors"))[name])
    reader.close()


# --- bad input ---------------------------------------------------------------------------------
def test_unknown_model_type(preset):
    folder, _, _ = preset
    cfg = json.loads((folder / "config.json").read_text())
    cfg["model_type"], cfg["architectures"] = "no-such-model", ["NoSuchModel"]
    (folder / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(UnknownArchitectureError, match="no-such-model"):
        km.Backbone.from_preset(folder)


def test_missing_config(preset):
    folder, _, _ = preset
    (folder / "config.json").unlink()
    with pytest.raises(PresetError, match="config.json"):
        km.Backbone.from_preset(folder)


def test_malformed_config(preset):
    folder, _, _ = preset
    (folder / "config.json").write_text("{ not json")
    with pytest.raises(ConfigError, match="config.json"):
        km.Backbone.from_preset(folder)
    # absent keys take Transformers' defaults (save_pretrained omits them): 12 heads here
    (folder / "config.json").write_text(json.dumps({"model_type": "bert", "hidden_size": 32}))
    with pytest.raises(ConfigError, match="config.json.*num_attention_heads"):
        km.Backbone.from_preset(folder)
    (folder / "config.json").write_text(json.dumps({"model_type": "bert", "hidden_size": "32"}))
    with pytest.raises(ConfigError, match="hidden_size"):
        km.Backbone.from_preset(folder)


def test_missing_weights(preset):
    folder, _, _ = preset
    (folder / "model.safetensors").unlink()
    with pytest.raises(CheckpointError, match="No model.safetensors"):
        km.Backbone.from_preset(folder)


def test_pickle_checkpoint_is_refused_never_unpickled(preset, tmp_path):
    folder, _, _ = preset
    (folder / "model.safetensors").unlink()
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (Path.touch, (marker,))

    import pickle

    (folder / "pytorch_model.bin").write_bytes(pickle.dumps(Evil()))
    with pytest.raises(CheckpointError, match="pytorch_model.bin.*pickle"):
        km.Backbone.from_preset(folder)
    assert not marker.exists()


def test_missing_tensor_is_named(preset):
    folder, _, _ = preset
    tensors = _tensors(folder)
    del tensors["bert.encoder.layer.1.attention.self.key.weight"]
    _rewrite(folder, tensors)
    with pytest.raises(WeightMismatchError, match=r"missing.*bert\.encoder\.layer\.1\.attention\.self\.key\.weight"):
        km.TextClassifier.from_preset(folder)


def test_unexpected_tensor_is_named(preset):
    folder, _, _ = preset
    tensors = _tensors(folder)
    tensors["bert.encoder.layer.7.extra.weight"] = np.zeros((2, 2), np.float32)
    _rewrite(folder, tensors)
    with pytest.raises(WeightMismatchError, match=r"unexpected.*layer\.7\.extra\.weight"):
        km.TextClassifier.from_preset(folder)


def test_wrong_shape_is_named(preset):
    folder, _, _ = preset
    tensors = _tensors(folder)
    tensors["bert.encoder.layer.0.intermediate.dense.weight"] = np.zeros((36, 32), np.float32)
    _rewrite(folder, tensors)
    with pytest.raises(WeightMismatchError, match=r"wrong shapes.*layer\.0\.intermediate\.dense\.weight.*\(36, 32\)"):
        km.TextClassifier.from_preset(folder)


def test_truncated_file(preset):
    folder, _, _ = preset
    path = folder / "model.safetensors"
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 100])
    with pytest.raises(CheckpointError, match="model.safetensors is truncated"):
        km.Backbone.from_preset(folder)
    path.write_bytes(data[:5])
    with pytest.raises(CheckpointError, match="truncated"):
        km.Backbone.from_preset(folder)


def test_corrupted_header(preset):
    folder, _, _ = preset
    path = folder / "model.safetensors"
    data = bytearray(path.read_bytes())
    (n,) = struct.unpack("<Q", bytes(data[:8]))
    data[8:12] = b"\xff\xfe{{"
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="malformed safetensors header"):
        km.Backbone.from_preset(folder)
    data[:8] = struct.pack("<Q", 10**12)
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="corrupted or truncated"):
        km.Backbone.from_preset(folder)


def test_bad_offsets(tmp_path):
    header = {"w": {"dtype": "F32", "shape": [4], "data_offsets": [0, 8]}}
    raw = json.dumps(header).encode()
    (tmp_path / "model.safetensors").write_bytes(struct.pack("<Q", len(raw)) + raw + b"\0" * 16)
    with pytest.raises(CheckpointError, match="'w' offsets"):
        SafetensorsFile(tmp_path / "model.safetensors")


def test_unknown_preset_name():
    with pytest.raises(PresetError, match="Unknown preset 'definitely-not-a-preset'"):
        km.Backbone.from_preset("definitely-not-a-preset")
    with pytest.raises(PresetError, match="Malformed hub handle"):
        km.Backbone.from_preset("hf://a/b/c")


def test_legacy_layernorm_names_are_accepted(preset):
    folder, inputs, expected = preset
    tensors = _tensors(folder)
    for key in [k for k in tensors if "LayerNorm" in k]:
        new = key.replace("LayerNorm.weight", "LayerNorm.gamma").replace("LayerNorm.bias", "LayerNorm.beta")
        tensors[new] = tensors.pop(key)
    _rewrite(folder, tensors)
    assert_close(km.TextClassifier.from_preset(folder)(inputs), expected, what="gamma/beta names")
    del tensors["bert.embeddings.LayerNorm.gamma"]
    _rewrite(folder, tensors)
    with pytest.raises(WeightMismatchError, match=r"missing.*bert\.embeddings\.LayerNorm\.weight"):
        km.TextClassifier.from_preset(folder)


# --- deferred variables: no placeholder copy, nothing left half-initialised ----------------------
def test_checkpoint_values_land_directly_and_a_new_head_gets_its_own_init(preset):
    from keras_models.layers.init import _pending

    folder, inputs, expected = preset
    model = km.TextClassifier.from_preset(folder)
    assert_close(to_numpy(model(inputs)), expected, what="classifier logits")
    # A task the checkpoint has no head for: the backbone comes from the file, the new head from
    # its own (random) initialiser, run after the load; no variable is left deferred.
    masked = km.MaskedLM.from_preset(folder)
    assert not _pending()
    weights = {w.path: to_numpy(w.value) for w in masked.weights}
    assert all(np.isfinite(v).all() for v in weights.values())
    head = [v for path, v in weights.items() if "dense" in path and "kernel" in path and "head" in path.lower()]
    assert head and all(np.abs(v).max() > 0 for v in head), sorted(weights)


def test_failed_load_leaves_no_deferred_variables(preset):
    from keras_models.layers.init import _pending

    folder, _, _ = preset
    tensors = _tensors(folder)
    tensors["bert.embeddings.word_embeddings.weight"] = tensors["bert.embeddings.word_embeddings.weight"][:-1]
    _rewrite(folder, tensors)
    with pytest.raises(WeightMismatchError, match="word_embeddings"):
        km.TextClassifier.from_preset(folder)
    assert not _pending()


def test_large_loads_show_a_progress_bar(monkeypatch, capsys):
    """Checkpoints from PROGRESS_MIN_BYTES (200 MB) on show a tqdm bar over the bytes loaded
    (here the threshold is lowered to the tiny model); the Hugging Face switch turns it off."""
    from keras_models.presets import weight_map
    from tests.presets.fixtures import tiny_classifier

    folder, inputs, expected = tiny_classifier()
    monkeypatch.setattr(weight_map, "PROGRESS_MIN_BYTES", 1)
    monkeypatch.delenv("HF_HUB_DISABLE_PROGRESS_BARS", raising=False)
    monkeypatch.delenv("KERAS_MODELS_NO_PROGRESS", raising=False)
    km.TextClassifier.from_preset(folder)
    assert f"Loading {folder.name}" in capsys.readouterr().err
    monkeypatch.setenv("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    km.TextClassifier.from_preset(folder)
    assert "Loading" not in capsys.readouterr().err
    monkeypatch.setattr(weight_map, "PROGRESS_MIN_BYTES", 200 * 10**6)
    monkeypatch.delenv("HF_HUB_DISABLE_PROGRESS_BARS")
    km.TextClassifier.from_preset(folder)  # a small checkpoint: no bar
    assert "Loading" not in capsys.readouterr().err

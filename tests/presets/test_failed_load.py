"""A failed load is cheap and honest: the typed error naming the tensor comes out (no initialiser
runs first, nothing hides it), none of its deferred variables stays pending, and the next load in
the same process works."""

import json
import shutil

import pytest

import keras_models as km
from keras_models import compat
from keras_models.errors import ConfigError, WeightMismatchError
from tests.parity import assert_close, to_numpy
from tests.presets.fixtures import tiny_classifier


@pytest.fixture
def presets(tmp_path):
    """(good folder, bad folder whose config.json vocab_size disagrees with the checkpoint)."""
    folder, inputs, expected = tiny_classifier()
    bad = tmp_path / "bad"
    shutil.copytree(folder, bad)
    config = json.loads((bad / "config.json").read_text())
    config["vocab_size"] += 7
    (bad / "config.json").write_text(json.dumps(config))
    return folder, bad, inputs, expected


@pytest.fixture
def initialisations(monkeypatch):
    """Counts the runs of Keras' deferred initialisation (initialise_rest's last step)."""
    runs = []
    real = compat.initialise_all_pending
    monkeypatch.setattr(compat, "initialise_all_pending", lambda: runs.append(1) or real())
    return runs


@pytest.mark.parametrize("cls", [km.TextClassifier, km.Backbone])
def test_vocab_mismatch_raises_the_typed_error_then_a_good_preset_loads(presets, initialisations, cls):
    good, bad, inputs, expected = presets
    with pytest.raises(WeightMismatchError, match=r"bert\.embeddings\.word_embeddings\.weight.*\(115, 32\)"):
        cls.from_preset(bad)
    assert not initialisations, "a failed load initialised its variables"
    assert not compat.uninitialised_variables()
    model = km.TextClassifier.from_preset(good)
    assert initialisations == [1]
    assert_close(to_numpy(model.predict(inputs, verbose=0)), expected, what="logits after a failed load")


def test_an_error_while_materialising_propagates_unchanged(presets, monkeypatch):
    """A load that fails half way (here: the third tensor) raises its own error, not one from
    initialising the half-filled model afterwards; the next load is unaffected."""
    good, _, inputs, expected = presets
    real, calls = compat.initialise_deferred, []

    def failing(variable, value):
        calls.append(1)
        if len(calls) == 3:
            raise RuntimeError("disk went away")
        return real(variable, value)

    monkeypatch.setattr(compat, "initialise_deferred", failing)
    with pytest.raises(RuntimeError, match="disk went away"):
        km.TextClassifier.from_preset(good)
    assert not compat.uninitialised_variables()
    monkeypatch.setattr(compat, "initialise_deferred", real)
    model = km.TextClassifier.from_preset(good)
    assert_close(to_numpy(model.predict(inputs, verbose=0)), expected, what="logits after a failed load")


@pytest.mark.parametrize("cls,key,value", [(km.TextClassifier, "vocab_size", 2 * 10**9),
                                           (km.Backbone, "intermediate_size", 2**30),
                                           (km.TextClassifier, "num_labels", 10**9)])
def test_a_config_asking_for_more_than_its_checkpoint_is_refused_before_allocating(presets, cls, key, value):
    """A size in config.json far beyond what the checkpoint holds (here ~40-300 GB of float32) is
    refused from the shapes alone, naming config.json and the largest variables, and the next load
    works."""
    good, bad, inputs, expected = presets
    config = json.loads((bad / "config.json").read_text())
    config[key] = value
    if key == "num_labels":
        config.pop("id2label"), config.pop("label2id")
    (bad / "config.json").write_text(json.dumps(config))
    with pytest.raises(ConfigError, match="config.json describes a model of") as info:
        cls.from_preset(bad)
    assert str(bad) in str(info.value)
    assert not compat.uninitialised_variables()
    assert_close(to_numpy(km.TextClassifier.from_preset(good)(inputs)), expected)


def test_a_size_beyond_int32_is_refused_naming_the_key(presets):
    good, bad, inputs, expected = presets
    config = json.loads((bad / "config.json").read_text())
    config["vocab_size"] = 10**10
    (bad / "config.json").write_text(json.dumps(config))
    with pytest.raises(ConfigError, match="config.json: key 'vocab_size' must be below 2\\*\\*31"):
        km.TextClassifier.from_preset(bad)


def test_a_config_value_the_layers_refuse_raises_a_config_error_naming_the_file(presets):
    good, bad, inputs, expected = presets
    config = json.loads((bad / "config.json").read_text())
    config["vocab_size"] -= 7
    config["hidden_act"] = "no-such-activation"
    (bad / "config.json").write_text(json.dumps(config))
    with pytest.raises(ConfigError, match="config.json: cannot build .*no-such-activation"):
        km.TextClassifier.from_preset(bad)
    assert not compat.uninitialised_variables()

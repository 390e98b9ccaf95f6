"""A failed load is cheap and honest: the typed error naming the tensor comes out (no initialiser
runs first, nothing hides it), none of its deferred variables stays pending, and the next load in
the same process works."""

import json
import shutil

import pytest

import keras_models as km
from keras_models import compat
from keras_models.errors import WeightMismatchError
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

"""Inputs are checked at the model boundary: out-of-vocabulary, negative and float ids, sequences
longer than the position table, empty batches and missing samples raise InputError naming the
input, instead of NaN logits (JAX), IndexError (torch) or silent truncation."""

import numpy as np
import pytest

import keras_models as km
from keras_models.errors import InputError
from tests.pipelines.refs import causal_checkpoint
from tests.presets.fixtures import tiny_classifier, tiny_vocab

VOCAB = len(tiny_vocab())


@pytest.fixture(scope="module")
def classifier():
    return km.TextClassifier.from_preset(tiny_classifier()[0])


def _ids(values):
    ids = np.array(values)
    return {"input_ids": ids, "attention_mask": np.ones(ids.shape, "int32")}


@pytest.mark.parametrize("ids, words", [
    ([[5, 6, VOCAB]], [f"[0, {VOCAB})", "input_ids[0, 2]"]),
    ([[5, -1, 7]], ["input_ids[0, 1] = -1"]),
    ([[5.0, 6.0, 7.0]], ["integer", "float"]),
    ([[5] * 65], ["65 positions", "at most 64"]),
])
def test_bad_ids_are_refused_by_predict_backbone_and_generate(classifier, ids, words):
    for fn in (classifier.predict, classifier.backbone.predict):
        with pytest.raises(InputError) as info:
            fn(_ids(ids), verbose=0)
        for w in words:
            assert w in str(info.value)


def test_valid_ids_still_predict(classifier):
    out = classifier.predict(_ids([[2, 5, 6, 3]]), verbose=0)
    assert out.shape == (1, 3) and np.isfinite(out).all()


@pytest.mark.parametrize("x, words", [([], ["empty"]), (["good movie", None], ["sample 1", "None"])])
def test_empty_and_missing_samples(classifier, x, words):
    with pytest.raises(InputError) as info:
        classifier.predict(x, verbose=0)
    for w in words:
        assert w in str(info.value)


def test_generate_refuses_out_of_vocabulary_prompts():
    lm = km.CausalLM.from_preset(causal_checkpoint())
    n = lm.backbone.vocab_size
    with pytest.raises(InputError, match=rf"outside the vocabulary \(\[0, {n}\)\)"):
        lm.generate({"input_ids": np.array([[1, 2, n + 5]])}, max_new_tokens=2)


def test_raw_strings_without_a_tokenizer_say_what_is_missing():
    model = km.TextClassifier.from_preset(tiny_classifier()[0], preprocessor=False)
    with pytest.raises(InputError, match="tokenizer.json.*vocab.txt"):
        model.predict(["good movie"], verbose=0)


def test_a_failed_predict_leaves_the_model_usable(classifier):
    """Keras 3.15 under JAX left every variable empty after an exception inside predict (the next
    call failed with "'NoneType' object is not callable"); compat.guarded_jax_run restores them."""
    good = _ids([[2, 5, 6, 3]])
    before = classifier.predict(good, verbose=0)
    bad = dict(good, token_type_ids=np.zeros((1, 7), "int32"))  # fails inside the model call
    with pytest.raises(Exception):
        classifier.predict(bad, verbose=0)
    np.testing.assert_allclose(classifier.predict(good, verbose=0), before, atol=1e-6)
    np.testing.assert_allclose(classifier.backbone.predict(good, verbose=0).shape[:2], (1, 4))


def test_concurrent_predict_on_one_model(classifier):
    """Two threads predicting on one shared model get the serial results (serialised under JAX)."""
    import threading

    inputs = [_ids([[2, 5, 6, 3]]), _ids([[2, 7, 8, 9, 3]])]
    expected = [classifier.predict(x, verbose=0) for x in inputs]
    results, errors = [None, None], []
    barrier = threading.Barrier(2)

    def run(i):
        try:
            barrier.wait()
            for _ in range(3):
                results[i] = classifier.predict(inputs[i], verbose=0)
        except Exception as e:  # noqa: BLE001
            errors.append(e)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    for r, e in zip(results, expected):
        np.testing.assert_allclose(r, e, atol=1e-6)


def test_preprocessor_truncates_to_the_models_positions(tmp_path):
    """A tokenizer that allows 512 tokens on a model with 64 positions: raw text is cut at 64."""
    import json
    import shutil

    folder = tmp_path / "p"
    shutil.copytree(tiny_classifier()[0], folder)
    cfg = json.loads((folder / "tokenizer_config.json").read_text())
    cfg["model_max_length"] = 512
    (folder / "tokenizer_config.json").write_text(json.dumps(cfg))
    model = km.TextClassifier.from_preset(folder)
    assert model.preprocessor.sequence_length == 64
    text = " ".join(["the service was very slow today"] * 30)
    assert model.preprocessor([text])["input_ids"].shape == (1, 64)
    assert np.isfinite(model.predict([text], verbose=0)).all()

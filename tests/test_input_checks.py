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

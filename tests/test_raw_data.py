"""Raw data in the forms Keras and Transformers users hand to fit / evaluate / predict: PyDatasets,
generators and tf.data.Datasets of raw strings, validation_split, sample_weight, the *_on_batch
methods, and Hugging Face datasets. Each form is checked against the same data given as a list
(or as preprocessed arrays, Keras' own path)."""

import keras
import numpy as np
import pytest

import keras_models as km
from keras_models.errors import InputError
from keras_models.preprocessing.text_base import length_buckets
from tests.parity import to_numpy
from tests.presets.fixtures import tiny_classifier

LONG = "the service was very slow today"  # every batch fits the 16-token training bucket: one shape
TEXTS = [LONG, "good", LONG + " again", "bad food", "fine", LONG]
LABELS = np.array([0, 1, 2, 0, 1, 2])


@pytest.fixture(scope="module")
def model():
    folder, _, _ = tiny_classifier()
    m = km.TextClassifier.from_preset(folder)
    m.compile(optimizer=keras.optimizers.SGD(0.0),  # lr 0: fit leaves the weights as they are
              loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    for layer in m._flatten_layers():  # and, without dropout, reports the loss evaluate gives
        if isinstance(layer, keras.layers.Dropout):
            layer.rate = 0.0
    return m


class Batches(keras.utils.PyDataset):
    def __init__(self, labelled=True):
        super().__init__()
        self.labelled = labelled

    def __len__(self):
        return 3

    def __getitem__(self, i):
        x = TEXTS[2 * i:2 * i + 2]
        return (x, LABELS[2 * i:2 * i + 2]) if self.labelled else (x,)


def test_pydataset_and_generator_of_raw_strings(model):
    expected = model.predict(TEXTS, batch_size=2, verbose=0)
    np.testing.assert_allclose(model.predict(Batches(labelled=False), verbose=0), expected, atol=1e-5)
    reference = model.evaluate(TEXTS, LABELS, batch_size=2, verbose=0)
    history = model.fit(Batches(), epochs=2, verbose=0)  # batch lengths change from batch to batch
    assert len(history.history["loss"]) == 2
    np.testing.assert_allclose(history.history["loss"][-1], reference, rtol=1e-5)
    gen = ((TEXTS[i:i + 2], LABELS[i:i + 2]) for i in range(0, 6, 2))
    np.testing.assert_allclose(model.evaluate(gen, verbose=0), reference, rtol=1e-5)
    with pytest.raises(InputError, match="inside the batches"):
        model.fit(Batches(), LABELS, verbose=0)


def test_tf_data_of_raw_strings_and_pairs(model):
    tf = pytest.importorskip("tensorflow")
    reference = model.evaluate(TEXTS, LABELS, batch_size=2, verbose=0)
    ds = tf.data.Dataset.from_tensor_slices((TEXTS, LABELS)).batch(2)
    history = model.fit(ds, epochs=2, verbose=0)
    np.testing.assert_allclose(history.history["loss"][-1], reference, rtol=1e-5)
    np.testing.assert_allclose(model.predict(ds.map(lambda x, y: x), verbose=0),
                               model.predict(TEXTS, batch_size=2, verbose=0), atol=1e-5)
    pairs = list(zip(TEXTS, TEXTS[::-1]))
    ds_pairs = tf.data.Dataset.from_tensor_slices(((TEXTS, TEXTS[::-1]), LABELS)).batch(2)
    np.testing.assert_allclose(model.evaluate(ds_pairs, verbose=0),
                               model.evaluate(pairs, LABELS, batch_size=2, verbose=0), rtol=1e-5)


def test_validation_split_sample_weight_and_on_batch_methods(model):
    history = model.fit(TEXTS, LABELS, batch_size=2, epochs=1, validation_split=1 / 3, verbose=0)
    # Keras' rule: the last samples are held out
    np.testing.assert_allclose(history.history["val_loss"][-1],
                               model.evaluate(TEXTS[4:], LABELS[4:], verbose=0), rtol=1e-5)
    weights = np.array([1.0, 0.0, 2.0, 0.5, 0.0, 1.0], dtype="float32")
    # Keras' own path: the same batches as arrays, with sample_weight (padded to the bucket fit pads to)
    with length_buckets():
        batches = [model.preprocessor(TEXTS[i:i + 2]) for i in range(0, 6, 2)]
    per_batch = [float(model.test_on_batch(f, LABELS[i:i + 2], sample_weight=weights[i:i + 2]))
                 for f, i in zip(batches, range(0, 6, 2))]
    weighted = model.evaluate(TEXTS, LABELS, sample_weight=weights, batch_size=2, verbose=0)
    np.testing.assert_allclose(weighted, np.mean(per_batch), rtol=1e-5)
    assert abs(weighted - model.evaluate(TEXTS, LABELS, batch_size=2, verbose=0)) > 1e-4  # the weights count
    np.testing.assert_allclose(model.test_on_batch(TEXTS[2:4], LABELS[2:4], sample_weight=weights[2:4]),
                               per_batch[1], rtol=1e-5)
    np.testing.assert_allclose(model.train_on_batch(TEXTS[2:4], LABELS[2:4], sample_weight=weights[2:4]),
                               per_batch[1], rtol=1e-5)
    np.testing.assert_allclose(to_numpy(model.predict_on_batch(TEXTS[:2])), to_numpy(model(model.preprocessor(TEXTS[:2]))),
                               atol=1e-5)
    history = model.fit(TEXTS, LABELS, sample_weight=weights, batch_size=2, shuffle=False, epochs=1, verbose=0)
    np.testing.assert_allclose(history.history["loss"][-1], weighted, rtol=1e-5)
    with pytest.raises(InputError, match="empty training"):
        model.fit(TEXTS, LABELS, validation_split=0.9, verbose=0)


def test_hugging_face_datasets(model):
    datasets = pytest.importorskip("datasets")
    ds = datasets.Dataset.from_dict({"text": TEXTS, "label": LABELS.tolist()})
    reference = model.evaluate(TEXTS, LABELS, batch_size=2, verbose=0)
    np.testing.assert_allclose(model.evaluate(ds, batch_size=2, verbose=0), reference, rtol=1e-5)
    history = model.fit(ds, batch_size=2, epochs=1, validation_split=0.5, verbose=0)
    assert "val_loss" in history.history
    pairs = datasets.Dataset.from_dict({"sentence1": TEXTS, "sentence2": TEXTS[::-1], "label": LABELS.tolist()})
    np.testing.assert_allclose(model.evaluate(pairs, batch_size=2, verbose=0),
                               model.evaluate(list(zip(TEXTS, TEXTS[::-1])), LABELS, batch_size=2, verbose=0),
                               rtol=1e-5)
    with length_buckets():  # padded to the bucket, as a user's dataset.map(tokenizer, padding=...) gives
        tokenised = model.preprocessor(TEXTS)
    tok = datasets.Dataset.from_dict({**{k: to_numpy(v).tolist() for k, v in tokenised.items()},
                                      "label": LABELS.tolist()})
    np.testing.assert_allclose(model.evaluate(tok, batch_size=2, verbose=0), reference, rtol=1e-5)
    with pytest.raises(InputError, match="input column"):
        model.evaluate(datasets.Dataset.from_dict({"a": TEXTS, "b": TEXTS, "c": TEXTS}), verbose=0)


def test_raw_stream_without_preprocessor_names_the_fix(model):
    bare = km.TextClassifier(model.backbone, num_classes=3, preprocessor=None)
    bare.compile(optimizer="sgd", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    with pytest.raises(InputError, match="need a preprocessor"):
        bare.fit(Batches(), verbose=0)
    with pytest.raises(InputError, match="need a preprocessor"):
        bare.predict_on_batch(TEXTS[:2])

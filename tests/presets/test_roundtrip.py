"""save_to_preset -> transformers and -> keras-models; .keras round trip; fresh heads."""

import logging

import keras
import numpy as np
import pytest

import keras_models as km
from keras_models.errors import ConfigError, PresetError
from tests.parity import assert_close, to_numpy
from tests.presets.fixtures import tiny_classifier, tiny_mlm_untied


def _torch_outputs(model, inputs):
    import torch

    with torch.no_grad():
        out = model(**{k: torch.tensor(v) for k, v in inputs.items()})
    return out.logits.numpy()


def test_classifier_save_to_preset_reloads_in_transformers(tmp_path):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    folder, inputs, expected = tiny_classifier()
    model = km.TextClassifier.from_preset(folder)
    assert model.id2label == {0: "neg", 1: "neutral", 2: "pos"}
    out = tmp_path / "saved"
    model.save_to_preset(out)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")], "temp folder left behind"
    hf = AutoModelForSequenceClassification.from_pretrained(str(out)).eval()
    assert hf.config.id2label[2] == "pos"
    assert_close(_torch_outputs(hf, inputs), expected, what="transformers reload")
    again = km.TextClassifier.from_preset(out)
    assert_close(again(inputs), expected, what="keras-models reload")
    # The tokenizer travelled with the preset and gives transformers' ids.
    tok = AutoTokenizer.from_pretrained(str(out))
    text = ["a good movie", "the service was very slow"]
    np.testing.assert_array_equal(
        again.preprocessor.tokenizer(text, padding=True)["input_ids"],
        tok(text, padding=True, return_tensors="np")["input_ids"],
    )


def test_sharded_preset_reloads_in_transformers(tmp_path):
    """save_to_preset(max_shard_size=...) writes Transformers' sharded layout; both libraries
    reload it, and saving over it unsharded (and back) leaves no stale shard behind."""
    import json

    from transformers import AutoModelForSequenceClassification

    folder, inputs, expected = tiny_classifier()
    model = km.TextClassifier.from_preset(folder)
    with pytest.raises(PresetError, match="max_shard_size"):
        model.save_to_preset(tmp_path / "bad", max_shard_size="5 parsecs")
    assert not (tmp_path / "bad").exists()
    out = tmp_path / "sharded"
    model.save_to_preset(out, max_shard_size="8KB")
    index = json.loads((out / "model.safetensors.index.json").read_text())
    shards = sorted(p.name for p in out.glob("model-*-of-*.safetensors"))
    assert len(shards) > 2 and sorted(set(index["weight_map"].values())) == shards
    assert not (out / "model.safetensors").exists()
    hf = AutoModelForSequenceClassification.from_pretrained(str(out)).eval()
    assert_close(_torch_outputs(hf, inputs), expected, what="transformers, sharded")
    assert_close(km.TextClassifier.from_preset(out)(inputs), expected, what="keras-models, sharded")
    model.save_to_preset(out, overwrite=True)  # one file now: the shards and the index go
    assert sorted(p.name for p in out.glob("model*.safetensors*")) == ["model.safetensors"]
    model.save_to_preset(out, overwrite=True, max_shard_size=10**9)  # under the limit: one file
    assert sorted(p.name for p in out.glob("model*.safetensors*")) == ["model.safetensors"]


def test_untied_mlm_round_trip(tmp_path):
    from transformers import AutoModelForMaskedLM

    folder, inputs, expected = tiny_mlm_untied()
    model = km.MaskedLM.from_preset(folder)
    assert not model.tie_word_embeddings
    model.save_to_preset(tmp_path / "mlm")
    hf = AutoModelForMaskedLM.from_pretrained(str(tmp_path / "mlm")).eval()
    assert_close(_torch_outputs(hf, inputs), expected, mask=inputs["attention_mask"], what="untied MLM")


def test_save_to_preset_refuses_non_empty_folder(tmp_path):
    folder, _, _ = tiny_classifier()
    model = km.Backbone.from_preset(folder)
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "keep.txt").write_text("mine")
    with pytest.raises(PresetError, match="not empty"):
        model.save_to_preset(tmp_path / "x")
    assert (tmp_path / "x" / "keep.txt").read_text() == "mine"
    model.save_to_preset(tmp_path / "x", overwrite=True)
    assert (tmp_path / "x" / "model.safetensors").is_file()


def test_keras_file_round_trip(tmp_path, monkeypatch):
    folder, inputs, expected = tiny_classifier()
    model = km.TextClassifier.from_preset(folder)
    path = tmp_path / "model.keras"
    model.save(path)
    # the file's values replace every variable: no variable is given a random initial value while
    # loading (under JAX each initialiser compiles a program per variable shape, most of a load's
    # time); draws traced inside the symbolic build (a stateless scope) compute nothing and are
    # not counted
    from keras.src.backend import random as keras_random
    from keras.src.backend.common.stateless_scope import in_stateless_scope

    drawn = []

    def counting(real, name):
        def draw(*args, **kwargs):
            if not in_stateless_scope():
                drawn.append(name)
            return real(*args, **kwargs)
        return draw

    for name in ("uniform", "normal", "truncated_normal"):
        monkeypatch.setattr(keras_random, name, counting(getattr(keras_random, name), name))
    restored = keras.saving.load_model(path)
    monkeypatch.undo()
    assert drawn == []
    assert type(restored) is type(model)
    assert_close(restored(inputs), expected, what=".keras reload")
    # the preprocessor travels in the file's assets: raw text still works after the reload
    texts = ["good", "the service was very slow today"]
    assert restored.preprocessor is not None
    assert restored.preprocessor(texts)["input_ids"].tolist() == model.preprocessor(texts)["input_ids"].tolist()
    np.testing.assert_allclose(restored.predict(texts, verbose=0), model.predict(texts, verbose=0), atol=1e-6)
    fixed = km.TextClassifier.from_preset(folder, sequence_length=12)
    fixed.save(tmp_path / "fixed.keras")
    again = keras.saving.load_model(tmp_path / "fixed.keras")
    assert again.preprocessor(texts)["input_ids"].shape == (2, 12)
    backbone = km.Backbone.from_preset(folder)
    backbone.save(tmp_path / "bb.keras")
    bb2 = keras.saving.load_model(tmp_path / "bb.keras")
    assert_close(bb2(inputs), to_numpy(backbone(inputs)), atol=1e-6, what="backbone .keras")


def test_fresh_head_is_reported(tmp_path, caplog):
    folder, inputs, _ = tiny_classifier()
    km.Backbone.from_preset(folder).save_to_preset(tmp_path / "bb")
    with pytest.raises(ConfigError, match="num_classes"):
        km.TextClassifier.from_preset(tmp_path / "bb")
    with caplog.at_level(logging.WARNING, logger="keras_models"):
        model = km.TokenClassifier.from_preset(tmp_path / "bb", num_classes=5)
    assert not model.head_from_checkpoint
    assert "new, randomly initialised head" in caplog.text
    assert to_numpy(model(inputs)).shape == (2, 8, 5)
    # A different num_classes than the checkpoint's head also builds a new head.
    with caplog.at_level(logging.WARNING, logger="keras_models"):
        m2 = km.TextClassifier.from_preset(folder, num_classes=7)
    assert not m2.head_from_checkpoint and to_numpy(m2(inputs)).shape == (2, 7)


def test_fit_predict_evaluate_on_raw_strings():
    # Seeded: the first epoch's mean loss against the last one's depends on the dropout masks and the
    # head's initial values, which otherwise follow whatever ran before in the same process.
    keras.utils.set_random_seed(0)
    folder, _, _ = tiny_classifier()
    model = km.TextClassifier.from_preset(folder)
    texts = ["a good movie", "a bad movie", "great food", "terrible service", "i love it", "i hate it"] * 4
    labels = np.array([2, 0, 2, 0, 2, 0] * 4)
    model.compile(optimizer=keras.optimizers.Adam(1e-2),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])
    history = model.fit(texts, labels, batch_size=8, epochs=4, verbose=0)
    losses = history.history["loss"]
    assert losses[-1] < losses[0]
    probs = model.predict(["a good movie", "terrible service"], verbose=0)
    assert probs.shape == (2, 3)
    loss, acc = model.evaluate(texts, labels, batch_size=8, verbose=0)
    assert np.isfinite(loss) and 0.0 <= acc <= 1.0


def test_masked_lm_fit_on_raw_strings_builds_its_own_labels():
    folder, _, _ = tiny_classifier()
    model = km.MaskedLM.from_preset(folder)  # new MLM head over the classifier's encoder
    model.preprocessor.rng = np.random.default_rng(0)  # reproducible dynamic masking
    texts = ["a good movie and great food", "the service was very slow", "i love this hotel room"] * 6
    model.compile(optimizer=keras.optimizers.Adam(1e-2),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  weighted_metrics=[])
    history = model.fit(texts, batch_size=6, epochs=3, verbose=0)
    assert history.history["loss"][-1] < history.history["loss"][0]
    logits = model.predict(texts[:2], verbose=0)
    assert logits.shape[0] == 2 and logits.shape[-1] == model.backbone.vocab_size


def test_raw_string_batches_of_changing_length():
    # Batches 1 and 2 share a padded length and batch 3 is shorter: TensorFlow's tf.data signature
    # must not be fixed from the first batches (Keras peeks two of them).
    # Training pads each batch to a length bucket (16, 32, ...): here 32, 32 and 16.
    from keras_models.tasks.raw_data import RawDataAdapter

    folder, _, _ = tiny_classifier()
    model = km.TextClassifier.from_preset(folder)
    long_text, short_text = " ".join(["the service was very slow today"] * 4), "good"
    texts = [long_text, long_text, long_text, long_text, short_text, short_text]
    lengths = [model.preprocessor(texts[i:i + 2])["input_ids"].shape[1] for i in (0, 2, 4)]
    assert lengths[0] == lengths[1] > lengths[2] and 16 < lengths[0] < 32
    train = RawDataAdapter(texts, [0, 1, 2, 0, 1, 2], model.preprocessor, batch_size=2)
    assert [train[i][0]["input_ids"].shape[1] for i in range(3)] == [32, 32, 16]
    infer = RawDataAdapter(texts, None, model.preprocessor, batch_size=2, inference=True)
    assert [infer[i][0]["input_ids"].shape[1] for i in range(3)] == lengths
    # the bucket's extra padding is masked: the same logits as the batch padded to its longest
    np.testing.assert_allclose(to_numpy(model(train[2][0])), to_numpy(model(infer[2][0])), atol=1e-5)
    model.compile(optimizer="adam", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    history = model.fit(texts, [0, 1, 2, 0, 1, 2], batch_size=2, shuffle=False, epochs=2, verbose=0)
    assert len(history.history["loss"]) == 2
    logits = model.predict(texts, batch_size=2, verbose=0)
    assert logits.shape == (6, 3)
    np.testing.assert_allclose(logits[4:], to_numpy(model(model.preprocessor(texts[4:]))), atol=1e-5)
    assert np.isfinite(model.evaluate(texts, [0, 1, 2, 0, 1, 2], batch_size=2, verbose=0))


def test_two_label_head_without_label_keys_in_config(tmp_path):
    import json

    folder, inputs, _ = tiny_classifier()
    model = km.TextClassifier.from_preset(folder, num_classes=2)
    model.save_to_preset(tmp_path / "two")
    cfg_path = tmp_path / "two" / "config.json"
    cfg = json.loads(cfg_path.read_text())
    for key in ("id2label", "label2id", "num_labels"):
        cfg.pop(key, None)  # Transformers omits default-valued keys (2 labels)
    cfg_path.write_text(json.dumps(cfg))
    again = km.TextClassifier.from_preset(tmp_path / "two")
    assert again.head_from_checkpoint and again.num_classes == 2
    np.testing.assert_allclose(to_numpy(again(inputs)), to_numpy(model(inputs)), atol=1e-5)


def test_load_model_after_a_plain_import(tmp_path):
    """A fresh process that only ran ``import keras_models`` (before or after keras) loads a
    .keras file: the classes register on Keras' first lookup of a keras_models name."""
    import os
    import subprocess
    import sys

    folder, inputs, _ = tiny_classifier()
    model = km.TextClassifier.from_preset(folder)
    model.save(tmp_path / "m.keras")
    expected = model.predict(["good"], verbose=0)
    code = ("import keras_models, keras, numpy as np, sys; "
            "m = keras.saving.load_model(sys.argv[1]); "
            "np.save(sys.argv[2], m.predict(['good'], verbose=0))")
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env = {**os.environ, "PYTHONPATH": root + os.pathsep + os.environ.get("PYTHONPATH", "")}
    proc = subprocess.run([sys.executable, "-c", code, str(tmp_path / "m.keras"), str(tmp_path / "out.npy")],
                          capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    np.testing.assert_allclose(np.load(tmp_path / "out.npy"), expected, atol=1e-6)

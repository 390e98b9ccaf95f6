"""fit smoke test: every text head trains (loss decreases over a few steps on one tiny batch)."""

import numpy as np
import pytest

import keras
import keras_models as km

TINY = dict(vocab_size=50, hidden_size=16, num_layers=1, num_heads=2, intermediate_size=20,
            max_position_embeddings=16, dropout=0.0, attention_dropout=0.0)
B, S = 4, 8


def _inputs(pad_id=0):
    rng = np.random.RandomState(0)
    ids = rng.randint(3, 50, size=(B, S)).astype("int32")
    mask = np.ones_like(ids)
    ids[-1, -3:], mask[-1, -3:] = pad_id, 0
    return {"input_ids": ids, "attention_mask": mask}


def _sce():
    return keras.losses.SparseCategoricalCrossentropy(from_logits=True)


def _case(head):
    rng = np.random.RandomState(1)
    m = km.models
    if head == "MaskedLM":  # factorised embeddings + shared layers
        model = m.AlbertMaskedLM(m.AlbertBackbone(**TINY, embedding_size=8))
        return model, _inputs(), rng.randint(0, 50, (B, S)), _sce()
    if head == "TextClassifier":
        model = m.BertTextClassifier(m.BertBackbone(**TINY), num_classes=3)
        return model, _inputs(), rng.randint(0, 3, (B,)), _sce()
    if head == "TokenClassifier":
        model = m.DistilBertTokenClassifier(m.DistilBertBackbone(**TINY), num_classes=4)
        return model, _inputs(), rng.randint(0, 4, (B, S)), _sce()
    if head == "QuestionAnswerer":
        model = m.XLMRobertaQuestionAnswerer(m.XLMRobertaBackbone(**TINY))
        y = {"start_logits": rng.randint(0, S, (B,)), "end_logits": rng.randint(0, S, (B,))}
        return model, _inputs(pad_id=1), y, {"start_logits": _sce(), "end_logits": _sce()}
    if head == "Discriminator":
        model = m.ElectraDiscriminator(m.ElectraBackbone(**TINY, embedding_size=8))
        y = rng.randint(0, 2, (B, S)).astype("float32")
        return model, _inputs(), y, keras.losses.BinaryCrossentropy(from_logits=True)
    if head == "TextEmbedder":
        model = m.MegatronBertTextEmbedder(m.MegatronBertBackbone(**TINY), pooling=("mean",))
        return model, _inputs(), rng.normal(size=(B, 16)).astype("float32"), "mse"
    raise AssertionError(head)


@pytest.mark.parametrize("head", ["MaskedLM", "TextClassifier", "TokenClassifier", "QuestionAnswerer",
                                  "Discriminator", "TextEmbedder"])
def test_fit_loss_decreases(head):
    keras.utils.set_random_seed(0)
    model, x, y, loss = _case(head)
    model.compile(optimizer=keras.optimizers.Adam(1e-2), loss=loss)
    history = model.fit(x, y, batch_size=B, epochs=6, shuffle=False, verbose=0)
    losses = history.history["loss"]
    assert np.all(np.isfinite(losses)), losses
    assert losses[-1] < 0.97 * losses[0], f"{head}: loss did not decrease: {losses}"


def _ce(logits, labels, ignore=None):
    """Mean softmax cross-entropy over the labels that are not ``ignore`` (Transformers' rule)."""
    logits = np.asarray(logits, "float64").reshape(-1, np.shape(logits)[-1])
    labels = np.asarray(labels).reshape(-1)
    keep = labels != ignore if ignore is not None else np.ones_like(labels, bool)
    z = logits[keep] - logits[keep].max(-1, keepdims=True)
    logp = z - np.log(np.exp(z).sum(-1, keepdims=True))
    return -logp[np.arange(keep.sum()), labels[keep]].mean()


@pytest.mark.parametrize("head", ["TextClassifier", "TokenClassifier", "QuestionAnswerer", "MaskedLM"])
def test_default_compile_uses_the_task_loss(head):
    """Without compile(), a task compiles itself with AdamW(5e-5) and its loss: the loss Keras
    computes is the task loss of the logits, -100 labels ignored as in Transformers (checked
    through compute_loss, without compiling a train step)."""
    keras.utils.set_random_seed(0)
    model, x, y, _ = _case(head)
    if head in ("TokenClassifier", "MaskedLM"):
        y = y.copy()
        y[:, :2] = -100
    model._compile_by_default("fit")
    assert isinstance(model.optimizer, keras.optimizers.AdamW)
    assert np.isclose(float(keras.ops.convert_to_numpy(model.optimizer.learning_rate)), 5e-5)
    logits = model(x)
    loss = float(keras.ops.convert_to_numpy(model.compute_loss(x=x, y=y, y_pred=logits)))
    logits = keras.tree.map_structure(keras.ops.convert_to_numpy, logits)
    if head == "QuestionAnswerer":
        expected = _ce(logits["start_logits"], y["start_logits"]) + _ce(logits["end_logits"], y["end_logits"])
    else:
        expected = _ce(logits, y, ignore=-100)
    np.testing.assert_allclose(loss, expected, rtol=1e-4)


def test_fit_without_compile_trains_and_explicit_compile_wins():
    """README's ``classifier.fit(x, y)`` without compile(): the first epoch's loss (one batch,
    measured before the update) is the task loss of the untrained logits."""
    keras.utils.set_random_seed(0)
    model, x, y, _ = _case("TextClassifier")
    before = model.predict(x, batch_size=B, verbose=0)
    history = model.fit(x, y, batch_size=B, epochs=1, shuffle=False, verbose=0)
    np.testing.assert_allclose(history.history["loss"][0], _ce(before, y), rtol=1e-4)
    other, x, y, loss = _case("TokenClassifier")
    other.compile(optimizer=keras.optimizers.SGD(0.1), loss=loss)
    other._compile_by_default("fit")
    assert isinstance(other.optimizer, keras.optimizers.SGD)
    embedder, x, y, _ = _case("TextEmbedder")
    with pytest.raises(ValueError, match="no default loss.*compile"):
        embedder.fit(x, y, verbose=0)

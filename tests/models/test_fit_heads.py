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


def _weighted_ce(logits, labels, weights):
    logits = np.asarray(logits, "float64")
    z = logits - logits.max(-1, keepdims=True)
    logp = z - np.log(np.exp(z).sum(-1, keepdims=True))
    nll = -np.take_along_axis(logp, np.asarray(labels)[..., None], -1)[..., 0]
    return (nll * weights).sum() / weights.sum()


def test_causal_lm_fit_on_texts_and_on_prompt_response_pairs():
    """CausalLM.fit(texts) without compile trains on the next-token loss averaged over real
    tokens (padding excluded, so a longer length bucket leaves it unchanged); with (prompts,
    responses) only the response tokens are labels, as Transformers' -100."""
    from keras_models.preprocessing.text_base import length_buckets
    from tests.pipelines.refs import causal_checkpoint

    model = km.CausalLM.from_preset(causal_checkpoint())
    pre = model.preprocessor
    texts = ["hello world how are you", "ab", "the quick brown fox"]
    feats, labels, weights = pre(texts)
    model._compile_by_default("fit")
    logits = model(feats)
    loss = float(keras.ops.convert_to_numpy(model.compute_loss(x=feats, y=labels, y_pred=logits, sample_weight=weights)))
    np.testing.assert_allclose(loss, _weighted_ce(keras.ops.convert_to_numpy(logits), labels, weights), rtol=1e-4)
    with length_buckets():
        f2, l2, w2 = pre(texts)
    assert f2["input_ids"].shape[1] in (16, 32, 64) and f2["input_ids"].shape[1] > feats["input_ids"].shape[1]
    loss2 = model.compute_loss(x=f2, y=l2, y_pred=model(f2), sample_weight=w2)
    np.testing.assert_allclose(float(keras.ops.convert_to_numpy(loss2)), loss, rtol=1e-4)

    prompts, responses = ["hello", "the quick"], ["world", "brown fox"]
    f3, l3, w3 = pre(prompts, responses)
    for i, (p, r) in enumerate(zip(prompts, responses)):
        p_ids = [t for t in pre.tokenizer._encode_batch([p])[0].ids]
        r_ids = list(pre.tokenizer._encode_batch([r], add_special_tokens=False)[0].ids)
        if p_ids and p_ids[-1] == pre.tokenizer.eos_token_id:
            p_ids = p_ids[:-1]
        n = len(p_ids)
        assert w3[i, : n - 1].sum() == 0  # prompt tokens are not labels
        assert l3[i, n - 1 : n - 1 + len(r_ids)].tolist() == r_ids  # the response (then eos) is
        assert w3[i, n - 1 : n + len(r_ids)].tolist() == [1.0] * (len(r_ids) + 1)

    history = model.fit(texts, batch_size=3, epochs=1, shuffle=False, verbose=0)
    assert np.isfinite(history.history["loss"][0]) and history.history["loss"][0] > 0


def _tied_causal_lm():
    backbone = km.models.LlamaBackbone(vocab_size=50, hidden_size=16, num_layers=1, num_heads=2, num_kv_heads=1,
                                       intermediate_size=24, max_position_embeddings=16, tie_word_embeddings=True)
    ids = np.random.RandomState(0).randint(3, 50, size=(B, S)).astype("int32")
    x = {"input_ids": ids, "attention_mask": np.ones_like(ids)}
    return km.models.LlamaCausalLM(backbone), x, np.roll(ids, -1, axis=1), _sce()


@pytest.mark.parametrize("case", ["TextClassifier", "tied CausalLM"])
def test_fast_training_path_matches_keras_path(case, monkeypatch):
    """tasks.training (KM_FAST_TRAIN): the same training steps with the fast path on and off give
    the same losses and weights (torch: Dense forward and backward through oneDNN / MKL; jax: Dense
    and the tied output projection through jax_kernels.dense_matmul; dropout is off here), up to
    float summation order."""
    from keras_models.tasks import training

    tied = []
    real = training.tied_projection
    monkeypatch.setattr(training, "tied_projection", lambda h, t: (lambda r: tied.append(r is not None) or r)(real(h, t)))

    def run(enabled):
        keras.utils.set_random_seed(0)
        model, x, y, loss = _case(case) if case != "tied CausalLM" else _tied_causal_lm()
        # SGD: updates linear in the gradients (Adam would magnify summation-order noise in ~0 grads)
        model.compile(optimizer=keras.optimizers.SGD(0.1), loss=loss)
        before = training.fast_training_enabled()
        training.set_fast_training(enabled)
        try:
            losses = [float(model.train_on_batch(x, y)) for _ in range(3)]
        finally:
            training.set_fast_training(before)
        return losses, [keras.ops.convert_to_numpy(v) for v in model.trainable_variables]

    fast = run(True)
    fast_head = list(tied)  # per tied_projection call: whether it returned the fast product
    tied.clear()
    slow = run(False)
    if case == "tied CausalLM":  # jax: the training step's projection took the fast product
        assert any(fast_head) == (keras.backend.backend() == "jax") and not any(tied)
    np.testing.assert_allclose(fast[0], slow[0], rtol=1e-5, atol=1e-6)
    for a, b in zip(fast[1], slow[1]):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("metrics", [None, ["accuracy"]])
def test_tensorflow_fit_traces_the_step_once(metrics):
    """tasks.training.build_before_tracing: under tensorflow, fit builds the optimizer (and compiled
    metrics) before Keras traces the training step, so the step is traced once, not twice (Keras
    leaves their variables to the first trace, and TensorFlow traces a function that created
    variables again); the optimizer's variables, the losses and the metrics are the ones Keras' own
    order gives."""
    if keras.backend.backend() != "tensorflow":
        pytest.skip("a tensorflow trainer behaviour (jax and torch build the optimizer before the step)")
    from keras_models.tasks import training

    def run(enabled):
        keras.utils.set_random_seed(0)
        model, x, y, loss = _case("TextClassifier")
        model(x)  # built, as a from_preset model is
        traces = []
        step = model.train_step
        model.train_step = lambda data: traces.append(1) or step(data)
        model.compile(optimizer=keras.optimizers.Adam(1e-3), loss=loss, metrics=metrics)
        before = training.fast_training_enabled()
        training.set_fast_training(enabled)
        try:
            history = model.fit(x, y, batch_size=2, epochs=2, shuffle=False, verbose=0)
        finally:
            training.set_fast_training(before)
        # in order, by the slot's kind (the layer names in the paths are made unique across the runs)
        state = [(v.path.rsplit("/", 1)[-1].rsplit("_", 1)[-1], keras.ops.convert_to_numpy(v))
                 for v in model.optimizer.variables]
        return len(traces), history.history, state

    (n_on, hist_on, opt_on), (n_off, hist_off, opt_off) = run(True), run(False)
    assert (n_on, n_off) == (1, 2)
    assert sorted(hist_on) == sorted(hist_off) == sorted(["loss"] + (metrics or []))
    for key in hist_on:
        np.testing.assert_allclose(hist_on[key], hist_off[key], rtol=1e-6, err_msg=key)
    assert [k for k, _ in opt_on] == [k for k, _ in opt_off] and len(opt_on) > 2
    for (kind, a), (_, b) in zip(opt_on, opt_off):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7, err_msg=kind)

"""A first-token classifier's backbone computes only position 0 in its last block
(``tasks.text.FIRST_TOKEN_ONLY``, ``KM_FIRST_TOKEN_ONLY``): the same logits and the same training
step as the full last layer, on every backend, and the short path actually runs."""

import numpy as np
import pytest

import keras
import keras_models as km
from keras_models.layers.encoder_block import EncoderBlock
from keras_models.tasks import text

from tests.models.test_fit_heads import TINY as FIT_TINY
from tests.models.test_fit_heads import _inputs  # (4, 8) ids, the last row padded

TINY = dict(FIT_TINY, num_layers=2)  # two blocks: only the last one may shorten


@pytest.fixture
def switch():
    saved = text.FIRST_TOKEN_ONLY[0]

    def set_(on):
        text.FIRST_TOKEN_ONLY[0] = on

    yield set_
    text.FIRST_TOKEN_ONLY[0] = saved


@pytest.fixture
def short_calls(monkeypatch):
    calls = []
    real = EncoderBlock.call

    def spy(self, x, *args, **kwargs):  # records the calls that computed only the first rows
        out = real(self, x, *args, **kwargs)
        if out.shape[1] != x.shape[1]:
            calls.append((self.name, tuple(out.shape)))
        return out

    monkeypatch.setattr(EncoderBlock, "call", spy)
    return calls


@pytest.mark.parametrize("norm_first", [False, True])
@pytest.mark.parametrize("bias_kind", ["padding", "per_head"])
def test_block_first_rows_equal_the_full_block(norm_first, bias_kind):
    rng = np.random.default_rng(1)
    block = EncoderBlock(16, 2, 24, norm_first=norm_first, name="probe_block")
    x = rng.standard_normal((3, 7, 16)).astype("float32")
    block.build(x.shape)
    if bias_kind == "padding":  # (b, 1, 1, s): the query axis broadcasts
        bias = np.zeros((3, 1, 1, 7), "float32")
        bias[-1, ..., -2:] = -1e9
    else:  # (1, h, t, s): relative-position style, one row per query
        bias = rng.standard_normal((1, 2, 7, 7)).astype("float32")
    full = keras.ops.convert_to_numpy(block(x, bias))
    short = keras.ops.convert_to_numpy(block(x, bias, query_rows=2))
    assert short.shape == (3, 2, 16)
    np.testing.assert_allclose(short, full[:, :2], rtol=1e-5, atol=1e-5)


def test_classifier_logits_and_training_step_equal_the_full_last_layer(switch, short_calls):
    inputs, labels = _inputs(), np.array([0, 1, 2, 1])

    def trained(on):
        switch(on)
        keras.utils.set_random_seed(0)
        model = km.models.BertTextClassifier(km.models.BertBackbone(**TINY), num_classes=3)
        logits = keras.ops.convert_to_numpy(model(inputs))
        model.compile(optimizer=keras.optimizers.SGD(0.1),
                      loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        loss = float(model.train_on_batch(inputs, labels))
        return logits, loss, [keras.ops.convert_to_numpy(v) for v in model.trainable_variables]

    logits_off, loss_off, weights_off = trained(False)
    assert short_calls == []
    logits_on, loss_on, weights_on = trained(True)
    # the model call and the training step each ran the last block on position 0 only
    assert short_calls and all(shape[1] == 1 for _, shape in short_calls)
    assert {name for name, _ in short_calls} == {"block_1"}
    np.testing.assert_allclose(logits_on, logits_off, rtol=1e-5, atol=1e-6)
    assert loss_on == pytest.approx(loss_off, rel=1e-5, abs=1e-6)
    for a, b in zip(weights_on, weights_off):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_heads_that_read_other_positions_keep_the_full_layer(short_calls):
    """Token classification reads every position: no short path."""
    keras.utils.set_random_seed(0)
    model = km.models.BertTokenClassifier(km.models.BertBackbone(**TINY), num_classes=3)
    out = keras.ops.convert_to_numpy(model(_inputs()))
    assert out.shape == (4, 8, 3) and short_calls == []

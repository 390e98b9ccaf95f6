"""keras_models.tf_kernels (KM_TF_FLAT_DENSE) and the exact GELU's numerics on every backend.

Under tensorflow, predict_step traces the model's plain Dense layers as one 2-D GEMM: the outputs
must equal Keras' path (float summation order aside), the redirect must actually have run, and
anything it does not cover must go through Keras. On jax / torch the context is a no-op."""

import math

import numpy as np
import pytest

import keras
import keras_models as km
from keras_models import tf_kernels
from keras_models.layers.activations import get_activation

TINY = dict(vocab_size=50, hidden_size=16, num_layers=2, num_heads=2, intermediate_size=24,
            max_position_embeddings=16, dropout=0.0, attention_dropout=0.0)
TF = keras.backend.backend() == "tensorflow"


def _inputs():
    rng = np.random.RandomState(0)
    ids = rng.randint(3, 50, size=(4, 8)).astype("int32")
    mask = np.ones_like(ids)
    ids[-1, -3:], mask[-1, -3:] = 0, 0
    return {"input_ids": ids, "attention_mask": mask}


def _classifier(seed=0):
    keras.utils.set_random_seed(seed)
    return km.models.BertTextClassifier(km.models.BertBackbone(**TINY), num_classes=3)


@pytest.fixture
def counted(monkeypatch):
    """Counts the Dense calls that took the flat path."""
    calls = []
    real = tf_kernels._flat_dense_call

    def wrapped(layer):
        fn = real(layer)

        def call(x, *args, **kwargs):
            calls.append(layer.name)
            return fn(x, *args, **kwargs)

        return call

    monkeypatch.setattr(tf_kernels, "_flat_dense_call", wrapped)
    return calls


def _with_switch(enabled, fn):
    before = tf_kernels._FLAT_DENSE[0]
    tf_kernels.set_flat_dense(enabled)
    try:
        return fn()
    finally:
        tf_kernels.set_flat_dense(before)


def test_predict_flat_dense_matches_keras_path(counted):
    x = _inputs()
    on = _with_switch(True, lambda: keras.ops.convert_to_numpy(_classifier().predict_on_batch(x)))
    n_on = len(counted)
    off = _with_switch(False, lambda: keras.ops.convert_to_numpy(_classifier().predict_on_batch(x)))
    assert len(counted) == n_on  # the switch off: no redirect
    # 2 blocks x (q, k, v, o, intermediate, output) = 12 Dense calls on (batch, time, in) inputs
    assert n_on >= (12 if TF else 0) and (TF or n_on == 0), counted
    np.testing.assert_allclose(on, off, rtol=1e-5, atol=1e-6)


def test_uncovered_calls_take_keras_path(counted, monkeypatch):
    """A rank-2 input and another dtype fall back to Keras' call (same result); a rank-3 input of
    the compute dtype takes the flat GEMM."""
    fallbacks = []
    real = tf_kernels._keras_layer_call
    monkeypatch.setattr(tf_kernels, "_keras_layer_call",
                        lambda layer, x, *a, **k: fallbacks.append(x.shape.rank) or real(layer, x, *a, **k))
    keras.utils.set_random_seed(0)
    dense = keras.layers.Dense(5, activation="relu", name="probe")
    x2 = np.random.default_rng(0).normal(size=(3, 4)).astype("float32")
    x3 = np.random.default_rng(1).normal(size=(2, 3, 4)).astype("float32")
    ref2, ref3 = (keras.ops.convert_to_numpy(dense(x)) for x in (x2, x3))
    with tf_kernels.flat_dense_calls(dense):
        got2 = keras.ops.convert_to_numpy(dense(keras.ops.convert_to_tensor(x2)))
        got3 = keras.ops.convert_to_numpy(dense(keras.ops.convert_to_tensor(x3)))
        got64 = keras.ops.convert_to_numpy(dense(keras.ops.convert_to_tensor(x3.astype("float64"))))
    np.testing.assert_allclose(got2, ref2, atol=1e-6)
    np.testing.assert_allclose(got3, ref3, atol=1e-6)
    np.testing.assert_allclose(got64, ref3, atol=1e-5)
    assert counted == (["probe"] * 3 if TF else [])  # redirected calls (TF only) ...
    assert fallbacks == ([2, 3] if TF else [])  # ... of which rank 2 and float64 went to Keras
    assert type(dense) is keras.layers.Dense  # the class is restored after the context


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_exact_gelu_numerics(dtype):
    """The exact GELU against float64 math: float32 to 2e-6 relative plus 2e-6 absolute (the erf
    form loses the tail's relative precision, as PyTorch's kernel does; the tanh approximation is
    ~1e-3 off); bfloat16 within one bf16 rounding of the float64 value (computed in float32 inside,
    rounded once, as PyTorch does)."""
    x = np.concatenate([np.linspace(-8, 8, 4001), [-30.0, -12.5, 0.0, 1e-4, 25.0]]).astype("float32")
    if dtype == "bfloat16":
        x = keras.ops.convert_to_numpy(keras.ops.cast(keras.ops.cast(x, "bfloat16"), "float32"))
    exact = np.array([v / 2 * (1 + math.erf(v / math.sqrt(2))) for v in x.astype("float64")])
    got = get_activation("gelu")(keras.ops.cast(keras.ops.convert_to_tensor(x), dtype))
    assert keras.backend.standardize_dtype(got.dtype) == dtype
    got = keras.ops.convert_to_numpy(keras.ops.cast(got, "float32")).astype("float64")
    if dtype == "float32":
        np.testing.assert_allclose(got, exact, rtol=2e-6, atol=2e-6)
    else:  # bf16 has 8 significant bits: one rounding is at most 2**-8 relative
        np.testing.assert_allclose(got, exact, rtol=2.0**-8, atol=2e-6)


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_activated_projection_fused_form_is_exact(dtype):
    """``activated_projection`` inside predict's flat Dense context: under tensorflow (oneDNN on) the
    GELU is emitted on the 2-D product in the form grappler fuses into the GEMM (``Erfc``), and the
    result stays within one bf16 rounding (float32: float32 accuracy) of a float64 reference -- TF's
    unfused bf16 GELU was ~1% off. Other backends: act(dense(x))."""
    from scipy.special import erf

    from keras_models.layers.activations import activated_projection

    dense = keras.layers.Dense(160, dtype=dtype, name="probe_projection")
    x = np.random.default_rng(9).standard_normal((2, 20, 96)).astype("float32")
    dense.build(x.shape)
    rng = np.random.default_rng(10)
    dense.kernel.assign((rng.standard_normal((96, 160)) * 0.2).astype("float32"))
    dense.bias.assign(rng.standard_normal(160).astype("float32"))
    xin = keras.ops.cast(x, dtype)
    x64 = keras.ops.convert_to_numpy(keras.ops.cast(xin, "float32")).astype("float64")
    w64 = keras.ops.convert_to_numpy(keras.ops.cast(dense.kernel, "float32")).astype("float64")
    b64 = keras.ops.convert_to_numpy(keras.ops.cast(dense.bias, "float32")).astype("float64")
    y = x64 @ w64 + b64
    want = 0.5 * y * (1 + erf(y / math.sqrt(2)))
    fused = TF and tf_kernels.onednn_enabled()
    if TF:
        import tensorflow as tf

        def run(t):
            with tf_kernels.flat_dense_calls(dense):
                return activated_projection(dense, t, "gelu")

        before = tf.config.optimizer.get_experimental_options()
        # the test suite turns grappler off (tests/conftest.py); the fused form needs its remapper
        tf.config.optimizer.set_experimental_options({"disable_meta_optimizer": False})
        try:
            assert tf_kernels.fusing_enabled() == fused
            fn = tf.function(run)
            got = fn(xin)
            ops = {op.type for op in fn.get_concrete_function(xin).graph.get_operations()}
        finally:
            tf.config.optimizer.set_experimental_options(
                {"disable_meta_optimizer": before.get("disable_meta_optimizer", False)})
        assert ("Erfc" in ops) == fused
        if before.get("disable_meta_optimizer"):  # without the remapper: Keras' float32 GELU
            ops = {op.type for op in tf.function(run).get_concrete_function(xin).graph.get_operations()}
            assert "Erfc" not in ops
    else:
        got = activated_projection(dense, xin, "gelu")
    got = keras.ops.convert_to_numpy(keras.ops.cast(got, "float32")).astype("float64")
    if dtype == "bfloat16":  # fused: one rounding of the exact value; else the product is rounded first
        bound = np.abs(want) * 2.0 ** -8 + 1e-3 if fused else np.abs(want) * 2.0 ** -7 + 2e-2
        np.testing.assert_array_less(np.abs(got - want), bound)
    else:
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)

"""jax_kernels.bf16_dots: bf16 products issued with an f32 result (XLA CPU's bf16 GEMM path)."""

import keras
import numpy as np
import pytest

pytestmark = pytest.mark.skipif(keras.backend.backend() != "jax", reason="a JAX-only fast path")


def test_bf16_dots_same_results_and_dtypes():
    import jax
    import jax.numpy as jnp

    from keras_models.jax_kernels import bf16_dots

    r = np.random.RandomState(0)
    a = jnp.asarray(r.randn(1, 1, 64), jnp.bfloat16)  # one row: the zero-padded path
    b = jnp.asarray(r.randn(64, 40), jnp.bfloat16)
    c = jnp.asarray(r.randn(3, 64), jnp.bfloat16)
    e = jnp.asarray(r.randn(40, 64), jnp.bfloat16)

    def f(a, b, c, e):
        def body(i, x):  # inside a loop, a conditional and a nested jit
            y = jax.lax.cond(i > 0, lambda: jax.jit(jnp.matmul)(c, b), lambda: c @ b)
            return x + y.astype(jnp.float32)
        loop = jax.lax.fori_loop(0, jnp.asarray(2), body, jnp.zeros((3, 40)))
        return a @ b, jnp.einsum("xyd,nd->xyn", a, e), loop, a.astype(jnp.float32) @ b.astype(jnp.float32)

    ref = jax.jit(f)(a, b, c, e)
    new = jax.jit(bf16_dots(f))(a, b, c, e)
    for x, y in zip(ref, new):
        assert x.shape == y.shape and x.dtype == y.dtype
        # the same f32 sums up to their order: at most one bf16 rounding step apart
        np.testing.assert_allclose(np.asarray(y, np.float32), np.asarray(x, np.float32), rtol=1e-2, atol=1e-2)
    jaxpr = str(jax.make_jaxpr(bf16_dots(f))(a, b, c, e))
    assert jaxpr.count("preferred_element_type=float32") >= 4
    assert "preferred_element_type=bfloat16" not in jaxpr
    assert bf16_dots(f)(a, b, c, e)[0].dtype == jnp.bfloat16  # eager: plain call


def test_bf16_dots_only_for_bf16_models():
    from keras_models import jax_kernels

    class M:
        dtype_policy = keras.DTypePolicy("float32")

    f = lambda x: x  # noqa: E731
    assert jax_kernels.bf16_dots(f, M()) is f
    M.dtype_policy = keras.DTypePolicy("bfloat16")
    assert jax_kernels.wants_bf16_dots(M()) == (jax_kernels.BF16_DOTS and __import__("jax").default_backend() == "cpu")


def test_hash_dropout_keeps_the_right_share_and_depends_on_the_seed():
    import jax.numpy as jnp

    from keras_models.jax_kernels import hash_dropout

    x = jnp.ones((64, 128, 128), jnp.float32)  # 2**20 elements
    for rate in (0.1, 0.5, 0.9):
        y = np.asarray(hash_dropout(x, rate, jnp.asarray([7, 3], jnp.uint32)))
        kept = y != 0
        n, p = kept.size, 1 - rate
        assert abs(kept.mean() - p) < 5 * np.sqrt(p * (1 - p) / n), (rate, kept.mean())  # 5 sigma
        np.testing.assert_allclose(y[kept], 1 / p, rtol=1e-6)  # inverted scaling
        # neighbouring elements, rows and batches are uncorrelated
        flat = kept.reshape(-1).astype("float64")
        for lag in (1, 128, 128 * 128):
            assert abs(np.corrcoef(flat[:-lag], flat[lag:])[0, 1]) < 0.01, (rate, lag)
    a = np.asarray(hash_dropout(x, 0.5, jnp.asarray([7, 3], jnp.uint32))) != 0
    b = np.asarray(hash_dropout(x, 0.5, jnp.asarray([7, 3], jnp.uint32))) != 0
    c = np.asarray(hash_dropout(x, 0.5, jnp.asarray([8, 3], jnp.uint32))) != 0
    d = np.asarray(hash_dropout(x, 0.5, jnp.asarray([7, 4], jnp.uint32))) != 0
    assert (a == b).all()  # a pure function of the seed
    for other in (c, d):  # a seed one apart: about half the decisions change
        assert 0.45 < (a != other).mean() < 0.55


def test_dense_matmul_gradients_match_autodiff():
    import jax
    import jax.numpy as jnp

    from keras_models.jax_kernels import dense_matmul

    r = np.random.RandomState(0)
    x, w = jnp.asarray(r.randn(3, 5, 8), jnp.float32), jnp.asarray(r.randn(8, 6), jnp.float32)
    c = jnp.asarray(r.randn(3, 5, 6), jnp.float32)
    ours = jax.grad(lambda x, w: (jnp.tanh(dense_matmul(x, w)) * c).sum(), argnums=(0, 1))(x, w)
    ref = jax.grad(lambda x, w: (jnp.tanh(x @ w) * c).sum(), argnums=(0, 1))(x, w)
    for a, b in zip(ours, ref):
        assert a.shape == b.shape
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-5)


def test_training_fast_path_dropout_and_dense(monkeypatch):
    """Under jax, Task.train_step (KM_FAST_TRAIN on) runs Dropout layers through hash_dropout,
    with Keras' training resolution (an explicit False and inference stay identity), and Dense
    through dense_matmul; with the switch off neither is used."""
    import keras_models as km
    from keras_models import jax_kernels
    from keras_models.tasks import training

    used = []
    real_drop, real_mm = jax_kernels.hash_dropout, jax_kernels.dense_matmul
    monkeypatch.setattr(jax_kernels, "hash_dropout", lambda *a: used.append("drop") or real_drop(*a))
    monkeypatch.setattr(jax_kernels, "dense_matmul", lambda *a: used.append("dense") or real_mm(*a))
    tiny = dict(vocab_size=50, hidden_size=16, num_layers=1, num_heads=2, intermediate_size=20,
                max_position_embeddings=16, dropout=0.5, attention_dropout=0.5)
    ids = np.random.RandomState(0).randint(3, 50, size=(4, 8)).astype("int32")
    x, y = {"input_ids": ids, "attention_mask": np.ones_like(ids)}, np.array([0, 1, 2, 1])

    def run(enabled):
        keras.utils.set_random_seed(0)
        model = km.models.BertTextClassifier(km.models.BertBackbone(**tiny), num_classes=3)
        model.compile(optimizer=keras.optimizers.SGD(0.1),
                      loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        before = training.fast_training_enabled()
        training.set_fast_training(enabled)
        try:
            loss = float(model.train_on_batch(x, y))
        finally:
            training.set_fast_training(before)
        return model, loss

    model, loss = run(True)
    assert "drop" in used and "dense" in used and np.isfinite(loss)
    used.clear()
    # inference after training: no dropout, Keras' path, deterministic
    a, b = (keras.ops.convert_to_numpy(model.predict_on_batch(x)) for _ in range(2))
    np.testing.assert_array_equal(a, b)
    assert used == []
    run(False)
    assert used == []
    # an explicit training=False inside a training call stays identity on the fast path
    drop = keras.layers.Dropout(0.5)
    call = training._jax_dropout_call(drop)
    ones = np.ones((4, 4), "float32")
    np.testing.assert_array_equal(np.asarray(call(ones, training=False)), ones)
    assert set(np.unique(np.asarray(call(ones, training=True)))) <= {0.0, 2.0}


def test_erf_float32_value_and_derivative():
    """The rational erf behind jax's exact GELU: within 5e-7 of float64's erf on [-6, 6] (1 beyond
    +-4 to float32 precision), and its derivative is 2 / sqrt(pi) * exp(-x^2)."""
    import math

    import jax
    import jax.numpy as jnp

    from keras_models.jax_kernels import erf_float32

    x = np.concatenate([np.linspace(-6, 6, 6001), [0.0, 1e-6, -1e-6, 40.0]]).astype("float32")
    exact = np.array([math.erf(v) for v in x.astype("float64")])
    got = np.asarray(jax.jit(erf_float32)(jnp.asarray(x)), np.float64)
    np.testing.assert_allclose(got, exact, rtol=0, atol=5e-7)
    grad = np.asarray(jax.jit(jax.vmap(jax.grad(erf_float32)))(jnp.asarray(x)), np.float64)
    np.testing.assert_allclose(grad, 2 / math.sqrt(math.pi) * np.exp(-x.astype("float64") ** 2), rtol=1e-5, atol=1e-12)


def test_few_row_dots_rewrites_only_few_row_float32_weight_products():
    """``few_row_dots``: a float32 x @ w of 2..16 rows by a 2-D weight is issued with x transposed
    behind an optimisation barrier (so XLA:CPU's YNNPACK matcher declines it); one row, more rows,
    bf16, batched products and a weight that is a transpose in the same trace keep their dot. The
    values are the same products up to summation order."""
    import jax
    import jax.numpy as jnp

    from keras_models import jax_kernels

    r = np.random.RandomState(1)
    w = jnp.asarray(r.randn(300, 260), jnp.float32)  # 78000 entries: above FEW_ROW_MIN_WEIGHT
    table = jnp.asarray(r.randn(260, 300), jnp.float32)
    xs = {rows: jnp.asarray(r.randn(rows, 1, 300), jnp.float32) for rows in (1, 2, 8, 16, 17)}
    q = jnp.asarray(r.randn(2, 3, 5, 300), jnp.float32)

    def f(xs, w, table, q):
        def body(i, acc):  # inside a loop too
            return acc + jnp.tanh(xs[8] @ w)
        loop = jax.lax.fori_loop(0, 2, body, jnp.zeros((8, 1, 260)))
        plain = {rows: x @ w for rows, x in xs.items()}
        tied = xs[8][:, 0] @ table.T  # a transposed table: left alone
        low = xs[8].astype(jnp.bfloat16) @ w.astype(jnp.bfloat16)
        batched = jnp.einsum("bhtd,bhsd->bhts", q, q)
        return loop, plain, tied, low, batched

    ref = jax.jit(f)(xs, w, table, q)
    new = jax.jit(jax_kernels.few_row_dots(f))(xs, w, table, q)
    for x, y in zip(jax.tree_util.tree_leaves(ref), jax.tree_util.tree_leaves(new)):
        assert x.shape == y.shape and x.dtype == y.dtype
        np.testing.assert_allclose(np.asarray(y, np.float32), np.asarray(x, np.float32), rtol=1e-4, atol=1e-3)
    jaxpr = str(jax.make_jaxpr(jax_kernels.few_row_dots(f))(xs, w, table, q))
    # the loop body's product and the 2-, 8- and 16-row ones; not 1 or 17 rows, the tied one,
    # bf16 or the batched einsum
    assert jaxpr.count("optimization_barrier") == 4
    assert jax_kernels.few_row_dots(f)(xs, w, table, q)[1][2].shape == (2, 1, 260)  # eager: plain call


def test_few_row_dots_only_for_float32_models_on_the_cpu():
    from keras_models import jax_kernels

    class M:
        dtype_policy = keras.DTypePolicy("bfloat16")
        weights = [keras.Variable(np.zeros((256, 256), "float32"))]  # 65536 entries: qualifies

    f = lambda x: x  # noqa: E731
    assert jax_kernels.few_row_dots(f, M()) is f
    M.dtype_policy = keras.DTypePolicy("float32")
    on_cpu = __import__("jax").default_backend() == "cpu"
    assert jax_kernels.wants_few_row_dots(M()) == (jax_kernels.FEW_ROW_DOTS and on_cpu)
    M.weights = [keras.Variable(np.zeros((255, 256), "float32")), keras.Variable(np.zeros((300,), "float32"))]
    assert not jax_kernels.wants_few_row_dots(M())  # no weight big enough: traced as it is


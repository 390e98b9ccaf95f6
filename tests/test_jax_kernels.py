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

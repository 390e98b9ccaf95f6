"""The fused attention path's backend kernels against the explicit einsum + softmax attention:
JAX's CPU loop over (batch, K/V head) pairs (keras_models/jax_attention.py) and, under torch, SDPA
called without a mask when the padding bias masks nothing (layers.masks.ALL_VISIBLE)."""

import keras
import numpy as np
import pytest

from keras_models.layers import attention as A
from keras_models.layers.masks import ALL_VISIBLE, padding_bias

BACKEND = keras.backend.backend()


def _explicit(q, k, v, bias, scale):
    """float64 numpy reference: (b, t, h, d) x (b, s, kv, d)."""
    h, kv = q.shape[2], k.shape[2]
    k, v = np.repeat(k, h // kv, axis=2), np.repeat(v, h // kv, axis=2)
    s = np.einsum("bthd,bshd->bhts", q, k).astype("float64") * scale
    if bias is not None:
        s = s + bias
    p = np.exp(s - s.max(-1, keepdims=True))
    p /= p.sum(-1, keepdims=True)
    return np.einsum("bhts,bshd->bthd", p, v)


@pytest.mark.parametrize("h,kv,bias_shape", [(4, 2, (2, 1, 1, 7)), (4, 4, None), (6, 3, (2, 6, 5, 7)),
                                             (2, 1, (1, 2, 1, 7)), (4, 2, (5, 7))])
def test_fused_attention_equals_explicit(h, kv, bias_shape):
    """GQA ratios and every bias broadcast (padding, per-head full, per-head row, 2-D)."""
    rng = np.random.default_rng(0)
    q = rng.standard_normal((2, 5, h, 8)).astype("float32")
    k = rng.standard_normal((2, 7, kv, 8)).astype("float32")
    v = rng.standard_normal((2, 7, kv, 8)).astype("float32")
    bias = None if bias_shape is None else rng.standard_normal(bias_shape).astype("float32")
    out = A.fused_attention(*(keras.ops.convert_to_tensor(x) for x in (q, k, v)),
                            None if bias is None else keras.ops.convert_to_tensor(bias), 0.35)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(out), _explicit(q, k, v, bias, 0.35), atol=1e-5)
    if BACKEND == "jax":  # the CPU loop itself, jitted (fused_attention takes it for long traced blocks)
        import jax

        from keras_models import jax_attention

        loop = jax.jit(lambda q, k, v, b: jax_attention.cpu_attention(q, k, v, b, 0.35))
        np.testing.assert_allclose(np.asarray(loop(q, k, v, bias)), _explicit(q, k, v, bias, 0.35), atol=1e-5)
        # jitted, this short block takes the heads-major products (4-D or no bias) or the fused op
        jitted = jax.jit(lambda q, k, v, b: A.fused_attention(q, k, v, b, 0.35))
        np.testing.assert_allclose(np.asarray(jitted(q, k, v, bias)), _explicit(q, k, v, bias, 0.35), atol=1e-5)


@pytest.mark.skipif(BACKEND != "jax", reason="the rule of jax's CPU attention loop")
def test_jax_cpu_attention_rule(monkeypatch):
    import jax
    import jax.numpy as jnp

    from keras_models import jax_attention

    long_q, long_k = jnp.zeros((1, 300, 2, 8)), jnp.zeros((1, 300, 2, 8))
    assert not jax_attention.use_cpu_attention(long_q, long_k)  # eager: the fused op
    seen = []
    jax.jit(lambda q, k: seen.append(jax_attention.use_cpu_attention(q, k)) or q)(long_q, long_k)
    jax.jit(lambda q, k: seen.append(jax_attention.use_cpu_attention(q, k)) or q)(long_q[:, :10], long_k)
    jax.jit(lambda q, k: seen.append(jax_attention.use_cpu_attention(q, k)) or q)(long_q.astype("bfloat16"),
                                                                                   long_k.astype("bfloat16"))
    monkeypatch.setattr(jax_attention, "CPU_ATTENTION", False)
    jax.jit(lambda q, k: seen.append(jax_attention.use_cpu_attention(q, k)) or q)(long_q + 1, long_k)
    assert seen == [True, False, False, False]


@pytest.mark.skipif(BACKEND != "jax", reason="the rule of jax's heads-major CPU attention")
def test_jax_heads_major_rule_and_explicit_attention(monkeypatch):
    """Traced, short blocks: heads-major (not eager, not a 3-D bias, not with the switch off); an
    Attention layer's explicit path (soft-capping) gives the same output through it as eagerly."""
    import jax
    import jax.numpy as jnp

    from keras_models import jax_attention

    q = jnp.zeros((2, 5, 4, 8))
    assert not jax_attention.use_heads_major(q, q)  # eager
    seen = []
    rule = jax_attention.use_heads_major
    jax.jit(lambda q: seen.append(rule(q, q)) or q)(q)
    jax.jit(lambda q: seen.append(rule(q, q, jnp.zeros((2, 1, 1, 5)))) or q)(q)
    jax.jit(lambda q: seen.append(rule(q, q, jnp.zeros((2, 5, 5)))) or q)(q)
    monkeypatch.setattr(jax_attention, "CPU_ATTENTION", False)
    jax.jit(lambda q: seen.append(rule(q, q)) or q)(q)
    assert seen == [True, True, False, False]
    monkeypatch.setattr(jax_attention, "CPU_ATTENTION", True)

    keras.utils.set_random_seed(0)
    layer = A.Attention(16, 4, num_kv_heads=2, softcap=5.0)
    x = np.random.default_rng(1).standard_normal((2, 6, 16)).astype("float32")
    bias = np.where(np.arange(6)[None, None, None, :] < np.array([6, 4])[:, None, None, None], 0.0, -1e9)
    bias = bias.astype("float32")
    eager = keras.ops.convert_to_numpy(layer(x, bias))
    vars_ = [v.value for v in layer.variables]

    def traced(values, x, bias):
        with keras.StatelessScope(state_mapping=list(zip(layer.variables, values))):
            return layer(x, bias)

    np.testing.assert_allclose(np.asarray(jax.jit(traced)(vars_, x, bias)), eager, atol=1e-5)


@pytest.mark.skipif(BACKEND != "torch", reason="the unpadded-mask drop is torch's (eager) path")
def test_unpadded_padding_bias_calls_sdpa_without_a_mask(monkeypatch):
    import torch

    ones, padded = np.ones((2, 6), "int32"), np.array([[1] * 6, [1] * 4 + [0] * 2], "int32")
    bias = padding_bias(keras.ops.convert_to_tensor(ones))
    assert getattr(bias, ALL_VISIBLE, False) and not getattr(bias + 0.0, ALL_VISIBLE, False)
    assert not getattr(padding_bias(keras.ops.convert_to_tensor(padded)), ALL_VISIBLE, False)
    seen = []
    sdpa = torch.nn.functional.scaled_dot_product_attention

    def spy(*args, **kwargs):
        seen.append(kwargs.get("attn_mask") is None)
        return sdpa(*args, **kwargs)

    monkeypatch.setattr(torch.nn.functional, "scaled_dot_product_attention", spy)
    layer = A.Attention(16, 4)
    x = keras.ops.convert_to_tensor(np.random.default_rng(1).standard_normal((2, 6, 16)).astype("float32"))
    plain = layer(x, bias=None)
    dropped = layer(x, bias=bias)
    kept = layer(x, bias=padding_bias(keras.ops.convert_to_tensor(padded)))
    assert seen == [True, True, False]
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(dropped), keras.ops.convert_to_numpy(plain))
    assert not np.allclose(keras.ops.convert_to_numpy(kept)[1], keras.ops.convert_to_numpy(plain)[1])

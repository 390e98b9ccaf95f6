"""Attention over heads-major K/V (the KV-cache layouts: (b, kv, s, d) and batch-merged
(b * kv, s, d)) equals plain multi-head attention with the K/V heads repeated, computed here in
numpy: MHA, GQA and MQA, per-head and shared biases, logit soft-capping, one query and a chunk of
queries."""

import numpy as np
import pytest
from keras import ops

from keras_models.layers.attention import fused_attention, grouped_attention


def _reference(q, k, v, bias, scale, softcap=None):
    """q (b, t, h, d), k / v heads-major (b, kv, s, d) -> (b, t, h, d), in float64."""
    h, kv = q.shape[2], k.shape[1]
    k = np.repeat(k, h // kv, axis=1)  # query head j reads K/V head j // (h // kv)
    v = np.repeat(v, h // kv, axis=1)
    scores = np.einsum("bthd,bhsd->bhts", q, k) * scale
    if softcap is not None:
        scores = np.tanh(scores / softcap) * softcap
    if bias is not None:
        scores = scores + bias
    scores = scores - scores.max(-1, keepdims=True)
    probs = np.exp(scores)
    probs /= probs.sum(-1, keepdims=True)
    return np.einsum("bhts,bhsd->bthd", probs, v)


@pytest.mark.parametrize("heads,kv", [(4, 4), (4, 2), (6, 1)])
@pytest.mark.parametrize("t", [1, 3])
@pytest.mark.parametrize("bias_heads", [None, 1, "h"])
def test_heads_major_attention_matches_repeated_heads(heads, kv, t, bias_heads):
    rng = np.random.default_rng(heads * 10 + kv + t)
    b, s, d = 2, 7, 8
    q = rng.normal(size=(b, t, heads, d)).astype("float32")
    k = rng.normal(size=(b, kv, s, d)).astype("float32")
    v = rng.normal(size=(b, kv, s, d)).astype("float32")
    bias = None
    if bias_heads is not None:
        bias = rng.normal(size=(b, heads if bias_heads == "h" else 1, t, s)).astype("float32")
        bias[:, :, :, -2:] = -1e9  # masked keys
    expected = _reference(q.astype("float64"), k, v, bias, 0.3)
    for fn in (grouped_attention, lambda *a: fused_attention(*a, heads_major=True)):
        got = ops.convert_to_numpy(fn(*(None if x is None else ops.convert_to_tensor(x) for x in (q, k, v, bias)), 0.3))
        np.testing.assert_allclose(got, expected, atol=2e-5)
    # batch-merged buffers: batch row i holds rows i * kv .. i * kv + kv - 1
    merged = [ops.convert_to_tensor(x.reshape(b * kv, s, d)) for x in (k, v)]
    got = grouped_attention(ops.convert_to_tensor(q), *merged, None if bias is None else ops.convert_to_tensor(bias),
                            0.3, num_kv_heads=kv)
    np.testing.assert_allclose(ops.convert_to_numpy(got), expected, atol=2e-5)


def test_grouped_attention_softcap():
    rng = np.random.default_rng(0)
    q = rng.normal(size=(1, 2, 4, 8)).astype("float32") * 3
    k = rng.normal(size=(1, 2, 5, 8)).astype("float32") * 3
    v = rng.normal(size=(1, 2, 5, 8)).astype("float32")
    expected = _reference(q.astype("float64"), k, v, None, 0.5, softcap=2.0)
    got = ops.convert_to_numpy(grouped_attention(*map(ops.convert_to_tensor, (q, k, v)), None, 0.5, softcap=2.0))
    np.testing.assert_allclose(got, expected, atol=2e-5)
    uncapped = ops.convert_to_numpy(grouped_attention(*map(ops.convert_to_tensor, (q, k, v)), None, 0.5))
    assert np.abs(uncapped - got).max() > 1e-2  # the cap is applied
    merged = grouped_attention(ops.convert_to_tensor(q), *(ops.convert_to_tensor(x.reshape(2, 5, 8)) for x in (k, v)),
                               None, 0.5, softcap=2.0, num_kv_heads=2)
    np.testing.assert_allclose(ops.convert_to_numpy(merged), expected, atol=2e-5)

"""The eager torch decode loop's GEMM (``backend.decode_matmul``): oneDNN on CPU float32 with
several rows, torch's ``F.linear`` for one row, for small weights at up to 16 rows and elsewhere; every route must compute
``x @ w + b`` to fp32 accuracy."""

import keras
import numpy as np
import pytest

pytestmark = pytest.mark.skipif(keras.backend.backend() != "torch", reason="the torch decode loop's GEMM")


def _reference(x, w, b):
    out = x.astype("float64") @ w.astype("float64")
    return out if b is None else out + b


@pytest.mark.parametrize("rows,n_in,n_out,bias,onednn", [
    (1, 48, 80, True, False),      # one row: BLAS GEMV
    (8, 48, 80, False, False),     # several rows, a small weight (<= 2**18 entries): BLAS
    (8, 512, 640, False, True),    # several rows, a larger weight: oneDNN
    (1, 40, 2048, True, False),    # one row, out a multiple of 1024: BLAS GEMV too
    (3, 160, 2048, False, True),   # several rows of the same weight
    (5, 33, 1, True, False),       # out size 1, few rows: BLAS
    (20, 33, 1, True, True),       # more than 16 rows (predict): oneDNN whatever the weight
])
def test_decode_matmul_matches_float64_for_both_routes(rows, n_in, n_out, bias, onednn):
    import torch
    from torch.profiler import profile

    from keras_models.generation.backend import decode_matmul

    rng = np.random.default_rng(rows * 1000 + n_out)
    x = rng.standard_normal((2, rows, n_in)).astype("float32")[:1]  # (1, rows, in)
    w = rng.standard_normal((n_in, n_out)).astype("float32")
    b = rng.standard_normal(n_out).astype("float32") if bias else None
    with torch.inference_mode(), profile() as prof:
        got = decode_matmul()(torch.from_numpy(x), torch.from_numpy(w), None if b is None else torch.from_numpy(b))
    used_onednn = any("_linear_pointwise" in e.name for e in prof.events())
    assert used_onednn == (onednn and torch.backends.mkldnn.is_available())
    assert got.shape == (1, rows, n_out) and got.dtype == torch.float32
    np.testing.assert_allclose(got.numpy(), _reference(x, w, b), rtol=1e-5, atol=1e-5 * np.sqrt(n_in))


def test_decode_matmul_strided_inputs_other_dtypes_and_autograd():
    import torch

    from keras_models.generation.backend import decode_matmul

    rng = np.random.default_rng(0)
    x = rng.standard_normal((3, 4, 24)).astype("float32")
    w = rng.standard_normal((24, 16)).astype("float32")
    tx, tw = torch.from_numpy(x), torch.from_numpy(w)
    with torch.inference_mode():
        # a transposed (non-contiguous) input and a column-major weight
        got = decode_matmul()(tx.transpose(0, 1), tw.t().contiguous().t())
        np.testing.assert_allclose(got.numpy(), _reference(x.transpose(1, 0, 2), w, None), rtol=1e-5, atol=1e-4)
        half = decode_matmul()(tx.to(torch.bfloat16), tw.to(torch.bfloat16))  # not float32: F.linear
        assert half.dtype == torch.bfloat16
        np.testing.assert_allclose(half.float().numpy(), _reference(x, w, None), rtol=0.05, atol=0.2)
    # with autograd on it must stay differentiable (the oneDNN op has no gradient)
    tw_grad = tw.clone().requires_grad_(True)
    out = decode_matmul()(tx, tw_grad)
    out.sum().backward()
    np.testing.assert_allclose(tw_grad.grad.numpy(), x.reshape(-1, 24).sum(0)[:, None].repeat(16, 1), rtol=1e-5,
                               atol=1e-4)

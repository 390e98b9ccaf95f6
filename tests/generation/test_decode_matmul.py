"""The eager torch decode loop's GEMM (``backend.decode_matmul``): under the fixed rule oneDNN on CPU
float32 with several rows, torch's ``F.linear`` for one row, for small weights at up to 16 rows and
elsewhere; under ``KM_TORCH_GEMM=measure`` (``keras_models.torch_gemm``) the faster of the two, timed
once per shape. Every route must compute ``x @ w + b`` to fp32 accuracy."""

import keras
import numpy as np
import pytest

pytestmark = pytest.mark.skipif(keras.backend.backend() != "torch", reason="the torch decode loop's GEMM")


@pytest.fixture
def gemm_mode():
    from keras_models import torch_gemm

    before = torch_gemm.gemm_choice()
    yield torch_gemm.set_gemm_choice
    torch_gemm.set_gemm_choice(before)


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
def test_decode_matmul_matches_float64_for_both_routes(rows, n_in, n_out, bias, onednn, gemm_mode):
    import torch
    from torch.profiler import profile

    from keras_models.generation.backend import decode_matmul

    gemm_mode("rule")
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


class _Clock:
    """A fake clock the fake kernels advance: timing without sleeping or real work."""

    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now

    def kernel(self, seconds, calls):
        def run():
            calls.append(seconds)
            self.now += seconds
        return run


@pytest.mark.parametrize("rows,blas_s,onednn_s,want", [
    (1, 1.0, 0.5, True),     # one row: the rule says BLAS, but oneDNN measured 2x faster here
    (1, 1.0, 0.95, False),   # within the margin: the rule's answer stays
    (8, 0.5, 1.0, False),    # several rows: the rule says oneDNN, BLAS measured 2x faster
    (8, 0.95, 1.0, True),
])
def test_measured_choice_picks_the_faster_kernel_once_per_shape(rows, blas_s, onednn_s, want, gemm_mode):
    from keras_models import torch_gemm

    gemm_mode("measure")
    clock, calls = _Clock(), []
    blas, onednn = clock.kernel(blas_s, calls), clock.kernel(onednn_s, calls)
    assert torch_gemm.use_onednn(rows, 1024, 1024, 2, blas, onednn, clock=clock) is want
    assert len(calls) == 2 * (1 + torch_gemm.REPS)  # a warm-up each, then alternating timed calls
    # the shape's answer is kept: no more timing, whatever the kernels would now measure
    slow_blas, slow_onednn = clock.kernel(9.0, calls), clock.kernel(9.0, calls)
    assert torch_gemm.use_onednn(rows, 1024, 1024, 2, slow_blas, slow_onednn, clock=clock) is want
    assert len(calls) == 2 * (1 + torch_gemm.REPS)
    assert torch_gemm.measured_choices()[(rows, 1024, 1024, False, 2)] == ("onednn" if want else "blas")
    # another thread count is another shape
    torch_gemm.use_onednn(rows, 1024, 1024, 1, blas, onednn, clock=clock)
    assert len(calls) == 4 * (1 + torch_gemm.REPS)


def test_fixed_answers_are_not_timed(gemm_mode):
    from keras_models import torch_gemm

    calls, clock = [], _Clock()
    kernel = clock.kernel(1.0, calls)
    gemm_mode("measure")
    assert torch_gemm.use_onednn(8, 64, 64, 1, kernel, kernel, clock=clock) is False  # small weight, few rows
    assert torch_gemm.use_onednn(64, 4096, 32000, 1, kernel, kernel, clock=clock) is True  # too big to time
    for mode, want in (("rule", True), ("blas", False), ("onednn", True)):
        gemm_mode(mode)
        assert torch_gemm.use_onednn(8, 1024, 1024, 1, kernel, kernel, clock=clock) is want
    gemm_mode("onednn")
    assert torch_gemm.use_onednn(1, 1024, 1024, 1, kernel, kernel, clock=clock) is True
    assert calls == [] and torch_gemm.measured_choices() == {}
    with pytest.raises(ValueError, match="KM_TORCH_GEMM|set_gemm_choice"):
        gemm_mode("mkl-please")


def test_decode_matmul_measures_real_kernels_and_stays_accurate(gemm_mode):
    import torch

    from keras_models import torch_gemm
    from keras_models.generation.backend import decode_matmul

    gemm_mode("measure")
    rng = np.random.default_rng(7)
    x = rng.standard_normal((1, 3, 600)).astype("float32")
    w = rng.standard_normal((600, 520)).astype("float32")  # 312000 entries: a large weight, timed
    with torch.inference_mode():
        for _ in range(2):
            got = decode_matmul()(torch.from_numpy(x), torch.from_numpy(w))
            np.testing.assert_allclose(got.numpy(), _reference(x, w, None), rtol=1e-5, atol=1e-5 * np.sqrt(600))
    key = (3, 600, 520, False, torch.get_num_threads(), "w_t strided")  # the (in, out) kernel's view
    choices = torch_gemm.measured_choices()
    if torch.backends.mkldnn.is_available():
        assert list(choices) == [key] and choices[key] in ("blas", "onednn")
    else:
        assert choices == {}


def _activation_reference(name, y):
    import math

    from keras_models.torch_gemm import POST_OPS

    attr, algorithm = POST_OPS[name]
    if attr == "relu":
        return np.maximum(y, 0)
    if attr == "swish":
        return y / (1 + np.exp(-y))
    if algorithm == "tanh":
        return 0.5 * y * (1 + np.tanh(math.sqrt(2 / math.pi) * (y + 0.044715 * y ** 3)))
    from math import erf

    return 0.5 * y * (1 + np.vectorize(erf)(y / math.sqrt(2)))


@pytest.mark.parametrize("name", ["gelu", "gelu_new", "relu", "silu"])
@pytest.mark.parametrize("route", ["onednn", "blas"])
def test_activation_fused_into_the_gemm_matches_float64(name, route, gemm_mode):
    """``activation=``: oneDNN applies it to the accumulator (no separate activation kernel); BLAS
    runs the activation's torch function after ``F.linear``. Both equal act(x @ w + b) in float64."""
    import torch
    from torch.profiler import profile

    from keras_models.generation.backend import decode_matmul

    gemm_mode(route)
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 20, 96)).astype("float32")
    w = (rng.standard_normal((96, 160)) * 0.2).astype("float32")
    b = rng.standard_normal(160).astype("float32")
    with torch.inference_mode(), profile() as prof:
        got = decode_matmul()(torch.from_numpy(x), torch.from_numpy(w), torch.from_numpy(b), activation=name)
    names = [e.name for e in prof.events()]
    fused = torch.backends.mkldnn.is_available() and route == "onednn"
    assert any("_linear_pointwise" in n for n in names) == fused
    if fused:
        assert not any(n in ("aten::gelu", "aten::relu", "aten::silu") for n in names)
    np.testing.assert_allclose(got.numpy(), _activation_reference(name, _reference(x, w, b)), rtol=1e-5, atol=2e-5)


def test_bfloat16_goes_to_onednn_only_where_the_cpu_has_bf16(gemm_mode):
    import torch
    from torch.profiler import profile

    from keras_models import torch_gemm
    from keras_models.generation.backend import decode_matmul

    gemm_mode("rule")
    rng = np.random.default_rng(4)
    x = torch.from_numpy(rng.standard_normal((40, 256)).astype("float32")).to(torch.bfloat16)
    w = torch.from_numpy(rng.standard_normal((256, 1100)).astype("float32")).to(torch.bfloat16)
    with torch.inference_mode(), profile() as prof:
        got = decode_matmul()(x, w, activation="gelu")
    native = torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported()
    assert any("_linear_pointwise" in e.name for e in prof.events()) == native
    assert torch_gemm._half_ok(torch.bfloat16) == native and not torch_gemm._half_ok(torch.float16)
    want = _activation_reference("gelu", _reference(x.float().numpy(), w.float().numpy(), None))
    # one bf16 rounding of the activated accumulator (two on the BLAS route)
    np.testing.assert_allclose(got.float().numpy(), want, rtol=2 ** -7, atol=0.05)


def test_activated_projection_is_fused_in_predict_and_equals_keras():
    """Under torch ``predict`` (``fast_inference``) an encoder block's intermediate Dense and its
    GELU run as one oneDNN call (where oneDNN multiplies); the block's output equals Keras' path."""
    import torch
    from torch.profiler import profile

    from keras_models import torch_gemm
    from keras_models.generation.backend import fast_inference
    from keras_models.layers.encoder_block import EncoderBlock

    block = EncoderBlock(64, 4, 1536, hidden_act="gelu", name="probe_block")
    x = np.random.default_rng(5).standard_normal((2, 24, 64)).astype("float32")
    block.build(x.shape)
    with torch.inference_mode():
        ref = keras.ops.convert_to_numpy(block(x))
        before = torch_gemm.gemm_choice()
        torch_gemm.set_gemm_choice("onednn")
        try:
            with fast_inference(block), profile() as prof:
                got = keras.ops.convert_to_numpy(block(x))
        finally:
            torch_gemm.set_gemm_choice(before)
    names = [e.name for e in prof.events()]
    if torch.backends.mkldnn.is_available():
        assert "aten::gelu" not in names and any("_linear_pointwise" in n for n in names)
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("route", ["blas", "onednn"])
def test_weight_gradient_product_on_transposed_views(route, gemm_mode):
    """The ``fit`` fast path's dW = x.T @ dy (tasks.training) passes both operands as transposed
    views (no copies): each library must read them strided and give the float64 product."""
    import torch

    from keras_models.torch_gemm import linear

    gemm_mode(route)
    rng = np.random.default_rng(3)
    x = rng.standard_normal((300, 40)).astype("float32")
    dy = rng.standard_normal((300, 24)).astype("float32")
    xt, dyt = torch.from_numpy(x), torch.from_numpy(dy)
    from torch.profiler import profile

    with profile() as prof:
        got = linear(xt.T, dyt.T)
    used_onednn = any("_linear_pointwise" in e.name for e in prof.events())
    assert used_onednn == (route == "onednn" and torch.backends.mkldnn.is_available())
    assert got.shape == (40, 24)
    np.testing.assert_allclose(got.numpy(), x.astype("float64").T @ dy.astype("float64"), rtol=1e-5,
                               atol=1e-5 * np.sqrt(300))


@pytest.mark.parametrize("leading", [(600,), (3, 200)])
def test_a_many_row_product_is_timed_on_its_first_rows(leading, gemm_mode, monkeypatch):
    """Above ``TIMED_MACS`` the two kernels are timed on a leading slice of x (a view, so the same
    layout), at least ``TIMED_MIN_ROWS`` rows; the choice is kept for the full shape and the
    product itself uses every row."""
    import torch

    from keras_models import torch_gemm

    gemm_mode("measure")
    monkeypatch.setattr(torch_gemm, "TIMED_MACS", 100 * 64 * 96)
    monkeypatch.setattr(torch_gemm, "TIMED_MIN_ROWS", 50)
    timed_rows = []
    real = torch_gemm.onednn_gemm()
    if real is None:
        pytest.skip("this torch build has no oneDNN GEMM")
    monkeypatch.setattr(torch_gemm, "_ONEDNN", [lambda x, *a: (timed_rows.append(x.numel() // x.shape[-1]),
                                                                real(x, *a))[1]])
    rng = np.random.default_rng(11)
    x = rng.standard_normal(leading + (64,)).astype("float32")
    w = rng.standard_normal((96, 64)).astype("float32")
    with torch.inference_mode():
        got = torch_gemm.linear(torch.from_numpy(x), torch.from_numpy(w))
    rows = int(np.prod(leading))
    want_timed = 100 if len(leading) == 1 else 200  # (3, 200): whole entries of the leading axis
    assert timed_rows[:1 + torch_gemm.REPS] == [want_timed] * (1 + torch_gemm.REPS)
    assert set(timed_rows[1 + torch_gemm.REPS:]) <= {rows}  # the real product, if oneDNN won
    assert list(torch_gemm.measured_choices())[0][:3] == (rows, 64, 96)
    np.testing.assert_allclose(got.numpy(), _reference(x, w.T, None), rtol=1e-5, atol=1e-5 * 8)

"""torch_kernels.FAST_CONV2D (issue 17): ConvNormAct's fused oneDNN conv + folded frozen BatchNorm
+ ReLU (+ a ResNet layer's residual add), and the channels-last max pool, equal the plain Keras
path up to float rounding, and the cached folded weights follow weight assignments."""

import keras
import numpy as np
import pytest

from keras_models import torch_kernels as tk
from keras_models.layers.conv_blocks import ConvNormAct
from keras_models.models.resnet.backbone import ResNetLayer, max_pool_torch

pytestmark = pytest.mark.skipif(keras.backend.backend() != "torch", reason="torch-only fast path")


def _randomise_norms(layer, rng):
    for v in layer.weights:
        if "moving_variance" in v.path:
            v.assign(rng.uniform(0.5, 2.0, v.shape).astype("float32"))
        elif any(k in v.path for k in ("moving_mean", "gamma", "beta")):
            v.assign(rng.normal(size=v.shape).astype("float32"))


def _both(fn):
    import torch

    with torch.no_grad():
        tk.FAST_CONV2D = False
        try:
            plain = np.asarray(keras.ops.convert_to_numpy(fn()))
        finally:
            tk.FAST_CONV2D = True
        return np.asarray(keras.ops.convert_to_numpy(fn())), plain


def test_conv_norm_act_and_resnet_layer_match_keras_path(monkeypatch):
    calls = []
    fused = tk.torch_fused_conv2d
    monkeypatch.setattr(tk, "torch_fused_conv2d", lambda *a, **k: calls.append(a[-1] is not None) or fused(*a, **k))
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2, 9, 11, 8)).astype("float32")
    unit = ConvNormAct(6, 3, 2, groups=2)
    unit.build(x.shape)
    _randomise_norms(unit, rng)
    fast, plain = _both(lambda: unit(x, training=False))
    assert plain.shape == fast.shape == (2, 5, 6, 6)
    np.testing.assert_allclose(fast, plain, atol=1e-5)
    unit.norm.moving_mean.assign(unit.norm.moving_mean.numpy() + 1.0)  # the cached folded weights follow
    fast2, plain2 = _both(lambda: unit(x, training=False))
    np.testing.assert_allclose(fast2, plain2, atol=1e-5)
    assert np.abs(fast2 - fast).max() > 1e-3

    layer = ResNetLayer(8, 16, stride=2)
    layer(x)  # builds the units
    _randomise_norms(layer, rng)
    calls.clear()
    fast, plain = _both(lambda: layer(x, training=False))
    np.testing.assert_allclose(fast, plain, atol=1e-5)
    assert (fast >= 0).all() and fast.shape == (2, 5, 6, 16)
    assert calls == [False, False, False, True]  # the shortcut + 3 units, the last with the residual

    pooled, plain = _both(lambda: max_pool_torch(keras.ops.convert_to_tensor(x)))
    np.testing.assert_array_equal(pooled, plain)


@pytest.mark.parametrize("rank, stride", [(2, 2), (2, (2, 3)), (1, 2)])
def test_strided_1x1_conv_takes_unit_stride_while_training_on_avx2(monkeypatch, rank, stride):
    """``torch_kernels.unit_stride_1x1``: on an AVX2-only CPU, a strided 1x1 conv whose kernel gets a
    gradient runs as the unit-stride conv of every stride-th position (oneDNN 3.12's AVX2 weight
    gradient of the strided one corrupted the heap with 2-7 input channels). Outputs and both
    gradients equal the strided conv's (a float64 reference: torch's own kernels, not oneDNN); the
    strided conv itself is what reaches torch under autograd off, on other CPUs, or with the
    switch off."""
    import torch

    seen = []
    conv2d = torch.nn.functional.conv2d
    monkeypatch.setattr(torch.nn.functional, "conv2d", lambda x, w, **k: seen.append(k["stride"]) or conv2d(x, w, **k))
    rng = np.random.default_rng(0)
    spatial = (12, 9) if rank == 2 else (13,)
    x = rng.normal(size=(2, *spatial, 4)).astype("float32")
    k = rng.normal(size=((1,) * rank) + (4, 5)).astype("float32")
    layer_stride = stride if rank == 2 else 2

    def run(dtype, padding="valid"):
        xt = torch.tensor(x, dtype=dtype, requires_grad=True)
        kt = torch.tensor(k, dtype=dtype, requires_grad=True)
        y = keras.ops.conv(xt, kt, strides=layer_stride, padding=padding)
        (y * torch.arange(y.numel(), dtype=dtype).reshape(y.shape).cos()).sum().backward()
        return [t.detach().double().numpy() for t in (y, xt.grad, kt.grad)]

    monkeypatch.setattr(tk, "avx2_only_cpu", lambda: True)
    for padding in ("valid", "same"):
        seen.clear()
        got = run(torch.float32, padding)
        assert seen == [(1, 1)]
        tk.AVX2_STRIDED_1X1[0] = False
        try:
            seen.clear()
            want = run(torch.float64, padding)
            assert seen[0] != (1, 1)
        finally:
            tk.AVX2_STRIDED_1X1[0] = True
        for g, w in zip(got, want):
            np.testing.assert_allclose(g, w, atol=1e-4, rtol=1e-5)
    seen.clear()
    with torch.no_grad():
        keras.ops.conv(torch.tensor(x), torch.tensor(k), strides=layer_stride)
    monkeypatch.setattr(tk, "avx2_only_cpu", lambda: False)
    run(torch.float64)
    assert seen[0] != (1, 1) and seen[1] != (1, 1)
    monkeypatch.undo()
    assert isinstance(tk.avx2_only_cpu(), bool)


def test_torch_conv1d_strided_1x1_takes_unit_stride_while_training_on_avx2(monkeypatch):
    """The same rewrite in ``torch_kernels.torch_conv1d`` (VITS' and EnCodec's torch conv path)."""
    import torch

    seen = []
    conv2d = torch.nn.functional.conv2d
    monkeypatch.setattr(torch.nn.functional, "conv2d",
                        lambda x, w, b=None, **k: seen.append(k["stride"]) or conv2d(x, w, b, **k))
    monkeypatch.setattr(tk, "avx2_only_cpu", lambda: True)
    rng = np.random.default_rng(1)
    x = torch.tensor(rng.normal(size=(2, 11, 3)).astype("float32"), requires_grad=True)
    kernel = torch.tensor(rng.normal(size=(1, 3, 6)).astype("float32"), requires_grad=True)
    y = tk.torch_conv1d(x, tk.torch_conv1d_weight(kernel), stride=2)
    y.square().sum().backward()
    assert seen == [(1, 1)]
    x64, k64 = (t.detach().double().requires_grad_() for t in (x, kernel))
    want = keras.ops.conv(x64, k64, strides=2)
    want.square().sum().backward()
    for g, w in ((y, want), (x.grad, x64.grad), (kernel.grad, k64.grad)):
        np.testing.assert_allclose(g.detach().double().numpy(), w.detach().numpy(), atol=1e-4, rtol=1e-5)

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


def test_training_on_an_avx2_only_cpu_runs_without_onednn_routing(monkeypatch):
    """``tasks.training.onednn_training_guard`` (inside every torch ``Task.train_step``): oneDNN's
    routing is off within it on an AVX2-only CPU (oneDNN 3.12's AVX2 kernels corrupted the heap in
    a LayoutLMv2 training step), restored after; left on for other CPUs or with the switch off."""
    import torch

    from keras_models.tasks import training

    before = torch.backends.mkldnn.enabled
    for avx2, switch, want_off in ((True, True, True), (False, True, False), (True, False, False)):
        monkeypatch.setattr(training, "avx2_only_cpu", lambda: avx2)
        monkeypatch.setattr(training, "AVX2_TRAIN_GUARD", [switch])
        with training.onednn_training_guard():
            assert torch.backends.mkldnn.enabled == (before and not want_off)
        assert torch.backends.mkldnn.enabled == before
    monkeypatch.undo()
    assert isinstance(training.avx2_only_cpu(), bool)

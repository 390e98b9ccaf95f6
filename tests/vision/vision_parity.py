"""Vision parity helpers: tiny random Transformers vision models and channels_last inputs."""

import numpy as np

from tests.parity import hf_reference


def pixels(batch=2, height=32, width=32, channels=3, seed=0):
    """Random normalised pixel values, channels_last (ours) -- HF gets the NCHW transpose."""
    return np.random.RandomState(seed).randn(batch, height, width, channels).astype("float32")


def perturb_buffers(model, seed=1):
    """hf_reference perturbs parameters only; BatchNorm statistics are buffers."""
    import torch

    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, b in model.named_buffers():
            if name.endswith("running_mean"):
                b.add_(torch.randn(b.shape, generator=g) * 0.1)
            elif name.endswith("running_var"):
                b.mul_(torch.rand(b.shape, generator=g) + 0.5)
    return model


def vision_reference(name, build_model, x, **extra):
    """(folder, expected) for pixel_values ``x`` (NHWC); ``extra`` are forward kwargs for HF."""
    inputs = {"pixel_values": np.ascontiguousarray(x.transpose(0, 3, 1, 2))}
    inputs.update({k: np.asarray(v) for k, v in extra.items()})
    return hf_reference(name, build_model, inputs)


def hf_hidden_to_ours(h):
    """HF (batch, C, H, W) feature maps -> channels_last; (batch, seq, hidden) unchanged."""
    return h.transpose(0, 2, 3, 1) if h.ndim == 4 else h


def run(model, x):
    """One compiled forward pass (``predict_on_batch``: a single XLA program under JAX instead of
    op-by-op dispatch, a tf.function under TensorFlow), as numpy."""
    return model.predict_on_batch({"pixel_values": x})

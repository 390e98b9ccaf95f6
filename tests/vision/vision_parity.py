"""Vision parity helpers: tiny random Transformers vision models and channels_last inputs.

``vision_reference`` goes through ``hf_reference`` (tests/parity.py): weights re-initialised to
unit-scale activations (kernels by their fan-in: in_channels * kernel area), norm scales and
biases moved off 1 and 0, and BatchNorm running statistics measured on the reference pixels.
"""

import numpy as np

from tests.parity import assert_backbone_close, assert_close, hf_reference


def pixels(batch=2, height=32, width=32, channels=3, seed=0):
    """Random normalised pixel values, channels_last (ours) -- HF gets the NCHW transpose."""
    return np.random.RandomState(seed).randn(batch, height, width, channels).astype("float32")


def perturb_buffers(model, seed=1):
    """Kept for callers: hf_reference now measures every BatchNorm's running statistics on the
    reference inputs (tests/parity.py calibrate_batch_norms), which replaces perturbing them."""
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


def run_with_hidden(model, x):
    """(task output, backbone output) of a task model from one compiled forward pass: the
    backbone's output is captured while the task runs (no second program to compile)."""
    import keras

    task, backbone = model, model.backbone

    class _WithHidden(keras.Model):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            # Tracked, so that JAX passes the task's weights into the compiled program as
            # arguments instead of folding them in as constants.
            self.task = task

        def call(self, inputs):
            captured = []
            call = backbone.call

            def capture(*args, **kwargs):
                captured.append(call(*args, **kwargs))
                return captured[-1]

            backbone.call = capture
            try:
                out = task(inputs)
            finally:
                del backbone.call
            return out, captured[0]

    wh = _WithHidden(name="with_hidden")
    # Marked built (the task already is): an unbuilt wrapper makes predict_on_batch run the
    # model once op by op first. Both together took a tiny MobileViT classifier's check under
    # JAX from 27 s to 1.6 s.
    wh.built = True
    out, hidden = wh.predict_on_batch({"pixel_values": x})  # (TF refuses "_" scope names)
    if isinstance(hidden, dict):
        hidden = hidden["last_hidden_state"]
    return out, hidden


def assert_task_close(model, x, expected, key="logits", what="", channels_last_logits=False, backbone_tol=1.0):
    """A vision task model's output (``expected[key]``; NCHW logit maps compared channels_last
    with ``channels_last_logits``) and its backbone's output (the reference's base-model last
    hidden state) from one compiled pass."""
    out, hidden = run_with_hidden(model, x)
    want = expected[key].transpose(0, 2, 3, 1) if channels_last_logits else expected[key]
    assert_close(out, want, what=what)
    assert_backbone_close(model, None, expected, hidden=hidden, what=what, tol=backbone_tol)
    return out

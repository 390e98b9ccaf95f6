"""The training step's fast path (``Task.train_step``), one switch: ``KM_FAST_TRAIN`` (default on;
``KM_FAST_TRAIN=0`` turns it off) or :func:`set_fast_training`.

torch, CPU, float32: inside ``train_step`` the model's plain Dense layers multiply in the forward pass
*and* in the backward pass (:class:`_FastLinear`, an autograd function: dx = dy @ W^T, dW = x^T @ dy,
db = sum dy) through :func:`keras_models.torch_gemm.linear`, which picks oneDNN's GEMM
(``torch.ops.mkldnn._linear_pointwise``) or torch's BLAS (MKL) per shape on the running CPU, timing
both once (on the AMD Zen 5 CPUs measured MKL reaches about half of oneDNN's speed at training
shapes, docs/performance.md; Keras' own path is always MKL). Values differ only in float summation
order. And Keras' torch Adam / AdamW
update runs variable by variable in place through two reusable scratch buffers
(:func:`_inplace_adam_update`) instead of ``torch._foreach_*`` calls that allocate five fresh
temporaries the size of the whole model every step (for a 100M-parameter model, 2 GB of new pages
to fault in and zero per step: half the step's time measured); the arithmetic, its order and so
the values are Keras' own.

jax: float32 Dense layers multiply through :func:`keras_models.jax_kernels.dense_matmul` (x @ W with
its gradient written as 2-D GEMMs: autodiff of a 3-D product gave XLA batched dots and activation
transposes), and plain Dropout layers draw their masks with
:func:`keras_models.jax_kernels.hash_dropout` (a counter hash seeded by the layer's own seed
generator: the same keep probability, other draws than Keras' threefry masks, ~40x cheaper on the
CPU). With the switch off, Keras' dropout masks come back.

tensorflow: ``fit`` builds the optimizer's (and metrics') variables before Keras traces the step
(:func:`build_before_tracing`). Keras 3.15's TensorFlow trainer leaves them to the first
trace of the step (it builds eagerly only under a distribution strategy), and a ``tf.function`` that
creates variables while tracing is traced a second time: every first ``fit`` traced the whole
training step twice (a LayoutLMv2 test step: 35 s of its 48 s). Built first, as Keras' jax and torch
trainers do, it traces once; the variables, their paths and the steps are the same. Compiled metrics
(the classifiers' default accuracy) are built then too when the inputs are arrays (Keras' own
symbolic build, from one batch's shapes); with a dataset or raw samples only the optimizer is.

Other layers, dtypes, devices, optimizers, torch builds without oneDNN and tensorflow are unchanged
(tensorflow's one-GEMM Dense, ``keras_models.tf_kernels``, measured no faster in a float32 ``fit``
step: MiniLM 1.13x vs 1.14x of Transformers, idle, so it is used by ``predict`` only); the
redirect covers only the calling thread (``compat.redirected_calls``), so another thread using the
same model takes Keras' path.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools

import keras

from keras_models import compat
from keras_models.backend_choice import switch_on

BACKEND = keras.backend.backend()
_FAST_TRAIN = [switch_on("KM_FAST_TRAIN")]
_ACTIVE = contextvars.ContextVar("km_fast_training", default=False)  # inside fast_training (jax / torch)


def set_fast_training(enabled):
    """Turn the training fast path on or off for the whole process (``KM_FAST_TRAIN``)."""
    _FAST_TRAIN[0] = bool(enabled)


def fast_training_enabled():
    return _FAST_TRAIN[0]


@functools.lru_cache(maxsize=None)
def _linear_function():
    import torch

    from keras_models.torch_gemm import linear

    class _FastLinear(torch.autograd.Function):
        """y = x @ w + b for an (in, out) kernel ``w``, every GEMM (forward and backward) in the
        library :func:`keras_models.torch_gemm.linear` picks for its shape (oneDNN or MKL)."""

        @staticmethod
        def forward(ctx, x, w, b):
            ctx.save_for_backward(x, w)
            ctx.has_bias = b is not None
            return linear(x, w.T, b)

        @staticmethod
        def backward(ctx, dy):
            x, w = ctx.saved_tensors
            dx = dw = db = None
            if ctx.needs_input_grad[0]:
                dx = linear(dy, w)  # dy @ w.T
            if ctx.needs_input_grad[1]:
                # x.T @ dy on transposed views: no copies (MKL and oneDNN read them strided;
                # the two (2048, 384) copies cost as much as a 384 x 384 product itself)
                dw = linear(x.T, dy.T)
            if ctx.has_bias and ctx.needs_input_grad[2]:
                db = dy.sum(0)
            return dx, dw, db

    return _FastLinear


def _torch_train_dense(layer):
    """Dense (2-D kernel, any activation) through :class:`_FastLinear` for float32 CPU inputs;
    anything else takes the layer's own ``__call__``."""
    import torch

    kernel, bias, act = layer.kernel, layer.bias, layer.activation
    linear = act is keras.activations.linear
    fn = _linear_function()
    own_call = compat.keras_class(layer).__call__  # Keras' path

    def call(x, training=None, **kwargs):
        w = kernel.value
        if (kwargs or not isinstance(x, torch.Tensor) or x.dtype != torch.float32 or w.dtype != torch.float32
                or x.device.type != "cpu" or x.dim() < 2):
            return own_call(layer, x, training=training, **kwargs)
        shape = x.shape
        y = fn.apply(x.reshape(-1, shape[-1]), w, None if bias is None else bias.value)
        y = y.reshape(*shape[:-1], y.shape[-1])
        return y if linear else act(y)

    return call


def _trainable_dense(layer):
    """A plain float32 Dense (``compat.plain_dense``: ``__call__`` would only forward to ``call``)."""
    return compat.plain_dense(layer) and layer.dtype_policy.compute_dtype == "float32"


def _inplace_adam_update(optimizer, grads, variables, learning_rate):
    """Keras' torch Adam / AdamW ``_parallel_update_step`` (keras/src/backend/torch/optimizers/
    torch_adam.py, amsgrad off), the same operations in the same order on each variable, written
    into reused scratch buffers instead of new whole-model temporaries. With the switch off, Keras'
    own step."""
    import torch

    cls_step = type(optimizer)._parallel_update_step
    if not _FAST_TRAIN[0] or optimizer.amsgrad:
        return cls_step(optimizer, grads, variables, learning_rate)
    values = [v.value for v in variables]
    dtype = values[0].dtype
    lr = keras.ops.cast(learning_rate, dtype)
    step = keras.ops.cast(optimizer.iterations + 1, dtype)
    b1_power = keras.ops.power(keras.ops.cast(optimizer.beta_1, dtype), step)
    b2_power = keras.ops.power(keras.ops.cast(optimizer.beta_2, dtype), step)
    alpha = lr * keras.ops.sqrt(1 - b2_power) / (1 - b1_power)
    b1, b2, eps = optimizer.beta_1, optimizer.beta_2, optimizer.epsilon
    size = max(v.numel() for v in values)
    scratch = getattr(optimizer, "_km_adam_scratch", None)
    if scratch is None or scratch[0].numel() < size or scratch[0].dtype != dtype or scratch[0].device != values[0].device:
        scratch = (torch.empty(size, dtype=dtype, device=values[0].device),
                   torch.empty(size, dtype=dtype, device=values[0].device))
        optimizer._km_adam_scratch = scratch
    for value, g in zip(values, grads):
        if value.dtype != dtype or g.dtype != dtype or not value.is_contiguous():
            return cls_step(optimizer, grads, variables, learning_rate)  # (checked before any write below)
    for variable, value, g in zip(variables, values, grads):
        index = optimizer._get_variable_index(variable)
        m, v = optimizer._momentums[index].value, optimizer._velocities[index].value
        s1 = scratch[0][: value.numel()].view(value.shape)
        s2 = scratch[1][: value.numel()].view(value.shape)
        m.mul_(b1)
        m.add_(g, alpha=1 - b1)
        v.mul_(b2)
        torch.mul(g, g, out=s1)
        v.add_(s1, alpha=1 - b2)
        torch.mul(m, alpha, out=s2)
        torch.sqrt(v, out=s1)
        s1.add_(eps)
        s2.div_(s1)
        value.add_(s2, alpha=-1)


def _plain_dropout(layer):
    return (compat.keras_class(layer) is keras.layers.Dropout and layer.noise_shape is None
            and 0.0 < float(layer.rate) < 1.0 and compat.calls_go_through_keras(layer))


def _jax_dropout_call(layer):
    """``layer(x, training)`` for a plain Dropout under jax: Keras' training resolution (the
    argument, else the enclosing call's value, else inference), then
    :func:`keras_models.jax_kernels.hash_dropout` seeded by the layer's own seed generator
    (advanced once per call, as Keras' dropout does)."""
    from keras_models.jax_kernels import hash_dropout

    def call(x, training=None):
        if training is None:
            training = compat.call_context_training()
        if not training:
            return x
        return hash_dropout(x, layer.rate, layer.seed_generator.next())

    return call


def _jax_train_dense(layer):
    """Dense under jax training: ``keras_models.jax_kernels.dense_matmul`` (its gradient as plain
    2-D GEMMs), then Keras' bias and activation."""
    from keras_models.jax_kernels import dense_matmul

    kernel, bias, act = layer.kernel, layer.bias, layer.activation
    linear = act is keras.activations.linear
    own_call = compat.keras_class(layer).__call__  # Keras' path

    def call(x, training=None, **kwargs):
        if kwargs or getattr(x, "dtype", None) != "float32" or getattr(x, "ndim", 0) < 2:
            return own_call(layer, x, training=training, **kwargs)
        y = dense_matmul(x, kernel.value)
        if bias is not None:
            y = y + bias.value
        return y if linear else act(y)

    return call


def tied_projection(hidden, table):
    """``hidden @ table^T`` for a tied (vocab, hidden) output table inside the jax training fast
    path (``generation.backend.project_onto_table`` asks first), else None: through
    :func:`keras_models.jax_kernels.dense_matmul`, as the Dense layers (the ~110M tied Llama's step:
    3.92 -> 3.82 s, one core). Under torch Keras' own product stays: :class:`_FastLinear` made that
    step slower (4.05 -> 4.29 s; the (rows, vocab) gradient's transposed copy)."""
    if BACKEND != "jax" or not _ACTIVE.get():
        return None
    from keras_models.jax_kernels import dense_matmul

    w = table.value
    if getattr(hidden, "dtype", None) != "float32" or w.dtype != "float32":
        return None
    return dense_matmul(hidden, w.T)


def _patch_optimizer(optimizer):
    """Route Keras' torch Adam / AdamW (exactly those classes) through :func:`_inplace_adam_update`."""
    if optimizer is None or "_parallel_update_step" in vars(optimizer):
        return
    classes = compat.torch_adam_classes()
    if classes and type(optimizer) in classes:
        optimizer._parallel_update_step = functools.partial(_inplace_adam_update, optimizer)


@contextlib.contextmanager
def _active(redirects):
    """The redirected layer calls and the tied projection's fast product, for this thread."""
    token = _ACTIVE.set(True)
    try:
        with compat.redirected_calls(redirects):
            yield
    finally:
        _ACTIVE.reset(token)


@contextlib.contextmanager
def fast_training(model):
    """The context ``Task.train_step`` runs in (see the module docstring)."""
    if not _FAST_TRAIN[0] or BACKEND not in ("jax", "torch"):
        yield
        return
    redirects = {}
    if BACKEND == "jax":
        for layer in [model, *compat.sublayers(model)]:
            if _plain_dropout(layer):
                redirects[layer] = _jax_dropout_call(layer)
            elif _trainable_dense(layer):
                redirects[layer] = _jax_train_dense(layer)
    else:
        _patch_optimizer(getattr(model, "optimizer", None))
        from keras_models.torch_gemm import onednn_gemm

        if onednn_gemm() is None:
            yield
            return
        redirects = {layer: _torch_train_dense(layer) for layer in [model, *compat.sublayers(model)]
                     if _trainable_dense(layer)}
    with _active(redirects):
        yield


def _first_batch(x, y, sample_weight, batch_size):
    """(x, y, sample_weight) cut to one batch when every leaf is an array (a dataset, a generator or
    raw samples: None)."""
    leaves = [a for a in keras.tree.flatten((x, y, sample_weight)) if a is not None]
    if x is None or not leaves or not all(hasattr(a, "shape") and hasattr(a, "__getitem__") and len(a.shape)
                                          for a in leaves):
        return None
    n = batch_size or 32
    return keras.tree.map_structure(lambda a: None if a is None else a[:n], (x, y, sample_weight))


def build_before_tracing(model, x=None, y=None, sample_weight=None, batch_size=None):
    """tensorflow: build what Keras' first trace of the training step would otherwise create, before
    it, so that the step is traced once (see the module docstring): with a batch of arrays at hand,
    everything Keras' trainers build before a step on jax and torch (compiled metrics and losses,
    optimizer: ``compat.build_for_training``); otherwise the optimizer alone, for
    ``model.trainable_variables``. Left to Keras when the switch is off, under a distribution
    strategy (Keras builds everything itself there, in the strategy's scope), and while any layer is
    unbuilt (the trainable variables are not all known before the trace)."""
    optimizer = getattr(model, "optimizer", None)
    if not _FAST_TRAIN[0] or BACKEND != "tensorflow" or optimizer is None or not model.built:
        return
    import tensorflow as tf

    if tf.distribute.has_strategy() or model.distribute_strategy is not tf.distribute.get_strategy():
        return
    if not all(layer.built for layer in compat.sublayers(model)):
        return
    batch = _first_batch(x, y, sample_weight, batch_size)
    if batch is not None:
        compat.build_for_training(model, batch)
    elif not optimizer.built:
        optimizer.build(model.trainable_variables)

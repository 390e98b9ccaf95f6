"""TensorFlow fast path for Dense layers, one switch: ``KM_TF_FLAT_DENSE`` (default on;
``KM_TF_FLAT_DENSE=0`` turns it off) or :func:`set_flat_dense`.

Keras' Dense multiplies a (batch, time, in) input by its (in, out) kernel with ``tf.matmul`` on the
3-D tensor, a broadcasting ``BatchMatMulV2``. On the CPU TensorFlow runs that op through oneDNN's
batched kernel, which for some shapes is much slower than one 2-D GEMM over all batch x time rows:
bf16 (4096 x 1536) @ (1536 x 384), one core, 47 ms as a batched product against 24 ms as one GEMM
(docs/performance.md, "Stop 27").

Inside :func:`flat_dense_calls` (entered by ``Backbone.predict_step`` / ``Task.predict_step``, i.e.
while Keras traces its predict ``tf.function``; not ``fit``: a float32 MiniLM training step was
no faster with it, 1.13x vs 1.14x of Transformers on one idle core), the model's plain Dense layers
(built, 2-D kernel, no LoRA or quantisation, no mixed-precision policy) reshape their input to
(rows, in), multiply once, add the bias and reshape back: the same products, summed in a different
order. Anything else (a rank-2 input, another dtype, a Keras mask on the input, extra call
arguments) takes Keras' own ``Layer.__call__``. A projection followed by its activation
(``layers.activations.activated_projection``: the encoder, vision and seq2seq blocks' feed-forward
input) applies GELU / ReLU (and SiLU in float32) to the 2-D product, where grappler's remapper fuses
MatMul + BiasAdd + the activation into one oneDNN call (the activation computed on the float32
accumulator): bf16 (4096 x 384) @ (384 x 1536) + GELU, one core, 28 ms against 40 ms for the
product followed by the separate float32 GELU; only where grappler will fuse
it (:func:`fusing_enabled`). Only the calling thread is redirected
(``compat.redirected_calls``); other threads and models are unchanged. Other backends: no effect.
"""

from __future__ import annotations

import contextlib

import keras

from keras_models import compat
from keras_models.backend_choice import switch_on

BACKEND = keras.backend.backend()
_FLAT_DENSE = [switch_on("KM_TF_FLAT_DENSE")]
_keras_layer_call = keras.layers.Layer.__call__


def set_flat_dense(enabled):
    """Turn the TensorFlow Dense fast path on or off for the whole process (``KM_TF_FLAT_DENSE``)."""
    _FLAT_DENSE[0] = bool(enabled)


def flat_dense_enabled():
    return BACKEND == "tensorflow" and _FLAT_DENSE[0]


# ``layers.activations.FUSED_ACTIVATIONS`` in the forms TensorFlow's graph optimiser (grappler's
# remapper) fuses into a MatMul + BiasAdd as a oneDNN post-op on the float32 accumulator:
# name -> (function, in bf16 too). silu is fused in float32 only (its bf16 form measured 2% off:
# not one rounding of the exact value).
def _tf_post_ops():
    import tensorflow as tf

    from keras_models.layers.activations import FUSED_ACTIVATIONS

    gelu = {"none": lambda y: tf.nn.gelu(y, approximate=False), "tanh": lambda y: tf.nn.gelu(y, approximate=True)}
    return {name: ((gelu[algorithm] if kind == "gelu" else {"relu": tf.nn.relu, "silu": tf.nn.silu}[kind]),
                   kind != "silu")
            for name, (kind, algorithm) in FUSED_ACTIVATIONS.items()}


def onednn_enabled():
    """Whether this TensorFlow runs its CPU kernels and graph fusions through oneDNN
    (``TF_ENABLE_ONEDNN_OPTS``, on by default on x86 Linux)."""
    try:
        from tensorflow.python.util import _pywrap_util_port

        return bool(_pywrap_util_port.IsMklEnabled())
    except Exception:  # pragma: no cover - a build without the query
        return False


def fusing_enabled():
    """Whether a MatMul + BiasAdd + activation traced now will be fused by grappler into oneDNN's
    GEMM: oneDNN on, and neither the meta optimiser nor its remapper turned off
    (``tf.config.optimizer.set_experimental_options``). Unfused, TensorFlow's own bf16 GELU would
    run in bf16 (~1% off), so the fused form is only emitted where it will be fused."""
    if not onednn_enabled():
        return False
    import tensorflow as tf

    options = tf.config.optimizer.get_experimental_options()
    return not options.get("disable_meta_optimizer", False) and options.get("remapping", True) is not False


def _flat_dense_call(layer):
    """``layer(x)`` as one 2-D GEMM over all leading axes of ``x`` (see the module docstring). The
    call also has ``call.activated(x, name)``: ``act(layer(x))`` with the activation applied to the
    2-D product as the op grappler fuses into oneDNN's GEMM (``layers.activations.activated_projection``)."""
    import tensorflow as tf

    kernel, bias, act = layer.kernel, layer.bias, layer.activation
    linear = act is keras.activations.linear
    units = int(kernel.shape[-1])
    dtype = tf.as_dtype(layer.compute_dtype)
    post_ops = _tf_post_ops()

    def flat(x, activation=None):
        static = x.shape.as_list()
        if None in static[:-1]:
            lead = tf.shape(x)[:-1]
            out_shape = tf.concat([lead, [units]], 0)
        else:
            out_shape = static[:-1] + [units]
        y = tf.matmul(tf.reshape(x, [-1, static[-1]]), kernel.value)
        if bias is not None:
            y = tf.nn.bias_add(y, bias.value)
        if activation is not None:
            y = activation(y)
        return tf.reshape(y, out_shape)

    def plain(x, args=(), kwargs=None):
        return not (args or set(kwargs or ()) - {"training"} or not isinstance(x, tf.Tensor) or x.dtype != dtype
                    or x.shape.rank is None or x.shape.rank < 3 or x.shape[-1] is None
                    or getattr(x, "_keras_mask", None) is not None)

    def call(x, *args, **kwargs):
        if not plain(x, args, kwargs):
            return _keras_layer_call(layer, x, *args, **kwargs)
        y = flat(x)
        return y if linear else act(y)

    def activated(x, name):
        fn, in_half = post_ops.get(name, (None, False))
        if (fn is None or not linear or not plain(x) or not fusing_enabled()
                or not (dtype == tf.float32 or (dtype == tf.bfloat16 and in_half))):
            from keras_models.layers.activations import get_activation

            return get_activation(name)(call(x))
        return flat(x, fn)

    call.activated = activated
    return call


@contextlib.contextmanager
def flat_dense_calls(model):
    """Inside this context (calling thread only), ``model``'s plain Dense layers run as one 2-D
    GEMM under TensorFlow; a no-op on other backends or with the switch off."""
    if not flat_dense_enabled():
        yield
        return
    redirects = {layer: _flat_dense_call(layer) for layer in [model, *compat.sublayers(model)]
                 if compat.plain_dense(layer)}
    if not redirects:
        yield
        return
    with compat.redirected_calls(redirects):
        yield

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
arguments) takes Keras' own ``Layer.__call__``. Only the calling thread is redirected
(``compat.redirected_calls``); other threads and models are unchanged. Other backends: no effect.
"""

from __future__ import annotations

import contextlib
import os

import keras

from keras_models import compat

BACKEND = keras.backend.backend()
_FLAT_DENSE = [os.environ.get("KM_TF_FLAT_DENSE", "1").strip().lower() not in ("0", "false", "no", "off")]
_keras_layer_call = keras.layers.Layer.__call__


def set_flat_dense(enabled):
    """Turn the TensorFlow Dense fast path on or off for the whole process (``KM_TF_FLAT_DENSE``)."""
    _FLAT_DENSE[0] = bool(enabled)


def flat_dense_enabled():
    return BACKEND == "tensorflow" and _FLAT_DENSE[0]


def _plain_dense(layer):
    policy = layer.dtype_policy
    return (compat.keras_class(layer) is keras.layers.Dense and layer.built
            and not layer.lora_enabled and getattr(layer, "quantization_mode", None) is None
            and len(layer.kernel.shape) == 2 and not compat.remat_mode(layer)
            and policy.compute_dtype == policy.variable_dtype
            and compat.calls_go_through_keras(layer))


def _flat_dense_call(layer):
    """``layer(x)`` as one 2-D GEMM over all leading axes of ``x`` (see the module docstring)."""
    import tensorflow as tf

    kernel, bias, act = layer.kernel, layer.bias, layer.activation
    linear = act is keras.activations.linear
    units = int(kernel.shape[-1])
    dtype = tf.as_dtype(layer.compute_dtype)

    def call(x, *args, **kwargs):
        if (args or set(kwargs) - {"training"} or not isinstance(x, tf.Tensor) or x.dtype != dtype
                or x.shape.rank is None or x.shape.rank < 3 or x.shape[-1] is None
                or getattr(x, "_keras_mask", None) is not None):
            return _keras_layer_call(layer, x, *args, **kwargs)
        static = x.shape.as_list()
        if None in static[:-1]:
            lead = tf.shape(x)[:-1]
            out_shape = tf.concat([lead, [units]], 0)
        else:
            out_shape = static[:-1] + [units]
        y = tf.matmul(tf.reshape(x, [-1, static[-1]]), kernel.value)
        if bias is not None:
            y = tf.nn.bias_add(y, bias.value)
        y = tf.reshape(y, out_shape)
        return y if linear else act(y)

    return call


@contextlib.contextmanager
def flat_dense_calls(model):
    """Inside this context (calling thread only), ``model``'s plain Dense layers run as one 2-D
    GEMM under TensorFlow; a no-op on other backends or with the switch off."""
    if not flat_dense_enabled():
        yield
        return
    redirects = {layer: _flat_dense_call(layer) for layer in [model, *compat.sublayers(model)]
                 if _plain_dense(layer)}
    if not redirects:
        yield
        return
    with compat.redirected_calls(redirects):
        yield

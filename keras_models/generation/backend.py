"""The one backend switch of the generation engine: compilation, loops, random numbers, no-grad.

* jax: ``jax.jit`` of a pure function; the model's variables are passed in as arguments and
  substituted through ``keras.StatelessScope`` (so weights are not baked in as constants); the
  whole decode loop is one ``lax.while_loop``.
* tensorflow: ``tf.function(jit_compile=True)`` (XLA) around a ``tf.while_loop``.
* torch: eager under ``torch.inference_mode`` (no autograd bookkeeping); the loop is a Python loop
  that checks its condition on the host every step.

Random numbers: one counter-based integer hash of (seed, step, row, column) in keras.ops
(``uniform``), so the same seed gives the same tokens on every backend.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools

import keras
import numpy as np
from keras import ops

from keras_models import compat
from keras_models.backend_choice import switch_on

BACKEND = keras.backend.backend()
EAGER_LOOP = BACKEND == "torch"  # the decode loop runs in Python, one step at a time


def no_grad():
    if BACKEND == "torch":
        import torch

        return torch.inference_mode()
    return contextlib.nullcontext()


def tf_graph(fn, **kwargs):
    """``tf.function(fn, **kwargs)`` without autograph: the library's code uses keras.ops control flow
    (jax's jit needs it), so autograph's source conversion is pure tracing cost (tests/generation/
    test_generate.py under tensorflow: 78 -> 64 s). The one place the library's own graphs are made."""
    import tensorflow as tf

    return tf.function(fn, autograph=False, **kwargs)


def compile_fn(model, fn):
    """Return ``run(*args)`` computing ``fn(*args)`` compiled for this backend.

    ``fn`` may call the model (its weights are read through the compiled function's inputs under
    jax). Compiled functions are cached by the caller; jax/tf retrace per input shape. Inference
    only: under torch ``fn`` runs with autograd off.
    """
    if BACKEND == "jax":
        import jax

        variables = list(model.variables)

        def pure(values, args):
            with keras.StatelessScope(state_mapping=list(zip(variables, values))):
                return fn(*args)

        # on the CPU: bf16 products accumulate to f32, float32 few-row products skip YNNPACK
        from keras_models.jax_kernels import decode_dots

        jitted = jax.jit(decode_dots(pure, model))
        return lambda *args: jitted([v.value for v in variables], args)
    if BACKEND == "tensorflow":
        return tf_graph(fn, jit_compile=True, reduce_retracing=False)

    import torch

    def run(*args):  # inference only: with autograd on, a decode loop's caches would keep every
        with direct_layer_calls(model, loop=True), torch.no_grad():  # step's graph alive (MusicGen: 9 GB)
            return fn(*args)

    return run


# --- torch: eager decoding without Keras' per-call bookkeeping ---------------------------------
_keras_layer_call = keras.layers.Layer.__call__
_in_direct_calls = contextvars.ContextVar("keras_models_direct_layer_calls", default=False)

# The one switch for direct torch ops in the eager torch decode loop (issue 21): inside
# ``compile_fn``'s context (``direct_layer_calls`` of the whole model), the per-step glue of the
# decode path -- rotary tables, the decoder mask bias and positions, attention's head reshapes and
# KV writes, the token / mask column writes, greedy selection and the loop condition -- runs as
# plain torch ops on tensors already of the right dtype, instead of keras.ops (whose eager torch
# path converts and standardises every argument: 10-20 microseconds an op, ~100 ops a step; on a
# tiny model that was a third of a step). Same kernels, same dtypes, identical results. Off with
# ``KM_TORCH_DIRECT_OPS=0`` (or this set to False before a generate call): every piece then takes
# its keras.ops path. Read by ``direct_ops()``; other backends never see it.
TORCH_DIRECT_OPS = switch_on("KM_TORCH_DIRECT_OPS")
_direct_ops = contextvars.ContextVar("keras_models_direct_ops", default=False)


def direct_ops(*tensors):
    """True inside the eager torch decode loop (``compile_fn``) while ``TORCH_DIRECT_OPS`` is on,
    and every one of ``tensors`` is a torch tensor: layers and loop pieces may then take their
    plain-torch path. Per calling thread / context."""
    if not _direct_ops.get():
        return False
    if tensors:
        import torch

        return all(isinstance(t, torch.Tensor) for t in tensors)
    return True


@functools.lru_cache(maxsize=None)
def decode_matmul():
    """``matmul(x, w, b=None, activation=None)``: ``act(x @ w (+ b))`` for an (in, out) weight
    ``w``, as the eager torch decode loop and ``predict`` compute it (no autograd).

    On CPU in float32 (and bfloat16 where the CPU has native bf16) the product runs in torch's BLAS
    (MKL, ``F.linear``) or in oneDNN (``torch.ops.mkldnn._linear_pointwise`` on the transposed view
    of ``w``), whichever :mod:`keras_models.torch_gemm` picks: for a large weight it times both once
    per shape on this machine (switch ``KM_TORCH_GEMM``). Its fixed rule, the answer where nothing is
    timed, comes from AMD Zen 5 (docs/performance.md): oneDNN from a few rows up (MKL reached a third
    to a half of its speed at 8 rows on 2 threads for 768-4096 wide layers), MKL's GEMV for a single
    row (2-6x faster than oneDNN at every width measured, 512-5632 wide and a 512 x 51865 head), and
    ``F.linear`` for small weights (at most 2**18 entries) at up to 16 rows, where oneDNN's fixed ~12
    microseconds a call dominate (64 x 64 at 8 rows: 15 vs 3.6 microseconds). Both differ only in
    summation order. ``activation`` (a ``torch_gemm.POST_OPS`` name) is fused into oneDNN's GEMM
    where oneDNN multiplies. Builds without oneDNN, other dtypes and devices, and calls with autograd
    on (the oneDNN op has no gradient) use ``F.linear``.
    """
    import torch
    import torch.nn.functional as F

    from keras_models import torch_gemm

    def matmul(x, w, b=None, activation=None):
        if torch.is_grad_enabled():
            y = F.linear(x, w.T, b)
            return y if activation is None else torch_gemm.post_op_function(activation)(y)
        return torch_gemm.linear(x, w.T, b, activation=activation)

    return matmul


def _value(variable):
    return variable.value


def _variable_reader():
    """``read(variable)`` for the direct calls of the eager decode loop (``TORCH_DIRECT_OPS``):
    the variable's torch parameter itself, without ``Variable.value``'s scope checks (~10
    microseconds, 20-200 reads a step) when those checks cannot change the answer: no stateless
    scope, no autocast scope (the redirected layers' compute and variable dtypes agree anyway), no
    meta device. Otherwise, or if Keras' internals moved, ``variable.value``."""
    from keras_models import compat

    if not compat.variable_scopes_are_plain():
        return _value

    def read(variable):
        value = getattr(variable, "_value", None)
        return variable.value if value is None else value

    return read


def _torch_dense(layer, read=_value):
    """Dense as one GEMM with the bias (Keras' call: matmul, then add, each through keras.ops).
    The returned call also has ``call.activated(x, name)``: ``act(layer(x))`` for a
    ``torch_gemm.POST_OPS`` activation name, fused into the GEMM where oneDNN multiplies it, for a
    Dense without an activation of its own (``layers.activations.activated_projection`` uses it)."""
    kernel, bias, act = layer.kernel, layer.bias, layer.activation  # the variable (no LoRA, quantisation)
    linear = act is keras.activations.linear
    matmul = decode_matmul()

    def call(x, training=None):
        w = read(kernel)
        if getattr(x, "dtype", None) != w.dtype:  # Keras' call casts inputs to the compute dtype
            return _keras_layer_call(layer, x, training=training)
        y = matmul(x, w, None if bias is None else read(bias))
        return y if linear else act(y)

    def activated(x, name):
        w = read(kernel)
        if not linear or getattr(x, "dtype", None) != w.dtype:
            return _torch_activations()[name](call(x))
        return matmul(x, w, None if bias is None else read(bias), activation=name)

    call.activated = activated
    return call


def _torch_layer_norm(layer, read=_value):
    """LayerNormalization over the last axis as one torch kernel; another axis: ``layer.call``."""
    import torch.nn.functional as F

    gamma, beta, eps = layer.gamma, layer.beta, layer.epsilon
    axis = list(layer.axis) if isinstance(layer.axis, (list, tuple)) else [layer.axis]
    axis = axis[0] if len(axis) == 1 else None

    def call(x, training=None):
        if axis != -1 and (axis is None or axis != x.dim() - 1):
            return layer.call(x)
        g = None if gamma is None else read(gamma)
        if g is not None and getattr(x, "dtype", None) != g.dtype:  # Keras' call casts inputs first
            return _keras_layer_call(layer, x)
        return F.layer_norm(x, x.shape[-1:], g, None if beta is None else read(beta), eps)

    return call


def _torch_rms_norm(layer, read=_value):
    """keras_models' RMSNorm with the same float32 arithmetic as its call, in torch ops."""
    import torch

    gamma, eps, unit_offset = layer.gamma, layer.epsilon, layer.unit_offset

    def call(x):
        x32 = x.float()
        y = x32 * torch.rsqrt(x32.square().mean(-1, keepdim=True) + eps)
        if gamma is None:
            return y.to(x.dtype)
        if unit_offset:
            return (y * (1.0 + read(gamma).float())).to(x.dtype)
        return y.to(x.dtype) * read(gamma).to(x.dtype)

    return call


def _torch_embedding(layer, read):
    """Embedding lookup as one torch kernel (Keras' call: cast, take, cast, through keras.ops); the
    table's dtype is the compute dtype (``_can_call_directly``), so the result is the same."""
    import torch
    import torch.nn.functional as F

    index_dtypes = (torch.int32, torch.int64)

    def call(inputs):
        if not isinstance(inputs, torch.Tensor) or inputs.dtype not in index_dtypes:
            return layer.call(inputs)
        return F.embedding(inputs, read(layer.embeddings))

    return call


def _torch_activations():
    """keras_models' activation names whose keras.ops function is exactly one torch function."""
    import torch.nn.functional as F

    tanh_gelu = functools.partial(F.gelu, approximate="tanh")
    return {"silu": F.silu, "swish": F.silu, "gelu": F.gelu, "gelu_python": F.gelu, "relu": F.relu,
            "gelu_new": tanh_gelu, "gelu_pytorch_tanh": tanh_gelu, "gelu_accurate": tanh_gelu}


def _torch_mlp(layer, fused):
    """MLP / FusedGateUpMLP with the activation as its torch function (the same one keras.ops
    calls); the projections are the layers themselves (redirected too; the activated one through
    ``activated_projection``, which fuses the activation into its GEMM where it can)."""
    from keras_models.layers.activations import activated_projection

    name = layer.activation
    act = _torch_activations()[name]
    gate, up, down, n = layer.gate, layer.up, layer.down, layer.intermediate_size
    if fused:
        gate_first = layer.gate_first

        def call(x):
            h = up(x)
            if gate_first:
                return down(act(h[..., :n]) * h[..., n:])
            return down(h[..., :n] * act(h[..., n:]))

        return call

    def call(x):
        if gate is not None:
            return down(activated_projection(gate, x, name, act) * up(x))
        return down(activated_projection(up, x, name, act))

    return call


def _direct_call_for(layer, direct_ops=False, read=_value):
    """The function ``layer(x)`` runs in direct mode: a one-kernel torch version of a plain Dense or
    LayerNormalization, a torch-ops RMSNorm (same arithmetic as their Keras calls); with
    ``direct_ops`` (the decode loop, ``TORCH_DIRECT_OPS``) also Embedding and the MLPs; else
    ``layer.call``."""
    from keras_models.layers.decoder_block import FusedGateUpMLP
    from keras_models.layers.mlp import MLP
    from keras_models.layers.norms import RMSNorm

    cls = compat.keras_class(layer)
    if cls is RMSNorm:
        return _torch_rms_norm(layer, read)
    if direct_ops and cls is keras.layers.Embedding and not layer.lora_enabled:
        return _torch_embedding(layer, read)
    if (direct_ops and cls in (MLP, FusedGateUpMLP) and isinstance(layer.activation, str)
            and layer.activation in _torch_activations()):
        return _torch_mlp(layer, fused=cls is FusedGateUpMLP)
    if compat.plain_dense(layer):
        return _torch_dense(layer, read)
    if cls is keras.layers.LayerNormalization and not layer.rms_scaling:
        return _torch_layer_norm(layer, read)
    return layer.call


def _can_call_directly(layer):
    """Built, plain layers whose __call__ would only forward to call() (``compat.plain_call``).
    (Keras masks are not involved: the decode loop's tensors never carry one.)"""
    return compat.plain_call(layer)


@contextlib.contextmanager
def direct_layer_calls(model, only=None, loop=False):
    """Inside this context (torch eager generation) ``layer(x)`` for ``model``'s built, plain
    layers runs ``layer.call(x)`` directly. Keras' ``Layer.__call__`` converts and checks inputs,
    resolves ``training``, masks and autocast scopes on every call: about 50 microseconds that a
    decode step pays ~100 times. Those steps are no-ops here (inputs are already tensors of the
    compute dtype, ``training`` is False, nothing is masked), so they are skipped. ``only``: a
    tuple of layer classes to restrict the direct calls to (exact types). ``loop``: this is
    ``compile_fn``'s decode loop, so ``direct_ops()`` holds inside (with ``TORCH_DIRECT_OPS``).

    Scope: only ``model``'s layers, and only calls made from the calling thread / context
    (``compat.redirected_calls``); another thread calling the same model meanwhile, any other
    model and any layer outside the context take Keras' path unchanged. keras.ops' symbolic-tensor
    check is the shallow one in the same scope (``compat.shallow_symbolic_checks``)."""
    if BACKEND != "torch":
        yield
        return
    redirects = {}
    use_ops = bool(TORCH_DIRECT_OPS) and loop and only is None
    read = _variable_reader() if use_ops else _value
    for layer in [model, *compat.sublayers(model)]:
        if (only is None or compat.keras_class(layer) in only) and _can_call_directly(layer):
            redirects[layer] = _direct_call_for(layer, use_ops, read)
    token = _in_direct_calls.set(True)
    ops_token = _direct_ops.set(use_ops)
    try:
        with compat.shallow_symbolic_checks(), compat.redirected_calls(redirects):
            yield
    finally:
        _direct_ops.reset(ops_token)
        _in_direct_calls.reset(token)


def fast_inference(model):
    """The context ``predict_step`` runs in (Backbone and Task): under torch, ``model``'s plain
    Dense layers multiply through ``decode_matmul`` (oneDNN's fp32 GEMM, ~2x torch's MKL GEMM on
    the CPUs measured, also at thousands of rows: docs/performance.md) while autograd is off, and
    its LayerNormalization layers (last axis) run as one ``F.layer_norm`` in the input's dtype:
    Keras' call casts bf16 / fp16 inputs and weights to float32 around the same kernel, two extra
    passes over the activations that Transformers does not make (torch's kernel computes in
    float32 inside and rounds once, as Keras' cast back does; float32 is the very same call). A
    projection followed by its activation (``layers.activations.activated_projection``) gets the
    activation inside oneDNN's GEMM where oneDNN multiplies.
    Under tensorflow, its plain Dense layers multiply as one 2-D GEMM while ``predict_step`` is
    traced (``tf_kernels.flat_dense_calls``, switch ``KM_TF_FLAT_DENSE``). Every other layer, and
    jax, is unchanged. Per model and per calling thread (see ``direct_layer_calls``)."""
    if BACKEND == "tensorflow":
        from keras_models.tf_kernels import flat_dense_calls

        return flat_dense_calls(model)
    return direct_layer_calls(model, only=(keras.layers.Dense, keras.layers.LayerNormalization))


def project_onto_table(hidden, variable):
    """``hidden @ transpose(variable)`` for a tied (vocab, hidden) embedding table used as the
    output projection, in ``hidden``'s dtype.

    Under torch, in the eager decode loop (``direct_layer_calls``, inference mode, CPU):
    * the table's storage is re-laid out column-major, once and in place (same shape and values,
      strides (1, vocab)), so that its transpose is a contiguous (hidden, vocab) matrix, which
      small-row GEMMs read 1.3-1.7x faster than the transposed view of a row-major table (one
      batch-1 decode step of a 32000 x 768 head with MKL: 3.5 ms instead of 5.8 ms). Embedding
      lookups read strided rows afterwards, a negligible cost; values, saving and training are
      unchanged.
    * the product is the decode loop's GEMM (``decode_matmul``).
    Inside jax's training fast path (``tasks.training.tied_projection``, ``KM_FAST_TRAIN``) the
    product and its gradient are that path's GEMMs.
    Elsewhere (other backends, predict): ``matmul(hidden, transpose(cast(table)))``.
    """
    from keras_models.tasks.training import tied_projection

    trained = tied_projection(hidden, variable)
    if trained is not None:
        return trained
    if BACKEND == "torch" and _in_direct_calls.get():
        import torch

        param = variable.value
        if (torch.is_inference_mode_enabled() and param.dim() == 2 and param.device.type == "cpu"
                and param.dtype == hidden.dtype):
            if param.stride(0) != 1:
                with torch.inference_mode(False), torch.no_grad():
                    param.data = param.data.t().contiguous().t()
            return decode_matmul()(hidden, param.T)
    return ops.matmul(hidden, ops.transpose(ops.cast(variable, hidden.dtype)))


def visible_length(cache_index, t):
    """How much of a KV buffer a chunk of ``t`` queries written at ``cache_index`` can see:
    ``cache_index + t`` when both are Python ints (an eager decode loop), else None (the whole
    buffer; a compiled loop has one static shape). Keys past it are masked for every query of
    the chunk (causal), so attention over ``buffer[..., :n, :]`` with the bias cut to ``n`` keys
    gives the same result, without reading the empty rest of a long buffer each step."""
    if type(cache_index) is int and type(t) is int:
        return cache_index + t
    return None


def write_time_slice(buffer, update, index, axis=1):
    """``buffer[:, index : index + t] = update`` for a KV buffer (batch, time, ...); with ``axis``
    the time axis is another one (heads-major buffers: (batch, heads, time, dim), ``axis=2``).

    jax / tensorflow: a functional ``slice_update`` (in place inside the compiled loop). torch: an
    in-place ``index_copy_`` when autograd is off (the generation loop owns its cache), so a step
    does not copy the whole buffer; with autograd on, an out-of-place ``index_copy``. ``index`` may
    be a tensor; it is never read back to the host.
    """
    if BACKEND == "torch":
        import torch

        t = update.shape[axis]
        if type(index) is int and direct_ops(buffer, update):  # the eager decode loop: no keras.ops conversions
            update = update.to(buffer.dtype)
            slots = torch.arange(index, index + t, device=buffer.device)
        else:
            update = ops.cast(update, buffer.dtype)
            slots = torch.arange(t, device=buffer.device) + torch.as_tensor(index, device=buffer.device).long()
        if torch.is_inference_mode_enabled():
            in_place = True
        else:  # autograd may be recording, and inference tensors are read-only outside the mode
            tracked = torch.is_grad_enabled() and (buffer.requires_grad or update.requires_grad)
            in_place = not tracked and not buffer.is_inference()
        return buffer.index_copy_(axis, slots, update) if in_place else buffer.index_copy(axis, slots, update)
    update = ops.cast(update, buffer.dtype)
    zero = ops.zeros((), "int32")
    start = [zero] * len(buffer.shape)
    start[axis] = ops.cast(index, "int32")
    return ops.slice_update(buffer, start, update)


def while_loop(cond, body, state, max_steps):
    """Run ``state = body(state)`` while ``cond(state)``, at most ``max_steps`` times."""
    if BACKEND == "jax":
        import jax

        def c(carry):
            i, s = carry
            return (i < max_steps) & cond(s)

        def b(carry):
            i, s = carry
            return i + 1, body(s)

        return jax.lax.while_loop(c, b, (0, state))[1]
    if BACKEND == "tensorflow":
        import tensorflow as tf

        return tf.while_loop(lambda s: cond(s), lambda s: (body(s),), (state,),
                             maximum_iterations=max_steps)[0]
    for _ in range(max_steps):
        if not bool(cond(state)):
            break
        state = body(state)
    return state


def make_rng(seed, batch_size):
    """The rng state for ``uniform``: the seed as an int32 scalar (fresh entropy when None)."""
    if seed is None:
        seed = int(np.random.SeedSequence().generate_state(1)[0] & 0x7FFFFFFF)
    return ops.convert_to_tensor(np.int32(int(seed) & 0x7FFFFFFF))


# A counter-based generator written with int32 keras.ops only (wrapping multiplication, xor and
# masked right shifts), so that every backend draws bit-identical uniforms for the same (seed,
# step, row, column): sampling with a seed gives the same tokens on jax, torch and tensorflow.
# The mixer is the "lowbias32" integer hash (two multiply-xorshift rounds).
_M1, _M2 = 0x7FEB352D, 0x846CA68B - (1 << 32)  # as int32


def _shift_right(x, k):
    """Logical right shift of int32 bits (the backends' >> is arithmetic)."""
    return ops.bitwise_and(ops.right_shift(x, k), (1 << (32 - k)) - 1)


def _mix(x):
    x = ops.bitwise_xor(x, _shift_right(x, 16))
    x = ops.multiply(x, ops.convert_to_tensor(np.int32(_M1)))
    x = ops.bitwise_xor(x, _shift_right(x, 15))
    x = ops.multiply(x, ops.convert_to_tensor(np.int32(_M2)))
    return ops.bitwise_xor(x, _shift_right(x, 16))


def uniform(rng, step, shape):
    """Uniform float32s in (0, 1) of ``shape`` (rows, columns) for the ``step``-th new token: the top 24
    bits of hash(column + row * columns + hash(step + hash(seed))), plus one half, over 2**24."""
    rows, cols = (int(d) for d in shape)
    key = _mix(ops.add(ops.cast(step, "int32"), _mix(ops.cast(rng, "int32"))))
    counter = ops.add(ops.arange(cols, dtype="int32")[None, :],
                      ops.multiply(ops.arange(rows, dtype="int32")[:, None], np.int32(cols)))
    bits = _shift_right(_mix(ops.add(counter, key)), 8)
    return (ops.cast(bits, "float32") + 0.5) * np.float32(2.0 ** -24)


def tree_map(fn, tree):
    return keras.tree.map_structure(fn, tree)

"""JAX attention for the CPU.

``cpu_attention``: scaled dot-product attention as a loop over (batch, K/V head) pairs
(``jax.lax.map``), each pair's scores, softmax and product done while its (query heads x t, s)
block is in cache. XLA's CPU backend runs ``jax.nn.dot_product_attention`` and a plain einsum
attention as whole-tensor passes over the (b, h, t, s) scores, which for long sequences are
memory-bound: measured on one AMD EPYC core, (b, h, t) = (1, 8, 1500), head size 64 (Whisper's
encoder): ``jax.nn.dot_product_attention`` 900 ms, einsum + softmax 470 ms, this loop 280 ms
(PyTorch's SDPA 226 ms); (32, 12, 128) (a BERT batch): 240 / 110 / 100 ms (SDPA 97 ms).
Differentiable (``lax.map`` is a scan), so training uses it too.

Below ``MIN_SCORES`` (BERT-sized blocks), :func:`use_heads_major` sends attention to heads-major
einsums instead of ``jax.nn.dot_product_attention`` (float32 and bf16, training included).

One switch: ``KM_JAX_CPU_ATTENTION=0`` (or ``CPU_ATTENTION = False``) returns to
``keras.ops.dot_product_attention``. It applies only to float32 inputs (bf16 keeps the fused op:
there the loop's small products were 2-3x slower) when JAX's default backend is a single CPU
device; on GPUs and TPUs the fused kernels (cuDNN / flash) stay. Pure functions of their inputs: thread-safe.
"""

from __future__ import annotations

from keras_models.backend_choice import switch_on

CPU_ATTENTION = switch_on("KM_JAX_CPU_ATTENTION")


MIN_SCORES = 1 << 16  # query x key positions from which the loop is taken (Whisper: 1500 x 1500)


def use_cpu_attention(q, k):
    """Whether ``fused_attention`` should take :func:`cpu_attention`: JAX on one CPU device,
    float32 (in bf16 the loop's small products were 2-3x slower than the fused op, measured with
    ``jax_kernels.bf16_dots``), inside a traced (jit) function, and a score block of at least
    ``MIN_SCORES`` query x key positions, where the whole-tensor passes are memory-bound. Short
    sequences and eager op-by-op calls keep ``jax.nn.dot_product_attention`` (eagerly each
    ``lax.map`` would be compiled on its own; a full test run once crashed XLA:CPU compiling one)."""
    if not CPU_ATTENTION or "float32" not in str(q.dtype):
        return False
    import jax

    if not isinstance(q, jax.core.Tracer):
        return False
    if not all(isinstance(n, int) for n in tuple(q.shape) + tuple(k.shape)):
        return False  # symbolic sizes (jax.export shape polymorphism): the fused op
    if q.shape[1] * k.shape[1] < MIN_SCORES:
        return False
    import jax

    # one CPU device: with a sharded mesh (e.g. --xla_force_host_platform_device_count) the loop's
    # gathers along the batch / head axes would move shards between devices
    return jax.default_backend() == "cpu" and jax.device_count() == 1


def use_heads_major(q, k, bias=None):
    """Whether attention below ``MIN_SCORES`` should run as heads-major products
    (``layers.attention.grouped_attention`` over K/V transposed to (b, kv, s, d)): JAX on one CPU
    device, inside a traced function, any float dtype, no bias or a 4-D one. XLA:CPU runs
    ``jax.nn.dot_product_attention`` and the (b, t, h, d)-layout einsums with the batch and head axes
    strided in memory, 2-3x slower than the same products on heads-major operands: one core,
    (32, 128, 12, 32) with a padding bias, 48.8 -> 21.3 ms (float32), 50.9 -> 17.2 ms (bfloat16).
    Same switch as the loop (``KM_JAX_CPU_ATTENTION``)."""
    if not CPU_ATTENTION or (bias is not None and len(bias.shape) != 4):
        return False
    import jax

    if not isinstance(q, jax.core.Tracer):
        return False
    if not all(isinstance(n, int) for n in tuple(q.shape) + tuple(k.shape)):
        return False
    return jax.default_backend() == "cpu" and jax.device_count() == 1


def cpu_attention(q, k, v, bias, scale):
    """q (b, t, h, d), k / v (b, s, kv, d) with kv dividing h, ``bias`` None or broadcastable to
    (b, h, t, s) -> (b, t, h, d). Query head j reads K/V head j // (h // kv). Scores and softmax
    in float32, the products in the inputs' dtype (as the einsum path)."""
    import jax
    import jax.numpy as jnp

    b, t, h, d = q.shape
    s, kv = k.shape[1], k.shape[2]
    r = h // kv
    # (b * kv, r * t, d): the r query heads of one K/V head side by side, one product per pair
    qg = jnp.transpose(jnp.reshape(q, (b, t, kv, r, d)), (0, 2, 3, 1, 4)).reshape(b * kv, r * t, d)
    kg = jnp.transpose(k, (0, 2, 1, 3)).reshape(b * kv, s, d)
    vg = jnp.transpose(v, (0, 2, 1, 3)).reshape(b * kv, s, d)
    if bias is not None:
        bias = jnp.asarray(bias, jnp.float32)
        bias = jnp.reshape(bias, (1,) * (4 - bias.ndim) + bias.shape)
        bb, bh = bias.shape[0], bias.shape[1]
    scale = jnp.asarray(scale, q.dtype)

    def one(i):
        qi = jax.lax.dynamic_index_in_dim(qg, i, keepdims=False)
        ki = jax.lax.dynamic_index_in_dim(kg, i, keepdims=False)
        vi = jax.lax.dynamic_index_in_dim(vg, i, keepdims=False)
        scores = jnp.reshape((qi @ ki.T) * scale, (r, t, s)).astype(jnp.float32)
        if bias is not None:
            bi = jax.lax.dynamic_index_in_dim(bias, (i // kv) if bb > 1 else 0, keepdims=False)  # (bh, t|1, s)
            if bh > 1:  # the r query heads of K/V head i % kv
                bi = jax.lax.dynamic_slice_in_dim(bi, (i % kv) * r, r, axis=0)
            scores = scores + bi
        probs = jax.nn.softmax(scores, axis=-1).astype(v.dtype)
        return jnp.reshape(probs, (r * t, s)) @ vi

    out = jax.lax.map(one, jnp.arange(b * kv))  # (b * kv, r * t, d)
    out = jnp.transpose(jnp.reshape(out, (b, kv, r, t, d)), (0, 3, 1, 2, 4))
    return jnp.reshape(out, (b, t, h, d))

"""JAX fast paths (issue 21): bf16 matrix products on XLA's CPU backend.

XLA's CPU compiler has no bf16 GEMM with a bf16 result: it rewrites such a ``dot_general``
(which is what ``keras.ops.matmul`` / ``einsum`` emit for bf16 operands, ``preferred_element_type``
bf16) into converts of both operands to f32, an f32 GEMM and a convert back, so a bf16 model ran
slower than its fp32 self. A product of bf16 operands with an **f32** result, on the other hand,
runs in its bf16 kernel (avx512_bf16 / AMX through YNNPACK): a 4096x384 @ 384x1536 product took
75 ms instead of 160 ms on one Zen 5 core.

:func:`bf16_dots` wraps a function that is being traced under ``jax.jit``: it traces the function
to a jaxpr and replays it with every bf16 x bf16 -> bf16 ``dot_general`` (also inside loops,
conditionals, nested jits and custom-derivative calls) issued as bf16 x bf16 -> f32 followed by a
rounding to bf16. Numerically this is what XLA computed before (exact products, f32 sums, one
rounding), up to the order of the f32 summation. One-row products get a zero second row
(:func:`_f32_dot`): XLA's bf16 vector-matrix path is a slow generic loop.

The one switch: ``KM_JAX_BF16_DOTS`` (default on; ``0`` restores the plain Keras trace) or
:data:`BF16_DOTS`. It applies on the CPU platform only, to traced (jitted) calls of models whose
compute dtype is bfloat16; everything else runs ``fn`` unchanged. Stateless (a pure function of
its inputs), so thread-safe.

:func:`few_row_dots` (float32 decode steps): XLA:CPU hands a float32 product of a few rows by a
weight matrix to YNNPACK, whose few-row GEMM ran at half the speed of XLA's own (Eigen) one on an
AVX2-only AMD Zen 3 core: 8 x 768 @ 768 x 3072 2.1 ms against 1.5 ms, 8 x 3072 @ 3072 x 768 2.6
against 1.4 ms, 16 rows 3.0 against 1.4 ms (on Zen 5 the two were level at 2-8 rows,
docs/performance.md "Stop 29" and "Stop 30"). The replay issues each float32 ``x @ w`` of
``FEW_ROWS`` rows (a decode step at batch 2-16; one row already takes XLA's vector path) with
``x`` transposed behind an optimisation barrier: a column-major left operand, which YNNPACK's
matcher declines, so XLA's own GEMM multiplies. The same products, summed in another order.
Switch: ``KM_JAX_FEW_ROW_DOTS`` (default on) or :data:`FEW_ROW_DOTS`; CPU platform, float32
models, the compiled decode functions of ``generate`` (``generation.backend.compile_fn``).
"""

from keras_models import compat
from keras_models.backend_choice import switch_on

BF16_DOTS = switch_on("KM_JAX_BF16_DOTS")
FEW_ROW_DOTS = switch_on("KM_JAX_FEW_ROW_DOTS")
FEW_ROWS = (2, 16)  # rows of a decode step's products that few_row_dots re-issues
FEW_ROW_MIN_WEIGHT = 1 << 16  # entries; smaller weights are left to XLA's own choice


def _jax_cpu_model(model, compute_dtype):
    """Whether ``model`` computes in ``compute_dtype`` under jax on the CPU platform."""
    import keras

    if keras.backend.backend() != "jax":
        return False
    if getattr(getattr(model, "dtype_policy", None), "compute_dtype", None) != compute_dtype:
        return False
    import jax

    return jax.default_backend() == "cpu"


def wants_bf16_dots(model):
    """Whether ``model``'s traced calls should go through :func:`bf16_dots`."""
    return BF16_DOTS and _jax_cpu_model(model, "bfloat16")


def wants_few_row_dots(model):
    """Whether ``model``'s compiled decode functions should go through :func:`few_row_dots`: a
    float32 model with a weight big enough to qualify (others are traced as they are, no replay)."""
    return (FEW_ROW_DOTS and _jax_cpu_model(model, "float32")
            and any(len(v.shape) == 2 and v.shape[0] * v.shape[1] >= FEW_ROW_MIN_WEIGHT for v in model.weights))


def bf16_dots(fn, model=None):
    """``fn`` with its bf16 products accumulated to f32 (see the module docstring); ``fn`` itself
    when ``model`` is given and :func:`wants_bf16_dots` says no, or when called outside a trace."""
    if model is not None and not wants_bf16_dots(model):
        return fn
    return _replayed(fn, _BF16_RULE)


def few_row_dots(fn, model=None):
    """``fn`` with its float32 products of ``FEW_ROWS`` rows by a 2-D weight issued so that XLA:CPU
    multiplies them with its own (Eigen) GEMM instead of YNNPACK (see the module docstring); ``fn``
    itself when ``model`` is given and :func:`wants_few_row_dots` says no, or outside a trace."""
    if model is not None and not wants_few_row_dots(model):
        return fn
    return _replayed(fn, _FEW_ROW_RULE)


def decode_dots(fn, model):
    """The dot rewrites that apply to ``model``'s compiled decode functions: :func:`bf16_dots` for a
    bf16 model, :func:`few_row_dots` for a float32 one (``fn`` unchanged where neither applies)."""
    return few_row_dots(bf16_dots(fn, model), model)


def _replayed(fn, rule):
    import jax

    def wrapped(*args, **kwargs):
        leaves = jax.tree_util.tree_leaves((args, kwargs))
        if not any(isinstance(x, jax.core.Tracer) for x in leaves):
            return fn(*args, **kwargs)  # eager: nothing to compile, keep Keras' own path
        closed, out_shape = jax.make_jaxpr(lambda a, k: fn(*a, **k), return_shape=True)(args, kwargs)
        out = _eval(closed.jaxpr, closed.consts, rule, *leaves)
        return jax.tree_util.tree_unflatten(jax.tree_util.tree_structure(out_shape), out)

    return wrapped


def _is_low_dot(eqn):
    import jax.numpy as jnp

    if eqn.primitive.name != "dot_general":
        return False
    a, b = (v.aval.dtype for v in eqn.invars)
    out = eqn.params.get("preferred_element_type")
    return a == jnp.bfloat16 and b == jnp.bfloat16 and out in (None, jnp.bfloat16)


def _f32_dot(eqn, lhs, rhs):
    """The bf16 product of ``eqn`` with an f32 result. A one-row product (a decode step at batch 1)
    is issued with a zero second row: XLA's CPU backend sends a bf16 vector-matrix product to a
    slow generic loop (1 x 768 @ 768 x 32000: 119 ms, vs 9 ms for two rows through YNNPACK)."""
    import math

    import jax.numpy as jnp

    params = dict(eqn.params, preferred_element_type=jnp.dtype("float32"))
    (lc, rc), (lb, _) = params["dimension_numbers"]
    free = [i for i in range(lhs.ndim) if i not in lc]
    if lb or math.prod(lhs.shape[i] for i in free) != 1:
        return eqn.primitive.bind(lhs, rhs, **params)
    vec = jnp.transpose(lhs, tuple(lc) + tuple(free)).reshape(tuple(lhs.shape[i] for i in lc))
    two = jnp.stack([vec, jnp.zeros_like(vec)])  # (2, *contracting)
    params["dimension_numbers"] = ((tuple(range(1, two.ndim)), tuple(rc)), ((), ()))
    out = eqn.primitive.bind(two, rhs, **params)[0]
    return out.reshape(eqn.outvars[0].aval.shape)


def _bf16_rewrite(eqn, lhs, rhs):
    import jax
    import jax.numpy as jnp

    return [jax.lax.convert_element_type(_f32_dot(eqn, lhs, rhs), jnp.bfloat16)]


def _few_rows(eqn, producers=None):
    """(rows, in) of a float32 ``x @ w`` with ``x`` (..., in) contracted on its last axis, ``w`` a
    2-D (in, out) operand contracted on its first, no batch axes, 2..FEW_ROWS[1] rows and a weight
    of at least FEW_ROW_MIN_WEIGHT entries; else None. Not where ``w`` is the transpose of another
    array in the same jaxpr (``producers``: variable -> primitive name): XLA folds that transpose
    into the dot, and with both operands column-major its GEMM was ~50x slower (a tied output
    projection, 8 x 768 @ (32000 x 768).T: 127 ms)."""
    import math

    import jax.numpy as jnp

    if eqn.primitive.name != "dot_general":
        return None
    if producers and producers.get(eqn.invars[1]) == "transpose":
        return None
    lhs, rhs = (v.aval for v in eqn.invars)
    (lc, rc), (lb, rb) = eqn.params["dimension_numbers"]
    if (lb or rb or lhs.dtype != jnp.float32 or rhs.dtype != jnp.float32 or rhs.ndim != 2
            or tuple(lc) != (lhs.ndim - 1,) or tuple(rc) != (0,)
            or eqn.params.get("preferred_element_type") not in (None, jnp.float32)):
        return None
    rows = math.prod(lhs.shape[:-1])
    if not FEW_ROWS[0] <= rows <= FEW_ROWS[1] or rhs.shape[0] * rhs.shape[1] < FEW_ROW_MIN_WEIGHT:
        return None
    return rows, lhs.shape[-1]


def _few_row_rewrite(eqn, lhs, rhs):
    import jax

    n_in = lhs.shape[-1]
    rows = lhs.size // n_in
    # x.T materialised (the barrier keeps XLA from folding the transpose back into the dot): a
    # column-major left operand, which XLA:CPU's YNNPACK matcher declines, so its own GEMM runs
    lhs_t = jax.lax.optimization_barrier(lhs.reshape(rows, n_in).T)
    out = jax.lax.dot_general(lhs_t, rhs, (((0,), (0,)), ((), ())), precision=eqn.params.get("precision"),
                              preferred_element_type=eqn.params.get("preferred_element_type"))
    return [out.reshape(eqn.outvars[0].aval.shape)]


_BF16_RULE = (lambda eqn, producers=None: _is_low_dot(eqn), _bf16_rewrite)
_FEW_ROW_RULE = (lambda eqn, producers=None: _few_rows(eqn, producers) is not None, _few_row_rewrite)


def _contains(jaxpr, match):
    from jax.extend.core import subjaxprs

    producers = _producers(jaxpr)
    return (any(match(eqn, producers) for eqn in jaxpr.eqns)
            or any(_contains(sub, match) for sub in subjaxprs(jaxpr)))


def _producers(jaxpr):
    return {v: eqn.primitive.name for eqn in jaxpr.eqns for v in eqn.outvars}


def _rewrite_closed(closed, rule):
    """A ClosedJaxpr with the same signature whose body goes through :func:`_eval`."""
    import jax

    avals = [jax.ShapeDtypeStruct(v.aval.shape, v.aval.dtype) for v in closed.jaxpr.invars]
    return jax.make_jaxpr(lambda *xs: _eval(closed.jaxpr, closed.consts, rule, *xs))(*avals)


def _rewrite_param(value, rule):
    from jax.extend.core import ClosedJaxpr

    if isinstance(value, ClosedJaxpr):
        return _rewrite_closed(value, rule) if _contains(value.jaxpr, rule[0]) else value
    if isinstance(value, tuple) and value and all(isinstance(v, ClosedJaxpr) for v in value):
        return tuple(_rewrite_param(v, rule) for v in value)
    return value


def _eval(jaxpr, consts, rule, *args):
    from jax.extend.core import Literal

    match, rewrite = rule
    env = {}

    def read(v):
        return v.val if isinstance(v, Literal) else env[v]

    env.update(zip(jaxpr.constvars, consts))
    env.update(zip(jaxpr.invars, args))
    producers = _producers(jaxpr)
    for eqn in jaxpr.eqns:
        invals = [read(v) for v in eqn.invars]
        if match(eqn, producers):
            outs = rewrite(eqn, *invals)
        else:
            params = {k: _rewrite_param(v, rule) for k, v in eqn.params.items()}
            with eqn.ctx.manager:
                outs = eqn.primitive.bind(*invals, **eqn.primitive.get_bind_params(params))
            if not eqn.primitive.multiple_results:
                outs = [outs]
        env.update(zip(eqn.outvars, outs))
    return [read(v) for v in jaxpr.outvars]


def hash_dropout(x, rate, seed):
    """Dropout of ``x`` (inverted scaling, keep probability ``1 - rate``) with the mask drawn from
    a counter-based integer hash instead of threefry: element ``i`` is kept when
    ``fmix32((i ^ seed[1]) * 0x9E3779B1 + seed[0])`` (MurmurHash3's 32-bit finaliser) is below
    ``(1 - rate) * 2**32``. Same distribution as ``jax.random.bernoulli`` (independent-looking
    bits; the keep probability exact to 2**-32), different draws; on XLA's CPU backend about 40x
    cheaper than threefry (a (16, 12, 128, 128) mask: 1 ms instead of 45 ms on one core), which
    was 10-20% of a MiniLM training step. Used by the jax training fast path
    (``tasks.training``, ``KM_FAST_TRAIN``). Pure function; the index wraps past 2**32 elements."""
    import jax
    import jax.numpy as jnp

    seed = jnp.asarray(seed).astype(jnp.uint32)
    i = jax.lax.iota(jnp.uint32, x.size).reshape(x.shape)
    h = (i ^ seed[1]) * jnp.uint32(0x9E3779B1) + seed[0]
    h = h ^ (h >> 16)
    h = h * jnp.uint32(0x85EBCA6B)
    h = h ^ (h >> 13)
    h = h * jnp.uint32(0xC2B2AE35)
    h = h ^ (h >> 16)
    keep = 1.0 - float(rate)
    keep_mask = h < jnp.uint32(min(int(round(keep * 2.0**32)), 2**32 - 1))
    return jnp.where(keep_mask, x / jnp.asarray(keep, x.dtype), jnp.zeros((), x.dtype))


def _dense_matmul():
    import jax

    @jax.custom_vjp
    def matmul(x, w):
        return x @ w

    def forward(x, w):
        return x @ w, (x, w)

    def backward(saved, dy):
        x, w = saved
        rows_x, rows_dy = x.reshape(-1, x.shape[-1]), dy.reshape(-1, dy.shape[-1])
        return dy @ w.T, (rows_dy.T @ rows_x).T

    matmul.defvjp(forward, backward)
    return matmul


_DENSE_MATMUL = []


def dense_matmul(x, w):
    """``x @ w`` for a (..., in) input and an (in, out) kernel, with its gradient spelled out:
    dx = dy @ w^T and dW = (dy^T @ x)^T over all leading axes flattened into rows. Autodiff of
    ``x @ w`` on a 3-D input gives XLA a batched dot and transposes of the activations for dW; this
    form is one 2-D GEMM plus a transpose of the (out, in) result: a stack of MLP blocks
    (16 x 128 rows, 384 -> 1536 -> 384) trained 15-30% faster on one core. The same products, summed
    in another order. Used by the jax training fast path (``tasks.training``, ``KM_FAST_TRAIN``)."""
    if not _DENSE_MATMUL:
        _DENSE_MATMUL.append(_dense_matmul())
    return _DENSE_MATMUL[0](x, w)


# erf(x) = x * P(x^2) / Q(x^2) on [-4, 4] (+-1 beyond, to float32 precision): the float32 rational
# approximation XLA and Eigen expand ``erf`` into (max error 4.3e-7 against float64's erf).
_ERF_P = (-2.72614225801306e-10, 2.77068142495902e-08, -2.10102402082508e-06, -5.69250639462346e-05,
          -7.34990630326855e-04, -2.95459980854025e-03, -1.60960333262415e-02)
_ERF_Q = (-1.45660718464996e-05, -2.13374055278905e-04, -1.68282697438203e-03, -7.37332916720468e-03,
          -1.42647390514189e-02)
_ERF = []


@compat.traced_when_symbolic
def erf_float32(x):
    """erf of a float32 jax array from elementwise products and one division, with the exact
    derivative 2 / sqrt(pi) * exp(-x^2). What ``lax.erf`` computes on the CPU, without the StableHLO
    composite ``lax.erf`` lowers to: TensorFlow 2.21 cannot read that back, which broke
    ``export(format="tf_saved_model")`` from jax. ``jax.nn.gelu``'s erfc form is 2.6x slower under
    XLA:CPU (a 4096 x 1536 block, one core: 6.8 vs 2.6 ms; its gradient 7.5 vs 5.8 ms). Stateless."""
    if not _ERF:
        import math

        import jax
        import jax.numpy as jnp

        @jax.custom_jvp
        def erf(v):
            v = jnp.clip(v, -4.0, 4.0)
            v2 = v * v
            p, q = _ERF_P[0], _ERF_Q[0]
            for c in _ERF_P[1:]:
                p = p * v2 + c
            for c in _ERF_Q[1:]:
                q = q * v2 + c
            return v * p / q

        @erf.defjvp
        def _erf_jvp(primals, tangents):
            (v,), (t,) = primals, tangents
            return erf(v), (2.0 / math.sqrt(math.pi)) * jnp.exp(-v * v) * t

        _ERF.append(erf)
    return _ERF[0](x)

"""Which CPU GEMM library multiplies the torch decode loop's, ``predict``'s and the ``fit`` fast
path's fp32 products (and bf16 ones where the CPU has native bf16): torch's BLAS (MKL, through
``F.linear``) or oneDNN (``torch.ops.mkldnn._linear_pointwise``), chosen on the machine the
process runs on rather than from a table of CPUs (issue 21, item 4). Where oneDNN multiplies, an
activation that follows the product (:data:`POST_OPS`) is applied inside the GEMM, on the float32
accumulator, instead of as a second pass over the output.

Why it has to be measured: on the AMD Zen 5 CPUs of docs/performance.md oneDNN is about 2x faster
than MKL from a few rows of a large weight up, but MKL's GEMV is 2-6x faster at one row; on Intel
CPUs MKL is the vendor's own library and oneDNN may use AMX, so both sides of that rule can move
there, and a vendor or CPU-flag table would only encode the machines someone happened to measure.

So the first product of each shape (rows, in, out, bias, thread count, and the weight's layout:
the decode loop passes the (in, out) kernel's transposed view, and between that and a contiguous
(out, in) matrix the answer differs, measured here at one row) runs both kernels on its own
operands, a warm-up call each and then ``REPS`` alternating timed calls, and the process keeps the
faster one for that shape. The fixed rule (:func:`rule`) is the default answer and the other kernel
must be at least ``MARGIN`` faster to replace it, so timing noise cannot flip a shape between
close kernels. Not timed: a small weight (at most 2**18 entries) at up to 16 rows always takes
``F.linear`` (oneDNN's fixed ~12 microseconds a call dominate there, a per-call cost rather than a
per-CPU one). A product of more than ``TIMED_MACS`` (2**30) multiply-adds is timed on its first
rows only (that many multiply-adds, at least ``TIMED_MIN_ROWS`` rows), so that measuring a
(4096 x 384) @ (384 x 1536) product costs ~0.25 s once on one core rather than ~0.6 s (a 2**28
budget, 384 of its rows, was too few: at two threads it called a (4096 x 384) @ (384 x 384) tie
that the full product gives to MKL by 16%); where even that many rows would exceed 2**31
multiply-adds (a vocabulary projection), the rule answers. The
rule is not safe to assume for big products: on an AVX2-only AMD Zen 3, oneDNN with a fused GELU
was 25-40% slower than MKL plus a separate GELU pass (docs/performance.md, "Stop 30").

The switch ``KM_TORCH_GEMM`` (or :func:`set_gemm_choice`): ``measure`` (default), ``rule`` (the fixed
rule only, no timing), ``blas`` or ``onednn`` (that library wherever it applies). Both libraries
compute the same fp32 product up to float summation order. The choice cache is a dict written
under a lock; a shape measured by two threads at once simply keeps the later answer.
"""

import os
import threading
import time

from keras_models.layers.activations import FUSED_ACTIVATIONS

_MODES = ("measure", "rule", "blas", "onednn")
_MODE = [os.environ.get("KM_TORCH_GEMM", "").strip().lower() or "measure"]
if _MODE[0] not in _MODES:
    raise ValueError(f"KM_TORCH_GEMM={_MODE[0]!r}: expected one of {', '.join(_MODES)}")

SMALL_WEIGHT = 1 << 18  # entries; at up to SMALL_ROWS rows such a weight always takes F.linear
SMALL_ROWS = 16
MAX_MEASURED_MACS = 1 << 31  # bigger products are never timed (the rule answers)
TIMED_MACS = 1 << 30  # a product with more multiply-adds is timed on its first rows only ...
TIMED_MIN_ROWS = 256  # ... but on at least this many
REPS = 3
MARGIN = 0.10

_choices = {}
_lock = threading.Lock()


def set_gemm_choice(mode):
    """``measure`` | ``rule`` | ``blas`` | ``onednn`` for the whole process (``KM_TORCH_GEMM``); clears
    the measured choices."""
    mode = str(mode).strip().lower()
    if mode not in _MODES:
        raise ValueError(f"set_gemm_choice({mode!r}): expected one of {', '.join(_MODES)}")
    _MODE[0] = mode
    clear_choices()


def gemm_choice():
    return _MODE[0]


def clear_choices():
    with _lock:
        _choices.clear()


def measured_choices():
    """A copy of this process' measured choices: ``{(rows, in, out, bias, threads[, layout]): "blas" |
    "onednn"}``."""
    with _lock:
        return dict(_choices)


def rule(rows, n_in, n_out):
    """The fixed rule (AMD Zen 5 measurements): True where oneDNN multiplies."""
    return rows != 1 and (n_in * n_out > SMALL_WEIGHT or rows > SMALL_ROWS)


def _time_pair(first, second, clock, reps):
    first(), second()  # warm-up: primitive creation, first-touch of the output pages
    best = [float("inf"), float("inf")]
    for _ in range(reps):
        for i, fn in enumerate((first, second)):
            start = clock()
            fn()
            best[i] = min(best[i], clock() - start)
    return best


def use_onednn(rows, n_in, n_out, threads, blas_call, onednn_call, has_bias=False, layout="", clock=time.perf_counter,
               timed_rows=None):
    """True where the product of ``rows`` x ``n_in`` by ``n_in`` x ``n_out`` should run in oneDNN.

    ``blas_call`` / ``onednn_call`` compute that product on the real operands (no arguments), or
    on their first ``timed_rows`` rows; they are called only while the shape is measured, once per
    process and shape. ``layout`` names the operands' memory layout where it can change the answer
    (it is part of the shape's key)."""
    mode = _MODE[0]
    if mode == "blas":
        return False
    if mode == "onednn":
        return True
    default = rule(rows, n_in, n_out)
    if (mode == "rule" or n_in * n_out <= SMALL_WEIGHT and rows <= SMALL_ROWS
            or (rows if timed_rows is None else timed_rows) * n_in * n_out > MAX_MEASURED_MACS):
        return default
    key = (rows, n_in, n_out, bool(has_bias), threads) + ((layout,) if layout else ())
    choice = _choices.get(key)
    if choice is None:
        if _compiling():
            return default
        blas_s, onednn_s = _time_pair(blas_call, onednn_call, clock, REPS)
        if default:
            choice = "blas" if blas_s < onednn_s * (1 - MARGIN) else "onednn"
        else:
            choice = "onednn" if onednn_s < blas_s * (1 - MARGIN) else "blas"
        with _lock:
            _choices[key] = choice
    return choice == "onednn"


_ONEDNN = []


def onednn_gemm():
    """oneDNN's fp32 GEMM ``f(x, w_t, b) = x @ w_t.T + b`` (``torch.ops.mkldnn._linear_pointwise``),
    or None where this torch build lacks it."""
    if not _ONEDNN:
        import torch

        op = None
        if torch.backends.mkldnn.is_available():
            op = getattr(getattr(torch.ops, "mkldnn", None), "_linear_pointwise", None)
        _ONEDNN.append(op)
    return _ONEDNN[0]


# ``layers.activations.FUSED_ACTIVATIONS`` as the (post-op name, algorithm) pairs of oneDNN's
# ``torch.ops.mkldnn._linear_pointwise``: applied to the GEMM's float32 accumulator before it writes
POST_OPS = {name: ("swish" if kind == "silu" else kind, algorithm)
            for name, (kind, algorithm) in FUSED_ACTIVATIONS.items()}


def post_op_function(name):
    """The torch function of a :data:`POST_OPS` activation name (None for None): what the BLAS
    route applies after ``F.linear``."""
    import torch.nn.functional as F

    if name is None:
        return None
    attr, algorithm = POST_OPS[name]
    if attr == "gelu":
        return lambda y: F.gelu(y, approximate="tanh" if algorithm == "tanh" else "none")
    return {"relu": F.relu, "swish": F.silu}[attr]


def _half_ok(dtype):
    """bfloat16 GEMMs in oneDNN only where the CPU has native bf16 instructions (avx512_bf16 / AMX):
    elsewhere oneDNN would emulate them and ``F.linear`` keeps them."""
    import torch

    if dtype != torch.bfloat16:
        return False
    if not _BF16:
        check = getattr(getattr(torch.ops, "mkldnn", None), "_is_mkldnn_bf16_supported", None)
        try:
            _BF16.append(bool(check()) if check is not None else False)
        except Exception:  # pragma: no cover - builds without the query
            _BF16.append(False)
    return _BF16[0]


_BF16 = []


def linear(x, w_t, b=None, activation=None):
    """``act(x @ w_t.T (+ b))`` for an (out, in) ``w_t`` (any leading axes on ``x``), in the library
    this module picks for float32 (and, where the CPU has native bf16, bfloat16) CPU tensors and in
    ``F.linear`` otherwise. ``activation``: None or a :data:`POST_OPS` name; where oneDNN multiplies,
    it applies the activation to the float32 accumulator inside the GEMM (no second pass over the
    output; in bf16 one rounding instead of two), else the activation's torch function runs after
    ``F.linear``. No gradient through the oneDNN route: call it with autograd off or inside an
    autograd function."""
    import torch
    import torch.nn.functional as F

    onednn = onednn_gemm()
    act = post_op_function(activation)
    attr, algorithm = POST_OPS[activation] if activation is not None else ("none", "")

    def blas(x=x):
        y = F.linear(x, w_t, b)
        return y if act is None else act(y)

    if (onednn is None or x.device.type != "cpu" or x.dtype != w_t.dtype
            or not (x.dtype == torch.float32 or _half_ok(x.dtype))):
        return blas()
    n_out, n_in = w_t.shape
    rows = x.numel() // n_in
    if n_in * n_out <= SMALL_WEIGHT and rows <= SMALL_ROWS:  # the fixed part of the rule, no lookup
        return blas()
    layout = " ".join(([] if x.is_contiguous() else ["x strided"]) + ([] if w_t.is_contiguous() else ["w_t strided"]))
    if x.dtype != torch.float32:
        layout = (layout + " " + str(x.dtype).replace("torch.", "")).strip()
    if activation is not None:  # timed with the activation on both sides: its own shape
        layout = (layout + " +" + attr).strip()
    timed, x_timed = rows, x
    if rows * n_in * n_out > TIMED_MACS and rows > TIMED_MIN_ROWS:  # time the first rows only
        per = rows // x.shape[0] if x.dim() > 2 else 1  # rows per entry of the leading axis
        lead = max(1, max(TIMED_MIN_ROWS, TIMED_MACS // (n_in * n_out)) // per)
        if lead < x.shape[0]:
            timed, x_timed = lead * per, x[:lead]  # a view: the same strides as x
    if use_onednn(rows, n_in, n_out, torch.get_num_threads(), lambda: blas(x_timed),
                  lambda: onednn(x_timed, w_t, b, attr, [], algorithm), has_bias=b is not None, layout=layout,
                  timed_rows=timed):
        return onednn(x, w_t, b, attr, [], algorithm)
    return blas()


def _compiling():
    try:
        import torch

        return bool(torch.compiler.is_compiling())
    except Exception:  # pragma: no cover - older torch without torch.compiler
        return False

"""Torch-backend kernels that Keras' own torch functions do not reach (re-exported by
:mod:`keras_models.compat`, whose conventions hold here: Keras and torch are imported inside the
functions, so importing this module imports neither).

* :func:`fast_torch_kernels` rebinds Keras' torch ``conv`` (channels-last without layout copies) and
  inference ``batch_normalization`` (one fused pass), handing every other case to Keras' function;
* :func:`inference_cache` keeps a weight-derived value (a weight-normed, reordered kernel) while
  autograd is off; :func:`torch_conv1d` / :func:`torch_conv_transpose1d` run channels-last 1-D convs
  with padding, crop and bias inside one torch call;
* :func:`torch_fused_conv2d` (switch :data:`FAST_CONV2D`) runs a channels-last 2-D conv with a frozen
  BatchNorm folded into its cached weights (:func:`torch_folded_conv_weights`), ReLU and a residual
  add as one oneDNN call; :func:`torch_max_pool2d` a channels-last max pool without a padded copy.
"""

import threading
from keras_models.backend_choice import switch_on

# The one switch for the copy-free channels-last 1-D conv paths of the speech encoders (issue 14):
# the Wav2Vec2 family's feature-encoder convs as GEMMs on strided views (:func:`torch_conv1d_taps`) and its
# weight-normed position conv through :func:`torch_conv1d` with the torch-layout kernel cached, both
# under torch with autograd off. On by default; ``KM_TORCH_FAST_CONV1D=0`` (or this set to False)
# selects the plain Keras ``ops.conv`` path (same values up to float summation order).
FAST_CONV1D = switch_on("KM_TORCH_FAST_CONV1D")

# oneDNN 3.12 (torch 2.13's CPU build) corrupts the heap on x86 CPUs whose best instruction set is
# AVX2 (no AVX-512) when it computes the weight gradient of a strided 1x1 convolution on
# channels-last tensors with 2-7 input channels (pinned on an AMD EPYC Zen 3: ``aten.
# convolution_backward`` alone, e.g. (2, 4, 24, 16) -> 4 channels, stride 2; glibc then aborts with
# "free(): invalid pointer" or "corrupted double-linked list"; 1 or >= 8 channels, unit stride, 3x3
# kernels and the input gradient alone were clean; docs/performance.md "Stop 31"). A 1x1
# convolution with stride s and no padding is the unit-stride one on every s-th position, so while
# autograd records a trainable kernel on such a CPU, the channels-last conv below takes those
# positions first (a copy of 1/s^2 of the input; the same products and sums) and never issues the
# strided one. Switch: ``KM_TORCH_AVX2_TRAIN_GUARD`` (default on) or AVX2_STRIDED_1X1[0].
AVX2_STRIDED_1X1 = [switch_on("KM_TORCH_AVX2_TRAIN_GUARD")]
_CPU_CAPABILITY = []


def avx2_only_cpu():
    """Whether torch's CPU kernels run at the AVX2 level (an x86 CPU without AVX-512); read once."""
    if not _CPU_CAPABILITY:
        import torch

        try:
            _CPU_CAPABILITY.append(str(torch.backends.cpu.get_cpu_capability()).upper())
        except Exception:  # pragma: no cover - a torch without the query
            _CPU_CAPABILITY.append("")
    return _CPU_CAPABILITY[0] == "AVX2"


def unit_stride_1x1(x, w, strides, pad):
    """``(x, strides)`` for a channels-last 2-D conv of ``x`` (N, C, H, W) by ``w`` (O, C/g, kh, kw):
    where the oneDNN AVX2 bug above could be reached (a 1x1 kernel, a stride above 1, no padding,
    autograd recording a kernel that needs its gradient, an AVX2-only CPU, the switch on), ``x`` at
    every stride-th position (channels-last memory) with unit strides; else unchanged."""
    import torch

    if (not AVX2_STRIDED_1X1[0] or max(strides) == 1 or tuple(w.shape[2:]) != (1, 1)
            or any(pad if isinstance(pad, (tuple, list)) else (pad,)) or not torch.is_grad_enabled()
            or not w.requires_grad or not avx2_only_cpu()):
        return x, strides
    x = x[:, :, ::strides[0], ::strides[1]].contiguous(memory_format=torch.channels_last)
    return x, (1, 1)

_install_lock = threading.Lock()

# --- torch kernels for channels-last convolutions and inference batch norm ----------------------

_TORCH_KERNELS = []


def _fast_torch_conv(keras_conv):
    """``keras.src.backend.torch.nn.conv`` without its redundant copies (channels_last only).

    Keras 3.15 permutes NHWC inputs to NCHW, makes them ``.contiguous()`` (a full copy) and then
    converts them back to ``channels_last`` memory (a second full copy) before ``conv2d``: but the
    permuted view of a contiguous NHWC tensor already *is* channels_last memory, so both copies
    are dropped here and ``conv2d`` gets the same tensor values in the same memory format (the same
    oneDNN kernel: bit-identical outputs). 1-D convolutions run as a height-1 2-D convolution on
    the same free view (NLC -> N,C,1,L channels_last) instead of an NCL copy; the output comes back
    as contiguous NLC memory, not a strided view that the next op copies."""
    import torch.nn.functional as F
    from keras.src.backend import standardize_data_format
    from keras.src.backend.torch import nn as torch_nn
    from keras.src.backend.torch.core import convert_to_tensor
    from keras.src.utils.argument_validation import standardize_tuple

    def conv(inputs, kernel, strides=1, padding="valid", data_format=None, dilation_rate=1):
        inputs, kernel = convert_to_tensor(inputs), convert_to_tensor(kernel)
        nd = inputs.ndim - 2
        if (standardize_data_format(data_format) != "channels_last" or nd not in (1, 2)
                or padding not in ("valid", "same") or kernel.ndim != inputs.ndim):
            return keras_conv(inputs, kernel, strides=strides, padding=padding, data_format=data_format,
                              dilation_rate=dilation_rate)
        strides = standardize_tuple(strides, nd, "strides")
        dilation = standardize_tuple(dilation_rate, nd, "dilation_rate")
        if nd == 1:  # (N, L, C) -> (N, 1, L, C); kernel (k, in, out) -> (1, k, in, out)
            inputs, kernel = inputs.unsqueeze(1), kernel.unsqueeze(0)
            strides, dilation = (1,) + strides, (1,) + dilation
        x = torch_nn._maybe_convert_to_channels_last(inputs.permute(0, 3, 1, 2))
        w = torch_nn._maybe_convert_to_channels_last(kernel.permute(3, 2, 0, 1))
        if x.shape[1] % w.shape[1]:
            raise ValueError(f"Input channels ({x.shape[1]}) must be divisible by kernel input channels "
                             f"({w.shape[1]})")
        pad = 0
        if padding == "same":
            x, pad = torch_nn._apply_same_padding(x, tuple(w.shape[2:]), strides, "channels_first", "conv",
                                                  dilation)
            x = torch_nn._maybe_convert_to_channels_last(x)
        groups = x.shape[1] // w.shape[1]
        x, strides = unit_stride_1x1(x, w, strides, pad)  # oneDNN's AVX2 strided 1x1 weight gradient
        y = F.conv2d(x, w, stride=strides, padding=pad, dilation=dilation, groups=groups)
        y = y.permute(0, 2, 3, 1)
        return y.squeeze(1) if nd == 1 else y

    conv._keras_models_fast, conv.keras_original = True, keras_conv
    return conv


def _fast_torch_batch_norm(keras_bn):
    """``keras.src.backend.torch.nn.batch_normalization`` as torch's fused inference kernel
    (``F.batch_norm(training=False)``: one pass, ``x * a + b`` with ``a = scale / sqrt(var + eps)``,
    ``b = offset - mean * a``) instead of Keras' three (subtract, multiply, add). Same formula up to
    float rounding. Channels on the last axis only (the layout every keras_models layer uses); the
    input is viewed as (rows, channels), no copy. Statistics that autograd differentiates (a
    training step's batch moments: torch's kernel takes no gradient through them) go to Keras'
    function."""
    import torch.nn.functional as F
    from keras.src.backend.torch.core import convert_to_tensor

    def batch_normalization(x, mean, variance, axis, offset=None, scale=None, epsilon=1e-3):
        x = convert_to_tensor(x)
        mean, variance = convert_to_tensor(mean), convert_to_tensor(variance)
        if (x.ndim < 2 or axis not in (-1, x.ndim - 1) or not x.is_floating_point() or not x.is_contiguous()
                or mean.ndim != 1 or variance.ndim != 1 or mean.dtype != x.dtype or variance.dtype != x.dtype
                or mean.requires_grad or variance.requires_grad):  # batch moments in training: Keras' path
            return keras_bn(x, mean, variance, axis, offset=offset, scale=scale, epsilon=epsilon)
        offset = None if offset is None else convert_to_tensor(offset)
        scale = None if scale is None else convert_to_tensor(scale)
        if any(t is not None and (t.dtype != x.dtype or t.ndim != 1) for t in (offset, scale)):
            return keras_bn(x, mean, variance, axis, offset=offset, scale=scale, epsilon=epsilon)
        rows = x.reshape(-1, x.shape[-1])
        return F.batch_norm(rows, mean, variance, scale, offset, False, 0.0, epsilon).reshape(x.shape)

    batch_normalization._keras_models_fast, batch_normalization.keras_original = True, keras_bn
    return batch_normalization


def fast_torch_kernels():
    """Under the torch backend, rebind ``conv`` and ``batch_normalization`` of Keras' torch backend
    module once, permanently, to the versions above (each hands anything outside its fast case to
    Keras' own function). No-op on other backends. Called when :mod:`keras_models.models.backbone`
    is imported.

    Relies on: ``keras.ops.conv`` / ``keras.ops.batch_normalization`` calling
    ``keras.src.backend.nn.{conv, batch_normalization}`` through the module attribute, and on
    ``keras.src.backend.torch.nn._apply_same_padding`` / ``_maybe_convert_to_channels_last``."""
    import keras

    if keras.backend.backend() != "torch":
        return
    with _install_lock:
        if _TORCH_KERNELS:
            return
        from keras.src.backend.torch import nn as torch_nn

        if not getattr(torch_nn.conv, "_keras_models_fast", False):
            torch_nn.conv = _fast_torch_conv(torch_nn.conv)
        if not getattr(torch_nn.batch_normalization, "_keras_models_fast", False):
            torch_nn.batch_normalization = _fast_torch_batch_norm(torch_nn.batch_normalization)
        _TORCH_KERNELS.append(torch_nn)


# --- torch inference helpers: cached derived weights, copy-free channels-last 1-D convs ---------


def inference_cache(owner, name, sources, compute):
    """``compute()``, remembered on ``owner`` under ``name`` for torch inference.

    Under the torch backend with autograd off (``predict``, ``generate``, ``torch.no_grad()``) the
    result is reused while every variable in ``sources`` still holds the same tensor, unmodified:
    the tensor's identity plus torch's in-place version counter (``Variable.assign`` is an in-place
    ``copy_``, which bumps it), so loading or assigning weights invalidates the entry. With autograd
    on (training) and on jax / tensorflow (traced: the derivation is compiled into the graph) it is
    ``compute()`` every call.

    Relies on: ``keras.Variable.value`` being the backing ``torch.Tensor`` (Keras' torch backend)."""
    import keras

    if keras.backend.backend() != "torch":
        return compute()
    import torch

    if torch.is_grad_enabled():
        return compute()
    tensors = [v.value if isinstance(v, keras.Variable) else v for v in sources]
    key = tuple((id(t), t._version) for t in tensors)
    cache = owner.__dict__.setdefault("_km_inference_cache", {})
    hit = cache.get(name)
    if hit is not None and hit[0] == key:
        return hit[2]
    result = compute()
    cache[name] = (key, tensors, result)  # the tensors are kept: their ids cannot be reused meanwhile
    return result


def torch_conv1d_weight(kernel, depthwise=False):
    """A Keras 1-D conv kernel, ``(k, in / groups, out)`` (or depthwise ``(k, channels, 1)``), as
    torch's ``(out, in / groups, 1, k)`` in channels_last memory, the layout :func:`torch_conv1d`
    hands to oneDNN (cache it with :func:`inference_cache`)."""
    import torch

    kernel = kernel.permute(1, 2, 0) if depthwise else kernel.permute(2, 1, 0)
    return kernel.unsqueeze(2).contiguous(memory_format=torch.channels_last)


def torch_conv1d(x, weight, bias=None, padding=(0, 0), dilation=1, stride=1):
    """Torch only: a Conv1d on channels-last ``x`` (N, L, C) with ``weight`` from
    :func:`torch_conv1d_weight`, zero ``padding`` (left, right) and ``bias`` inside the one oneDNN
    call (a height-1 channels_last ``conv2d`` on the free (N, C, 1, L) view of ``x``): no padded
    copy of the input, no separate bias pass, no kernel reorder when ``weight`` is cached. Returns
    contiguous (N, L', out) memory. The same values as ``ops.pad`` + ``ops.conv`` + bias up to
    float rounding."""
    import torch.nn.functional as F

    left, right = padding
    if left != right:  # conv2d pads symmetrically: the extra part goes in an explicit pad
        x = F.pad(x, (0, 0, max(left - right, 0), max(right - left, 0)))
        left = right = min(left, right)
    x = x.contiguous().unsqueeze(1).permute(0, 3, 1, 2)
    if bias is not None and bias.dtype != x.dtype:
        bias = bias.to(x.dtype)
    groups = x.shape[1] // weight.shape[1]
    x, strides = unit_stride_1x1(x, weight, (1, stride), (0, left))  # oneDNN's AVX2 strided 1x1 weight gradient
    y = F.conv2d(x, weight.to(x.dtype) if weight.dtype != x.dtype else weight, bias, stride=strides,
                 padding=(0, left), dilation=(1, dilation), groups=groups)
    y = y.permute(0, 2, 3, 1).squeeze(1)
    return y if y.is_contiguous() else y.contiguous()  # channels_last output: already contiguous NLC


def torch_conv1d_taps_weight(kernel, stride):
    """A Keras 1-D conv kernel ``(k, C, out)`` as the (out, w * C) matrices :func:`torch_conv1d_taps`
    multiplies by: taps ``j .. j + w - 1`` for ``j = 0, stride, 2 * stride, ...``, ``w <= stride``
    (cache it with :func:`inference_cache`)."""
    k, c, out = kernel.shape
    return [kernel[j:j + stride].reshape(-1, out).t().contiguous() for j in range(0, k, stride)]


def torch_conv1d_taps(x, weights, bias=None, stride=1):
    """Torch only, autograd off: a "valid" Conv1d (groups 1, no dilation) of channels-last ``x``
    (N, L, C) with ``weights`` from :func:`torch_conv1d_taps_weight`, as ``ceil(k / stride)``
    GEMMs summed. The ``w <= stride`` taps starting at ``j`` read, for output frame ``t``, the
    samples ``t * stride + j .. + w - 1``: in (L, C) memory one run of ``w * C`` floats every
    ``stride * C``, i.e. a strided 2-D view of ``x`` (a valid GEMM leading dimension). So nothing is
    copied (no im2col, no layout reorder) and a kernel-2 stride-2 conv is a single GEMM, a
    kernel-3 stride-2 conv two. The GEMM is oneDNN's (``torch.ops.mkldnn._linear_pointwise``, as
    :func:`keras_models.generation.backend.decode_matmul`) for float32 on CPU, else ``F.linear``.
    For the Wav2Vec2 feature encoder's 512 -> 512 convs this runs ~20% faster than oneDNN's direct
    convolution at 1 thread (AMD Zen 5, docs/performance.md). Same products, summed in another
    order. Returns contiguous (N, T, out)."""
    import torch
    import torch.nn.functional as F

    n, length, c = x.shape
    k_span = sum(w.shape[1] for w in weights) // c  # the kernel size
    frames = (length - k_span) // stride + 1
    from keras_models.torch_gemm import onednn_gemm

    onednn = None
    if x.dtype == torch.float32 and x.device.type == "cpu" and all(w.dtype == torch.float32 for w in weights):
        onednn = onednn_gemm()  # None where this torch build lacks it
    if bias is not None and bias.dtype != x.dtype:
        bias = bias.to(x.dtype)
    weights = [w if w.dtype == x.dtype else w.to(x.dtype) for w in weights]
    x = x.contiguous()
    ys = []
    for b in range(n):
        xb, y = x[b], None
        for i, w in enumerate(weights):
            width = w.shape[1]
            rows = xb.as_strided((frames, width), (stride * c, 1), xb.storage_offset() + i * stride * c)
            part_bias = bias if i == 0 else None
            part = onednn(rows, w, part_bias, "none", [], "") if onednn is not None else F.linear(rows, w, part_bias)
            y = part if y is None else y.add_(part)
        ys.append(y)
    return ys[0].unsqueeze(0) if n == 1 else torch.stack(ys)


def torch_conv_transpose1d_weight(kernel):
    """A Keras 1-D transposed-conv kernel ``(k, out, in)`` as torch's ``(in, out, 1, k)``."""
    return kernel.permute(2, 1, 0).unsqueeze(2).contiguous()


def torch_conv_transpose1d(x, weight, bias=None, stride=1, padding=0):
    """Torch only: ConvTranspose1d(stride, padding) on channels-last ``x`` (N, L, C) with ``weight``
    from :func:`torch_conv_transpose1d_weight`, crop and bias inside torch's call (Keras'
    ``conv_transpose`` transposes the input and output and crops / adds bias as separate passes)."""
    import torch.nn.functional as F

    x = x.permute(0, 2, 1)
    y = F.conv_transpose1d(x, weight.squeeze(2), bias, stride=stride, padding=padding)
    return y.permute(0, 2, 1).contiguous()


# --- 2-D conv + frozen BatchNorm + ReLU (+ residual) as one oneDNN call (issue 17: DETR's ResNet) ----

# The one switch for the fused channels-last 2-D conv path of :class:`~keras_models.layers.conv_blocks.ConvNormAct`
# (ResNet-style units: conv -> inference BatchNorm -> ReLU, and a ResNet layer's last conv + residual add + ReLU)
# and the channels-last max pool of ResNet stems, under torch with autograd off and float32 CPU inputs.
# On by default; ``KM_TORCH_FAST_CONV2D=0`` (or this set to False) selects the plain Keras ops path
# (the same values up to float rounding: the BatchNorm is folded into the conv's weights and bias).
FAST_CONV2D = switch_on("KM_TORCH_FAST_CONV2D")


def torch_fused_conv_ready(x):
    """Whether the fused 2-D conv path may run on ``x``: :data:`FAST_CONV2D`, the torch backend,
    autograd off, and ``x`` a float32 CPU torch tensor with oneDNN available."""
    if not FAST_CONV2D:
        return False
    import keras

    if keras.backend.backend() != "torch":
        return False
    import torch

    return (isinstance(x, torch.Tensor) and not torch.is_grad_enabled() and x.dtype == torch.float32
            and x.device.type == "cpu" and x.ndim == 4 and torch.backends.mkldnn.is_available()
            and hasattr(torch.ops.mkldnn, "_convolution_pointwise"))


def torch_folded_conv_weights(kernel, bias=None, gamma=None, beta=None, mean=None, variance=None, epsilon=1e-5):
    """A Keras Conv2D kernel ``(kh, kw, in / groups, out)`` (+ optional bias) with an inference
    BatchNorm folded in (``mean`` / ``variance`` given): ``a = gamma / sqrt(variance + epsilon)``,
    weight ``kernel * a`` as torch's ``(out, in / groups, kh, kw)`` in channels_last memory, bias
    ``(bias - mean) * a + beta``. Cache it with :func:`inference_cache`."""
    import torch

    w = kernel.permute(3, 2, 0, 1).float()
    b = None if bias is None else bias.float()
    if mean is not None:
        a = torch.rsqrt(variance.float() + epsilon)
        if gamma is not None:
            a = a * gamma.float()
        w = w * a[:, None, None, None]
        b = (-mean.float() if b is None else b - mean.float()) * a
        if beta is not None:
            b = b + beta.float()
    return w.contiguous(memory_format=torch.channels_last), b


def torch_fused_conv2d(x, weight, bias, strides=(1, 1), padding=(0, 0), dilation=(1, 1), groups=1, relu=False,
                       residual=None):
    """Torch only (see :func:`torch_fused_conv_ready`): ``x`` (N, H, W, C) convolved with ``weight`` /
    ``bias`` from :func:`torch_folded_conv_weights`, symmetric zero ``padding`` (rows, cols), then
    ``+ residual`` (N, H', W', out) when given, then ReLU when ``relu``: one oneDNN convolution with
    the add and ReLU as post-ops, on the free channels_last (N, C, H, W) view of ``x`` (no padded
    copy, no layout copies). Returns contiguous (N, H', W', out)."""
    import torch

    op = torch.ops.mkldnn._convolution_pointwise
    xc = x.contiguous().permute(0, 3, 1, 2)
    pad, stride, dil = list(padding), list(strides), list(dilation)
    if residual is not None:
        other = residual.contiguous().permute(0, 3, 1, 2)
        y = op.binary(xc, other, weight, bias, pad, stride, dil, groups, "add", None,
                      "relu" if relu else None, [], "")
    else:
        y = op(xc, weight, bias, pad, stride, dil, groups, "relu" if relu else "none", [], "")
    y = y.permute(0, 2, 3, 1)
    return y if y.is_contiguous() else y.contiguous()


def torch_max_pool2d(x, pool, stride, padding):
    """Torch only: MaxPool2d(pool, stride, padding) of (N, H, W, C) ``x`` with PyTorch's implicit
    -inf padding, on the channels_last (N, C, H, W) view (torch's channels-last kernel; no padded
    copy). Returns contiguous (N, H', W', C)."""
    import torch.nn.functional as F

    y = F.max_pool2d(x.contiguous().permute(0, 3, 1, 2), pool, stride, padding).permute(0, 2, 3, 1)
    return y if y.is_contiguous() else y.contiguous()

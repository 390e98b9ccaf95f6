"""A minimal, independent torch stand-in for the parts of NVIDIA's ``pytorch_quantization`` that
Transformers 4.57.1's QDQBert imports (``pytorch_quantization.nn.QuantLinear`` and
``pytorch_quantization.nn.modules.tensor_quantizer.TensorQuantizer``). The package on PyPI named
``pytorch-quantization`` is a placeholder that only warns, and NVIDIA's wheel is not installable
here, so the QDQBert references (record_qdqbert.py) run on this instead; it is injected through
``sys.modules`` by :func:`install`, in the recording script only.

Written from the library's documented behaviour and checked default by default against its
source (NVIDIA/TensorRT, tools/pytorch-quantization/pytorch_quantization/: tensor_quant.py,
nn/modules/tensor_quantizer.py, nn/modules/quant_linear.py, nn/modules/_utils.py,
utils/reduce_amax.py), read, not copied. What QDQBert relies on:

* ``QuantDescriptor`` defaults: 8 bits, fake quantisation, ``axis=None`` (per tensor), no stored
  amax, ``unsigned=False``, ``narrow_range=False`` (the descriptor's own default; the
  functions' ``narrow_range=True`` default is never reached through a quantizer), no
  ``scale_amax``, no learned amax.
* ``QuantLinear.default_quant_desc_input`` = 8-bit per tensor, ``default_quant_desc_weight`` =
  8-bit with ``axis=0`` (one amax per output row of the (out, in) weight);
  ``set_default_quant_desc_input/weight`` replace the class defaults (a deep copy).
  ``forward``: ``F.linear(input_quantizer(x), weight_quantizer(weight), bias)``.
* ``TensorQuantizer.forward``: amax is the ``_amax`` buffer when the quantizer has one
  (calibrated; saved in state dicts as ``<quantizer>._amax``), otherwise computed from the input:
  ``max |x|`` over the whole tensor (axis None) or over every dimension except ``axis``
  (keepdims), without gradient. Then, in float32: ``scale = (2**(bits-1) - 1) / amax``
  (127 for 8 bits); ``q = clamp(round(x * scale), min_bound, 127)`` with ``torch.round``
  (half to even), ``min_bound`` = -128 (-127 with narrow range, 0 unsigned); output ``q / scale``.
  Amax at or below 2**-24 quantises to 0 (scale 0 while rounding, then 1 to divide). Negative
  amax is an error.
* Loading a state dict that carries ``_amax`` into a quantizer without one registers the buffer
  (the real library does the same, moving it to CUDA; here it stays on the CPU).

Only CPU float math is provided (the real library uses the same float formula on CPU: its CUDA
kernels are used for CUDA tensors only). Calibrators, learned amax (``Clip``), real (non-fake)
quantisation, FP8 and ONNX export are not provided; asking for them raises NotImplementedError.
"""

import copy
import sys
import types

import torch
from torch import nn
from torch.nn import functional as F

EPSILON = 1.0 / (1 << 24)


class QuantDescriptor:
    def __init__(self, num_bits=8, name=None, fake_quant=True, axis=None, amax=None, learn_amax=False,
                 scale_amax=None, calib_method="max", unsigned=False, narrow_range=False):
        if not isinstance(num_bits, int) or num_bits <= 0:
            raise NotImplementedError(f"stand-in: num_bits={num_bits!r} (integer bits only)")
        if not fake_quant or learn_amax or scale_amax is not None:
            raise NotImplementedError("stand-in: only fake quantisation with fixed or dynamic amax")
        self.num_bits, self.name, self.fake_quant, self.axis = num_bits, name, fake_quant, axis
        self.amax = None if amax is None else torch.tensor(amax, dtype=torch.float32)
        self.learn_amax, self.scale_amax, self.calib_method = learn_amax, scale_amax, calib_method
        self.unsigned, self.narrow_range = unsigned, narrow_range


QUANT_DESC_8BIT_PER_TENSOR = QuantDescriptor(num_bits=8)
QUANT_DESC_8BIT_LINEAR_WEIGHT_PER_ROW = QuantDescriptor(num_bits=8, axis=0)


def fake_tensor_quant(inputs, amax, num_bits=8, unsigned=False, narrow_range=False):
    """Quantise-dequantise ``inputs`` symmetrically in [-amax, amax] (amax broadcast to inputs)."""
    x = inputs.float()
    amax = amax.float()
    if bool((amax < 0).any()):
        raise ValueError("Negative values in amax")
    top = 2.0 ** (num_bits - 1 + int(unsigned)) - 1.0
    low = 0.0 if unsigned else (-top if narrow_range else -top - 1.0)
    tiny = amax <= EPSILON
    scale = torch.where(tiny, torch.zeros_like(amax), top / torch.where(tiny, torch.ones_like(amax), amax))
    q = torch.clamp(torch.round(x * scale), low, top)
    return (q / torch.where(tiny, torch.ones_like(scale), scale)).to(inputs.dtype)


def dynamic_amax(x, axis):
    """max |x| over the whole tensor (axis None) or over every dimension but ``axis`` (keepdims)."""
    with torch.no_grad():
        a = x.detach().abs()
        if axis is None:
            return a.max()
        keep = {d % x.dim() for d in (axis if isinstance(axis, (tuple, list)) else (axis,))}
        for d in range(x.dim()):
            if d not in keep:
                a = a.amax(dim=d, keepdim=True)
        return a


class TensorQuantizer(nn.Module):
    def __init__(self, quant_desc=QUANT_DESC_8BIT_PER_TENSOR, disabled=False, if_quant=True, if_clip=False,
                 if_calib=False):
        super().__init__()
        if if_clip or if_calib:
            raise NotImplementedError("stand-in: no clip / calibration stage")
        self._num_bits, self._axis = quant_desc.num_bits, quant_desc.axis
        self._unsigned, self._narrow_range = quant_desc.unsigned, quant_desc.narrow_range
        self._disabled, self._if_quant = disabled, if_quant
        if quant_desc.amax is not None:
            self.register_buffer("_amax", quant_desc.amax.clone())

    @property
    def amax(self):
        return getattr(self, "_amax", None)

    @amax.setter
    def amax(self, value):
        value = torch.as_tensor(value, dtype=torch.float32).detach().clone()
        if hasattr(self, "_amax"):
            if value.shape != self._amax.shape:
                raise TypeError("Changing shape when setting amax is not allowed.")
            self._amax.copy_(value)
        else:
            self.register_buffer("_amax", value)

    def disable(self):
        self._disabled = True

    def enable(self):
        self._disabled = False

    def forward(self, inputs):
        if self._disabled or not self._if_quant:
            return inputs
        amax = self._amax if hasattr(self, "_amax") else dynamic_amax(inputs, self._axis)
        return fake_tensor_quant(inputs, amax, self._num_bits, self._unsigned, self._narrow_range)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        key = prefix + "_amax"
        if key in state_dict and not hasattr(self, "_amax"):
            self.register_buffer("_amax", state_dict[key].detach().clone().float())
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def extra_repr(self):
        amax = "dynamic" if not hasattr(self, "_amax") else f"amax{tuple(self._amax.shape)}"
        return f"{self._num_bits}bit axis={self._axis} {amax}"


class QuantLinear(nn.Linear):
    default_quant_desc_input = QUANT_DESC_8BIT_PER_TENSOR
    default_quant_desc_weight = QUANT_DESC_8BIT_LINEAR_WEIGHT_PER_ROW

    def __init__(self, in_features, out_features, bias=True, quant_desc_input=None, quant_desc_weight=None):
        super().__init__(in_features, out_features, bias)
        self._input_quantizer = TensorQuantizer(quant_desc_input or type(self).default_quant_desc_input)
        self._weight_quantizer = TensorQuantizer(quant_desc_weight or type(self).default_quant_desc_weight)

    @classmethod
    def set_default_quant_desc_input(cls, value):
        if not isinstance(value, QuantDescriptor):
            raise ValueError(f"{value} is not a QuantDescriptor")
        cls.default_quant_desc_input = copy.deepcopy(value)

    @classmethod
    def set_default_quant_desc_weight(cls, value):
        if not isinstance(value, QuantDescriptor):
            raise ValueError(f"{value} is not a QuantDescriptor")
        cls.default_quant_desc_weight = copy.deepcopy(value)

    @property
    def input_quantizer(self):
        return self._input_quantizer

    @property
    def weight_quantizer(self):
        return self._weight_quantizer

    def forward(self, input):
        return F.linear(self._input_quantizer(input), self._weight_quantizer(self.weight), self.bias)


def install():
    """Register the stand-in as ``pytorch_quantization`` (and the submodules QDQBert imports) and
    tell Transformers 4.x it is available; call before importing QDQBert's modeling module."""
    from transformers.utils import import_utils  # first: its import-time probe must not see the stand-in

    root = types.ModuleType("pytorch_quantization")
    tensor_quant = types.ModuleType("pytorch_quantization.tensor_quant")
    qnn = types.ModuleType("pytorch_quantization.nn")
    modules = types.ModuleType("pytorch_quantization.nn.modules")
    tq_mod = types.ModuleType("pytorch_quantization.nn.modules.tensor_quantizer")
    ql_mod = types.ModuleType("pytorch_quantization.nn.modules.quant_linear")
    tensor_quant.QuantDescriptor = tensor_quant.ScaledQuantDescriptor = QuantDescriptor
    tensor_quant.QUANT_DESC_8BIT_PER_TENSOR = QUANT_DESC_8BIT_PER_TENSOR
    tensor_quant.QUANT_DESC_8BIT_LINEAR_WEIGHT_PER_ROW = QUANT_DESC_8BIT_LINEAR_WEIGHT_PER_ROW
    tensor_quant.fake_tensor_quant = fake_tensor_quant
    tq_mod.TensorQuantizer = TensorQuantizer
    ql_mod.QuantLinear = ql_mod.Linear = QuantLinear
    qnn.TensorQuantizer, qnn.QuantLinear, qnn.Linear, qnn.modules = TensorQuantizer, QuantLinear, QuantLinear, modules
    modules.tensor_quantizer, modules.quant_linear = tq_mod, ql_mod
    root.nn, root.tensor_quant, root.__version__ = qnn, tensor_quant, "0.0-standin"
    sys.modules.update({m.__name__: m for m in (root, tensor_quant, qnn, modules, tq_mod, ql_mod)})
    import_utils._pytorch_quantization_available = True

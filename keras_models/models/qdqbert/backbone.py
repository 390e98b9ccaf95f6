"""QDQBert: BERT with NVIDIA pytorch-quantization's fake quantisation (quantise, then dequantise)
on the inputs of every linear layer, of both attention products and of both residual adds.

Per block (Transformers 4.x ``QDQBert*``, default ``pytorch_quantization`` descriptors):

* the six linear layers (query, key, value, attention output, intermediate, output) quantise
  their input per tensor and their weight per output row, 8 bits each;
* the attention products quantise their four operands per tensor (queries and keys before the
  scores, softmax probabilities and values before the context);
* both residual adds quantise their two operands per tensor (``add_local`` / ``add_residual``).

Fake quantisation of ``x`` with range ``amax``: ``s = 127 / amax``, ``round(x * s)`` (half to
even) clamped to [-128, 127], divided by ``s``; amax <= 2**-24 gives zeros. ``amax`` is the
quantizer's calibrated value when the checkpoint stores one (``<quantizer>._amax``: a scalar, or
(out, 1) per weight row), otherwise ``max |x|`` of the tensor itself, computed in the graph for
each call (so, as in Transformers, one row's outputs depend on the whole batch, padding
included). Each quantizer keeps its amax in a non-trainable variable; -1 means "dynamic". Only
calibrated values are written back on export. Gradients pass straight through where
``|x| <= amax`` (the library's clipped straight-through estimator).

Embeddings, pooler and heads are BERT's, unquantised; weight names are BERT's under ``bert.``.
"""

import math
from dataclasses import dataclass

import keras
import numpy as np
from keras import ops

from keras_models.layers.encoder_block import EncoderBlock
from keras_models.models.encoder.backbone import EncoderBackbone, EncoderSpec
from keras_models.models.registry import register_backbone
from keras_models.presets.weight_map import Reshape, Rule
from keras_models.spec import hf

NUM_BITS = 8
TINY_AMAX = 1.0 / (1 << 24)
DYNAMIC = -1.0

# quantized linear layers: our Dense attribute path -> Transformers' module name inside a layer
LINEARS = {
    "query": "attention.self.query", "key": "attention.self.key", "value": "attention.self.value",
    "attn_out": "attention.output.dense", "ffn_in": "intermediate.dense", "ffn_out": "output.dense",
}
# the other quantizers (per tensor) -> Transformers' module name inside a layer
TENSORS = {
    "matmul_q": "attention.self.matmul_q_input_quantizer", "matmul_k": "attention.self.matmul_k_input_quantizer",
    "matmul_v": "attention.self.matmul_v_input_quantizer", "matmul_a": "attention.self.matmul_a_input_quantizer",
    "attn_add_local": "attention.output.add_local_input_quantizer",
    "attn_add_residual": "attention.output.add_residual_input_quantizer",
    "ffn_add_local": "output.add_local_input_quantizer", "ffn_add_residual": "output.add_residual_input_quantizer",
}
SCALAR = Reshape((), ())  # a scalar amax, stored as () (or any one-element shape)
PER_ROW = Reshape((-1, 1), (-1,))  # a weight's amax: (out, 1) in the checkpoint, (out,) here


def fake_quantize(x, amax, reduce_axis=None, num_bits=NUM_BITS):
    """Quantise-dequantise ``x`` symmetrically (signed, full range). ``amax``: the stored range
    (negative: dynamic, i.e. ``max |x|`` over ``reduce_axis``, all axes when None)."""
    top = 2.0 ** (num_bits - 1) - 1.0
    magnitude = ops.abs(x)
    dynamic = ops.stop_gradient(ops.max(magnitude, axis=reduce_axis))
    stored = ops.cast(amax, x.dtype)
    amax = ops.where(stored >= 0, stored, dynamic)
    tiny = amax <= TINY_AMAX
    one = ops.ones_like(amax)
    scale = ops.where(tiny, ops.zeros_like(amax), top / ops.where(tiny, one, amax))
    q = ops.clip(ops.round(x * scale), -top - 1.0, top)
    out = q / ops.where(tiny, one, scale)
    passes = ops.stop_gradient(ops.cast(magnitude <= amax, x.dtype))
    # forward: exactly ``out`` (x - x is 0); backward: the identity where |x| <= amax
    return ops.stop_gradient(out) + (x - ops.stop_gradient(x)) * passes


@dataclass(frozen=True, kw_only=True)
class QDQBertSpec(EncoderSpec):
    """QDQBertConfig (Transformers 4.x): BERT's keys, ``pad_token_id`` 1 by default. Decoder
    configurations (``is_decoder``: QDQBertLMHeadModel, cross-attention) are not built."""

    pad_token_id: int = hf("pad_token_id", 1)

    unsupported = {**EncoderSpec.unsupported, "is_decoder": (False, None), "add_cross_attention": (False, None)}


@keras.saving.register_keras_serializable(package="keras_models")
class QDQBertBlock(EncoderBlock):
    """BERT's post-norm block with QDQBert's quantizers (see the module docstring)."""

    def build(self, input_shape):
        super().build(input_shape)
        self.amax = {}
        for name in LINEARS:
            dense = self.dense(name)
            self.amax[name + "_input"] = self._amax_variable(name + "_input_amax", ())
            self.amax[name + "_weight"] = self._amax_variable(name + "_weight_amax", (dense.units,))
        for name in TENSORS:
            self.amax[name] = self._amax_variable(name + "_amax", ())

    def _amax_variable(self, name, shape):
        return self.add_weight(name=name, shape=shape, initializer=keras.initializers.Constant(DYNAMIC),
                               trainable=False)

    def dense(self, name):
        a = self.attention
        return {"query": a.query, "key": a.key, "value": a.value, "attn_out": a.output_dense,
                "ffn_in": self.intermediate, "ffn_out": self.output_dense}[name]

    def quant(self, x, name):
        return fake_quantize(x, self.amax[name])

    def linear(self, name, x):
        dense = self.dense(name)
        kernel = ops.cast(dense.kernel, x.dtype)
        y = ops.matmul(self.quant(x, name + "_input"), fake_quantize(kernel, self.amax[name + "_weight"], 0))
        return y + ops.cast(dense.bias, y.dtype) if dense.use_bias else y

    def call(self, x, bias=None, rope=None, training=False, relative=None):
        a = self.attention
        q, k, v = (a._split(self.linear(n, x), a.num_heads) for n in ("query", "key", "value"))
        scores = ops.einsum("bthd,bshd->bhts", self.quant(q, "matmul_q"), self.quant(k, "matmul_k"))
        scores = scores / ops.cast(math.sqrt(a.head_dim), scores.dtype)
        if bias is not None:
            scores = scores + ops.cast(bias, scores.dtype)
        probs = ops.cast(ops.softmax(ops.cast(scores, "float32"), axis=-1), v.dtype)
        probs = a.attention_dropout(probs, training=training)
        context = ops.einsum("bhts,bshd->bthd", self.quant(probs, "matmul_a"), self.quant(v, "matmul_v"))
        b, t = ops.shape(context)[0], ops.shape(context)[1]
        h = self.linear("attn_out", ops.reshape(context, (b, t, a.num_heads * a.head_dim)))
        h = self.dropout(h, training=training)
        h = self.attention_norm(self.quant(h, "attn_add_local") + self.quant(x, "attn_add_residual"))
        f = self.linear("ffn_out", self.act(self.linear("ffn_in", h)))
        f = self.dropout(f, training=training)
        return self.output_norm(self.quant(f, "ffn_add_local") + self.quant(h, "ffn_add_residual"))


def _calibrated(variable):
    return bool(np.min(ops.convert_to_numpy(variable)) >= 0)


@keras.saving.register_keras_serializable(package="keras_models")
@register_backbone("qdqbert")
class QDQBertBackbone(EncoderBackbone):
    spec_cls = QDQBertSpec
    base_model_prefix = "bert"
    hf_architecture = "QDQBertModel"
    hf_model_type = "qdqbert"
    verified_backends = ("jax", "torch", "tensorflow")
    not_covered = ("reference: Transformers 4.57.1's QDQBert on a stand-in of NVIDIA pytorch-quantization "
                   "(tests/models/removed_golden/pytorch_quantization_standin.py, checked against the "
                   "library's source, not run against it: its wheel is not installable here); "
                   "non-default quantization descriptors; QDQBertLMHeadModel (is_decoder), "
                   "ForNextSentencePrediction, ForMultipleChoice")  # shown beside the row in docs/models.md

    def make_block(self, index, init):
        return QDQBertBlock(
            self.hidden_size, self.num_heads, self.intermediate_size, hidden_act=self.hidden_act,
            layer_norm_eps=self.layer_norm_eps, dropout=self.dropout_rate,
            attention_dropout=self.attention_dropout, kernel_initializer=init, name=f"block_{index}",
            dtype=self.dtype_policy,
        )

    def block_rules(self, prefix, block):
        """BERT's tensors, and the quantizers' ``_amax`` where a checkpoint has them (calibrated);
        exported only where set (>= 0)."""
        rules = super().block_rules(prefix, block)
        for name, module in LINEARS.items():
            for kind, op in (("input", SCALAR), ("weight", PER_ROW)):
                var = block.amax[f"{name}_{kind}"]
                rules.append(Rule(f"{prefix}{module}._{kind}_quantizer._amax", var, op, optional=True,
                                  export=_calibrated(var)))
        for name, module in TENSORS.items():
            var = block.amax[name]
            rules.append(Rule(f"{prefix}{module}._amax", var, SCALAR, optional=True, export=_calibrated(var)))
        return rules

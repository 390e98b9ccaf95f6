"""Nyströmformer: the shared BERT-like encoder whose self-attention is the Nyström approximation.

Queries and keys are each scaled by ``head_dim ** -0.25``. When ``num_landmarks`` equals
``segment_means_seq_len`` the attention is the exact softmax. Otherwise the sequence is cut into
``num_landmarks`` equal segments whose mean queries / keys are the landmarks ``Q~`` / ``K~``, and

    out = softmax(Q K~^T) . pinv(softmax(Q~ K~^T)) . softmax(Q~ K^T + mask) V

where ``pinv`` is six steps of the iterative Moore-Penrose approximation started from
``Z0 = A^T / max(column sums of A)`` (the max taken over the whole batch and every head, as
Transformers' "original" initialisation does). Only the last factor sees the padding mask. With
``conv_kernel_size`` set, a depthwise convolution of the values along the sequence (one kernel per
head, zero padding, padding tokens included) is added to the attention output.

Transformers computes the segment length from ``segment_means_seq_len``; here it is the input's
length divided by ``num_landmarks`` (the same when the input is ``segment_means_seq_len`` long, the
only length Transformers accepts on that path). Transformers 5 adds a (batch, 1, seq, seq) mask to
the (batch, heads, landmarks, seq) scores and so fails on padded inputs whenever landmarks are
used; here the mask masks the keys of that product, as Transformers 4.x did.

Embeddings: BERT's, with a position table of ``max_position_embeddings + 2`` rows whose positions
start at 2 (the spec's ``max_position_embeddings`` holds the table size; config.json's value is 2
less). The blocks are BERT's post-norm blocks; weights use BERT's names under ``nystromformer.``.
"""

from dataclasses import dataclass

import keras
from keras import ops

from keras_models.errors import ConfigError
from keras_models.layers.encoder_block import EncoderBlock
from keras_models.models.encoder.backbone import EncoderBackbone, EncoderSpec
from keras_models.models.registry import register_backbone
from keras_models.presets.weight_map import Chain, Reshape, Rule, Transpose
from keras_models.spec import hf

POSITION_OFFSET = 2
PINV_ITERATIONS = 6


def position_rows(value):
    return value + POSITION_OFFSET


def position_config_value(value):
    return value - POSITION_OFFSET


@dataclass(frozen=True, kw_only=True)
class NystromformerSpec(EncoderSpec):
    """NystromformerConfig: BERT's keys (its defaults) and the Nyström attention's."""

    vocab_size: int = hf("vocab_size", 30000, dim=True)
    hidden_act: str = hf("hidden_act", "gelu_new")
    max_position_embeddings: int = hf("max_position_embeddings", 510 + POSITION_OFFSET, dim=True,
                                      read=position_rows, write=position_config_value,
                                      doc="rows of the position table (config.json's value + 2)")
    layer_norm_eps: float = hf("layer_norm_eps", 1e-5)
    pad_token_id: int = hf("pad_token_id", 1)
    segment_means_seq_len: int = hf("segment_means_seq_len", 64, dim=True)
    num_landmarks: int = hf("num_landmarks", 64, dim=True)
    conv_kernel_size: int | None = hf("conv_kernel_size", 65)

    # Transformers reads the "exact" initialisation from a key it cannot subscript: only the
    # original initialisation runs there.
    unsupported = {**EncoderSpec.unsupported, "inv_coeff_init_option": (False, None)}

    def validate(self, source="config.json"):
        super().validate(source)
        k = self.conv_kernel_size
        if k is not None and (k < 1 or k % 2 == 0):
            raise ConfigError(f"{source}: conv_kernel_size={k}: expected an odd positive size or null "
                              "(an even kernel changes the sequence length)")

    def dummy_inputs(self):
        inputs = super().dummy_inputs()
        import numpy as np

        n = self.num_landmarks if self.num_landmarks != self.segment_means_seq_len else 2
        return {k: np.ones((1, n), "int32") for k in inputs}


def iterative_pinv(a, iterations=PINV_ITERATIONS):
    """Approximate Moore-Penrose inverse of the row-stochastic (..., m, m) ``a``."""
    m = ops.shape(a)[-1]
    eye = ops.eye(m, dtype=a.dtype)
    z = ops.swapaxes(a, -1, -2) / ops.max(ops.sum(a, axis=-2))
    for _ in range(iterations):
        az = ops.matmul(a, z)
        z = ops.matmul(0.25 * z, 13.0 * eye - ops.matmul(az, 15.0 * eye - ops.matmul(az, 7.0 * eye - az)))
    return z


@keras.saving.register_keras_serializable(package="keras_models")
class NystromformerBlock(EncoderBlock):
    """BERT's block with Nyström self-attention (see the module docstring)."""

    def __init__(self, *args, num_landmarks=64, segment_means_seq_len=64, conv_kernel_size=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.num_landmarks = num_landmarks
        self.segment_means_seq_len = segment_means_seq_len
        self.conv_kernel_size = conv_kernel_size

    def build(self, input_shape):
        super().build(input_shape)
        self.conv_kernel = None
        if self.conv_kernel_size is not None:
            self.conv_kernel = self.add_weight(
                shape=(self.conv_kernel_size, self.num_heads), initializer=self.kernel_initializer,
                name="conv_kernel",
            )

    def attend(self, x, bias=None, rope=None, training=False, relative=None):
        a = self.attention
        h, d = a.num_heads, a.head_dim
        scale = ops.cast(d**-0.25, x.dtype)
        # (b, h, t, d)
        q, k, v = (ops.transpose(a._split(dense(x), h), (0, 2, 1, 3)) for dense in (a.query, a.key, a.value))
        q, k = q * scale, k * scale
        if bias is not None:
            bias = ops.cast(bias, x.dtype)
        m = self.num_landmarks
        if m == self.segment_means_seq_len:
            probs = _softmax(ops.matmul(q, ops.swapaxes(k, -1, -2)), bias)
            out = ops.matmul(probs, v)  # no attention dropout (as in Transformers)
        else:
            b, t = ops.shape(q)[0], ops.shape(q)[2]
            if isinstance(t, int) and t % m:
                raise ValueError(f"Nyströmformer: the sequence length ({t}) must be a multiple of "
                                 f"num_landmarks ({m})")
            q_land = ops.mean(ops.reshape(q, (b, h, m, -1, d)), axis=3)
            k_land = ops.mean(ops.reshape(k, (b, h, m, -1, d)), axis=3)
            kernel_1 = _softmax(ops.matmul(q, ops.swapaxes(k_land, -1, -2)), None)
            kernel_2 = _softmax(ops.matmul(q_land, ops.swapaxes(k_land, -1, -2)), None)
            kernel_3 = _softmax(ops.matmul(q_land, ops.swapaxes(k, -1, -2)), bias)
            out = ops.matmul(ops.matmul(kernel_1, iterative_pinv(kernel_2)), ops.matmul(kernel_3, v))
        if self.conv_kernel is not None:
            out = out + head_conv(v, self.conv_kernel)
        b, t = ops.shape(out)[0], ops.shape(out)[2]
        out = ops.reshape(ops.transpose(out, (0, 2, 1, 3)), (b, t, h * d))
        return a.output_dense(out)

    def get_config(self):
        config = super().get_config()
        config.update(num_landmarks=self.num_landmarks, segment_means_seq_len=self.segment_means_seq_len,
                      conv_kernel_size=self.conv_kernel_size)
        return config


def head_conv(v, kernel):
    """Depthwise convolution of v (b, h, t, d) along t with one (k,) kernel per head (``kernel``:
    (k, h), k odd), zero padding on both sides (Transformers' grouped (k, 1) Conv2d)."""
    k, h = kernel.shape
    b, t, d = ops.shape(v)[0], ops.shape(v)[2], v.shape[-1]
    x = ops.reshape(ops.transpose(v, (0, 2, 1, 3)), (b, t, h * d))  # channel = head * d + feature
    kernel = ops.reshape(ops.broadcast_to(ops.cast(kernel, v.dtype)[:, :, None], (k, h, d)), (k, h * d, 1))
    y = ops.depthwise_conv(x, kernel, strides=1, padding="same")
    return ops.transpose(ops.reshape(y, (b, t, h, d)), (0, 2, 1, 3))


def head_conv_rule(name, variable):
    """The weight rule of a (h, 1, k, 1) grouped Conv2d weight ``name`` stored as (k, h)."""
    k, h = variable.shape
    return Rule(name, variable, Chain(Reshape((h, 1, k, 1), (h, k)), Transpose()))


def _softmax(scores, bias):
    if bias is not None:
        scores = scores + bias
    return ops.softmax(scores, axis=-1)


@keras.saving.register_keras_serializable(package="keras_models")
@register_backbone("nystromformer")
class NystromformerBackbone(EncoderBackbone):
    spec_cls = NystromformerSpec
    base_model_prefix = "nystromformer"
    hf_architecture = "NystromformerModel"
    hf_model_type = "nystromformer"
    verified_backends = ("jax", "torch", "tensorflow")

    def make_block(self, index, init):
        return NystromformerBlock(
            self.hidden_size, self.num_heads, self.intermediate_size, hidden_act=self.hidden_act,
            layer_norm_eps=self.layer_norm_eps, dropout=self.dropout_rate,
            attention_dropout=self.attention_dropout, kernel_initializer=init, name=f"block_{index}",
            dtype=self.dtype_policy, num_landmarks=self.num_landmarks,
            segment_means_seq_len=self.segment_means_seq_len, conv_kernel_size=self.conv_kernel_size,
        )

    def position_ids(self, input_ids):
        return super().position_ids(input_ids) + POSITION_OFFSET

    def block_rules(self, prefix, block):
        r = super().block_rules(prefix, block)
        if block.conv_kernel is not None:
            r.append(head_conv_rule(prefix + "attention.self.conv.weight", block.conv_kernel))
        return r


__all__ = ["NystromformerBackbone"]

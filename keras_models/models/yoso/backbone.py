"""YOSO ("You Only Sample (Almost) Once"): the shared BERT-like encoder with LSH-expectation
attention.

Transformers runs two attention paths. ``use_expectation=True`` (the default, and the one path
that runs without a custom kernel) is deterministic: queries and keys are L2-normalised per head
and the attention weight of key j for query i is the collision probability of ``hash_code_len``
random hyperplane hashes, ``(1 - arccos(q_i . k_j) / pi) ** hash_code_len``; the output
``sum_j w_ij v_j`` is L2-normalised per head. ``use_expectation=False`` samples hashes and
accumulates them in a CUDA kernel (``lsh_cumulation``) that has no CPU implementation: such
configs raise :class:`~keras_models.errors.ConfigError`.

Padding, as Transformers computes it: the mask reaches the expectation as ``int(1 + mask / 1e4)``,
which is 1 for both real and padding tokens, so padding keys are attended (their values too);
the mask only zeroes the values fed to the optional depthwise convolution (``conv_window``, one
kernel per head), whose output is added to the attention's.

Embeddings, blocks, heads and weight names are Nyströmformer's (BERT's under ``yoso.``, a
position table of ``max_position_embeddings + 2`` rows with positions starting at 2).
"""

from dataclasses import dataclass

import keras
from keras import ops

from keras_models.layers.encoder_block import EncoderBlock
from keras_models.models.encoder.backbone import EncoderBackbone, EncoderSpec
from keras_models.models.nystromformer.backbone import (
    POSITION_OFFSET,
    head_conv,
    head_conv_rule,
    position_config_value,
    position_rows,
)
from keras_models.models.registry import register_backbone
from keras_models.spec import hf


@dataclass(frozen=True, kw_only=True)
class YosoSpec(EncoderSpec):
    """YosoConfig: BERT's keys (its defaults) and the expectation attention's."""

    vocab_size: int = hf("vocab_size", 50265, dim=True)
    max_position_embeddings: int = hf("max_position_embeddings", 4096 + POSITION_OFFSET, dim=True,
                                      read=position_rows, write=position_config_value,
                                      doc="rows of the position table (config.json's value + 2)")
    type_vocab_size: int = hf("type_vocab_size", 1)
    pad_token_id: int = hf("pad_token_id", 1)
    hash_code_len: int = hf("hash_code_len", 9, dim=True)
    conv_window: int | None = hf("conv_window", None)

    # the sampled-hash path needs Transformers' CUDA kernel (lsh_cumulation)
    unsupported = {**EncoderSpec.unsupported, "use_expectation": (True, None)}
    # settings of the sampled-hash path only (hash count, hashing kernel, its backward pass)
    ignored = ("num_hash", "use_fast_hash", "lsh_backward")
    hf_constants = {"use_expectation": True}

    def validate(self, source="config.json"):
        super().validate(source)
        from keras_models.errors import ConfigError

        k = self.conv_window
        if k is not None and (k < 1 or k % 2 == 0):
            raise ConfigError(f"{source}: conv_window={k}: expected an odd positive size or null "
                              "(an even window changes the sequence length)")


def _l2_normalize(x):
    """x / max(||x||, 1e-12) over the last axis (torch's ``normalize``)."""
    norm = ops.sqrt(ops.sum(ops.square(x), axis=-1, keepdims=True))
    return x / ops.maximum(norm, 1e-12)


@keras.saving.register_keras_serializable(package="keras_models")
class YosoBlock(EncoderBlock):
    """BERT's block with YOSO's expectation attention (see the module docstring)."""

    def __init__(self, *args, hash_code_len=9, conv_window=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.hash_code_len = hash_code_len
        self.conv_window = conv_window

    def build(self, input_shape):
        super().build(input_shape)
        self.conv_kernel = None
        if self.conv_window is not None:
            self.conv_kernel = self.add_weight(shape=(self.conv_window, self.num_heads),
                                               initializer=self.kernel_initializer, name="conv_kernel")

    def attend(self, x, bias=None, rope=None, training=False, relative=None):
        a = self.attention
        h, d = a.num_heads, a.head_dim
        # (b, h, t, d)
        q, k, v = (ops.transpose(a._split(dense(x), h), (0, 2, 1, 3)) for dense in (a.query, a.key, a.value))
        cosine = ops.clip(ops.matmul(_l2_normalize(q), ops.swapaxes(_l2_normalize(k), -1, -2)), -1.0, 1.0)
        weights = ops.power(1.0 - ops.arccos(cosine) / ops.cast(3.141592653589793, x.dtype), self.hash_code_len)
        out = _l2_normalize(ops.matmul(weights, v))
        if self.conv_kernel is not None:
            mask = bias  # (b, t) 1/0 here: see YosoBackbone.attention_bias
            masked = v if mask is None else v * ops.cast(mask, v.dtype)[:, None, :, None]
            out = out + head_conv(masked, self.conv_kernel)
        b, t = ops.shape(out)[0], ops.shape(out)[2]
        return a.output_dense(ops.reshape(ops.transpose(out, (0, 2, 1, 3)), (b, t, h * d)))

    def get_config(self):
        config = super().get_config()
        config.update(hash_code_len=self.hash_code_len, conv_window=self.conv_window)
        return config


@keras.saving.register_keras_serializable(package="keras_models")
@register_backbone("yoso")
class YosoBackbone(EncoderBackbone):
    spec_cls = YosoSpec
    base_model_prefix = "yoso"
    hf_architecture = "YosoModel"
    hf_model_type = "yoso"
    verified_backends = ("jax", "torch", "tensorflow")

    def make_block(self, index, init):
        return YosoBlock(
            self.hidden_size, self.num_heads, self.intermediate_size, hidden_act=self.hidden_act,
            layer_norm_eps=self.layer_norm_eps, dropout=self.dropout_rate,
            attention_dropout=self.attention_dropout, kernel_initializer=init, name=f"block_{index}",
            dtype=self.dtype_policy, hash_code_len=self.hash_code_len, conv_window=self.conv_window,
        )

    def position_ids(self, input_ids):
        return super().position_ids(input_ids) + POSITION_OFFSET

    def attention_bias(self, inputs, x):
        """The blocks take the raw (b, t) 1/0 mask (only the value convolution reads it)."""
        return inputs.get("attention_mask")

    def block_rules(self, prefix, block):
        r = super().block_rules(prefix, block)
        if block.conv_kernel is not None:
            r.append(head_conv_rule(prefix + "attention.self.conv.weight", block.conv_kernel))
        return r


__all__ = ["YosoBackbone"]

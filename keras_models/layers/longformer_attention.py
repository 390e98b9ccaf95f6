"""Longformer-style attention (LED encoders): sliding-window local attention plus global tokens.

Computed densely from additive biases, which gives exactly Longformer's banded result:

* ordinary queries attend, with the ordinary projections, to keys within ``window // 2``
  positions and to every global token (``longformer_bias``);
* global queries attend to every unpadded key with separate ``query_global`` / ``key_global`` /
  ``value_global`` projections (``LongformerAttention`` with a dict bias).
"""

import keras
from keras import ops

from keras_models.layers.attention import Attention
from keras_models.layers.masks import mask_value


def longformer_bias(attention_mask, window, global_mask=None, dtype="float32"):
    """(batch, 1, seq, seq) additive bias of the local branch: ``|i - j| <= window // 2`` or key
    ``j`` global, and key ``j`` not padding. ``global_mask``: (batch, seq) 1 = global token."""
    t = ops.shape(attention_mask)[1]
    pos = ops.arange(t, dtype="int32")
    allowed = (ops.abs(pos[:, None] - pos[None, :]) <= window // 2)[None, None]
    if global_mask is not None:
        allowed = ops.logical_or(allowed, ops.cast(global_mask, "bool")[:, None, None, :])
    allowed = ops.logical_and(allowed, ops.cast(attention_mask, "bool")[:, None, None, :])
    return ops.where(allowed, 0.0, mask_value(dtype))


@keras.saving.register_keras_serializable(package="keras_models")
class LongformerAttention(Attention):
    """Attention with Longformer's extra projections for global tokens.

    ``bias``: an additive tensor (local attention only, no global tokens), or a dict with
    ``"local"`` (the local branch's bias), ``"global"`` (the global queries' bias, padding only)
    and ``"is_global"`` ((batch, seq) 1.0 where the query is a global token).
    """

    def __init__(self, hidden_size, num_heads, **kwargs):
        super().__init__(hidden_size, num_heads, **kwargs)
        dense = dict(use_bias=self.use_bias, dtype=self.dtype_policy,
                     kernel_initializer=self.kernel_initializer)
        width = self.num_heads * self.head_dim
        self.query_global = keras.layers.Dense(width, name="query_global", **dense)
        self.key_global = keras.layers.Dense(width, name="key_global", **dense)
        self.value_global = keras.layers.Dense(width, name="value_global", **dense)

    def build(self, input_shape):
        super().build(input_shape)
        for dense in (self.query_global, self.key_global, self.value_global):
            dense.build(input_shape)

    def call(self, x, bias=None, context=None, training=False):
        if not isinstance(bias, dict):
            return super().call(x, bias, context=context, training=training)
        h = self.num_heads
        local = self.attend(self._split(self.query(x), h), self._split(self.key(x), h),
                            self._split(self.value(x), h), bias["local"], training=training)
        glob = self.attend(self._split(self.query_global(x), h), self._split(self.key_global(x), h),
                           self._split(self.value_global(x), h), bias["global"], training=training)
        is_global = ops.cast(bias["is_global"], "bool")[..., None]
        return self.output_dense(ops.where(is_global, glob, local))

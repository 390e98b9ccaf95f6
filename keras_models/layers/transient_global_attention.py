"""LongT5's transient-global attention, computed densely.

Tokens are grouped into fixed blocks of ``global_block_size`` positions (a trailing partial block
joins the previous one; padding belongs to none). Each layer sums its (normed) input over every
block, RMS-normalises the sums (``global_input_norm``) and lets every token attend to these
aggregates (the "side" keys) as well as to its local neighbours, in one softmax.
``transient_global_blocks`` gives the block assignment, ``TransientGlobalAttention`` the layer.
"""

import keras
from keras import ops

from keras_models.layers.attention import Attention


def transient_global_blocks(attention_mask, global_block_size):
    """Returns ``(block_ids, valid)``: (batch, seq) int32 block of each token (-1: padding, or no
    full block), and (batch, seq // global_block_size) bool: aggregates that hold tokens."""
    keep = ops.cast(attention_mask, "int32")
    t = ops.shape(keep)[1]
    pos = ops.arange(t, dtype="int32")
    ends = ops.cast(ops.equal(pos % global_block_size, global_block_size - 1), "int32")
    full = ops.sum(keep * ends[None], axis=1, keepdims=True)
    ids = ops.where(keep > 0, ops.minimum((pos // global_block_size)[None], full - 1), -1)
    g = ops.arange(t // global_block_size, dtype="int32")
    valid = g[None, :] <= ops.max(ids, axis=1, keepdims=True)
    return ids, valid


@keras.saving.register_keras_serializable(package="keras_models")
class TransientGlobalAttention(Attention):
    """Self-attention over [tokens, block aggregates]. ``bias``: an additive tensor (no aggregates),
    or a dict with ``"local"`` (batch|1, heads, seq, seq), ``"side"`` (batch, heads, seq, blocks)
    and ``"blocks"`` ((batch, seq, blocks) 0/1 membership of each token in each block)."""

    def __init__(self, hidden_size, num_heads, norm_eps=1e-6, **kwargs):
        super().__init__(hidden_size, num_heads, **kwargs)
        self.norm_eps = norm_eps
        self.global_input_norm = keras.layers.RMSNormalization(
            epsilon=norm_eps, name="global_input_norm", dtype=self.dtype_policy)

    def build(self, input_shape):
        super().build(input_shape)
        self.global_input_norm.build(input_shape)

    def call(self, x, bias=None, context=None, training=False):
        if not isinstance(bias, dict):
            return super().call(x, bias, context=context, training=training)
        blocks = ops.cast(bias["blocks"], x.dtype)
        aggregates = self.global_input_norm(ops.einsum("btd,btg->bgd", x, blocks))
        h = self.num_heads
        q = self._split(self.query(x), h)
        k = ops.concatenate([self._split(self.key(x), h), self._split(self.key(aggregates), h)], axis=1)
        v = ops.concatenate([self._split(self.value(x), h), self._split(self.value(aggregates), h)],
                            axis=1)
        local, side = bias["local"], bias["side"]
        local = ops.broadcast_to(local, (ops.shape(side)[0],) + tuple(ops.shape(local)[1:]))
        out = self.attend(q, k, v, ops.concatenate([local, ops.cast(side, local.dtype)], axis=-1),
                          training=training)
        return self.output_dense(out)

    def get_config(self):
        config = super().get_config()
        config["norm_eps"] = self.norm_eps
        return config

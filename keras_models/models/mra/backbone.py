"""MRA (multi-resolution analysis attention): the shared BERT-like encoder whose self-attention
mixes a low-resolution (32-token block averages) and a high-resolution (selected 32x32 blocks)
softmax.

Per head, with the padding mask ``m`` zeroing queries, keys and values first (``T`` a multiple of
32, ``nb = T / 32`` blocks, ``s = 1 / sqrt(max(head_dim, 32))``):

1. Block means of queries, keys and values over their real tokens (``count + 1e-6`` in the
   denominator); low-resolution logits ``L = s * Qm Km^T`` (nb, nb) with their row max ``R`` taken
   before block pairs holding no real token get ``-1e4``.
2. ``num_blocks`` block pairs are selected by top-k of ``L - R`` plus the priors: ``5e3`` on the
   band ``|i - j| <= initial_prior_diagonal_n_blocks // 2`` (when that is > 0) and ``5e3`` on the
   first ``initial_prior_first_n_blocks`` block rows and again on the first columns.
   ``num_blocks = min((max_position_embeddings // 32) * block_per_row, (max_position_embeddings // 32) ** 2)``
   (config.json's value, so the sequence must have at least that many block pairs).
3. High resolution: exact logits ``s * q k^T`` inside each selected block, stabilised per query
   row by the max ``M`` over its selected blocks, rounded toward zero to 1e-3 and floored at
   -1e5 (how Transformers' CUDA kernel ``index_max`` computes it); padding keys get ``-1e4``; the
   exponentials are summed per query into an output and a normaliser.
4. ``approx_mode="sparse"``: output = high / (normaliser + 1e-6). ``"full"`` also adds the
   low-resolution softmax over the block pairs NOT selected (pairs scoring at least the k-th
   value are excluded), weighted by the key blocks' real-token counts and broadcast over each
   query block, both parts rescaled to a common max (``R`` vs ``M``, the log-correction
   multiplied by the mask) before ``(high + low) / (norms + 1e-6)``.
5. The output is multiplied by the mask.

Transformers runs steps 3-4 in CUDA kernels (``mm_to_sparse``, ``sparse_dense_mm``,
``index_max``; on CPU its attention returns zeros). Those kernels only cover every selected block
when ``num_blocks`` is a multiple of 8 and the (zero-padded to >= 32) head size a multiple of 64
(real checkpoints: head size 64, 64 or more blocks); this implementation computes the math above
for every configuration.

Each row attends with its own padding mask. Transformers 5 tiles the (batch, seq) mask over the
heads batch-first (``repeat(1, heads, 1)``) while its queries are ordered (batch, heads), so in a
batch whose rows are padded differently, head h of row i uses row ``(i * heads + h) % batch``'s
mask there; both agree whenever the rows share one mask (a batch of one, no padding).

Embeddings, blocks, heads and weight names are YOSO's / Nyströmformer's (BERT's under ``mra.``, a
position table of ``max_position_embeddings + 2`` rows with positions starting at 2).
"""

import math
from dataclasses import dataclass

import keras
import numpy as np
from keras import ops

from keras_models.errors import ConfigError
from keras_models.layers.encoder_block import EncoderBlock
from keras_models.models.encoder.backbone import EncoderBackbone, EncoderSpec
from keras_models.models.nystromformer.backbone import POSITION_OFFSET, position_config_value, position_rows
from keras_models.models.registry import register_backbone
from keras_models.spec import hf

BLOCK = 32
APPROX_MODES = ("full", "sparse")


@dataclass(frozen=True, kw_only=True)
class MraSpec(EncoderSpec):
    """MraConfig: BERT's keys (its defaults) and the multi-resolution attention's."""

    vocab_size: int = hf("vocab_size", 50265, dim=True)
    max_position_embeddings: int = hf("max_position_embeddings", 512 + POSITION_OFFSET, dim=True,
                                      read=position_rows, write=position_config_value,
                                      doc="rows of the position table (config.json's value + 2)")
    type_vocab_size: int = hf("type_vocab_size", 1)
    layer_norm_eps: float = hf("layer_norm_eps", 1e-5)
    pad_token_id: int = hf("pad_token_id", 1)
    block_per_row: int = hf("block_per_row", 4)
    approx_mode: str = hf("approx_mode", "full")
    initial_prior_first_n_blocks: int = hf("initial_prior_first_n_blocks", 0)
    initial_prior_diagonal_n_blocks: int = hf("initial_prior_diagonal_n_blocks", 0)

    def validate(self, source="config.json"):
        super().validate(source)
        if self.approx_mode not in APPROX_MODES:
            raise ConfigError(f"{source}: approx_mode={self.approx_mode!r}: expected 'full' or 'sparse'")
        if self.num_selected_blocks < 1:
            raise ConfigError(f"{source}: max_position_embeddings={self.max_position_embeddings - POSITION_OFFSET}, "
                              f"block_per_row={self.block_per_row}: no 32-token block pair would be selected "
                              "(expected max_position_embeddings >= 32 and block_per_row >= 1)")

    @property
    def num_selected_blocks(self):
        rows = (self.max_position_embeddings - POSITION_OFFSET) // BLOCK
        return min(rows * self.block_per_row, rows * rows)

    def dummy_inputs(self):
        nb = max(1, math.ceil(math.sqrt(self.num_selected_blocks)))
        return {k: np.ones((1, nb * BLOCK), "int32") for k in super().dummy_inputs()}


def _blocks(x, nb):
    """(n, t, ...) -> (n, nb, 32, ...)"""
    return ops.reshape(x, (-1, nb, BLOCK) + tuple(x.shape[2:]))


def _gather_blocks(x, idx):
    """x (n, nb, 32, ...) at block indices idx (n, k) -> (n, k, 32, ...)."""
    extra = len(x.shape) - 2
    index = ops.reshape(idx, tuple(idx.shape) + (1,) * extra)
    index = ops.broadcast_to(index, (ops.shape(x)[0], idx.shape[1]) + tuple(x.shape[2:]))
    return ops.take_along_axis(x, index, axis=1)


def mra_attention(q, k, v, mask, *, num_blocks, approx_mode="full", first_n_blocks=0, diagonal_n_blocks=0):
    """Multi-resolution attention (module docstring) of q, k, v (n, t, d) with mask (n, t) 1/0."""
    t, d = q.shape[1], q.shape[2]
    if t is None or t % BLOCK:
        raise ValueError(f"MRA attention: sequence length {t} is not a multiple of {BLOCK} (pad the input)")
    nb = t // BLOCK
    if num_blocks > nb * nb:
        raise ValueError(f"MRA attention: sequence length {t} has {nb * nb} block pairs of {BLOCK} tokens, fewer "
                         f"than the {num_blocks} the config selects (max_position_embeddings // 32 * block_per_row): "
                         f"pad the input to at least {BLOCK * math.ceil(math.sqrt(num_blocks))} tokens")
    dtype = q.dtype
    root = math.sqrt(max(d, 32))  # Transformers zero-pads heads to 32 features
    m = ops.cast(mask, dtype)
    q, k, v = q * m[..., None], k * m[..., None], v * m[..., None]

    # low resolution
    count = ops.sum(_blocks(m, nb), axis=-1)  # (n, nb)
    denom = count[..., None] + 1e-6
    qm, km_, vm = (ops.sum(_blocks(x, nb), axis=2) / denom for x in (q, k, v))
    low = ops.matmul(qm, ops.swapaxes(km_, -1, -2)) / root  # (n, nb, nb)
    row_max = ops.max(low, axis=-1, keepdims=True)
    empty = ops.cast(count[:, None, :] * count[:, :, None] < 0.5, dtype)
    low = low - 1e4 * empty

    # block selection
    prior = low - row_max
    i, j = np.arange(nb)[:, None], np.arange(nb)[None, :]
    if diagonal_n_blocks > 0:
        prior = prior + ops.convert_to_tensor((np.abs(i - j) <= diagonal_n_blocks // 2).astype("float32") * 5e3, dtype)
    if first_n_blocks > 0:
        rows = np.broadcast_to(i < first_n_blocks, (nb, nb)).astype("float32") * 5e3
        prior = prior + ops.convert_to_tensor(rows, dtype)
        prior = prior + ops.convert_to_tensor(np.ascontiguousarray(rows.T), dtype)
    top_vals, top_idx = ops.top_k(ops.reshape(prior, (-1, nb * nb)), num_blocks, sorted=False)
    top_idx = ops.cast(top_idx, "int32")
    q_blk, k_blk = top_idx // nb, top_idx % nb  # (n, k)

    # high resolution inside the selected blocks: (n, k, 32 queries, 32 keys)
    qs = _gather_blocks(_blocks(q, nb), q_blk)
    ks = _gather_blocks(_blocks(k, nb), k_blk)
    vs = _gather_blocks(_blocks(v, nb), k_blk)
    key_mask = _gather_blocks(_blocks(m, nb), k_blk)  # (n, k, 32)
    logits = ops.einsum("nbqd,nbkd->nbqk", qs, ks) / root
    owner = ops.cast(ops.one_hot(q_blk, nb), dtype)  # (n, k, nb): query block of each selected pair
    entry_max = ops.max(logits, axis=-1)  # (n, k, 32)
    row_best = ops.max(ops.where(owner[..., None] > 0, entry_max[:, :, None, :], -3e38), axis=1)  # (n, nb, 32)
    # index_max: max(1000 * x) as an int32 (toward zero), starting from -1e8, divided by 1000
    best = ops.cast(ops.cast(ops.maximum(row_best, -1e5) * 1000.0, "int32"), dtype) / 1000.0
    logits = logits - _gather_blocks(best, q_blk)[..., None]
    logits = logits - 1e4 * (1.0 - key_mask[:, :, None, :])
    attn = ops.exp(logits)
    high_out = ops.einsum("nbj,nbqd->njqd", owner, ops.einsum("nbqk,nbkd->nbqd", attn, vs))
    high_out = ops.reshape(high_out, (-1, t, d))
    high_norm = ops.reshape(ops.einsum("nbj,nbq->njq", owner, ops.sum(attn, axis=-1)), (-1, t))

    if approx_mode == "full":
        threshold = ops.min(top_vals, axis=-1)[:, None, None]
        selected = ops.cast(prior >= threshold, dtype)
        low_attn = ops.exp(low - row_max - 1e4 * selected) * count[:, None, :]
        low_out = ops.repeat(ops.matmul(low_attn, vm), BLOCK, axis=1)
        low_norm = ops.repeat(ops.sum(low_attn, axis=-1), BLOCK, axis=1)
        correction = (ops.repeat(row_max[..., 0], BLOCK, axis=1) - ops.reshape(best, (-1, t))) * m
        low_corr = ops.exp(correction * ops.cast(correction <= 0, dtype))
        high_corr = ops.exp(-correction * ops.cast(correction > 0, dtype))
        out = (high_out * high_corr[..., None] + low_out * low_corr[..., None]) / (
            (high_norm * high_corr + low_norm * low_corr)[..., None] + 1e-6)
    else:
        out = high_out / (high_norm[..., None] + 1e-6)
    return out * m[..., None]


@keras.saving.register_keras_serializable(package="keras_models")
class MraBlock(EncoderBlock):
    """BERT's block with multi-resolution attention (see the module docstring)."""

    def __init__(self, *args, num_blocks=64, approx_mode="full", initial_prior_first_n_blocks=0,
                 initial_prior_diagonal_n_blocks=0, **kwargs):
        super().__init__(*args, **kwargs)
        self.num_blocks = num_blocks
        self.approx_mode = approx_mode
        self.initial_prior_first_n_blocks = initial_prior_first_n_blocks
        self.initial_prior_diagonal_n_blocks = initial_prior_diagonal_n_blocks

    def attend(self, x, bias=None, rope=None, training=False, relative=None):
        a = self.attention
        h, d = a.num_heads, a.head_dim
        b, t = ops.shape(x)[0], x.shape[1]
        # (b * h, t, d)
        q, k, v = (ops.reshape(ops.transpose(a._split(dense(x), h), (0, 2, 1, 3)), (-1, t, d))
                   for dense in (a.query, a.key, a.value))
        mask = ops.ones((b, t), "float32") if bias is None else ops.cast(bias, "float32")
        mask = ops.reshape(ops.repeat(mask[:, None, :], h, axis=1), (-1, t))
        out = mra_attention(q, k, v, ops.cast(mask, q.dtype), num_blocks=self.num_blocks,
                            approx_mode=self.approx_mode, first_n_blocks=self.initial_prior_first_n_blocks,
                            diagonal_n_blocks=self.initial_prior_diagonal_n_blocks)
        out = ops.transpose(ops.reshape(out, (b, h, t, d)), (0, 2, 1, 3))
        return a.output_dense(ops.reshape(out, (b, t, h * d)))

    def get_config(self):
        config = super().get_config()
        config.update(num_blocks=self.num_blocks, approx_mode=self.approx_mode,
                      initial_prior_first_n_blocks=self.initial_prior_first_n_blocks,
                      initial_prior_diagonal_n_blocks=self.initial_prior_diagonal_n_blocks)
        return config


@keras.saving.register_keras_serializable(package="keras_models")
@register_backbone("mra")
class MraBackbone(EncoderBackbone):
    spec_cls = MraSpec
    base_model_prefix = "mra"
    hf_architecture = "MraModel"
    hf_model_type = "mra"
    verified_backends = ("jax", "torch", "tensorflow")
    not_covered = ("reference: Transformers' MRA with a torch stand-in for its CUDA kernels (written from their "
                   "source; not run against the CUDA kernels: no GPU)")

    def make_block(self, index, init):
        return MraBlock(
            self.hidden_size, self.num_heads, self.intermediate_size, hidden_act=self.hidden_act,
            layer_norm_eps=self.layer_norm_eps, dropout=self.dropout_rate,
            attention_dropout=self.attention_dropout, kernel_initializer=init, name=f"block_{index}",
            dtype=self.dtype_policy, num_blocks=self.spec.num_selected_blocks, approx_mode=self.approx_mode,
            initial_prior_first_n_blocks=self.initial_prior_first_n_blocks,
            initial_prior_diagonal_n_blocks=self.initial_prior_diagonal_n_blocks,
        )

    def position_ids(self, input_ids):
        return super().position_ids(input_ids) + POSITION_OFFSET

    def attention_bias(self, inputs, x):
        """The blocks take the raw (b, t) 1/0 mask."""
        return inputs.get("attention_mask")


__all__ = ["MraBackbone"]

"""BigBird (``model_type`` "big_bird"): BERT with optionally rescaled word embeddings, optional
q/k/v biases and block-sparse attention for long inputs.

``attention_type="original_full"`` is BERT's full attention. ``"block_sparse"`` is used by
Transformers only when the sequence is longer than ``(5 + 2 * num_random_blocks) * block_size``
tokens; shorter inputs fall back to full attention there and here. Longer inputs are padded to a
multiple of ``block_size`` (ids with ``pad_token_id``, mask 0, token type 0; the padding is cut
from the output) and attend block-sparsely (:func:`block_sparse_attention`): the first and last
query blocks see every key; the second (second-last) sees key blocks 0, 1, 2 (-3, -2, -1), the
last (first) block and its random blocks; the middle ones a 3-block window, the first and last
blocks and their random blocks. Masked keys get -10000 and padded queries' outputs are zeroed.
The random blocks are Transformers' inference ones: every random block is block 0 (they are
sampled only while training, from NumPy's global generator, which is not reproduced here).

``rescale_embeddings`` multiplies the word embeddings by ``sqrt(hidden_size)``; ``use_bias=False``
drops the query / key / value biases (the other projections keep theirs). Weights use BERT's
names under ``bert.``.
"""

from dataclasses import dataclass

import keras
from keras import ops

from keras_models.errors import ConfigError
from keras_models.layers.encoder_block import EncoderBlock
from keras_models.models.encoder.backbone import EncoderBackbone, EncoderSpec
from keras_models.models.registry import register_backbone
from keras_models.spec import dim, hf


@dataclass(frozen=True, kw_only=True)
class BigBirdSpec(EncoderSpec):
    """BigBirdConfig: BERT's keys (its defaults) and the sparse attention's."""

    vocab_size: int = dim("vocab_size", 50358)
    hidden_act: str = hf("hidden_act", "gelu_new")
    max_position_embeddings: int = dim("max_position_embeddings", 4096)
    attention_type: str = hf("attention_type", "block_sparse")
    use_bias: bool = hf("use_bias", True)
    rescale_embeddings: bool = hf("rescale_embeddings", False)
    block_size: int = dim("block_size", 64)
    num_random_blocks: int = dim("num_random_blocks", 3)
    sep_token_id: int = hf("sep_token_id", 66)

    unsupported = {**EncoderSpec.unsupported, "is_decoder": (False, None), "add_cross_attention": (False, None)}

    def validate(self, source="config.json"):
        super().validate(source)
        if self.attention_type not in ("original_full", "block_sparse"):
            raise ConfigError(f"{source}: attention_type={self.attention_type!r}: expected 'original_full' or "
                              "'block_sparse'")

    @property
    def sparse_threshold(self):
        """Inputs up to this many tokens use full attention even under ``block_sparse``."""
        return (5 + 2 * self.num_random_blocks) * self.block_size


SPARSE_PENALTY = -10000.0


def block_sparse_attention(q, k, v, mask, block_size, num_random_blocks):
    """q, k, v (b, h, t, d) with t a multiple of ``block_size`` (at least 5 blocks); ``mask``
    (b, t) 1/0 -> (b, h, t, d) (see the module docstring)."""
    bs, r = block_size, num_random_blocks
    b, h, t, d = ops.shape(q)[0], q.shape[1], q.shape[2], q.shape[3]
    nb = t // bs
    dtype = q.dtype
    scale = ops.cast(d**-0.5, dtype)
    mask = ops.cast(mask, dtype)
    to_mask = mask[:, None, None, :]  # (b, 1, 1, t)
    blocked = ops.reshape(mask, (b, nb, bs))
    bq, bk, bv = (ops.reshape(x, (b, h, nb, bs, d)) for x in (q, k, v))
    # random blocks (inference: all block 0), r of them per query block 1 .. nb-2
    rand_k = ops.broadcast_to(ops.reshape(ops.tile(bk[:, :, 0], (1, 1, r, 1)), (b, h, 1, r * bs, d)),
                              (b, h, nb - 2, r * bs, d))
    rand_v = ops.broadcast_to(ops.reshape(ops.tile(bv[:, :, 0], (1, 1, r, 1)), (b, h, 1, r * bs, d)),
                              (b, h, nb - 2, r * bs, d))
    rand_mask = ops.einsum("blq,bk->blqk", blocked[:, 1:-1], ops.tile(blocked[:, 0], (1, r)))[:, None]
    ones = ops.ones_like(to_mask[..., :1])

    def attend(query, keys, values, allowed):
        scores = ops.matmul(query, ops.swapaxes(keys, -1, -2)) * scale + (1.0 - allowed) * SPARSE_PENALTY
        return ops.matmul(ops.softmax(scores, axis=-1), values)

    first = attend(bq[:, :, 0], k, v, to_mask)
    last = attend(bq[:, :, -1], k, v, to_mask)

    def edge(query, key_blocks, value_blocks, seq_mask, rand_index):
        keys = ops.concatenate([bk[:, :, i] for i in key_blocks] + [rand_k[:, :, rand_index]], axis=2)
        values = ops.concatenate([bv[:, :, i] for i in value_blocks] + [rand_v[:, :, rand_index]], axis=2)
        seq_pad = ops.concatenate([seq_mask, ops.tile(ones, (1, 1, 1, r * bs))], axis=3)
        rand_pad = ops.concatenate([ops.ones_like(rand_mask[:, :, 0, :, :1]) * ops.ones((1, 1, 1, 4 * bs), dtype),
                                    rand_mask[:, :, rand_index]], axis=3)
        return attend(query, keys, values, ops.minimum(seq_pad, rand_pad))

    second = edge(bq[:, :, 1], (0, 1, 2, -1), (0, 1, 2, -1),
                  ops.concatenate([to_mask[..., : 3 * bs], to_mask[..., -bs:]], axis=3), 0)
    second_last = edge(bq[:, :, -2], (0, -3, -2, -1), (0, -3, -2, -1),
                       ops.concatenate([to_mask[..., :bs], to_mask[..., -3 * bs:]], axis=3), -1)
    # middle query blocks 2 .. nb-3: [first block | 3-block window | random blocks | last block]
    window_k = ops.concatenate([bk[:, :, 1:-3], bk[:, :, 2:-2], bk[:, :, 3:-1]], axis=3)
    window_v = ops.concatenate([bv[:, :, 1:-3], bv[:, :, 2:-2], bv[:, :, 3:-1]], axis=3)
    window_mask = ops.einsum("blq,blk->blqk", blocked[:, 2:-2],
                             ops.concatenate([blocked[:, 1:-3], blocked[:, 2:-2], blocked[:, 3:-1]], axis=2))[:, None]
    mq = bq[:, :, 2:-2]
    scores = ops.concatenate([
        ops.einsum("bhlqd,bhkd->bhlqk", mq, bk[:, :, 0]) * scale
        + (1.0 - to_mask[..., :bs][:, :, :, None]) * SPARSE_PENALTY,
        ops.matmul(mq, ops.swapaxes(window_k, -1, -2)) * scale + (1.0 - window_mask) * SPARSE_PENALTY,
        ops.matmul(mq, ops.swapaxes(rand_k[:, :, 1:-1], -1, -2)) * scale
        + (1.0 - rand_mask[:, :, 1:-1]) * SPARSE_PENALTY,
        ops.einsum("bhlqd,bhkd->bhlqk", mq, bk[:, :, -1]) * scale
        + (1.0 - to_mask[..., -bs:][:, :, :, None]) * SPARSE_PENALTY,
    ], axis=-1)
    w = ops.softmax(scores, axis=-1)
    middle = (ops.matmul(w[..., bs: 4 * bs], window_v) + ops.matmul(w[..., 4 * bs: -bs], rand_v[:, :, 1:-1])
              + ops.einsum("bhlqk,bhkd->bhlqd", w[..., :bs], bv[:, :, 0])
              + ops.einsum("bhlqk,bhkd->bhlqd", w[..., -bs:], bv[:, :, -1]))
    out = ops.concatenate([first[:, :, None], second[:, :, None], middle, second_last[:, :, None], last[:, :, None]],
                          axis=2)
    return ops.reshape(out, (b, h, t, d)) * mask[:, None, :, None]


@keras.saving.register_keras_serializable(package="keras_models")
class BigBirdBlock(EncoderBlock):
    """BERT's block; ``qkv_bias=False`` drops the query / key / value biases only. Called with
    ``relative`` = a (b, t) 1/0 mask, its self-attention is block-sparse."""

    def __init__(self, *args, qkv_bias=True, block_size=64, num_random_blocks=3, **kwargs):
        super().__init__(*args, **kwargs)
        self.qkv_bias, self.block_size, self.num_random_blocks = qkv_bias, block_size, num_random_blocks
        if not qkv_bias:
            for dense in (self.attention.query, self.attention.key, self.attention.value):
                dense.use_bias = False  # before build: no bias variable is created

    def attend(self, x, bias=None, rope=None, training=False, relative=None):
        if relative is None:
            return super().attend(x, bias, rope, training=training)
        a = self.attention
        q, k, v = (ops.transpose(a._split(dense(x), a.num_heads), (0, 2, 1, 3)) for dense in (a.query, a.key, a.value))
        out = block_sparse_attention(q, k, v, relative, self.block_size, self.num_random_blocks)
        b, t = ops.shape(out)[0], ops.shape(out)[2]
        return a.output_dense(ops.reshape(ops.transpose(out, (0, 2, 1, 3)), (b, t, a.num_heads * a.head_dim)))

    def get_config(self):
        config = super().get_config()
        config.update(qkv_bias=self.qkv_bias, block_size=self.block_size, num_random_blocks=self.num_random_blocks)
        return config


@keras.saving.register_keras_serializable(package="keras_models")
@register_backbone("big_bird")
class BigBirdBackbone(EncoderBackbone):
    spec_cls = BigBirdSpec
    base_model_prefix = "bert"
    hf_architecture = "BigBirdModel"
    hf_model_type = "big_bird"
    hf_known_unused = ("*pooler.weight", "*pooler.bias")  # BigBirdModel's pooler (no task here reads it)
    verified_backends = ("jax", "torch", "tensorflow")

    def make_block(self, index, init):
        return BigBirdBlock(
            self.hidden_size, self.num_heads, self.intermediate_size, hidden_act=self.hidden_act,
            layer_norm_eps=self.layer_norm_eps, dropout=self.dropout_rate,
            attention_dropout=self.attention_dropout, kernel_initializer=init, name=f"block_{index}",
            dtype=self.dtype_policy, qkv_bias=self.use_bias, block_size=self.block_size,
            num_random_blocks=self.num_random_blocks,
        )

    def embed(self, inputs, training=False):
        ids = inputs["input_ids"]
        x = self.token_embedding(ids)
        if self.rescale_embeddings:
            x = x * ops.cast(self.hidden_size**0.5, x.dtype)
        types = inputs.get("token_type_ids")
        x = x + self.token_type_embedding(ops.zeros_like(ids) if types is None else types)
        positions = inputs.get("position_ids")
        x = x + self.position_embedding(self.position_ids(ids) if positions is None else positions)
        return self.embeddings_dropout(self.embeddings_norm_layer(x), training=training)

    def call(self, inputs, training=False):
        if not isinstance(inputs, dict):
            inputs = {"input_ids": inputs}
        t = inputs["input_ids"].shape[1]
        if self.attention_type != "block_sparse" or (t is not None and t <= self.spec.sparse_threshold):
            return super().call(inputs, training=training)
        if t is None:
            raise ValueError("BigBird block_sparse attention needs a static sequence length")
        pad = (self.block_size - t % self.block_size) % self.block_size
        ids = inputs["input_ids"]
        mask = inputs.get("attention_mask")
        padded = {"input_ids": ids, "attention_mask": ops.ones_like(ids) if mask is None else mask}
        for key in ("token_type_ids", "position_ids"):
            if inputs.get(key) is not None:
                padded[key] = inputs[key]
        if pad:
            values = {"input_ids": self.pad_token_id, "attention_mask": 0, "token_type_ids": 0,
                      "position_ids": self.pad_token_id}
            padded = {k: ops.pad(v, ((0, 0), (0, pad)), constant_values=values[k]) for k, v in padded.items()}
        x = self.embed(padded, training=training)
        for index in self.layer_schedule:
            x = self.blocks[index](x, None, training=training, relative=padded["attention_mask"])
        return x[:, :t] if pad else x


__all__ = ["BigBirdBackbone"]

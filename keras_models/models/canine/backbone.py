"""CANINE (``model_type`` "canine"): a character-level encoder over Unicode code points.

* Embeddings: each code point is hashed by ``num_hash_functions`` primes into
  ``num_hash_buckets`` buckets (``((id + 1) * prime) % buckets``); the shards of the per-hash
  tables are concatenated to ``hidden_size``, then token-type and position embeddings are added
  (the position table has ``num_hash_buckets`` rows) and LayerNorm'd.
* A one-layer BERT block with local attention: the characters attend within consecutive chunks
  of ``local_transformer_stride``.
* Downsampling: a strided convolution (kernel = stride = ``downsampling_rate``), the activation,
  the last molecule dropped and the [CLS] character prepended, LayerNorm. The molecule mask is
  the max-pooled character mask.
* The deep encoder: ``num_hidden_layers`` BERT blocks over the molecules (its first molecule,
  through ``pooler.dense`` + tanh, is Transformers' ``pooler_output``).
* Upsampling: molecules 1.. repeated ``downsampling_rate`` times and the last one repeated to the
  sequence length, concatenated with the local encoder's characters, a convolution of width
  ``upsampling_kernel_size`` (zero padding split as Transformers does) back to ``hidden_size``,
  the activation, LayerNorm; then a one-layer BERT block over the whole sequence.
"""

from dataclasses import dataclass

import keras
from keras import ops

from keras_models.errors import ConfigError
from keras_models.layers.activations import get_activation
from keras_models.layers.encoder_block import EncoderBlock
from keras_models.layers.masks import padding_bias
from keras_models.models.backbone import SpecBackbone
from keras_models.models.encoder.backbone import BERT_NAMES, dense_rules, norm_rules
from keras_models.models.registry import register_backbone
from keras_models.presets.weight_map import Rule, Transpose
from keras_models.spec import Spec, dim, hf

HASH_PRIMES = (31, 43, 59, 61, 73, 97, 103, 113, 137, 149, 157, 173, 181, 193, 211, 223)
CONV_KERNEL = Transpose((2, 1, 0))  # torch Conv1d (out, in, k) <-> keras (k, in, out)


@dataclass(frozen=True, kw_only=True)
class CanineSpec(Spec):
    """CanineConfig (Transformers' defaults)."""

    hidden_size: int = dim("hidden_size", 768)
    num_layers: int = dim("num_hidden_layers", 12)
    num_heads: int = dim("num_attention_heads", 12)
    intermediate_size: int = dim("intermediate_size", 3072)
    hidden_act: str = hf("hidden_act", "gelu")
    dropout: float = hf("hidden_dropout_prob", 0.1)
    attention_dropout: float = hf("attention_probs_dropout_prob", 0.1)
    max_position_embeddings: int = dim("max_position_embeddings", 16384)
    type_vocab_size: int = dim("type_vocab_size", 16)
    initializer_range: float = hf("initializer_range", 0.02)
    layer_norm_eps: float = hf("layer_norm_eps", 1e-12)
    pad_token_id: int = hf("pad_token_id", 0)
    downsampling_rate: int = dim("downsampling_rate", 4)
    upsampling_kernel_size: int = dim("upsampling_kernel_size", 4)
    num_hash_functions: int = dim("num_hash_functions", 8)
    num_hash_buckets: int = dim("num_hash_buckets", 16384)
    local_transformer_stride: int = dim("local_transformer_stride", 128)

    def validate(self, source="config.json"):
        if self.num_hash_functions > len(HASH_PRIMES):
            raise ConfigError(f"{source}: num_hash_functions={self.num_hash_functions}: at most {len(HASH_PRIMES)}")
        if self.hidden_size % self.num_hash_functions:
            raise ConfigError(f"{source}: hidden_size={self.hidden_size} is not divisible by "
                              f"num_hash_functions={self.num_hash_functions}")
        if self.hidden_size % self.num_heads:
            raise ConfigError(f"{source}: hidden_size={self.hidden_size} is not divisible by "
                              f"num_attention_heads={self.num_heads}")

    def dummy_inputs(self):
        import numpy as np

        n = 2 * self.downsampling_rate  # at least one molecule besides [CLS]
        return {"input_ids": np.ones((1, n), "int32"), "attention_mask": np.ones((1, n), "int32")}


@keras.saving.register_keras_serializable(package="keras_models")
class LocalEncoderBlock(EncoderBlock):
    """BERT's block whose self-attention runs within consecutive chunks of ``chunk`` positions
    (``bias``: a (b, 1, 1, t) key-padding bias)."""

    def __init__(self, *args, chunk=128, **kwargs):
        super().__init__(*args, **kwargs)
        self.chunk = chunk

    def attend(self, x, bias=None, rope=None, training=False, relative=None):
        t = x.shape[1]
        if t is None:
            raise ValueError("CANINE's local attention needs a static sequence length")
        outs = []
        for start in range(0, t, self.chunk):
            end = min(t, start + self.chunk)
            b = None if bias is None else bias[..., start:end]
            outs.append(super().attend(x[:, start:end], b, training=training))
        return outs[0] if len(outs) == 1 else ops.concatenate(outs, axis=1)

    def get_config(self):
        config = super().get_config()
        config["chunk"] = self.chunk
        return config


@keras.saving.register_keras_serializable(package="keras_models")
@register_backbone("canine")
class CanineBackbone(SpecBackbone):
    spec_cls = CanineSpec
    base_model_prefix = "canine"
    hf_architecture = "CanineModel"
    hf_model_type = "canine"
    hf_ignore = ("*char_embeddings.position_ids",)
    hf_known_unused = ("*pooler.dense.*",)
    verified_backends = ("jax", "torch", "tensorflow")

    def __init__(self, spec=None, **kwargs):
        super().__init__(spec, **kwargs)
        for name, value in self.spec.kwargs().items():
            setattr(self, "dropout_rate" if name == "dropout" else name, value)
        h, common = self.hidden_size, dict(dtype=self.dtype_policy)
        init = keras.initializers.TruncatedNormal(stddev=self.initializer_range)

        def embedding(rows, width, name):
            return keras.layers.Embedding(rows, width, embeddings_initializer=init, name=name, **common)

        def norm(name):
            return keras.layers.LayerNormalization(epsilon=self.layer_norm_eps, name=name, **common)

        def block(name, cls=EncoderBlock, **extra):
            return cls(h, self.num_heads, self.intermediate_size, hidden_act=self.hidden_act,
                       layer_norm_eps=self.layer_norm_eps, dropout=self.dropout_rate,
                       attention_dropout=self.attention_dropout, kernel_initializer=init, name=name, **common,
                       **extra)

        shard = h // self.num_hash_functions
        self.hash_embeddings = [embedding(self.num_hash_buckets, shard, f"hash_embedding_{i}")
                                for i in range(self.num_hash_functions)]
        self.position_embedding = embedding(self.num_hash_buckets, h, "char_position_embedding")
        self.token_type_embedding = embedding(self.type_vocab_size, h, "token_type_embedding")
        self.embeddings_norm = norm("embeddings_norm")
        self.dropout_layer = keras.layers.Dropout(self.dropout_rate, **common)
        self.initial_block = block("initial_char_block", LocalEncoderBlock, chunk=self.local_transformer_stride)
        self.downsample = keras.layers.Conv1D(h, self.downsampling_rate, strides=self.downsampling_rate,
                                              kernel_initializer=init, name="downsample", **common)
        self.downsample_norm = norm("downsample_norm")
        self.blocks = [block(f"block_{i}") for i in range(self.num_layers)]
        self.projection = keras.layers.Conv1D(h, self.upsampling_kernel_size, kernel_initializer=init,
                                              name="projection", **common)
        self.projection_norm = norm("projection_norm")
        self.final_block = block("final_char_block")
        self.act = get_activation(self.hidden_act)

    def build(self, input_shape=None):
        h = self.hidden_size
        for layer in self.hash_embeddings + [self.position_embedding, self.token_type_embedding]:
            layer.build((None, None))
        for layer in [self.embeddings_norm, self.downsample_norm, self.projection_norm, self.initial_block,
                      self.final_block] + self.blocks:
            layer.build((None, None, h))
        self.downsample.build((None, None, h))
        self.projection.build((None, None, 2 * h))
        self.built = True

    def embed(self, inputs, training=False):
        ids = inputs["input_ids"]
        shards = [table(((ids + 1) * prime) % self.num_hash_buckets)
                  for table, prime in zip(self.hash_embeddings, HASH_PRIMES)]
        x = ops.concatenate(shards, axis=-1)
        types = inputs.get("token_type_ids")
        x = x + self.token_type_embedding(ops.zeros_like(ids) if types is None else types)
        positions = inputs.get("position_ids")
        if positions is None:
            positions = ops.arange(ops.shape(ids)[1], dtype="int32")[None, :]
        x = x + self.position_embedding(positions)
        return self.dropout_layer(self.embeddings_norm(x), training=training)

    def encode(self, inputs, training=False):
        """(final character states (b, t, h), deep encoder's molecule states (b, t // rate, h))."""
        if not isinstance(inputs, dict):
            inputs = {"input_ids": inputs}
        ids = inputs["input_ids"]
        t, rate = ids.shape[1], self.downsampling_rate
        if t is None or t < 2 * rate:
            raise ValueError(f"CANINE needs a static sequence of at least 2 * downsampling_rate = {2 * rate} "
                             f"characters, got {t}")
        mask = inputs.get("attention_mask")
        mask = ops.ones_like(ids) if mask is None else mask
        x = self.embed(inputs, training=training)
        char_bias = padding_bias(mask, x.dtype)
        chars = self.initial_block(x, char_bias, training=training)
        # downsample to molecules: [CLS] character + strided convolution (the last window dropped)
        molecules = self.act(self.downsample(chars))[:, :-1]
        molecules = self.downsample_norm(ops.concatenate([chars[:, :1], molecules], axis=1))
        m = t // rate
        molecule_mask = ops.max(ops.reshape(ops.cast(mask, x.dtype)[:, : m * rate], (-1, m, rate)), axis=-1)
        molecule_bias = padding_bias(molecule_mask, x.dtype)
        for block in self.blocks:
            molecules = block(molecules, molecule_bias, training=training)
        # upsample: molecules 1.. repeated rate times, the last one over the remainder
        b, h = ops.shape(molecules)[0], self.hidden_size
        rest = molecules[:, 1:]
        repeated = ops.reshape(ops.broadcast_to(rest[:, :, None], (b, m - 1, rate, h)), (b, (m - 1) * rate, h))
        tail = t % rate + rate
        last = ops.broadcast_to(molecules[:, -1:], (b, tail, h))
        up = ops.concatenate([chars, ops.concatenate([repeated, last], axis=1)], axis=-1)
        pad = self.upsampling_kernel_size - 1
        up = ops.pad(up, ((0, 0), (pad // 2, pad - pad // 2), (0, 0)))
        seq = self.dropout_layer(self.projection_norm(self.act(self.projection(up))), training=training)
        seq = self.final_block(seq, char_bias, training=training)
        return seq, molecules

    def call(self, inputs, training=False):
        return self.encode(inputs, training=training)[0]

    # --- HF conversion ------------------------------------------------------------------------
    @staticmethod
    def block_rules(prefix, block):
        n = BERT_NAMES
        r = []
        for key, dense in (("query", block.attention.query), ("key", block.attention.key),
                           ("value", block.attention.value), ("attn_out", block.attention.output_dense),
                           ("ffn_in", block.intermediate), ("ffn_out", block.output_dense)):
            r += dense_rules(prefix + n[key], dense)
        return r + norm_rules(prefix + n["attn_norm"], block.attention_norm) + norm_rules(
            prefix + n["ffn_norm"], block.output_norm)

    def weight_rules(self):
        r = [Rule(f"char_embeddings.HashBucketCodepointEmbedder_{i}.weight", t.embeddings)
             for i, t in enumerate(self.hash_embeddings)]
        r += [Rule("char_embeddings.char_position_embeddings.weight", self.position_embedding.embeddings),
              Rule("char_embeddings.token_type_embeddings.weight", self.token_type_embedding.embeddings)]
        r += norm_rules("char_embeddings.LayerNorm", self.embeddings_norm)
        r += self.block_rules("initial_char_encoder.layer.0.", self.initial_block)
        r += [Rule("chars_to_molecules.conv.weight", self.downsample.kernel, CONV_KERNEL),
              Rule("chars_to_molecules.conv.bias", self.downsample.bias)]
        r += norm_rules("chars_to_molecules.LayerNorm", self.downsample_norm)
        for i, block in enumerate(self.blocks):
            r += self.block_rules(f"encoder.layer.{i}.", block)
        r += [Rule("projection.conv.weight", self.projection.kernel, CONV_KERNEL),
              Rule("projection.conv.bias", self.projection.bias)]
        r += norm_rules("projection.LayerNorm", self.projection_norm)
        r += self.block_rules("final_char_encoder.layer.0.", self.final_block)
        return r


__all__ = ["CanineBackbone"]

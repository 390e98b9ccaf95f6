"""One configurable BERT-like encoder backbone shared by every encoder family.

Every architectural difference is a named switch, a field of :class:`EncoderSpec` that a family
fixes with ``const`` or reads from config.json:

* ``embedding_size`` / ``embedding_projection``: factorised embeddings (ALBERT, ELECTRA, RemBERT)
  projected to ``hidden_size`` by a dense layer after the embedding LayerNorm;
* ``position_mode``: ``"absolute"`` (BERT), ``"padding_offset"`` (RoBERTa: real tokens count up
  from ``pad_token_id + 1``), ``"none"`` (positions handled inside attention only);
* ``rotary``: ``"table"`` (RoFormer: a [sin | cos] table stored in the checkpoint, interleaved
  pairs, ``rotary_value`` also rotates values) or ``"computed"`` (ESM: half-split RoPE);
* ``embeddings_norm`` (LayerNorm after the embedding sum), ``norm_first`` (pre-norm blocks) and
  ``final_norm`` (a LayerNorm after the last block: Megatron-BERT, XLM-RoBERTa-XL);
* ``num_layer_groups`` / ``layers_per_group``: ALBERT's shared layers (``num_layers`` applications
  of ``num_layer_groups * layers_per_group`` distinct blocks);
* ``task_type_vocab_size``: ERNIE's extra ``task_type_ids`` embedding;
* ``token_dropout`` (ESM: ``mask_token_id`` embeddings zeroed and the rest rescaled by the observed
  mask ratio) and ``mask_padded_embeddings`` (padding positions' embeddings zeroed).

A family is a subclass that sets ``spec_cls`` (an ``EncoderSpec`` subclass: its config.json keys,
Transformers' defaults and its fixed switches) and ``hf_names`` (the weight map, as name templates).
"""

from dataclasses import dataclass
from typing import ClassVar

import keras
import numpy as np
from keras import ops

from keras_models.errors import ConfigError
from keras_models.layers.encoder_block import EncoderBlock
from keras_models.layers.encoder_positions import relative_bias
from keras_models.layers.masks import padding_bias
from keras_models.layers.rotary import RotaryEmbedding
from keras_models.models.backbone import SpecBackbone
from keras_models.presets.weight_map import TRANSPOSE, Rule
from keras_models.spec import Spec, const, dim, hf

ESM_MASK_RATIO_TRAIN = 0.15 * 0.8


@dataclass(frozen=True, kw_only=True)
class EncoderSpec(Spec):
    """BertConfig's keys (Transformers' defaults) and the encoder's switches (family constants)."""

    vocab_size: int = dim("vocab_size", 30522)
    hidden_size: int = dim("hidden_size", 768)
    num_layers: int = dim("num_hidden_layers", 12)
    num_heads: int = dim("num_attention_heads", 12)
    intermediate_size: int = dim("intermediate_size", 3072)
    hidden_act: str = hf("hidden_act", "gelu")
    max_position_embeddings: int = dim("max_position_embeddings", 512)
    type_vocab_size: int = hf("type_vocab_size", 2)
    layer_norm_eps: float = hf("layer_norm_eps", 1e-12)
    dropout: float = hf("hidden_dropout_prob", 0.1)
    attention_dropout: float = hf("attention_probs_dropout_prob", 0.1)
    pad_token_id: int = hf("pad_token_id", 0)
    initializer_range: float = hf("initializer_range", 0.02)
    # --- switches: family constants (see the module docstring) ---
    position_mode: str = const("absolute", doc="absolute, padding_offset (RoBERTa) or none")
    norm_first: bool = const(False)
    embeddings_norm: bool = const(True)
    final_norm: bool = const(False)
    embedding_size: int | None = const(None, doc="factorised embedding width (None: hidden_size)")
    embedding_projection: bool | None = const(None, doc="None: project when embedding_size != hidden_size")
    embedding_projection_bias: bool = const(True)
    output_embedding_size: int | None = const(None, doc="width of the MLM head (RemBERT); None: embeddings'")
    num_layer_groups: int | None = const(None, doc="None: one group per layer (no sharing)")
    layers_per_group: int = const(1)
    task_type_vocab_size: int = const(0)
    rotary: str | None = const(None, doc="None, 'table' (RoFormer) or 'computed' (ESM)")
    rotary_value: bool = const(False)
    rotary_base: float = const(10000.0)
    token_dropout: bool = const(False)
    mask_token_id: int | None = const(None)
    mask_padded_embeddings: bool = const(False)
    relative_attention_buckets: int = const(0, doc=">0: a shared bucketed relative-position bias (MPNet)")
    relative_bucket_count: int = const(32, doc="buckets the offsets are hashed into (MPNet: always 32)")
    relative_max_distance: int = const(128)

    unsupported = {"position_embedding_type": ("absolute", None)}
    # constant config.json entries written back (never read)
    hf_constants: ClassVar[dict] = {}

    def validate(self, source="config.json"):
        if self.position_mode not in ("absolute", "padding_offset", "none"):
            raise ConfigError(f"{source}: position_mode={self.position_mode!r}: expected absolute, "
                              "padding_offset or none")
        if self.rotary not in (None, "table", "computed"):
            raise ConfigError(f"{source}: rotary={self.rotary!r}: expected None, 'table' or 'computed'")
        if self.hidden_size % self.num_heads:
            raise ConfigError(f"{source}: hidden_size={self.hidden_size} is not divisible by "
                              f"num_attention_heads={self.num_heads}")
        groups = self.num_layer_groups or self.num_layers
        if self.num_layers % groups:
            raise ConfigError(f"{source}: num_layers={self.num_layers} is not a multiple of "
                              f"num_layer_groups={groups}")

    def adjust_to_hf(self, out):
        out.update(self.hf_constants)
        return out

    def dummy_inputs(self):
        inputs = super().dummy_inputs()
        if self.position_mode == "padding_offset":
            inputs["input_ids"] = inputs["input_ids"] * (self.pad_token_id + 1)
        return inputs


def explicit_embedding_size(spec, out):
    """``adjust_to_hf`` helper: write ``embedding_size`` explicitly (None: the hidden size)."""
    if out.get("embedding_size") is None:
        out["embedding_size"] = spec.hidden_size
    return out


# Weight-map name templates (base-model relative). A block's prefix is ``layer`` formatted with
# i (distinct block index), g (its group) and l (its index inside the group).
BERT_NAMES = dict(
    word="embeddings.word_embeddings",
    position="embeddings.position_embeddings",
    token_type="embeddings.token_type_embeddings",
    task_type="embeddings.task_type_embeddings",
    emb_norm="embeddings.LayerNorm",
    emb_proj="embeddings_project",
    layer="encoder.layer.{i}.",
    query="attention.self.query",
    key="attention.self.key",
    value="attention.self.value",
    attn_out="attention.output.dense",
    attn_norm="attention.output.LayerNorm",
    ffn_in="intermediate.dense",
    ffn_out="output.dense",
    ffn_norm="output.LayerNorm",
    final_norm="encoder.LayerNorm",
    rotary_table="encoder.embed_positions",
    relative_bias="encoder.relative_attention_bias",
)


@keras.saving.register_keras_serializable(package="keras_models")
class EncoderBackbone(SpecBackbone):
    """Generic encoder; not registered itself (families subclass it with their own ``spec_cls``).

    The constructor takes the spec's fields (``EncoderSpec``: BERT's keys and the switches) as
    keyword arguments and exposes each as an attribute (``dropout`` as ``dropout_rate``)."""

    spec_cls = EncoderSpec
    base_model_prefix = "bert"
    hf_architecture = "BertModel"
    hf_model_type = "bert"
    hf_ignore = ("*embeddings.position_ids", "*embeddings.token_type_ids")
    hf_known_unused = ("*pooler.dense.*",)
    hf_names = BERT_NAMES
    # Backends on which this family's parity tests pass (read by tools/gen_models_table.py).
    verified_backends = ()
    checkpoint_families = ()  # checkpoint-only rows reusing this architecture (docs)

    def __init__(self, spec=None, **kwargs):
        super().__init__(spec, **kwargs)
        self.spec = self.resolve_spec(self.spec)
        for name, value in self.spec.kwargs().items():
            setattr(self, "dropout_rate" if name == "dropout" else name, value)
        vocab_size, hidden_size, num_layers = self.vocab_size, self.hidden_size, self.num_layers
        num_heads, max_position_embeddings = self.num_heads, self.max_position_embeddings
        type_vocab_size, layer_norm_eps, dropout = self.type_vocab_size, self.layer_norm_eps, self.dropout_rate
        initializer_range = self.initializer_range
        self.head_dim = hidden_size // num_heads
        self.embedding_dim = self.embedding_size or hidden_size
        if self.embedding_projection is None:
            self.embedding_projection = self.embedding_dim != hidden_size
        groups = self.num_layer_groups or num_layers
        self.layer_schedule = [
            (i // (num_layers // groups)) * self.layers_per_group + j
            for i in range(num_layers) for j in range(self.layers_per_group)
        ]
        init = keras.initializers.TruncatedNormal(stddev=initializer_range)
        common = dict(dtype=self.dtype_policy)

        def embedding(n, name):
            return keras.layers.Embedding(n, self.embedding_dim, embeddings_initializer=init, name=name, **common)

        self.token_embedding = embedding(vocab_size, "token_embedding")
        self.position_embedding = (
            embedding(max_position_embeddings, "position_embedding") if self.position_mode != "none" else None
        )
        self.token_type_embedding = embedding(type_vocab_size, "token_type_embedding") if type_vocab_size else None
        self.task_type_embedding = (
            embedding(self.task_type_vocab_size, "task_type_embedding") if self.task_type_vocab_size else None
        )
        self.embeddings_norm_layer = (
            keras.layers.LayerNormalization(epsilon=layer_norm_eps, name="embeddings_norm", **common)
            if self.embeddings_norm else None
        )
        self.embeddings_dropout = keras.layers.Dropout(dropout, **common)
        self.embeddings_project = (
            keras.layers.Dense(hidden_size, use_bias=self.embedding_projection_bias, kernel_initializer=init,
                               name="embeddings_project", **common)
            if self.embedding_projection else None
        )
        self.rotary_embedding = self.rotary_table = None
        if self.rotary == "table":
            self.rotary_table = keras.layers.Embedding(
                max_position_embeddings, self.head_dim, embeddings_initializer=SinusoidalTable(),
                trainable=False, name="rotary_table", **common,
            )
            self.rotary_table.build((None, None))  # eagerly: never created inside a symbolic trace
        if self.rotary == "computed":
            self.rotary_embedding = RotaryEmbedding(self.head_dim, base=self.rotary_base, name="rotary", **common)
        self.relative_bias_table = None
        if self.relative_attention_buckets:
            self.relative_bias_table = keras.layers.Embedding(
                self.relative_attention_buckets, num_heads, embeddings_initializer=init,
                name="relative_attention_bias", **common,
            )
        self.blocks = [self.make_block(i, init) for i in range(groups * self.layers_per_group)]
        self.final_norm_layer = (
            keras.layers.LayerNormalization(epsilon=layer_norm_eps, name="final_norm", **common)
            if self.final_norm else None
        )

    def resolve_spec(self, spec):
        """The spec the model is built from (families derive switches from other fields here)."""
        return spec

    def make_block(self, index, init):
        """The block for distinct layer ``index`` (families with other attention override this)."""
        return EncoderBlock(
            self.hidden_size, self.num_heads, self.intermediate_size, hidden_act=self.hidden_act,
            layer_norm_eps=self.layer_norm_eps, dropout=self.dropout_rate,
            attention_dropout=self.attention_dropout, norm_first=self.norm_first,
            kernel_initializer=init, name=f"block_{index}", dtype=self.dtype_policy,
            rotary_interleaved=self.rotary == "table", rotary_value=self.rotary_value,
        )

    def rope(self, inputs, x):
        """(cos, sin), each (1 or batch, seq, head_dim), or None without rotary positions."""
        if self.rotary == "table":
            half = self.head_dim // 2
            table = ops.cast(self.rotary_table(ops.arange(ops.shape(x)[1], dtype="int32")[None, :]), x.dtype)
            sin, cos = table[..., :half], table[..., half:]
            # [t0, t1, ...] -> [t0, t0, t1, t1, ...] (stack+reshape: repeat has no meta kernel on torch)
            pairs = ops.shape(table)[:-1] + (self.head_dim,)
            return tuple(ops.reshape(ops.stack([t, t], axis=-1), pairs) for t in (cos, sin))
        if self.rotary == "computed":
            positions = ops.arange(ops.shape(x)[1], dtype="int32")[None, :]
            return self.rotary_embedding(positions)
        return None

    # --- forward ------------------------------------------------------------------------------
    def position_ids(self, input_ids):
        if self.position_mode == "padding_offset":
            mask = ops.cast(ops.not_equal(input_ids, self.pad_token_id), "int32")
            return ops.cumsum(mask, axis=1) * mask + self.pad_token_id
        seq_len = ops.shape(input_ids)[1]
        return ops.broadcast_to(ops.arange(seq_len, dtype="int32")[None, :], ops.shape(input_ids))

    def embed(self, inputs, training=False):
        input_ids = inputs["input_ids"]
        x = self.token_embedding(input_ids)
        mask = inputs.get("attention_mask")
        if self.token_dropout:
            x = self.drop_mask_tokens(x, input_ids, mask)
        if self.position_embedding is not None:
            positions = inputs.get("position_ids")
            if positions is None:
                positions = self.position_ids(input_ids)
            x = x + self.position_embedding(positions)
        for layer, key in ((self.token_type_embedding, "token_type_ids"), (self.task_type_embedding, "task_type_ids")):
            if layer is not None:
                ids = inputs.get(key)
                x = x + layer(ops.zeros_like(input_ids) if ids is None else ids)
        x = self.extra_embeddings(x, inputs, training=training)
        if self.embeddings_norm_layer is not None:
            x = self.embeddings_norm_layer(x)
        if self.mask_padded_embeddings and mask is not None:
            x = x * ops.cast(mask, x.dtype)[..., None]
        x = self.embeddings_dropout(x, training=training)
        if self.embeddings_project is not None:
            x = self.embeddings_project(x)
        return x

    def extra_embeddings(self, x, inputs, training=False):
        """Hook: embeddings of a family's other inputs added before the embedding LayerNorm
        (LayoutLM's 2D box positions); the default adds nothing."""
        return x

    def drop_mask_tokens(self, x, input_ids, mask):
        """ESM's token dropout: zero [MASK] embeddings, rescale by train / observed mask ratio."""
        is_mask = ops.cast(ops.equal(input_ids, self.mask_token_id), x.dtype)
        x = x * (1.0 - is_mask)[..., None]
        if mask is None:
            lengths = ops.cast(ops.shape(input_ids)[1], x.dtype)
        else:
            lengths = ops.sum(ops.cast(mask, x.dtype), axis=1)
        observed = ops.sum(is_mask, axis=1) / lengths
        return x * ((1.0 - ESM_MASK_RATIO_TRAIN) / (1.0 - observed))[:, None, None]

    def attention_bias(self, inputs, x):
        mask = inputs.get("attention_mask")
        bias = None if mask is None else padding_bias(mask, x.dtype)
        if self.relative_bias_table is not None:
            n = ops.shape(x)[1]
            rel = ops.cast(relative_bias(self.relative_bias_table, n, n, self.relative_bucket_count,
                                         self.relative_max_distance), x.dtype)
            bias = rel if bias is None else bias + rel
        return bias

    def call(self, inputs, training=False, query_rows=None):
        """The last hidden state (batch, seq, hidden). ``query_rows`` (an int, see
        :meth:`first_rows_only`): the caller reads only the first ``query_rows`` positions, so the
        last block computes just those (batch, query_rows, hidden) where it can; the full state
        otherwise."""
        if not isinstance(inputs, dict):
            inputs = {"input_ids": inputs}
        x = self.embed(inputs, training=training)
        bias = self.attention_bias(inputs, x)
        rope = self.rope(inputs, x)
        last = len(self.layer_schedule) - 1
        for i, index in enumerate(self.layer_schedule):
            block = self.blocks[index]
            if i == last and query_rows is not None and type(block).call is EncoderBlock.call:
                x = block(x, bias, rope=rope, training=training, query_rows=query_rows)
            else:
                x = block(x, bias, rope=rope, training=training)
        if self.final_norm_layer is not None:
            x = self.final_norm_layer(x)
        return x

    def first_rows_only(self):
        """Whether ``call(..., query_rows=k)`` may return only the first ``k`` positions: this
        class keeps EncoderBackbone's ``call`` (a family that overrides it ignores the argument)."""
        return type(self).call is EncoderBackbone.call

    # --- HF conversion ------------------------------------------------------------------------
    def block_prefix(self, index):
        g, l = divmod(index, self.layers_per_group)
        return self.hf_names["layer"].format(i=index, g=g, l=l)

    def block_rules(self, prefix, block):
        n = self.hf_names
        r = []
        for key, dense in (("query", block.attention.query), ("key", block.attention.key),
                           ("value", block.attention.value), ("attn_out", block.attention.output_dense),
                           ("ffn_in", block.intermediate), ("ffn_out", block.output_dense)):
            r += dense_rules(prefix + n[key], dense)
        r += norm_rules(prefix + n["attn_norm"], block.attention_norm)
        r += norm_rules(prefix + n["ffn_norm"], block.output_norm)
        return r

    def weight_rules(self):
        n = self.hf_names
        r = [Rule(n["word"] + ".weight", self.token_embedding.embeddings)]
        for key, layer in (("position", self.position_embedding), ("token_type", self.token_type_embedding),
                           ("task_type", self.task_type_embedding)):
            if layer is not None:
                r.append(Rule(n[key] + ".weight", layer.embeddings))
        if self.embeddings_norm_layer is not None:
            r += norm_rules(n["emb_norm"], self.embeddings_norm_layer)
        if self.embeddings_project is not None:
            r += dense_rules(n["emb_proj"], self.embeddings_project)
        for i, block in enumerate(self.blocks):
            r += self.block_rules(self.block_prefix(i), block)
        if self.final_norm_layer is not None:
            r += norm_rules(n["final_norm"], self.final_norm_layer)
        if self.rotary == "table":
            r.append(Rule(n["rotary_table"] + ".weight", self.rotary_table.embeddings))
        if self.relative_bias_table is not None:
            r.append(Rule(n["relative_bias"] + ".weight", self.relative_bias_table.embeddings))
        return r

@keras.saving.register_keras_serializable(package="keras_models")
class SinusoidalTable(keras.initializers.Initializer):
    """RoFormer's position table: row p = [sin(p * w_j) for j < d/2] + [cos(p * w_j) ...]."""

    def __call__(self, shape, dtype=None):
        n, d = shape
        w = 1.0 / np.power(10000.0, 2 * np.arange(d // 2) / d)
        angles = np.arange(n)[:, None] * w[None, :]
        table = np.concatenate([np.sin(angles), np.cos(angles)], axis=1)
        return ops.convert_to_tensor(table, dtype or "float32")


def dense_rules(name, dense, base=True):
    out = [Rule(f"{name}.weight", dense.kernel, TRANSPOSE, base=base)]
    if dense.use_bias:
        out.append(Rule(f"{name}.bias", dense.bias, base=base))
    return out


def norm_rules(name, norm, base=True):
    return [Rule(f"{name}.weight", norm.gamma, base=base), Rule(f"{name}.bias", norm.beta, base=base)]

"""TAPAS: BERT over a flattened table, with seven token-type embeddings.

``token_type_ids`` is (batch, seq, 7): segment (question 0 / table 1), column (0: not in the
table), row (0: question and header), previous answer label, column rank, inverse column rank and
numeric relation. Each of the seven has its own embedding table (sizes ``type_vocab_sizes``), all
added to the word and position embeddings before BERT's embedding LayerNorm.

With ``reset_position_index_per_cell`` (the default) a token's position is counted from the first
token of its cell, a cell being the tokens that share (column, row) ids; the question, the special
tokens and padding (column 0, row 0) keep absolute positions. Positions are computed from a
(seq, seq) same-cell matrix rather than Transformers' segment reductions (the same values).
"""

from dataclasses import dataclass

import keras
import numpy as np
from keras import ops

from keras_models.errors import ConfigError, InputError
from keras_models.models.encoder.backbone import EncoderBackbone, EncoderSpec
from keras_models.models.registry import register_backbone
from keras_models.presets.weight_map import Rule
from keras_models.spec import const, dim, hf

TOKEN_TYPES = ("segment_ids", "column_ids", "row_ids", "prev_labels", "column_ranks", "inv_column_ranks",
               "numeric_relations")
COLUMN, ROW = 1, 2


@dataclass(frozen=True, kw_only=True)
class TapasSpec(EncoderSpec):
    """TapasConfig's backbone keys: BERT's, a 1024-long position table, the seven token-type
    vocabularies and the per-cell position reset."""

    max_position_embeddings: int = dim("max_position_embeddings", 1024)
    type_vocab_sizes: tuple = hf("type_vocab_sizes", (3, 256, 256, 2, 256, 256, 10))
    reset_position_index_per_cell: bool = hf("reset_position_index_per_cell", True)
    type_vocab_size: int = const(0, doc="TAPAS has seven token-type tables (type_vocab_sizes), not one")

    unsupported = {"is_decoder": (False,), "add_cross_attention": (False,)}

    def validate(self, source="config.json"):
        super().validate(source)
        sizes = self.type_vocab_sizes
        if (not isinstance(sizes, tuple) or len(sizes) != len(TOKEN_TYPES)
                or any(isinstance(s, bool) or not isinstance(s, int) or s <= 0 for s in sizes)):
            raise ConfigError(f"{source}: type_vocab_sizes={sizes!r}: expected {len(TOKEN_TYPES)} positive "
                              f"integers ({', '.join(TOKEN_TYPES)})")

    def dummy_inputs(self):
        inputs = super().dummy_inputs()
        inputs["token_type_ids"] = np.zeros(inputs["input_ids"].shape + (len(TOKEN_TYPES),), "int32")
        return inputs


def same_cell(token_type_ids, max_rows=None, max_columns=None):
    """(batch, seq, seq) bool: tokens i and j have the same (column, row) ids, each clipped to
    ``max_columns - 1`` / ``max_rows - 1`` when given."""
    col, row = token_type_ids[..., COLUMN], token_type_ids[..., ROW]
    if max_columns is not None:
        col = ops.minimum(col, max_columns - 1)
    if max_rows is not None:
        row = ops.minimum(row, max_rows - 1)
    return ops.logical_and(ops.equal(col[:, :, None], col[:, None, :]), ops.equal(row[:, :, None], row[:, None, :]))


@keras.saving.register_keras_serializable(package="keras_models")
@register_backbone("tapas")
class TapasBackbone(EncoderBackbone):
    """Inputs: ``input_ids``, ``attention_mask``, ``token_type_ids`` (batch, seq, 7; zeros when
    absent) and optionally ``position_ids``. Output: the last hidden state (batch, seq, hidden)."""

    spec_cls = TapasSpec
    base_model_prefix = "tapas"
    hf_architecture = "TapasModel"
    hf_model_type = "tapas"
    verified_backends = ("jax", "torch", "tensorflow")

    def __init__(self, spec=None, **kwargs):
        super().__init__(spec, **kwargs)
        init = keras.initializers.TruncatedNormal(stddev=self.initializer_range)
        self.token_type_tables = [
            keras.layers.Embedding(n, self.embedding_dim, embeddings_initializer=init,
                                   name=f"token_type_embedding_{i}", dtype=self.dtype_policy)
            for i, n in enumerate(self.type_vocab_sizes)
        ]

    def token_types(self, inputs):
        ids = inputs.get("token_type_ids")
        if ids is None:
            shape = ops.shape(inputs["input_ids"])
            return ops.zeros((shape[0], shape[1], len(TOKEN_TYPES)), "int32")
        return ids

    def cell_position_ids(self, token_type_ids):
        """Each token's offset from the first token of its cell, capped at the table's end."""
        seq = ops.shape(token_type_ids)[1]
        index = ops.arange(seq, dtype="int32")
        first = ops.min(ops.where(same_cell(token_type_ids), index[None, None, :], seq), axis=-1)
        return ops.minimum(index[None, :] - first, self.max_position_embeddings - 1)

    def embed(self, inputs, training=False):
        inputs = dict(inputs)
        token_types = self.token_types(inputs)
        if inputs.get("position_ids") is None and self.reset_position_index_per_cell:
            inputs["position_ids"] = self.cell_position_ids(token_types)
        inputs["_token_types"] = token_types
        return super().embed(inputs, training=training)

    def extra_embeddings(self, x, inputs, training=False):
        token_types = inputs["_token_types"]
        for i, table in enumerate(self.token_type_tables):
            x = x + table(token_types[..., i])
        return x

    def call(self, inputs, training=False):
        if not isinstance(inputs, dict):
            inputs = {"input_ids": inputs}
        return super().call(inputs, training=training)

    def check_host_inputs(self, inputs, where="call"):
        """``token_type_ids`` given as a host array: (batch, seq, 7) integers inside their tables."""
        if not isinstance(inputs, dict):
            return
        tt = inputs.get("token_type_ids")
        if not isinstance(tt, (np.ndarray, list, tuple)):
            return
        tt = np.asarray(tt)
        ids = inputs.get("input_ids")
        want = (np.shape(ids) if isinstance(ids, (np.ndarray, list, tuple)) else tt.shape[:2]) + (len(TOKEN_TYPES),)
        if tt.shape != tuple(want):
            raise InputError(f"{where}: token_type_ids must be (batch, seq, {len(TOKEN_TYPES)}) "
                             f"({', '.join(TOKEN_TYPES)}), got shape {tt.shape}")
        if tt.dtype.kind not in "iu":
            raise InputError(f"{where}: token_type_ids must be integers, got dtype {tt.dtype}")
        for i, (name, n) in enumerate(zip(TOKEN_TYPES, self.type_vocab_sizes)):
            column = tt[..., i]
            if column.size and (column.min() < 0 or column.max() >= n):
                raise InputError(f"{where}: token_type_ids[..., {i}] ({name}) must be in [0, {n}) "
                                 f"(type_vocab_sizes), got values in [{column.min()}, {column.max()}]")

    def __call__(self, inputs, *args, **kwargs):
        self.check_host_inputs(inputs)
        return super().__call__(inputs, *args, **kwargs)

    def weight_rules(self):
        return super().weight_rules() + [
            Rule(f"embeddings.token_type_embeddings_{i}.weight", table.embeddings)
            for i, table in enumerate(self.token_type_tables)
        ]

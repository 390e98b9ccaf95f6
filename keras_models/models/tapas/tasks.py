"""TAPAS heads: masked LM and sequence classification (BERT's heads and names) and table
question answering (cell selection, column selection and the optional aggregation head)."""

import keras
import numpy as np
from keras import ops

from keras_models.errors import ConfigError
from keras_models.models.encoder.backbone import dense_rules
from keras_models.models.encoder.tasks import family_task
from keras_models.models.tapas.backbone import COLUMN, ROW, TapasBackbone, same_cell
from keras_models.presets.weight_map import Rule
from keras_models.tasks.table_question_answerer import TableQuestionAnswerer
from keras_models.tasks.text import MaskedLM, TextClassifier

LOG_ZERO = -10000.0  # Transformers' CLOSE_ENOUGH_TO_LOG_ZERO
EPS = 1e-10


class _TablePreprocessing:
    """TAPAS inputs are a table and a text, which the generic text preprocessors cannot make: the
    task has no preprocessor; ``keras_models.models.TapasTokenizer.from_preset`` reads the
    checkpoint's vocab.txt."""

    @classmethod
    def preprocessor_from_preset(cls, folder, hf, **kwargs):
        return None


@family_task(TapasBackbone, "MaskedLM", "TapasForMaskedLM")
class TapasMaskedLM(_TablePreprocessing, MaskedLM):
    pass


@family_task(TapasBackbone, "TextClassifier", "TapasForSequenceClassification")
class TapasTextClassifier(_TablePreprocessing, TextClassifier):
    """Table entailment (TabFact): BERT's pooler (dense + tanh on [CLS]) and a linear classifier."""


class CellSelectionHead(keras.layers.Layer):
    """Token and column scores: two (hidden,) weight vectors with scalar biases."""

    def __init__(self, hidden_size, initializer_range=0.02, **kwargs):
        super().__init__(**kwargs)
        self.hidden_size = hidden_size
        self.initializer_range = initializer_range

    def build(self, input_shape=None):
        init = keras.initializers.TruncatedNormal(stddev=self.initializer_range)
        self.output_weights = self.add_weight(shape=(self.hidden_size,), initializer=init, name="output_weights")
        self.output_bias = self.add_weight(shape=(), initializer="zeros", name="output_bias")
        self.column_output_weights = self.add_weight(shape=(self.hidden_size,), initializer=init,
                                                     name="column_output_weights")
        self.column_output_bias = self.add_weight(shape=(), initializer="zeros", name="column_output_bias")
        self.built = True

    def call(self, hidden):
        token = ops.einsum("bsh,h->bs", hidden, ops.cast(self.output_weights, hidden.dtype))
        column = ops.einsum("bsh,h->bs", hidden, ops.cast(self.column_output_weights, hidden.dtype))
        return (token + ops.cast(self.output_bias, hidden.dtype),
                column + ops.cast(self.column_output_bias, hidden.dtype))

    def get_config(self):
        config = super().get_config()
        config.update(hidden_size=self.hidden_size, initializer_range=self.initializer_range)
        return config


def select_cells(token_logits, column_token_logits, token_type_ids, attention_mask, max_rows, max_columns,
                 allow_empty_column_selection):
    """Transformers' inference-time cell selection, on (batch, seq) token scores.

    Cells are the tokens sharing (row, column) ids (clipped to the table limits). Each token gets
    its cell's mean logit; the column scores are the mean over the column's cells of their mean
    column logit (weighted by the share of real tokens in the cell); columns without cells (and
    column 0 unless ``allow_empty_column_selection``) get LOG_ZERO; the best column is chosen and
    every token outside its cells (and outside real cells) is pushed down by LOG_ZERO."""
    dtype = token_logits.dtype
    same = ops.cast(same_cell(token_type_ids, max_rows, max_columns), dtype)
    count = ops.sum(same, axis=-1)  # tokens in each token's cell (>= 1: itself)

    def cell_mean(values):
        return ops.einsum("bij,bj->bi", same, values) / count

    cell_mask = cell_mean(ops.cast(attention_mask, dtype))
    cell_logits = cell_mean(token_logits)
    cell_column_logits = cell_mean(column_token_logits)
    column = ops.minimum(token_type_ids[..., COLUMN], max_columns - 1)
    # sums over distinct cells, as sums over tokens weighted by 1 / (tokens in the cell)
    one_hot = ops.one_hot(column, max_columns, dtype=dtype)
    cells_count = ops.einsum("bsc,bs->bc", one_hot, cell_mask / count)
    column_logits = ops.einsum("bsc,bs->bc", one_hot, cell_column_logits * cell_mask / count)
    column_logits = column_logits / (cells_count + EPS)
    ids = ops.arange(max_columns)[None, :]
    empty = ops.logical_and(ops.less(cells_count, 0.5), ops.not_equal(ids, 0))
    column_logits = column_logits + LOG_ZERO * ops.cast(empty, dtype)
    if not allow_empty_column_selection:
        column_logits = column_logits + LOG_ZERO * ops.cast(ops.equal(ids, 0), dtype)
    selected = ops.argmax(column_logits, axis=-1)
    in_selected = ops.logical_and(ops.equal(column, ops.cast(selected, column.dtype)[:, None]),
                                  ops.not_equal(column, 0))
    return cell_logits + LOG_ZERO * (1.0 - cell_mask * ops.cast(in_selected, dtype))


# config.json keys of the question-answering head (Transformers' defaults)
QA_KEYS = {"num_aggregation_labels": 0, "temperature": 1.0, "select_one_column": True,
           "allow_empty_column_selection": False, "max_num_rows": 64, "max_num_columns": 32,
           "aggregation_labels": None, "no_aggregation_label_index": None}


@family_task(TapasBackbone, "TableQuestionAnswerer", "TapasForQuestionAnswering")
class TapasTableQuestionAnswerer(_TablePreprocessing, TableQuestionAnswerer):
    """TapasForQuestionAnswering: ``{"logits"}`` (batch, seq) and, with an aggregation head,
    ``"logits_aggregation"`` (batch, num_aggregation_labels)."""

    hf_head_patterns = ("output_weights", "output_bias", "column_output_weights", "column_output_bias",
                        "aggregation_classifier.*")

    def __init__(self, backbone, num_aggregation_labels=0, temperature=1.0, select_one_column=True,
                 allow_empty_column_selection=False, max_num_rows=64, max_num_columns=32,
                 aggregation_labels=None, no_aggregation_label_index=None, preprocessor=None, **kwargs):
        super().__init__(backbone, preprocessor=preprocessor, **kwargs)
        check_qa_config(dict(num_aggregation_labels=num_aggregation_labels, temperature=temperature,
                             select_one_column=select_one_column, max_num_rows=max_num_rows,
                             max_num_columns=max_num_columns,
                             allow_empty_column_selection=allow_empty_column_selection),
                        f"{type(self).__name__} arguments")
        self.num_aggregation_labels = int(num_aggregation_labels)
        self.temperature = float(temperature)
        self.select_one_column = select_one_column
        self.allow_empty_column_selection = bool(allow_empty_column_selection)
        self.max_num_rows, self.max_num_columns = int(max_num_rows), int(max_num_columns)
        self.aggregation_labels = ({int(k): v for k, v in aggregation_labels.items()}
                                   if aggregation_labels else None)
        self.no_aggregation_label_index = no_aggregation_label_index
        b = backbone
        init = keras.initializers.TruncatedNormal(stddev=b.initializer_range)
        self.dropout = keras.layers.Dropout(b.dropout_rate, dtype=b.dtype_policy)
        self.cells = CellSelectionHead(b.hidden_size, b.initializer_range, name="cell_selection",
                                       dtype=b.dtype_policy)
        self.pooler = self.aggregation = None
        if self.num_aggregation_labels:
            self.pooler = keras.layers.Dense(b.hidden_size, activation="tanh", kernel_initializer=init,
                                             name="pooler", dtype=b.dtype_policy)
            self.aggregation = keras.layers.Dense(self.num_aggregation_labels, kernel_initializer=init,
                                                  name="aggregation_classifier", dtype=b.dtype_policy)

    @classmethod
    def task_config_from_hf(cls, hf, head_from_checkpoint, **kwargs):
        check_qa_config(hf, "config.json")
        for key, default in QA_KEYS.items():
            if key not in kwargs:
                value = hf.get(key)
                kwargs[key] = default if value is None else value
        return kwargs

    def task_config_to_hf(self):
        out = {k: getattr(self, k) for k in QA_KEYS}
        if out["aggregation_labels"] is not None:
            out["aggregation_labels"] = {str(k): v for k, v in out["aggregation_labels"].items()}
        return out

    def get_config(self):
        config = super().get_config()
        config.update({k: getattr(self, k) for k in QA_KEYS})
        return config

    def call(self, inputs, training=False):
        if not isinstance(inputs, dict):
            inputs = {"input_ids": inputs}
        b = self.backbone
        hidden = b(inputs, training=training)
        token_types = b.token_types(inputs)
        mask = inputs.get("attention_mask")
        if mask is None:
            mask = ops.ones(ops.shape(inputs["input_ids"]), hidden.dtype)
        token_logits, column_token_logits = self.cells(self.dropout(hidden, training=training))
        token_logits = token_logits / self.temperature
        logits = select_cells(token_logits, column_token_logits, token_types, mask, self.max_num_rows,
                              self.max_num_columns, self.allow_empty_column_selection)
        out = {"logits": logits}
        if self.aggregation is not None:
            out["logits_aggregation"] = self.aggregation(self.pooler(hidden[:, 0]))
        return out

    def head_rules(self):
        c = self.cells
        r = [Rule("output_weights", c.output_weights, base=False),
             Rule("output_bias", c.output_bias, base=False),
             Rule("column_output_weights", c.column_output_weights, base=False),
             Rule("column_output_bias", c.column_output_bias, base=False)]
        if self.aggregation is not None:
            r += dense_rules("pooler.dense", self.pooler, base=True)
            r += dense_rules("aggregation_classifier", self.aggregation, base=False)
        return r

    # --- post-processing ------------------------------------------------------------------------
    def predict_answer_coordinates(self, inputs, outputs=None, cell_classification_threshold=0.5):
        """Answer cells per example, as ``TapasTokenizer.convert_logits_to_predictions``:
        ``(coordinates, aggregation_indices)``, ``coordinates[i]`` a sorted list of (row, column)
        of the table's data cells (0-based: the header row and the question excluded) whose mean
        token probability exceeds ``cell_classification_threshold``; ``aggregation_indices`` the
        argmax of ``logits_aggregation`` per example (None without an aggregation head)."""
        if outputs is None:
            outputs = self.predict_on_batch(inputs)
        return answer_coordinates(inputs, outputs, cell_classification_threshold)


def answer_coordinates(inputs, outputs, cell_classification_threshold=0.5):
    """``TableQuestionAnswerer.predict_answer_coordinates`` on given outputs (numpy only)."""
    logits = np.asarray(ops.convert_to_numpy(outputs["logits"]), np.float32)
    token_types = np.asarray(ops.convert_to_numpy(inputs["token_type_ids"]))
    mask = inputs.get("attention_mask")
    mask = np.ones(logits.shape) if mask is None else np.asarray(ops.convert_to_numpy(mask))
    coordinates = [answer_cells(lg, tt, m, cell_classification_threshold)
                   for lg, tt, m in zip(logits, token_types, mask)]
    aggregation = None
    if outputs.get("logits_aggregation") is not None:
        aggregation = np.argmax(ops.convert_to_numpy(outputs["logits_aggregation"]), axis=-1).tolist()
    return coordinates, aggregation


def answer_cells(logits, token_types, mask, threshold=0.5):
    """Sorted (row, column) of one example's data cells (segment 1, row and column ids > 0, shifted
    to 0-based) whose mean token probability (sigmoid of the logits, times the attention mask) is
    above ``threshold``. Unlike Transformers, an example without any table token gives an empty
    list instead of being left out of the batch's list."""
    logits = np.maximum(np.asarray(logits, np.float32), np.float32(-88.7))  # exp stays finite
    probabilities = (1 / (1 + np.exp(-logits)) * mask).tolist()
    segment, column, row = token_types[:, 0], token_types[:, COLUMN], token_types[:, ROW]
    cells = {}
    for i in np.flatnonzero((segment == 1) & (column > 0) & (row > 0)):
        cells.setdefault((int(row[i]) - 1, int(column[i]) - 1), []).append(probabilities[i])
    return sorted(cell for cell, p in cells.items() if np.array(p).mean() > threshold)


def check_qa_config(config, source):
    """ConfigError for question-answering keys we cannot honour (naming the key)."""
    if config.get("select_one_column") is False:
        raise ConfigError(f"{source}: select_one_column=False is not implemented (Transformers' "
                          "TapasForQuestionAnswering cannot compute inference logits without column selection)")
    for key in ("max_num_rows", "max_num_columns"):
        value = config.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or not 0 < value < 2**31):
            raise ConfigError(f"{source}: {key} must be a positive integer below 2**31, got {value!r}")
    value = config.get("num_aggregation_labels")
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 2**31):
        raise ConfigError(f"{source}: num_aggregation_labels must be an integer in [0, 2**31), got {value!r}")
    value = config.get("temperature")
    if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))
                              or not np.isfinite(value) or value <= 0):
        raise ConfigError(f"{source}: temperature must be a positive number, got {value!r}")
    for key in ("select_one_column", "allow_empty_column_selection"):
        value = config.get(key)
        if value is not None and not isinstance(value, bool):
            raise ConfigError(f"{source}: {key} must be true or false, got {value!r}")


__all__ = ["TapasMaskedLM", "TapasTextClassifier", "TapasTableQuestionAnswerer", "select_cells", "answer_cells",
           "answer_coordinates"]

"""TableQuestionAnswerer: question answering over a table by selecting cells (TAPAS).

The inputs are a tokenized (question, table) pair with Transformers' names: ``input_ids``,
``attention_mask`` and ``token_type_ids`` (batch, seq, 7), the seventh axis holding the table
structure (segment, column, row, previous label, column rank, inverse column rank, numeric
relation), as Transformers' ``TapasTokenizer`` writes them. Calling the model returns a dict:

* ``logits`` (batch, seq): cell-selection logits per token (every token of a cell carries the
  cell's mean logit; cells outside the selected column and non-table tokens are pushed towards
  -10000, as in Transformers);
* ``logits_aggregation`` (batch, num_aggregation_labels): only for checkpoints with an
  aggregation head (WTQ, WikiSQL: NONE / SUM / AVERAGE / COUNT).

``km.TableQuestionAnswerer.from_preset(folder)`` resolves the family's subclass from config.json
(``TapasForQuestionAnswering``). ``predict_answer_coordinates`` turns the outputs into answer
cells, as ``TapasTokenizer.convert_logits_to_predictions`` does. There is no default training
loss (Transformers' hierarchical cell-selection loss is not implemented): compile() with one.
"""

import keras

from keras_models.tasks.task import Task


@keras.saving.register_keras_serializable(package="keras_models")
class TableQuestionAnswerer(Task):
    task_name = "TableQuestionAnswerer"


__all__ = ["TableQuestionAnswerer"]

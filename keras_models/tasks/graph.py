"""GraphClassifier: graph-level classification or regression (Graphormer).

Inputs are the padded arrays of Transformers' Graphormer data collator, under its names
(``input_nodes``, ``input_edges``, ``attn_bias``, ``in_degree``, ``out_degree``, ``spatial_pos``,
``attn_edge_type``): ``km.models.GraphormerCollator`` makes them from graph dicts in numpy.
Calling the model returns the logits (batch, num_classes), one row per graph.

``num_classes`` is 1 for regression, the number of classes for single-task classification, or
the number of binary tasks. The default training loss follows Transformers: mean squared error
for one output, sparse categorical cross-entropy on the logits otherwise (``compile()`` with a
binary cross-entropy for multi-task binary labels).
"""

import keras

from keras_models.tasks.task import Task


@keras.saving.register_keras_serializable(package="keras_models")
class GraphClassifier(Task):
    task_name = "GraphClassifier"

    def default_loss(self):
        if getattr(self, "num_classes", None) == 1:
            return keras.losses.MeanSquaredError()
        return keras.losses.SparseCategoricalCrossentropy(from_logits=True)


__all__ = ["GraphClassifier"]

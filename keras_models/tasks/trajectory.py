"""TrajectoryPredictor: offline reinforcement-learning sequence models (Decision Transformer,
Trajectory Transformer).

Trajectory Transformer (``TrajectoryTransformerModel``) takes discretised ``trajectories``
(batch, seq) with optional ``targets`` and ``attention_mask`` and returns ``{"logits"}`` (plus
``"loss"`` with targets): see keras_models/models/trajectory_transformer. Decision Transformer:

Inputs are a dict with Transformers' names: ``states`` (batch, steps, state_dim), ``actions``
(batch, steps, act_dim), ``returns_to_go`` (batch, steps, 1), ``timesteps`` (batch, steps) int
and optionally ``attention_mask`` (batch, steps; 1 = real step; all ones when absent;
``rewards`` is accepted and unused, as in Transformers). Calling the model returns Transformers'
predictions as a dict: ``state_preds`` (batch, steps, state_dim), ``action_preds`` (batch, steps,
act_dim) and ``return_preds`` (batch, steps, 1).

``km.TrajectoryPredictor.from_preset(folder)`` resolves the family's subclass from config.json
(``DecisionTransformerModel``). Subclasses implement ``call`` and ``head_rules``. There is no
default training loss: ``compile()`` with a loss on ``action_preds`` (the paper's MSE on actions).
"""

import keras

from keras_models.tasks.task import Task


@keras.saving.register_keras_serializable(package="keras_models")
class TrajectoryPredictor(Task):
    task_name = "TrajectoryPredictor"


__all__ = ["TrajectoryPredictor"]

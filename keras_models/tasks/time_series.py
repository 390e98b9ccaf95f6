"""TimeSeriesForecaster: point forecasts from a time-series backbone.

Inputs are a dict with Transformers' names: ``past_values`` (batch, context_length,
num_input_channels), optionally ``past_observed_mask`` (same shape, 1 = observed, 0 = missing;
all observed when absent). Calling the model returns Transformers' prediction outputs as a dict:
``prediction_outputs`` (batch, prediction_length, num_input_channels), already mapped back to the
data's scale, and the scaler's ``loc`` and ``scale`` (batch, 1, num_input_channels).

``km.TimeSeriesForecaster.from_preset(folder)`` resolves the family's subclass from config.json
(e.g. ``PatchTSTForPrediction``). Subclasses build ``self.head`` and implement ``head_rules`` and
``forecast(hidden)`` (the head's output in the scaled space, (batch, prediction_length, channels)).
There is no default training loss yet: ``compile()`` with a loss on ``prediction_outputs``.
"""

import keras
import numpy as np

from keras_models.errors import InputError
from keras_models.tasks.task import Task


@keras.saving.register_keras_serializable(package="keras_models")
class TimeSeriesForecaster(Task):
    task_name = "TimeSeriesForecaster"

    def call(self, inputs, training=False):
        hidden, loc, scale = self.backbone.encode(inputs, training=training)
        y = self.forecast(hidden, training=training)
        loc, scale = self.output_channels(loc), self.output_channels(scale)
        return {"prediction_outputs": y * scale + loc, "loc": loc, "scale": scale}

    def output_channels(self, x):
        """The forecast channels of a (batch, ..., channels) tensor (all of them by default)."""
        return x


def series_inputs(inputs, num_channels, context_length, who):
    """(past_values, past_observed_mask or None) of an input dict, with shape checks naming the key."""
    if not isinstance(inputs, dict) or "past_values" not in inputs:
        raise InputError(f"{who}: inputs must be a dict with 'past_values' "
                         "(batch, context_length, num_input_channels)")
    values = inputs["past_values"]
    shape = tuple(values.shape)
    if len(shape) != 3 or (shape[1] is not None and shape[1] != context_length) \
            or (shape[2] is not None and shape[2] != num_channels):
        raise InputError(f"{who}: past_values must have shape (batch, {context_length}, {num_channels}) "
                         f"(context_length, num_input_channels), got {shape}")
    mask = inputs.get("past_observed_mask")
    if mask is not None and tuple(mask.shape)[1:] != shape[1:]:
        raise InputError(f"{who}: past_observed_mask must have the shape of past_values {shape}, "
                         f"got {tuple(mask.shape)}")
    return values, mask


def dummy_series(context_length, num_channels):
    return {"past_values": np.zeros((1, context_length, num_channels), "float32")}


__all__ = ["TimeSeriesForecaster", "series_inputs", "dummy_series"]

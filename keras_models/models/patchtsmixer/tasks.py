"""PatchTSMixer forecasting head (PatchTSMixerForPrediction with ``loss="mse"``: a point forecast)."""

import keras
from keras import ops

from keras_models.layers.vision_embeddings import dense_rules
from keras_models.models.patchtsmixer.backbone import PatchTSMixerBackbone
from keras_models.models.registry import register_task
from keras_models.tasks.time_series import TimeSeriesForecaster


@keras.saving.register_keras_serializable(package="keras_models")
@register_task(PatchTSMixerBackbone, "TimeSeriesForecaster", ("PatchTSMixerForPrediction",))
class PatchTSMixerForecaster(TimeSeriesForecaster):
    """Flattens each channel's patch states, projects them to ``prediction_length`` steps (one
    projection shared by the channels) and keeps ``prediction_channel_indices`` (sorted; all
    channels when null), whose loc and scale map the forecast back to the data's scale."""

    hf_head_patterns = ("head.*",)

    def __init__(self, backbone, preprocessor=None, **kwargs):
        super().__init__(backbone, preprocessor=preprocessor, **kwargs)
        s = backbone.spec
        self.projection = keras.layers.Dense(s.prediction_length, name="projection", dtype=self.dtype_policy)
        self.projection.build((None, None, s.d_model * backbone.num_patches))

    def output_channels(self, x):
        idx = self.backbone.spec.prediction_channel_indices
        return x if idx is None else ops.take(x, ops.convert_to_tensor(list(idx), "int32"), axis=-1)

    def forecast(self, hidden, training=False):
        shape = ops.shape(hidden)
        y = self.projection(ops.reshape(hidden, (shape[0], shape[1], shape[2] * shape[3])))
        return self.output_channels(ops.transpose(y, (0, 2, 1)))

    def head_rules(self):
        return dense_rules("head.base_forecast_block", self.projection, base=False)

    def task_config_to_hf(self):
        return {"loss": "mse"}

"""PatchTST forecasting head (PatchTSTForPrediction with ``loss="mse"``: a point forecast)."""

import keras
from keras import ops

from keras_models.layers.vision_embeddings import dense_rules
from keras_models.models.patchtst.backbone import PatchTSTBackbone
from keras_models.models.registry import register_task
from keras_models.tasks.time_series import TimeSeriesForecaster


@keras.saving.register_keras_serializable(package="keras_models")
@register_task(PatchTSTBackbone, "TimeSeriesForecaster", ("PatchTSTForPrediction",))
class PatchTSTForecaster(TimeSeriesForecaster):
    """Pools each channel's patch states (the cls token, mean, max, or all patches flattened),
    projects them to ``prediction_length`` steps (one projection shared by the channels) and maps the forecast back through the scaler's loc and scale."""

    hf_head_patterns = ("head.*",)

    def __init__(self, backbone, preprocessor=None, **kwargs):
        super().__init__(backbone, preprocessor=preprocessor, **kwargs)
        s = backbone.spec
        self.projection = keras.layers.Dense(s.prediction_length, name="projection", dtype=self.dtype_policy)
        width = s.d_model if (s.pooling_type or s.use_cls_token) else s.d_model * backbone.num_patches
        self.projection.build((None, None, width))

    def forecast(self, hidden, training=False):
        s = self.backbone.spec
        if s.use_cls_token:
            pooled = hidden[:, :, 0]
        elif s.pooling_type == "mean":
            pooled = ops.mean(hidden, axis=2)
        elif s.pooling_type == "max":
            pooled = ops.max(hidden, axis=2)
        else:
            shape = ops.shape(hidden)
            pooled = ops.reshape(hidden, (shape[0], shape[1], shape[2] * shape[3]))
        return ops.transpose(self.projection(pooled), (0, 2, 1))

    def head_rules(self):
        return dense_rules("head.projection", self.projection, base=False)

    def task_config_to_hf(self):
        return {"loss": "mse"}

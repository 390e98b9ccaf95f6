"""Informer's distribution head (InformerForPrediction, teacher-forced): the Time Series
Transformer's head (same weights, same parameter maps) plus Transformers' training loss."""

import keras

from keras_models.models.informer.backbone import InformerBackbone
from keras_models.models.informer.distribution import nll_loss
from keras_models.models.registry import register_task
from keras_models.models.time_series_transformer.tasks import TimeSeriesTransformerForecaster


class NLLForecasterMixin:
    """Adds ``"loss"``: Transformers' mean negative log-likelihood of ``future_values`` under the
    predicted distribution, over the steps ``future_observed_mask`` marks observed (all by default)."""

    def call(self, inputs, training=False):
        out = dict(super().call(inputs, training=training))
        out["loss"] = nll_loss(self.backbone.spec.distribution_output, out["params"], inputs["future_values"],
                               out["loc"], out["scale"], inputs.get("future_observed_mask"))
        return out


@keras.saving.register_keras_serializable(package="keras_models")
@register_task(InformerBackbone, "TimeSeriesForecaster", ("InformerForPrediction",))
class InformerForecaster(NLLForecasterMixin, TimeSeriesTransformerForecaster):
    """Given ``future_values`` (teacher forcing), returns ``{"params", "loc", "scale", "loss"}`` as
    InformerForPrediction (see TimeSeriesTransformerForecaster for the parameters' layout)."""

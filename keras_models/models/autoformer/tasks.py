"""Autoformer's distribution head (AutoformerForPrediction, teacher-forced): the Time Series
Transformer's parameter projections read the decoder's seasonal projection plus its trend over the
predicted steps (feature_size wide); Transformers' NLL loss as Informer's."""

import keras

from keras_models.models.autoformer.backbone import AutoformerBackbone
from keras_models.models.informer.tasks import NLLForecasterMixin
from keras_models.models.registry import register_task
from keras_models.models.time_series_transformer.tasks import TimeSeriesTransformerForecaster


@keras.saving.register_keras_serializable(package="keras_models")
@register_task(AutoformerBackbone, "TimeSeriesForecaster", ("AutoformerForPrediction",))
class AutoformerForecaster(NLLForecasterMixin, TimeSeriesTransformerForecaster):
    """Given ``future_values`` (teacher forcing; Autoformer's decoder itself reads only the time
    features of the future steps), returns ``{"params", "loc", "scale", "loss"}`` as
    AutoformerForPrediction (see TimeSeriesTransformerForecaster for the parameters' layout)."""

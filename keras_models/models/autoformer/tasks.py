"""Autoformer's distribution head (AutoformerForPrediction, teacher-forced): the Time Series
Transformer's parameter projections read the decoder's seasonal projection plus its trend over the
predicted steps (feature_size wide); Transformers' NLL loss and generate as Informer's, except that
all steps are drawn at once (the decoder does not read the drawn values)."""

import keras

from keras_models.models.autoformer.backbone import AutoformerBackbone
from keras_models.models.informer.distribution import draw
from keras_models.models.informer.tasks import NLLForecasterMixin
from keras_models.models.registry import register_task
from keras_models.models.time_series_transformer.tasks import TimeSeriesTransformerForecaster


@keras.saving.register_keras_serializable(package="keras_models")
@register_task(AutoformerBackbone, "TimeSeriesForecaster", ("AutoformerForPrediction",))
class AutoformerForecaster(NLLForecasterMixin, TimeSeriesTransformerForecaster):
    """Given ``future_values`` (teacher forcing; Autoformer's decoder itself reads only the time
    features of the future steps), returns ``{"params", "loc", "scale", "loss"}`` as
    AutoformerForPrediction (see TimeSeriesTransformerForecaster for the parameters' layout);
    ``generate`` forecasts without them."""

    def sample_paths(self, feed, do_sample, seed):
        """All steps at once, as Transformers: the decoder reads only the past and the time features."""
        s = self.backbone.spec
        _, d, loc, scale = self.backbone.encode(feed)
        params = self.distribution_params(d)
        if s.input_size == 1:
            params, loc, scale = tuple(q[..., None] for q in params), loc[..., None], scale[..., None]
        return draw(s.distribution_output, params, loc, scale, do_sample, seed)

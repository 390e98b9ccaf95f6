"""Time Series Transformer's distribution head (TimeSeriesTransformerForPrediction, teacher-forced)."""

import keras
from keras import ops

from keras_models.layers.vision_embeddings import dense_rules
from keras_models.models.registry import register_task
from keras_models.models.time_series_transformer.backbone import TimeSeriesTransformerBackbone
from keras_models.tasks.time_series import TimeSeriesForecaster

PARAMS = {"student_t": ("df", "loc", "scale"), "normal": ("loc", "scale"), "negative_binomial": ("total_count", "logits")}


def _squareplus(x):
    return (x + ops.sqrt(ops.square(x) + 4.0)) / 2.0


@keras.saving.register_keras_serializable(package="keras_models")
@register_task(TimeSeriesTransformerBackbone, "TimeSeriesForecaster", ("TimeSeriesTransformerForPrediction",))
class TimeSeriesTransformerForecaster(TimeSeriesForecaster):
    """Given ``future_values`` (teacher forcing), returns ``{"params", "loc", "scale"}`` as
    TimeSeriesTransformerForPrediction: ``params`` is the tuple of the distribution's parameters
    per future step (student_t: df, loc, scale; normal: loc, scale; negative_binomial:
    total_count, logits), each (batch, prediction_length) for ``input_size=1`` else
    (batch, prediction_length, input_size), in the scaled space (loc/scale map them back)."""

    hf_head_patterns = ("parameter_projection.*",)

    def __init__(self, backbone, preprocessor=None, **kwargs):
        super().__init__(backbone, preprocessor=preprocessor, **kwargs)
        s = backbone.spec
        self.param_names = PARAMS[s.distribution_output]
        self.projections = [keras.layers.Dense(s.input_size, name=f"param_{n}", dtype=self.dtype_policy)
                            for n in self.param_names]
        width = getattr(backbone, "head_input_size", s.d_model)  # the width of what encode() gives the head
        for p in self.projections:
            p.build((None, None, width))

    def call(self, inputs, training=False):
        _, d, loc, scale = self.backbone.encode(inputs)
        return {"params": self.distribution_params(d), "loc": loc, "scale": scale}

    def distribution_params(self, d):
        """The distribution's parameters (scaled space) of the head's input ``d`` (batch, steps, width)."""
        raw = dict(zip(self.param_names, (p(d) for p in self.projections)))
        kind = self.backbone.spec.distribution_output
        tiny = 1.1920928955078125e-07  # float32 eps, the scale's floor
        if kind == "student_t":
            params = (2.0 + _squareplus(raw["df"]), raw["loc"], ops.maximum(_squareplus(raw["scale"]), tiny))
        elif kind == "normal":
            params = (raw["loc"], ops.maximum(_squareplus(raw["scale"]), tiny))
        else:
            params = (_squareplus(raw["total_count"]), raw["logits"])
        if self.backbone.spec.input_size == 1:
            params = tuple(p[..., 0] for p in params)
        return params

    def head_rules(self):
        return sum((dense_rules(f"parameter_projection.proj.{i}", p, base=False)
                    for i, p in enumerate(self.projections)), [])

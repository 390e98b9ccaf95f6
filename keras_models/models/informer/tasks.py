"""Informer's distribution head (InformerForPrediction): the Time Series Transformer's head (same
weights, same parameter maps) plus Transformers' training loss and ``generate``."""

import keras
import numpy as np
from keras import ops

from keras_models.errors import InputError
from keras_models.models.informer.backbone import InformerBackbone
from keras_models.models.informer.distribution import draw, nll_loss
from keras_models.models.registry import register_task
from keras_models.models.time_series_transformer.tasks import TimeSeriesTransformerForecaster

GENERATION_KEYS = ("past_values", "past_time_features", "future_time_features")


class NLLForecasterMixin:
    """Adds ``"loss"``: Transformers' mean negative log-likelihood of ``future_values`` under the
    predicted distribution, over the steps ``future_observed_mask`` marks observed (all by default);
    and ``generate``. A negative_binomial head's ``logits`` include log(scale), as Transformers'
    outputs (its other heads' parameters stay in the scaled space)."""

    def call(self, inputs, training=False):
        out = dict(super().call(inputs, training=training))
        kind = self.backbone.spec.distribution_output
        out["loss"] = nll_loss(kind, out["params"], inputs["future_values"], out["loc"], out["scale"],
                               inputs.get("future_observed_mask"))
        if kind == "negative_binomial":  # Transformers returns the logits with log(scale) added (data space)
            total, logits = out["params"]
            out["params"] = (total, logits + ops.log(out["scale"]))
        return out

    def generate(self, inputs, do_sample=True, num_samples=100, seed=None):
        """Forecast paths as Transformers' ``generate``: ``{"sequences"}`` of shape (batch, samples,
        prediction_length[, input_size]). ``inputs`` has no ``future_values`` (the past, the time
        features of the past and future steps, masks and static features). ``do_sample=False``
        gives one path of distribution means (each step's mean fed back as the next input: the
        deterministic counterpart of sampling); otherwise ``num_samples`` paths drawn with ``seed``
        (an int; random when None). Under JAX, wrap it in ``jax.jit`` for speed."""
        s = self.backbone.spec
        missing = [k for k in GENERATION_KEYS if k not in inputs]
        if missing:
            raise InputError(f"{type(self).__name__}.generate: inputs need {missing}")
        n = int(num_samples) if do_sample else 1
        if n < 1:
            raise InputError(f"{type(self).__name__}.generate: num_samples must be >= 1, got {num_samples}")
        seed = int(np.random.randint(0, 2 ** 30)) if seed is None else int(seed)
        feed = {k: ops.repeat(ops.convert_to_tensor(v), n, axis=0) for k, v in inputs.items()
                if k not in ("future_values", "future_observed_mask")}
        shape = (s.prediction_length,) if s.input_size == 1 else (s.prediction_length, s.input_size)
        feed["future_values"] = ops.zeros((ops.shape(feed["past_values"])[0],) + shape, self.compute_dtype)
        paths = self.sample_paths(feed, do_sample, seed)  # (batch * n, prediction_length, input_size)
        if s.input_size == 1:
            paths = paths[..., 0]
        return {"sequences": ops.reshape(paths, (-1, n) + shape)}

    def sample_paths(self, feed, do_sample, seed):
        """Autoregressive paths (Time Series Transformer / Informer decoders): step k re-runs the
        decoder over steps 0..k with the values drawn so far as its lagged inputs."""
        bb, s = self.backbone, self.backbone.spec
        h, _, _, _ = bb.encode(feed)  # the encoder does not read the future
        x, loc, scale = bb.network_inputs(feed)  # loc, scale: (batch, 1, input_size)
        past = ops.cast(feed["past_values"], x.dtype)
        if len(past.shape) == 2:
            past = past[..., None]
        seq = (past - loc) / scale
        c, n_lag, p = s.context_length, s.input_size * len(s.lags_sequence), s.past_length
        drawn = []
        for k in range(s.prediction_length):
            lagged = ops.stack([seq[:, p - lag: p - lag + k + 1] for lag in s.lags_sequence], axis=-1)
            lagged = ops.reshape(lagged, (ops.shape(lagged)[0], k + 1, n_lag))
            d = ops.concatenate([lagged, x[:, c:c + k + 1, n_lag:]], axis=-1)
            d = bb.dec_norm(bb.dec_value(d) + ops.cast(bb.dec_positions[c:c + k + 1], x.dtype))
            for layer in bb.dec_layers:
                d = layer(d, memory=h)
            params = self.distribution_params(d[:, -1:])
            if s.input_size == 1:
                params = tuple(q[..., None] for q in params)
            y = draw(s.distribution_output, params, loc, scale, do_sample, seed + 2 * k)
            drawn.append(y)
            seq = ops.concatenate([seq, (y - loc) / scale], axis=1)
        return ops.concatenate(drawn, axis=1)


@keras.saving.register_keras_serializable(package="keras_models")
@register_task(InformerBackbone, "TimeSeriesForecaster", ("InformerForPrediction",))
class InformerForecaster(NLLForecasterMixin, TimeSeriesTransformerForecaster):
    """Given ``future_values`` (teacher forcing), returns ``{"params", "loc", "scale", "loss"}`` as
    InformerForPrediction (see TimeSeriesTransformerForecaster for the parameters' layout);
    ``generate`` forecasts without them."""

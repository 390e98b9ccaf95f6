"""Negative log-likelihood of Transformers' time-series distribution heads (``loss="nll"``), in
keras.ops: Student-t and Normal in the data's space through the scaler's affine map
(loc + scale * x), Negative Binomial with log(scale) added to its logits; summed over
``input_size`` > 1 (an independent multivariate event) and averaged over the observed future steps
as Transformers' ``weighted_average``."""

import math

from keras import ops

_LANCZOS = (0.99999999999980993, 676.5203681218851, -1259.1392167224028, 771.32342877765313,
            -176.61502916214059, 12.507343278686905, -0.13857109526572012, 9.9843695780195716e-6,
            1.5056327351493116e-7)


def lgamma(x):
    """log Gamma(x) for x > 0 (Lanczos, g = 7), through log Gamma(x + 1) - log x for accuracy near 0."""
    z = x  # Gamma(x + 1) = z! with the series at z
    series = ops.full_like(z, _LANCZOS[0])
    for i, c in enumerate(_LANCZOS[1:], start=1):
        series = series + c / (z + i)
    t = z + 7.5
    lg1 = 0.5 * math.log(2 * math.pi) + (z + 0.5) * ops.log(t) - t + ops.log(series)  # log Gamma(x + 1)
    return lg1 - ops.log(x)


def log_prob(kind, params, target, loc, scale):
    """Elementwise log-likelihood of ``target`` (batch, steps[, input_size]); ``params`` and
    loc/scale are shaped like it (loc/scale broadcast over the steps)."""
    if kind == "negative_binomial":
        total, logits = params
        logits = logits + ops.log(scale)
        lp = (total * ops.log_sigmoid(-logits) + target * ops.log_sigmoid(logits)
              + lgamma(total + target) - lgamma(1.0 + target) - lgamma(total))
        return ops.where(total + target == 0, ops.zeros_like(lp), lp)
    y = (target - loc) / scale
    if kind == "normal":
        mu, sigma = params
        z = (y - mu) / sigma
        lp = -0.5 * ops.square(z) - ops.log(sigma) - 0.5 * math.log(2 * math.pi)
    else:
        df, mu, sigma = params
        z = (y - mu) / sigma
        lp = (lgamma((df + 1.0) / 2.0) - lgamma(df / 2.0) - 0.5 * ops.log(df * math.pi) - ops.log(sigma)
              - (df + 1.0) / 2.0 * ops.log1p(ops.square(z) / df))
    return lp - ops.log(scale)


def nll_loss(kind, params, future_values, loc, scale, observed=None):
    """Transformers' prediction loss: mean negative log-likelihood over the observed future steps
    (for input_size > 1 a step counts when all its dims are observed). loc/scale: (batch, 1) or
    (batch, 1, input_size), as the forecasters return them."""
    target = ops.cast(future_values, params[0].dtype)
    multi = len(target.shape) == 3
    loss = -log_prob(kind, params, target, loc, scale)
    weights = ops.ones_like(target) if observed is None else ops.cast(observed, target.dtype)
    if multi:
        loss, weights = ops.sum(loss, axis=-1), ops.min(weights, axis=-1)
    weighted = ops.where(weights != 0, loss * weights, ops.zeros_like(loss))
    return ops.sum(weighted) / ops.maximum(ops.sum(weights), 1.0)


def draw(kind, params, loc, scale, do_sample, seed):
    """A value in the data's space from the distribution (params shaped like loc/scale after
    broadcasting): its mean when ``do_sample`` is false (Student-t: loc, as df > 2), else a sample
    (``seed``: an int)."""
    import keras

    from keras_models.errors import InputError

    if kind == "negative_binomial":
        total, logits = params
        if do_sample:
            raise InputError("generate: sampling a negative_binomial head is not implemented (no Poisson sampler "
                             "in keras.random); use do_sample=False for the mean path")
        return total * ops.exp(logits) * scale
    mu, sigma = params[-2], params[-1]
    if not do_sample:
        return loc + scale * mu
    z = keras.random.normal(ops.shape(mu), dtype=mu.dtype, seed=seed)
    if kind == "student_t":
        df = params[0]
        chi2 = 2.0 * keras.random.gamma(ops.shape(df), alpha=df / 2.0, dtype=df.dtype, seed=seed + 1)
        z = z * ops.sqrt(df / chi2)
    return loc + scale * (mu + sigma * z)

"""Informer and Autoformer (time series) against tiny random Transformers models: the forecaster's
distribution parameters, loc, scale and loss given ``future_values`` (teacher forcing), the
encoder's and decoder's last hidden states, a Transformers reload of ``save_to_preset``, a .keras
round trip and bad-config errors.

Informer's ProbSparse attention draws keys at random in Transformers (torch.randint, with
replacement); ours uses every key once (see keras_models/models/informer/backbone.py). The
reference is recorded with that draw fixed to all keys, so the two compute the same thing."""

import contextlib
from unittest import mock

import keras
import numpy as np
import pytest

import keras_models as km
from keras_models.errors import ConfigError
from tests.parity import assert_close, hf_reference, jit_under_jax

INFORMER = {
    # ProbSparse with few active queries (sampling_factor 1) in the encoder and the causal decoder,
    # two distilling layers (7 -> 4 -> 2 steps), two target dims, std scaling, static categorical
    # and real features, dynamic real features, a Student-t head, relu
    "prob_distil_static": dict(input_size=2, scaling="std", lags_sequence=[1, 3], num_time_features=1,
                               num_dynamic_real_features=1, num_static_categorical_features=2, cardinality=[3, 5],
                               embedding_dimension=[2, 3], num_static_real_features=1,
                               distribution_output="student_t", activation_function="relu", encoder_layers=3,
                               attention_type="prob", sampling_factor=1, distil=True),
    # plain attention, no distilling, one target dim (counts), mean scaling with an unobserved
    # context, a Negative Binomial head
    "full_mean_negbin": dict(input_size=1, scaling="mean", lags_sequence=[1, 2, 4], num_time_features=1,
                             distribution_output="negative_binomial", encoder_layers=2, attention_type="full",
                             distil=False),
}


def _all_keys(low, high=None, size=None, **kwargs):
    """torch.randint for ProbSparse's key draw, fixed to every key once (its size is always the
    number of keys for self-attention)."""
    import torch

    if high is None:
        low, high = 0, low
    assert tuple(size) == (high - low,), (low, high, size)
    return torch.arange(low, high)


@contextlib.contextmanager
def fixed_key_draw():
    with mock.patch("torch.randint", _all_keys):
        yield


def _series_inputs(kw, seed=1, batch=2, ctx=7, pred=5):
    rng = np.random.default_rng(seed)
    past_len = ctx + max(kw["lags_sequence"])
    shape = () if kw["input_size"] == 1 else (kw["input_size"],)
    n_feat = kw["num_time_features"] + kw.get("num_dynamic_real_features", 0)
    inputs = {
        "past_values": (rng.normal(size=(batch, past_len) + shape) * 2 + 1).astype("float32"),
        "past_time_features": rng.normal(size=(batch, past_len, n_feat)).astype("float32"),
        "past_observed_mask": (rng.random((batch, past_len) + shape) > 0.2).astype("float32"),
        "future_values": (rng.normal(size=(batch, pred) + shape) * 2 + 1).astype("float32"),
        "future_time_features": rng.normal(size=(batch, pred, n_feat)).astype("float32"),
        "future_observed_mask": (rng.random((batch, pred) + shape) > 0.25).astype("float32"),
    }
    if kw["scaling"] == "mean":
        inputs["past_observed_mask"][1, -ctx:] = 0.0
    if kw["distribution_output"] == "negative_binomial":  # counts
        for k in ("past_values", "future_values"):
            inputs[k] = np.abs(np.round(inputs[k]))
    if kw.get("num_static_categorical_features"):
        inputs["static_categorical_features"] = np.array([[0, 4], [2, 1]], "int64")
        inputs["static_real_features"] = rng.normal(size=(batch, 1)).astype("float32")
    return inputs


def _record(folder, hf_cls, inputs):
    import torch
    from transformers.time_series_utils import AffineTransformed

    model = hf_cls.from_pretrained(folder).eval()
    with torch.no_grad():
        out = model(**{k: torch.tensor(v) for k, v in inputs.items()})
    # generate with each draw replaced by the distribution's mean: the deterministic path
    model.config.num_parallel_samples = 1
    mean = lambda self, sample_shape=(): self.mean  # noqa: E731
    with torch.no_grad(), mock.patch.object(AffineTransformed, "sample", mean), \
            mock.patch.object(torch.distributions.NegativeBinomial, "sample", mean):
        paths = model.generate(**{k: torch.tensor(v) for k, v in _generation_inputs(inputs).items()}).sequences
    np.savez(folder / "forecast.npz", loc=out.loc.numpy(), scale=out.scale.numpy(), loss=out.loss.numpy(),
             encoder_last_hidden_state=out.encoder_last_hidden_state.numpy(), mean_path=paths.numpy(),
             **{f"param_{i}": p.numpy() for i, p in enumerate(out.params)})


def _generation_inputs(inputs):
    return {k: v for k, v in inputs.items() if k not in ("future_values", "future_observed_mask")}


def _informer_ref(case):
    import transformers

    kw = INFORMER[case]
    inputs = _series_inputs(kw)

    def build():
        config = transformers.InformerConfig(prediction_length=5, context_length=7, d_model=16, decoder_layers=1,
                                             encoder_ffn_dim=24, decoder_ffn_dim=20, encoder_attention_heads=2,
                                             decoder_attention_heads=4, **kw)
        return transformers.InformerForPrediction(config)

    with fixed_key_draw():
        folder, expected = hf_reference(f"informer_{case}", build, inputs,
                                        extra_save=lambda f, m: _record(f, transformers.InformerForPrediction,
                                                                        inputs))
    expected.update(np.load(folder / "forecast.npz"))
    return folder, inputs, expected


def _keras_round_trip(model, inputs, folder):
    """``.keras`` save and load: the same class and backbone config, the same outputs (one compiled
    call under JAX: eager JAX dispatch of these many small ops is the slow part)."""
    import keras

    model.save(folder / "m.keras")
    restored = keras.saving.load_model(folder / "m.keras")
    assert type(restored) is type(model)
    drop = ("name", "dtype")
    assert {k: v for k, v in restored.backbone.get_config().items() if k not in drop} == {
        k: v for k, v in model.backbone.get_config().items() if k not in drop}
    before, after = jit_under_jax(lambda x: (model(x), restored(x)))(inputs)
    for a, b in zip(keras.tree.flatten(before), keras.tree.flatten(after)):
        np.testing.assert_allclose(keras.ops.convert_to_numpy(b), keras.ops.convert_to_numpy(a), atol=1e-6)


def _check(model, inputs, expected, case):
    out, hidden = jit_under_jax(lambda x: (model(x), model.backbone(x)))(inputs)
    for k in ("loc", "scale", "loss"):
        assert_close(out[k], expected[k], what=f"{case} {k}")
    for i, p in enumerate(out["params"]):
        assert_close(p, expected[f"param_{i}"], what=f"{case} params[{i}]")
    assert_close(hidden["encoder_last_hidden_state"], expected["encoder_last_hidden_state"], what=f"{case} encoder")
    assert_close(hidden["last_hidden_state"], expected["last_hidden_state"], what=f"{case} decoder")
    gen = _generation_inputs(inputs)
    mean_path = jit_under_jax(lambda x: model.generate(x, do_sample=False)["sequences"])(gen)
    assert_close(mean_path, expected["mean_path"], what=f"{case} generate (mean path)")


def _check_sampling(model, inputs, expected):
    """Drawn paths: their shape, finite, different from each other (the draws are random, so only
    the mean path is compared with Transformers)."""
    sampled = jit_under_jax(lambda x: model.generate(x, num_samples=3, seed=7)["sequences"])(_generation_inputs(inputs))
    sampled = np.asarray(keras.ops.convert_to_numpy(sampled))
    assert sampled.shape == (2, 3) + expected["mean_path"].shape[2:] and np.isfinite(sampled).all()
    assert np.abs(sampled[:, 0] - sampled[:, 1]).max() > 0


@pytest.mark.parametrize("case", sorted(INFORMER))
@pytest.mark.one_case_per_pass("case")  # jax and tensorflow one case each (all verified on all three)
def test_informer_parity(case, tmp_path):
    folder, inputs, expected = _informer_ref(case)
    model = km.TimeSeriesForecaster.from_preset(folder)
    assert type(model).__name__ == "InformerForecaster"
    _check(model, inputs, expected, case)
    if case == "prob_distil_static" and keras.backend.backend() != "jax":  # jax: compile time; passed there once
        _keras_round_trip(model, inputs, tmp_path)


def test_informer_config_errors():
    base = {"model_type": "informer", "prediction_length": 4}
    for key, value in (("attention_type", "local"), ("sampling_factor", 0), ("loss", "mse"), ("distil", "yes"),
                       ("distribution_output", "gamma"), ("d_model", 15), ("num_time_features", -1)):
        with pytest.raises(ConfigError, match=key):
            km.models.InformerBackbone.config_kwargs({**base, key: value})


def test_informer_reloads_in_transformers(tmp_path):
    import torch
    import transformers

    folder, inputs, expected = _informer_ref("prob_distil_static")
    km.TimeSeriesForecaster.from_preset(folder).save_to_preset(tmp_path / "saved")
    model, info = transformers.InformerForPrediction.from_pretrained(tmp_path / "saved", output_loading_info=True)
    missing = [k for k in info["missing_keys"] if not k.endswith("num_batches_tracked")]
    assert not missing and not info["unexpected_keys"] and not info["mismatched_keys"], info
    with torch.no_grad(), fixed_key_draw():
        out = model.eval()(**{k: torch.tensor(v) for k, v in inputs.items()})
    for k in ("loc", "scale", "loss", "encoder_last_hidden_state"):
        assert_close(getattr(out, k).numpy(), expected[k], what=f"round trip {k}")
    for i, p in enumerate(out.params):
        assert_close(p.numpy(), expected[f"param_{i}"], what=f"round trip params[{i}]")


AUTOFORMER = {
    # two target dims, std scaling, static and dynamic features, Student-t, relu; 8 decoder steps
    # over 7 encoder steps (Transformers' cut-and-pad cross-correlation), 4 decoder heads over a
    # batch of 2 (its per-row delays come from series row mod batch)
    "multi_std_static": dict(input_size=2, scaling="std", lags_sequence=[1, 3], num_time_features=1,
                             num_dynamic_real_features=1, num_static_categorical_features=2, cardinality=[3, 5],
                             embedding_dimension=[2, 3], num_static_real_features=1, distribution_output="student_t",
                             activation_function="relu", label_length=3, prediction_length=5, moving_average=3,
                             autocorrelation_factor=2, decoder_attention_heads=4),
    # one target dim, mean scaling with an unobserved context, Normal; 7 decoder steps, a wider average
    "uni_mean_normal": dict(input_size=1, scaling="mean", lags_sequence=[1, 2, 4], num_time_features=1,
                            distribution_output="normal", label_length=4, prediction_length=3, moving_average=5,
                            autocorrelation_factor=3, decoder_attention_heads=2),
}


def _autoformer_ref(case):
    import transformers

    kw = AUTOFORMER[case]
    inputs = _series_inputs(kw, pred=kw["prediction_length"])

    def build():
        config = transformers.AutoformerConfig(context_length=7, d_model=16, encoder_layers=2, decoder_layers=1,
                                               encoder_ffn_dim=24, decoder_ffn_dim=20, encoder_attention_heads=2,
                                               **kw)
        return transformers.AutoformerForPrediction(config)

    folder, expected = hf_reference(f"autoformer_{case}", build, inputs,
                                    extra_save=lambda f, m: _record(f, transformers.AutoformerForPrediction, inputs))
    expected.update(np.load(folder / "forecast.npz"))
    return folder, inputs, expected


@pytest.mark.parametrize("case", sorted(AUTOFORMER))
@pytest.mark.one_case_per_pass("case")  # jax and tensorflow one case each (all verified on all three)
def test_autoformer_parity(case, tmp_path):
    folder, inputs, expected = _autoformer_ref(case)
    model = km.TimeSeriesForecaster.from_preset(folder)
    assert type(model).__name__ == "AutoformerForecaster"
    _check(model, inputs, expected, case)
    _check_sampling(model, inputs, expected)  # Student-t or Normal draws (Informer's loop shares them)
    if case == "uni_mean_normal":
        _keras_round_trip(model, inputs, tmp_path)


def test_autoformer_config_errors():
    base = {"model_type": "autoformer", "prediction_length": 4, "context_length": 8, "label_length": 4}
    for key, value in (("moving_average", 4), ("label_length", 9), ("autocorrelation_factor", 9),
                       ("autocorrelation_factor", 0), ("loss", "mse")):
        with pytest.raises(ConfigError, match=key):
            km.models.AutoformerBackbone.config_kwargs({**base, key: value})


def test_autoformer_reloads_in_transformers(tmp_path):
    import torch
    import transformers

    folder, inputs, expected = _autoformer_ref("multi_std_static")
    km.TimeSeriesForecaster.from_preset(folder).save_to_preset(tmp_path / "saved")
    model, info = transformers.AutoformerForPrediction.from_pretrained(tmp_path / "saved", output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"], info
    with torch.no_grad():
        out = model.eval()(**{k: torch.tensor(v) for k, v in inputs.items()})
    for k in ("loc", "scale", "loss", "encoder_last_hidden_state"):
        assert_close(getattr(out, k).numpy(), expected[k], what=f"round trip {k}")
    for i, p in enumerate(out.params):
        assert_close(p.numpy(), expected[f"param_{i}"], what=f"round trip params[{i}]")

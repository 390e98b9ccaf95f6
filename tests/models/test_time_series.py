"""Time-series forecasters (PatchTST, PatchTSMixer, Time Series Transformer) against tiny random Transformers models: the backbone's
last hidden state and the forecaster's prediction_outputs / loc / scale, and a Transformers
reload of ``save_to_preset``."""

import numpy as np
import pytest

import keras_models as km
from keras_models.errors import ConfigError, InputError
from tests.parity import assert_close, hf_reference, jit_under_jax

OUTPUTS = ("prediction_outputs", "loc", "scale")

PATCHTST = {
    # std scaling with missing values, post-norm BatchNorm, channel attention, per-channel
    # embeddings, overlapping patches with a dropped oldest step, flattened patches, no FF biases
    "std_batchnorm": dict(num_input_channels=3, scaling="std", norm_type="batchnorm", pre_norm=False,
                          channel_attention=True, share_embedding=False, pooling_type=None, patch_length=4,
                          patch_stride=3, activation_function="relu", bias=False),
    # mean scaling (one series unobserved: the batch's default scale), pre-norm LayerNorm, a cls
    # token, learned positions, max pooling ignored for the cls token
    "mean_layernorm_cls": dict(num_input_channels=2, scaling="mean", norm_type="layernorm", use_cls_token=True,
                               positional_encoding_type="random", pooling_type="max", patch_length=5,
                               patch_stride=5, norm_eps=1e-6),
}


PATCHTSMIXER = {
    # channel mixing, self-attention (2 heads) beside the patch MLP, BatchNorm, learned positions,
    # mean scaling with an unobserved series, overlapping patches, a forecast of channels 2 and 0
    "mix_attn_batchnorm": dict(num_input_channels=3, mode="mix_channel", self_attn=True, self_attn_heads=2,
                               norm_mlp="BatchNorm", use_positional_encoding=True,
                               positional_encoding_type="random", scaling="mean", patch_length=4, patch_stride=3,
                               prediction_channel_indices=[2, 0], expansion_factor=3),
    # common channel, LayerNorm, no gates, sincos positions, std scaling (scaling=true)
    "common_layernorm": dict(num_input_channels=2, mode="common_channel", gated_attn=False, norm_mlp="LayerNorm",
                             use_positional_encoding=True, scaling=True, patch_length=5, patch_stride=5,
                             norm_eps=1e-6),
}


def _inputs(seed=0, batch=2, context=16, channels=3, blank=False):
    rng = np.random.default_rng(seed)
    values = (rng.normal(size=(batch, context, channels)) * 3 + 2).astype("float32")
    mask = (rng.random((batch, context, channels)) > 0.2).astype("float32")
    if blank:
        mask[1, :, -1] = 0.0
    return {"past_values": values, "past_observed_mask": mask}


def _build(family, case):
    import transformers

    if family == "patchtst":
        config = transformers.PatchTSTConfig(context_length=16, num_hidden_layers=1, d_model=16,
                                             num_attention_heads=2, ffn_dim=24, prediction_length=5,
                                             **PATCHTST[case])
        return transformers.PatchTSTForPrediction(config)
    config = transformers.PatchTSMixerConfig(context_length=16, num_layers=1, d_model=16, prediction_length=5,
                                             **PATCHTSMIXER[case])
    return transformers.PatchTSMixerForPrediction(config)


def _ref(case, family="patchtst"):
    import transformers

    kwargs = (PATCHTST if family == "patchtst" else PATCHTSMIXER)[case]
    inputs = _inputs(channels=kwargs["num_input_channels"], blank=kwargs["scaling"] == "mean")
    if family == "patchtsmixer":  # PatchTSMixer names the mask observed_mask
        inputs = {"past_values": inputs["past_values"], "observed_mask": inputs["past_observed_mask"]}
    hf_cls = type(_build(family, case))

    def save_outputs(folder, model):  # the forecast outputs, from the saved files
        import torch

        model = hf_cls.from_pretrained(folder).eval()
        with torch.no_grad():
            out = model(**{k: torch.tensor(v) for k, v in inputs.items()})
        np.savez(folder / "forecast.npz", **{k: getattr(out, k).numpy() for k in OUTPUTS})

    folder, expected = hf_reference(f"{family}_{case}", lambda: _build(family, case), inputs,
                                    extra_save=save_outputs)
    expected.update(np.load(folder / "forecast.npz"))
    if "observed_mask" in inputs:  # ours is past_observed_mask for every family
        inputs = {"past_values": inputs["past_values"], "past_observed_mask": inputs["observed_mask"]}
    return folder, inputs, expected


def _check(model, inputs, expected, case):
    # one compiled call under JAX (op-by-op dispatch of this many small ops is the slow part)
    out, hidden = jit_under_jax(lambda x: (model(x), model.backbone(x)))(inputs)
    for k in OUTPUTS:
        assert_close(out[k], expected[k], what=f"{case} {k}")
    assert_close(hidden, expected["last_hidden_state"], what=f"{case} last_hidden_state")


@pytest.mark.parametrize("case", sorted(PATCHTST))
@pytest.mark.one_case_per_pass("case")  # jax and tensorflow one case each (all verified on all three)
def test_patchtst_parity(case):
    folder, inputs, expected = _ref(case)
    model = km.TimeSeriesForecaster.from_preset(folder)
    assert type(model).__name__ == "PatchTSTForecaster"
    _check(model, inputs, expected, case)
    if case == "std_batchnorm":  # errors name the input / key at fault
        with pytest.raises(InputError, match="past_values"):
            model({"past_values": inputs["past_values"][:, :8]})
        with pytest.raises(ConfigError, match="loss"):
            km.models.PatchTSTBackbone.config_kwargs({"model_type": "patchtst", "loss": "nll"})
        with pytest.raises(ConfigError, match="share_projection"):
            km.models.PatchTSTBackbone.config_kwargs({"model_type": "patchtst", "share_projection": False})


@pytest.mark.parametrize("case", sorted(PATCHTSMIXER))
@pytest.mark.one_case_per_pass("case")  # jax and tensorflow one case each (all verified on all three)
def test_patchtsmixer_parity(case):
    folder, inputs, expected = _ref(case, "patchtsmixer")
    model = km.TimeSeriesForecaster.from_preset(folder)
    assert type(model).__name__ == "PatchTSMixerForecaster"
    _check(model, inputs, expected, case)


TST = {
    # two target dims, std scaling, lags 1 and 3, time features, static categorical and real features,
    # a Student-t head, relu
    "multi_std_static": dict(input_size=2, scaling="std", lags_sequence=[1, 3], num_time_features=2,
                             num_static_categorical_features=2, cardinality=[3, 5], embedding_dimension=[2, 3],
                             num_static_real_features=1, distribution_output="student_t",
                             activation_function="relu"),
    # one target dim (2-D values), mean scaling with an unobserved context, a Normal head
    "uni_mean_normal": dict(input_size=1, scaling="mean", lags_sequence=[1, 2, 4], num_time_features=1,
                            distribution_output="normal"),
}


def _tst_ref(case):
    import torch
    import transformers

    kw = TST[case]
    rng = np.random.default_rng(1)
    b, ctx, pred = 2, 6, 4
    past_len = ctx + max(kw["lags_sequence"])
    shape = () if kw["input_size"] == 1 else (kw["input_size"],)
    inputs = {
        "past_values": (rng.normal(size=(b, past_len) + shape) * 2 + 1).astype("float32"),
        "past_time_features": rng.normal(size=(b, past_len, kw["num_time_features"])).astype("float32"),
        "past_observed_mask": (rng.random((b, past_len) + shape) > 0.2).astype("float32"),
        "future_values": (rng.normal(size=(b, pred) + shape) * 2 + 1).astype("float32"),
        "future_time_features": rng.normal(size=(b, pred, kw["num_time_features"])).astype("float32"),
    }
    if kw["scaling"] == "mean":
        inputs["past_observed_mask"][1, -ctx:] = 0.0
    if kw.get("num_static_categorical_features"):
        inputs["static_categorical_features"] = np.array([[0, 4], [2, 1]], "int64")
        inputs["static_real_features"] = rng.normal(size=(b, 1)).astype("float32")

    def build():
        config = transformers.TimeSeriesTransformerConfig(prediction_length=pred, context_length=ctx, d_model=16,
                                                          encoder_layers=1, decoder_layers=1, encoder_ffn_dim=24,
                                                          decoder_ffn_dim=24, encoder_attention_heads=2,
                                                          decoder_attention_heads=2, **kw)
        return transformers.TimeSeriesTransformerForPrediction(config)

    def save_outputs(folder, model):
        model = transformers.TimeSeriesTransformerForPrediction.from_pretrained(folder).eval()
        with torch.no_grad():
            out = model(**{k: torch.tensor(v) for k, v in inputs.items()})
        np.savez(folder / "forecast.npz", loc=out.loc.numpy(), scale=out.scale.numpy(),
                 encoder_last_hidden_state=out.encoder_last_hidden_state.numpy(),
                 **{f"param_{i}": p.numpy() for i, p in enumerate(out.params)})

    folder, expected = hf_reference(f"tst_{case}", build, inputs, extra_save=save_outputs)
    expected.update(np.load(folder / "forecast.npz"))
    return folder, inputs, expected


@pytest.mark.parametrize("case", sorted(TST))
@pytest.mark.one_case_per_pass("case")  # jax and tensorflow one case each (all verified on all three)
def test_time_series_transformer_parity(case):
    folder, inputs, expected = _tst_ref(case)
    model = km.TimeSeriesForecaster.from_preset(folder)
    assert type(model).__name__ == "TimeSeriesTransformerForecaster"
    out, hidden = jit_under_jax(lambda x: (model(x), model.backbone(x)))(inputs)
    for k in ("loc", "scale"):
        assert_close(out[k], expected[k], what=f"{case} {k}")
    for i, p in enumerate(out["params"]):
        assert_close(p, expected[f"param_{i}"], what=f"{case} params[{i}]")
    assert_close(hidden["encoder_last_hidden_state"], expected["encoder_last_hidden_state"], what=f"{case} encoder")
    assert_close(hidden["last_hidden_state"], expected["last_hidden_state"], what=f"{case} decoder")


@pytest.mark.parametrize("family,case", [("patchtst", "std_batchnorm"), ("patchtsmixer", "mix_attn_batchnorm"),
                                         ("time_series_transformer", "multi_std_static")])
def test_time_series_reloads_in_transformers(family, case, tmp_path):
    import torch
    import transformers

    if family == "time_series_transformer":
        folder, inputs, expected = _tst_ref(case)
        hf_cls, feed = transformers.TimeSeriesTransformerForPrediction, inputs
        names = ["loc", "scale"] + [f"param_{i}" for i in range(3)]
    else:
        folder, inputs, expected = _ref(case, family)
        hf_cls = type(_build(family, case))
        mask_name = "past_observed_mask" if family == "patchtst" else "observed_mask"
        feed = {"past_values": inputs["past_values"], mask_name: inputs["past_observed_mask"]}
        names = OUTPUTS
    km.TimeSeriesForecaster.from_preset(folder).save_to_preset(tmp_path / "saved")
    model, info = hf_cls.from_pretrained(tmp_path / "saved", output_loading_info=True)
    # BatchNorm's num_batches_tracked counters are not exported (unused at inference)
    missing = [k for k in info["missing_keys"] if not k.endswith("num_batches_tracked")]
    assert not missing and not info["unexpected_keys"] and not info["mismatched_keys"], info
    with torch.no_grad():
        out = model.eval()(**{k: torch.tensor(v) for k, v in feed.items()})
    for k in names:
        got = out.params[int(k[-1])] if k.startswith("param_") else getattr(out, k)
        assert_close(got.numpy(), expected[k], what=f"{family} round trip {k}")

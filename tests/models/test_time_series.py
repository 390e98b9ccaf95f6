"""Time-series forecasters (PatchTST) against tiny random Transformers models: the backbone's
last hidden state and the forecaster's prediction_outputs / loc / scale, and a Transformers
reload of ``save_to_preset``."""

import numpy as np
import pytest

import keras_models as km
import keras_models.models.patchtst  # noqa: F401  (registers the family)
from keras_models.errors import ConfigError, InputError
from tests.parity import assert_close, hf_reference

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


def _inputs(seed=0, batch=2, context=16, channels=3, blank=False):
    rng = np.random.default_rng(seed)
    values = (rng.normal(size=(batch, context, channels)) * 3 + 2).astype("float32")
    mask = (rng.random((batch, context, channels)) > 0.2).astype("float32")
    if blank:
        mask[1, :, -1] = 0.0
    return {"past_values": values, "past_observed_mask": mask}


def _ref(case):
    import transformers

    kwargs = PATCHTST[case]
    inputs = _inputs(channels=kwargs["num_input_channels"], blank=kwargs["scaling"] == "mean")

    def build():
        config = transformers.PatchTSTConfig(context_length=16, num_hidden_layers=1,
                                             d_model=16, num_attention_heads=2, ffn_dim=24, prediction_length=5,
                                             **kwargs)
        return transformers.PatchTSTForPrediction(config)

    def save_outputs(folder, model):  # the forecast outputs, from the saved files
        import torch

        model = transformers.PatchTSTForPrediction.from_pretrained(folder).eval()
        with torch.no_grad():
            out = model(**{k: torch.tensor(v) for k, v in inputs.items()})
        np.savez(folder / "forecast.npz", **{k: getattr(out, k).numpy() for k in OUTPUTS})

    folder, expected = hf_reference(f"patchtst_{case}", build, inputs, extra_save=save_outputs)
    expected.update(np.load(folder / "forecast.npz"))
    return folder, inputs, expected


@pytest.mark.parametrize("case", sorted(PATCHTST))
def test_patchtst_parity(case):
    folder, inputs, expected = _ref(case)
    model = km.TimeSeriesForecaster.from_preset(folder)
    assert type(model).__name__ == "PatchTSTForecaster"
    out = model(inputs)
    for k in OUTPUTS:
        assert_close(out[k], expected[k], what=f"{case} {k}")
    assert_close(model.backbone(inputs), expected["last_hidden_state"], what=f"{case} last_hidden_state")
    if case == "std_batchnorm":  # errors name the input / key at fault
        with pytest.raises(InputError, match="past_values"):
            model({"past_values": inputs["past_values"][:, :8]})
        with pytest.raises(ConfigError, match="loss"):
            km.models.PatchTSTBackbone.config_kwargs({"model_type": "patchtst", "loss": "nll"})
        with pytest.raises(ConfigError, match="share_projection"):
            km.models.PatchTSTBackbone.config_kwargs({"model_type": "patchtst", "share_projection": False})


def test_patchtst_reloads_in_transformers(tmp_path):
    import torch
    import transformers

    folder, inputs, expected = _ref("std_batchnorm")
    km.TimeSeriesForecaster.from_preset(folder).save_to_preset(tmp_path / "saved")
    model, info = transformers.PatchTSTForPrediction.from_pretrained(tmp_path / "saved", output_loading_info=True)
    # BatchNorm's num_batches_tracked counters are not exported (unused at inference)
    missing = [k for k in info["missing_keys"] if not k.endswith("num_batches_tracked")]
    assert not missing and not info["unexpected_keys"] and not info["mismatched_keys"], info
    with torch.no_grad():
        out = model.eval()(**{k: torch.tensor(v) for k, v in inputs.items()})
    for k in OUTPUTS:
        assert_close(getattr(out, k).numpy(), expected[k], what=f"round trip {k}")

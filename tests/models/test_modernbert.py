"""ModernBERT (backbone and every head) against tiny random Transformers models.

Two configs, each built once per run (every head's model in one cached folder): one with every
bias switched off (Transformers' defaults, ``decoder_bias`` off too, CLS pooling) and one with every
bias on (mean pooling, an untied MLM decoder, another activation, other rope bases and eps).
Three layers with a global layer every second one (global, local, global) and a local window of
4 (2 positions each side) on 9-token, right-padded sequences, so both attention kinds matter."""

import json

import numpy as np
import pytest

import keras_models as km
from tests.models.test_dual_encoders import randomize_weights
from tests.parity import _key, _outputs_to_numpy, assert_close, assert_keras_round_trip, cached_folder, text_inputs

BASE = dict(vocab_size=99, hidden_size=32, intermediate_size=24, num_hidden_layers=3, num_attention_heads=2,
            max_position_embeddings=64, local_attention=4, global_attn_every_n_layers=2, pad_token_id=0,
            bos_token_id=1, cls_token_id=1, eos_token_id=2, sep_token_id=2)
CONFIGS = {
    "no_bias": dict(BASE, decoder_bias=False),
    "bias": dict(BASE, norm_bias=True, attention_bias=True, mlp_bias=True, classifier_bias=True, decoder_bias=True,
                 classifier_pooling="mean", tie_word_embeddings=False, hidden_activation="gelu_new",
                 classifier_activation="silu", global_rope_theta=1000.0, local_rope_theta=50.0, norm_eps=1e-6),
}
TASKS = ("Backbone", "MaskedLM", "TextClassifier", "TokenClassifier", "QuestionAnswerer")
SUFFIX = {"Backbone": "Model", "MaskedLM": "ForMaskedLM", "TextClassifier": "ForSequenceClassification",
          "TokenClassifier": "ForTokenClassification", "QuestionAnswerer": "ForQuestionAnswering"}
INPUTS = text_inputs(batch=2, seq=9, pad_id=0, pad_last=3, token_types=False)


def _hf_model(config, task, seed):
    import torch
    import transformers

    cfg = transformers.ModernBertConfig(**CONFIGS[config], num_labels=2 if task == "QuestionAnswerer" else 3)
    torch.manual_seed(seed)
    return randomize_weights(getattr(transformers, "ModernBert" + SUFFIX[task])(cfg), seed=seed).eval()


def _reference(config):
    """The config's folder: one saved model per task (``<task>/``) and its outputs on INPUTS."""

    def build(tmp):
        import torch

        for seed, task in enumerate(TASKS):
            model = _hf_model(config, task, seed)
            model.save_pretrained(tmp / task)
            with torch.no_grad():
                out = model(**{k: torch.tensor(v) for k, v in INPUTS.items()})
            np.savez(tmp / task / "expected.npz", **_outputs_to_numpy(out))

    key = _key(f"modernbert-{config}", json.dumps(CONFIGS[config], sort_keys=True), TASKS, INPUTS["input_ids"].tobytes(),
               open(__file__).read())
    return cached_folder(key, build)


def _expected(folder, task):
    return dict(np.load(folder / task / "expected.npz"))


CASES = [(config, task) for config in CONFIGS for task in TASKS]


@pytest.mark.one_case_per_pass("task")
@pytest.mark.parametrize("config,task", CASES)
def test_parity(config, task):
    folder = _reference(config)
    expected, mask = _expected(folder, task), INPUTS["attention_mask"]
    cls = km.Backbone if task == "Backbone" else getattr(km, task)
    model = cls.from_preset(folder / task)
    assert type(model).__name__ == "ModernBert" + task
    out = model(INPUTS)
    if task == "Backbone":
        assert_close(out, expected["last_hidden_state"], mask=mask, what=f"{config} backbone")
        return
    assert model.head_from_checkpoint
    if task == "QuestionAnswerer":
        for k in ("start_logits", "end_logits"):
            assert_close(out[k], expected[k], mask=mask, what=f"{config} {k}")
    elif task == "TextClassifier":
        assert_close(out, expected["logits"], what=f"{config} {task}")
    else:
        assert_close(out, expected["logits"], mask=mask, what=f"{config} {task}")


@pytest.mark.parametrize("config,task", [("no_bias", "MaskedLM"), ("bias", "MaskedLM"), ("bias", "TextClassifier")])
def test_save_to_preset_reloads_in_transformers(config, task, tmp_path):
    """Our config.json and exported tensors: Transformers reloads them with nothing missing or
    unexpected and computes the same outputs."""
    import torch
    import transformers

    folder = _reference(config)
    getattr(km, task).from_preset(folder / task).save_to_preset(tmp_path / "saved")
    cls = getattr(transformers, "ModernBert" + SUFFIX[task])
    model, info = cls.from_pretrained(tmp_path / "saved", output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"], info
    assert model.config.layer_types == ["full_attention", "sliding_attention", "full_attention"]
    with torch.no_grad():
        out = model.eval()(**{k: torch.tensor(v) for k, v in INPUTS.items()}).logits.numpy()
    mask = None if task == "TextClassifier" else INPUTS["attention_mask"]
    assert_close(out, _expected(folder, task)["logits"], mask=mask, what=f"{config} {task} round trip")


def test_text_embedder_mean_pools_the_backbone():
    folder = _reference("bias")
    expected = _expected(folder, "Backbone")["last_hidden_state"]
    m = INPUTS["attention_mask"][..., None]
    want = (expected * m).sum(1) / m.sum(1)
    assert_close(km.TextEmbedder.from_preset(folder / "Backbone")(INPUTS), want, what="TextEmbedder")


def test_keras_round_trip(tmp_path):
    """.keras save/load keeps every switch (untied decoder, biases, layer kinds) and weight."""
    model = km.MaskedLM.from_preset(_reference("bias") / "MaskedLM", preprocessor=False)
    assert_keras_round_trip(model, INPUTS, tmp_path, atol=1e-5)


def test_config_reading():
    from keras_models.errors import ConfigError
    from keras_models.models.modernbert import ModernBertSpec

    # hub configs written by Transformers 4: the global-layer period and the two rope bases
    old = dict(BASE, num_hidden_layers=4, global_attn_every_n_layers=3, global_rope_theta=123.0, local_rope_theta=7.0)
    spec = ModernBertSpec.from_hf(old)
    assert spec.layer_types == ("full_attention", "sliding_attention", "sliding_attention", "full_attention")
    assert (spec.global_rope_theta, spec.local_rope_theta) == (123.0, 7.0)
    # Transformers 5: rope_parameters per layer type win over the old keys
    new = dict(old, rope_parameters={"full_attention": {"rope_type": "default", "rope_theta": 5.0},
                                     "sliding_attention": {"rope_type": "default", "rope_theta": 6.0}})
    spec = ModernBertSpec.from_hf(new)
    assert (spec.global_rope_theta, spec.local_rope_theta) == (5.0, 6.0)
    assert ModernBertSpec.from_hf(spec.to_hf()) == spec
    scaled = dict(new, rope_parameters={"full_attention": {"rope_type": "linear", "factor": 2.0, "rope_theta": 5.0}})
    with pytest.raises(ConfigError, match="full_attention"):
        ModernBertSpec.from_hf(scaled)
    with pytest.raises(ConfigError, match="classifier_pooling"):
        ModernBertSpec.from_hf(dict(old, classifier_pooling="max"))
    with pytest.raises(ConfigError, match="layer_types"):
        ModernBertSpec.from_hf(dict(old, layer_types=["full_attention"]))

"""Quantized models (``model.quantize("int8")`` / ``("int4")``) save and reload exactly through
``save_to_preset`` / ``from_preset`` and ``.keras`` files, ``generate`` runs quantized, and checkpoints
quantized by another library (config.json ``quantization_config``) are refused.

Tolerances against fp32 (docs/quantization.md): int8 logits of the tiny Llama stay within
``INT8_REL_TOL`` of the fp32 logits' largest magnitude; the tiny BERT classifier within
``INT8_ABS_TOL_CLS`` (as tests/test_keras_features.py)."""

import json
import shutil

import keras
import numpy as np
import pytest

import keras_models as km
from keras_models.errors import ConfigError
from keras_models.presets.quantization import CONFIG_KEY, QUANT_FILE
from tests.parity import to_numpy
from tests.pipelines.refs import causal_checkpoint
from tests.presets.fixtures import tiny_classifier

INT8_REL_TOL = 0.06  # measured 0.039 (0.161 / 4.17) on jax, torch and tensorflow
INT8_ABS_TOL_CLS = 0.05
IDS = {"input_ids": np.array([[0, 40, 41, 42, 43, 44], [0, 50, 51, 52, 53, 54]], "int32"),
       "attention_mask": np.ones((2, 6), "int32")}


@pytest.fixture(scope="module")
def llama():
    folder = causal_checkpoint()
    model = km.CausalLM.from_preset(folder)
    return folder, to_numpy(model(IDS))


def _quantized_llama(llama, mode):
    model = km.CausalLM.from_preset(llama[0])
    model.quantize(mode)
    return model


def test_int8_classifier_preset_roundtrip_is_exact_and_transformers_reads_float(tmp_path):
    folder, inputs, expected = tiny_classifier()
    model = km.TextClassifier.from_preset(folder)
    model.quantize("int8")
    out = to_numpy(model(inputs))
    assert np.abs(out - expected).max() < INT8_ABS_TOL_CLS
    model.save_to_preset(tmp_path / "q")
    config = json.loads((tmp_path / "q" / "config.json").read_text())
    assert config[CONFIG_KEY]["modes"] == ["int8"] and "quantization_config" not in config
    assert (tmp_path / "q" / QUANT_FILE).is_file()
    reloaded = km.TextClassifier.from_preset(tmp_path / "q")
    assert {layer.quantization_mode for layer in reloaded._flatten_layers()} >= {"int8"}
    np.testing.assert_array_equal(to_numpy(reloaded(inputs)), out)
    # model.safetensors holds dequantized float weights: Transformers loads a float model whose
    # logits differ from ours only by Keras' dynamic int8 activation quantization.
    import torch
    import transformers

    hf = transformers.AutoModelForSequenceClassification.from_pretrained(tmp_path / "q").eval()
    with torch.no_grad():
        hf_out = hf(**{k: torch.tensor(v, dtype=torch.long) for k, v in inputs.items()}).logits.numpy()
    assert np.abs(hf_out - out).max() < INT8_ABS_TOL_CLS


def test_int8_classifier_keras_file_roundtrip(tmp_path):
    folder, inputs, _ = tiny_classifier()
    model = km.TextClassifier.from_preset(folder)
    model.quantize("int8")
    out = to_numpy(model(inputs))
    model.save(tmp_path / "q.keras")
    reloaded = keras.saving.load_model(tmp_path / "q.keras")
    np.testing.assert_array_equal(to_numpy(reloaded(inputs)), out)


@pytest.fixture(scope="module")
def int8_llama(llama, tmp_path_factory):
    """An int8-quantized tiny Llama, its logits and greedy tokens, saved once as a preset."""
    model = _quantized_llama(llama, "int8")
    folder = tmp_path_factory.mktemp("q8") / "q"
    model.save_to_preset(folder)
    return model, to_numpy(model(IDS)), folder


def test_int8_causal_lm_generates_quantized_and_reloads_exactly(llama, int8_llama, tmp_path):
    model, out, folder = int8_llama
    assert model.lm_head.quantization_mode == "int8"
    assert np.abs(out - llama[1]).max() <= INT8_REL_TOL * np.abs(llama[1]).max()
    tokens = to_numpy(model.generate(IDS, max_new_tokens=4))
    from_preset = km.CausalLM.from_preset(folder)
    np.testing.assert_array_equal(to_numpy(from_preset(IDS)), out)
    np.testing.assert_array_equal(to_numpy(from_preset.generate(IDS, max_new_tokens=4)), tokens)
    model.save(tmp_path / "q.keras")
    from_keras = keras.saving.load_model(tmp_path / "q.keras")
    assert from_keras.lm_head.quantization_mode == "int8"
    np.testing.assert_array_equal(to_numpy(from_keras(IDS)), out)
    # the backbone alone of a quantized task preset loads quantized too
    backbone = km.Backbone.from_preset(folder)
    np.testing.assert_array_equal(to_numpy(backbone(IDS)), to_numpy(model.backbone(IDS)))


def test_int4_causal_lm_preset_and_keras_roundtrips_are_exact(llama, tmp_path):
    model = _quantized_llama(llama, "int4")
    assert model.lm_head.quantization_mode == "int4"
    out = to_numpy(model(IDS))
    model.save_to_preset(tmp_path / "q")
    np.testing.assert_array_equal(to_numpy(km.CausalLM.from_preset(tmp_path / "q")(IDS)), out)
    model.save(tmp_path / "q.keras")
    np.testing.assert_array_equal(to_numpy(keras.saving.load_model(tmp_path / "q.keras")(IDS)), out)


def test_missing_side_file_is_an_error_naming_it(int8_llama, tmp_path):
    from keras_models.errors import PresetError

    shutil.copytree(int8_llama[2], tmp_path / "q")
    (tmp_path / "q" / QUANT_FILE).unlink()
    with pytest.raises(PresetError, match=QUANT_FILE):
        km.CausalLM.from_preset(tmp_path / "q")


@pytest.mark.parametrize("qc", [
    {"quant_method": "gptq", "bits": 4, "group_size": 128},
    {"quant_method": "awq", "bits": 4, "version": "gemm"},
    {"quant_method": "bitsandbytes", "load_in_4bit": True},
    {"load_in_8bit": True},
    {"quant_method": "fp8", "activation_scheme": "dynamic"},
])
def test_prequantized_hub_checkpoint_is_refused_naming_the_key(qc, tmp_path):
    folder = tmp_path / "p"
    shutil.copytree(tiny_classifier()[0], folder)
    config = json.loads((folder / "config.json").read_text())
    config["quantization_config"] = qc
    (folder / "config.json").write_text(json.dumps(config))
    method = qc.get("quant_method", "bitsandbytes")
    for load in (km.TextClassifier.from_preset, km.Backbone.from_preset):
        with pytest.raises(ConfigError) as info:
            load(folder)
        assert "quantization_config" in str(info.value) and method in str(info.value)

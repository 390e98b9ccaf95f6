"""Audio Spectrogram Transformer against a tiny random Transformers ASTForAudioClassification:
our ASTFeatureExtractor's output (two waveforms, one padded and one truncated to max_length)
feeds km.AudioClassifier; odd patching (overlapping frequency patches, gaps in time), no qkv
bias; save_to_preset reloaded by Transformers."""

import numpy as np

import keras_models as km
from tests.parity import assert_close, hf_reference

RNG = np.random.RandomState(2)
WAVES = [RNG.randn(3000).astype("float32") * 0.1, RNG.randn(4000).astype("float32") * 0.1]
EXTRACTOR = dict(num_mel_bins=10, max_length=20)
CONFIG = dict(hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=24, patch_size=4,
              frequency_stride=3, time_stride=5, max_length=20, num_mel_bins=10, qkv_bias=False,
              layer_norm_eps=1e-6, hidden_act="gelu_new", num_labels=3)


def _hf_features():
    from transformers import ASTFeatureExtractor

    return {"input_values": ASTFeatureExtractor(**EXTRACTOR)(WAVES, sampling_rate=16000,
                                                             return_tensors="np")["input_values"]}


def _build():
    import torch
    import transformers

    model = transformers.ASTForAudioClassification(transformers.ASTConfig(**CONFIG))
    with torch.no_grad():  # Transformers initialises the tokens and positions to zeros
        emb = model.audio_spectrogram_transformer.embeddings
        for t in (emb.cls_token, emb.distillation_token, emb.position_embeddings):
            t.copy_(torch.randn_like(t))
    return model


def _save_extractor(folder, model):
    from transformers import ASTFeatureExtractor

    ASTFeatureExtractor(**EXTRACTOR).save_pretrained(folder)


def test_ast_classifier_parity_extractor_and_transformers_reload(tmp_path):
    features = _hf_features()
    folder, expected = hf_reference("audio-ast-cls", _build, features, extra_save=_save_extractor)
    model = km.AudioClassifier.from_preset(folder)
    assert type(model).__name__ == "ASTAudioClassifier" and model.preprocessor is not None
    ours = model.preprocessor(WAVES, sampling_rate=16000)
    assert ours["input_values"].shape == (2, 20, 10)
    np.testing.assert_allclose(ours["input_values"], features["input_values"], atol=1e-4)
    assert_close(model(ours), expected["logits"], atol=1e-4, what="AST logits")
    backbone = km.Backbone.from_preset(folder)
    assert tuple(backbone(features).shape) == (2, 2 + 3 * 4, 16)
    import pytest

    from keras_models.errors import InputError

    with pytest.raises(InputError, match="max_length"):
        backbone({"input_values": features["input_values"][:, :19]})

    import torch
    import transformers

    model.save_to_preset(tmp_path / "saved")
    hf_model = transformers.ASTForAudioClassification.from_pretrained(tmp_path / "saved").eval()
    with torch.no_grad():
        got = hf_model(input_values=torch.tensor(features["input_values"])).logits.numpy()
    np.testing.assert_allclose(got, expected["logits"], atol=1e-5)

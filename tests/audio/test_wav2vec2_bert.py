"""Wav2Vec2-BERT against tiny random Transformers models: CTC / classifier logits and the base
model's last hidden state on a padded batch of filter-bank features with an attention mask, per
position-embedding type (relative_key with clamped distances, relative, rotary), with and without
the intermediate FFN and a two-layer adapter projecting to another width; the SeamlessM4T feature
extractor against Transformers' on waveforms of different lengths; save_to_preset reloaded by
Transformers; a .keras round trip; bad config values named."""

import json

import numpy as np
import pytest

import keras_models as km
from tests.parity import assert_backbone_close, assert_close, hf_reference, to_numpy

RNG = np.random.RandomState(2)
FEATS = RNG.randn(2, 13, 160).astype("float32")
MASK = np.ones((2, 13), "int64")
MASK[1, 8:] = 0
FEATS[1, 8:] = 0.0
INPUTS = {"input_features": FEATS, "attention_mask": MASK}

COMMON = dict(hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=24, vocab_size=10,
              classifier_proj_size=10, num_labels=3, conv_depthwise_kernel_size=5, mask_time_prob=0.0)
CASES = {
    # distances up to 12, clamped at -5 / +3; adapter: 13 -> 7 -> 4 frames at width 24
    "relkey_adapter_ctc": ("Wav2Vec2BertForCTC",
                           dict(position_embeddings_type="relative_key", left_max_position_embeddings=5,
                                right_max_position_embeddings=3, add_adapter=True, num_adapter_layers=2,
                                output_hidden_size=24, use_intermediate_ffn_before_adapter=True,
                                adapter_act="gelu", layer_norm_eps=1e-3)),
    "rel_cls": ("Wav2Vec2BertForSequenceClassification",
                dict(position_embeddings_type="relative", hidden_act="gelu_new", conv_depthwise_kernel_size=3)),
    # Transformers' classifier refuses adapters: the base model checks the adapter's other kernel / stride
    "rotary_adapter_base": ("Wav2Vec2BertModel",
                           dict(position_embeddings_type="rotary", rotary_embedding_base=300, hidden_act="relu",
                                add_adapter=True, adapter_kernel_size=5, adapter_stride=3)),
}


def _builder(case):
    def build():
        import transformers

        arch, extra = CASES[case]
        return getattr(transformers, arch)(transformers.Wav2Vec2BertConfig(**{**COMMON, **extra}))

    return build


def _reference(case):
    return hf_reference(f"audio-w2vbert-{case}", _builder(case), INPUTS)


@pytest.mark.parametrize("case", sorted(CASES))
def test_parity(case):
    folder, expected = _reference(case)
    arch = CASES[case][0]
    if arch == "Wav2Vec2BertModel":
        model = km.Backbone.from_preset(folder)
        assert_close(model.predict_on_batch(INPUTS), expected["last_hidden_state"], what=f"{case} hidden state")
        return
    task = km.SpeechRecognizer if arch.endswith("ForCTC") else km.AudioClassifier
    model = task.from_preset(folder)
    assert type(model).__name__.startswith("Wav2Vec2Bert")
    assert_close(model.predict_on_batch(INPUTS), expected["logits"], what=f"{case} logits")
    assert_backbone_close(model, INPUTS, expected, what=case, hidden=model.backbone.predict_on_batch(INPUTS))


def test_wav2vec2_bert_reloads_in_transformers(tmp_path):
    import torch
    import transformers

    for case in ("relkey_adapter_ctc", "rel_cls"):
        folder, expected = _reference(case)
        arch = CASES[case][0]
        task = km.SpeechRecognizer if arch.endswith("ForCTC") else km.AudioClassifier
        task.from_preset(folder).save_to_preset(tmp_path / case)
        hf_model = getattr(transformers, arch).from_pretrained(tmp_path / case).eval()
        with torch.no_grad():
            got = hf_model(**{k: torch.tensor(v) for k, v in INPUTS.items()})
        np.testing.assert_allclose(got.logits.numpy(), expected["logits"], atol=1e-5)


def test_keras_round_trip(tmp_path):
    """.keras save / load: the same class, backbone config and (compiled) outputs. Compiled calls:
    under jax an eager first call compiles every op one by one (13 s here against 2 s)."""
    import keras

    folder, _ = _reference("relkey_adapter_ctc")
    model = km.SpeechRecognizer.from_preset(folder)
    model.save(tmp_path / "m.keras")
    restored = keras.saving.load_model(tmp_path / "m.keras")
    assert type(restored) is type(model)
    drop = ("name", "dtype")
    assert ({k: v for k, v in restored.backbone.get_config().items() if k not in drop}
            == {k: v for k, v in model.backbone.get_config().items() if k not in drop})
    np.testing.assert_allclose(to_numpy(restored.predict_on_batch(INPUTS)), to_numpy(model.predict_on_batch(INPUTS)),
                               atol=1e-5)


def test_feature_extractor_equals_transformers(tmp_path):
    from transformers import SeamlessM4TFeatureExtractor

    rng = np.random.RandomState(0)
    waves = [rng.randn(2400).astype("float32") * 0.1, rng.randn(1700).astype("float32") * 0.1]
    # the default, and the hub checkpoints' padding_value 1 with another stride
    for i, config in enumerate(({}, {"padding_value": 1.0, "stride": 3})):
        theirs = SeamlessM4TFeatureExtractor(feature_size=80, num_mel_bins=80, **config)
        theirs.save_pretrained(tmp_path / str(i))
        ours = km.AudioFeatureExtractor.from_preset(tmp_path / str(i))
        for kwargs in ({}, {"do_normalize_per_mel_bins": False}):
            want = theirs(waves, sampling_rate=16000, return_tensors="np", **kwargs)
            got = ours(waves, sampling_rate=16000, **kwargs)
            np.testing.assert_array_equal(got["attention_mask"], want["attention_mask"])
            scale = max(1.0, float(np.abs(want["input_features"]).max()))
            np.testing.assert_allclose(got["input_features"], want["input_features"], atol=1e-4 * scale)
        assert got["input_features"].shape[-1] == 80 * theirs.stride


def test_bad_config_is_named(tmp_path):
    from keras_models.errors import ConfigError

    folder, _ = _reference("rel_cls")
    config = json.loads((folder / "config.json").read_text())
    for key, value in (("position_embeddings_type", "alibi"), ("conv_depthwise_kernel_size", 4),
                       ("use_weighted_layer_sum", True), ("left_max_position_embeddings", -1),
                       ("adapter_kernel_size", 10**7)):
        bad = tmp_path / key
        bad.mkdir()
        for f in folder.iterdir():
            (bad / f.name).write_bytes(f.read_bytes())
        (bad / "config.json").write_text(json.dumps({**config, key: value}))
        with pytest.raises(ConfigError, match=key):
            km.Backbone.from_preset(bad)

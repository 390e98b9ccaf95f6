"""Wav2Vec2-like speech encoders against tiny random Transformers models: last_hidden_state, CTC
logits and classifier logits on a padded batch with an attention mask, group / layer conv norms,
do_stable_layer_norm on and off; save_to_preset reloaded by Transformers; CTC decoding."""

import json

import numpy as np
import pytest

import keras_models as km
from tests.parity import assert_close, hf_reference

RNG = np.random.RandomState(0)
WAVES = RNG.randn(2, 400).astype("float32")
MASK = np.ones((2, 400), "int64")
MASK[1, 290:] = 0
WAVES[1, 290:] = 0.0
INPUTS = {"input_values": WAVES, "attention_mask": MASK}
VOCAB = {"<pad>": 0, "<s>": 1, "</s>": 2, "<unk>": 3, "|": 4, "A": 5, "B": 6, "C": 7, "D": 8, "'": 9}

# (case, config class, model class, config kwargs)
COMMON = dict(hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=24,
              conv_dim=(8, 12), conv_kernel=(7, 3), conv_stride=(4, 2), num_conv_pos_embeddings=6,
              num_conv_pos_embedding_groups=2, vocab_size=len(VOCAB), classifier_proj_size=10, num_labels=3,
              hidden_act="gelu_new", conv_bias=True)
CASES = {
    "w2v_group_ctc": ("Wav2Vec2Config", "Wav2Vec2ForCTC", dict(feat_extract_norm="group", do_stable_layer_norm=False)),
    "w2v_layer_stable_ctc": ("Wav2Vec2Config", "Wav2Vec2ForCTC",
                             dict(feat_extract_norm="layer", do_stable_layer_norm=True, num_conv_pos_embeddings=5)),
    "w2v_cls": ("Wav2Vec2Config", "Wav2Vec2ForSequenceClassification", dict(feat_extract_norm="layer")),
    "w2v_base": ("Wav2Vec2Config", "Wav2Vec2Model", dict(feat_extract_norm="group", do_stable_layer_norm=True)),
    "hubert_ctc": ("HubertConfig", "HubertForCTC", dict(feat_extract_norm="layer", do_stable_layer_norm=True)),
    "hubert_cls_noproj_norm": ("HubertConfig", "HubertForSequenceClassification",
                               dict(feat_proj_layer_norm=False, conv_bias=False)),
    "unispeech_ctc": ("UniSpeechConfig", "UniSpeechForCTC", dict(do_stable_layer_norm=True, feat_extract_norm="layer")),
    "unispeech_sat_cls": ("UniSpeechSatConfig", "UniSpeechSatForSequenceClassification", dict()),
}


def _builder(case):
    def build():
        import transformers

        config_cls, model_cls, extra = CASES[case]
        config = getattr(transformers, config_cls)(**{**COMMON, **extra})
        return getattr(transformers, model_cls)(config)

    return build


def _reference(case):
    def extra_save(folder, model):
        (folder / "vocab.json").write_text(json.dumps(VOCAB))
        from transformers import Wav2Vec2CTCTokenizer, Wav2Vec2FeatureExtractor

        Wav2Vec2CTCTokenizer(str(folder / "vocab.json")).save_pretrained(folder)
        Wav2Vec2FeatureExtractor(return_attention_mask=True).save_pretrained(folder)

    return hf_reference(f"audio-{case}", _builder(case), INPUTS, extra_save=extra_save)


@pytest.mark.parametrize("case", sorted(CASES))
def test_parity_and_transformers_reload(case, tmp_path):
    folder, expected = _reference(case)
    arch = CASES[case][1]
    if arch.endswith("ForCTC"):
        model = km.SpeechRecognizer.from_preset(folder)
        key = "logits"
    elif arch.endswith("SequenceClassification"):
        model = km.AudioClassifier.from_preset(folder)
        key = "logits"
    else:
        model = km.Backbone.from_preset(folder)
        key = "last_hidden_state"
    out = model(INPUTS)
    assert_close(out, expected[key], atol=1e-4, what=f"{case} {key}")

    # save_to_preset reloads in Transformers with the same outputs
    import torch
    import transformers

    model.save_to_preset(tmp_path / "saved")
    hf_model = getattr(transformers, arch).from_pretrained(tmp_path / "saved").eval()
    with torch.no_grad():
        got = hf_model(**{k: torch.tensor(v) for k, v in INPUTS.items()})
    np.testing.assert_allclose(getattr(got, key).numpy(), expected[key], atol=1e-5)


def test_ctc_decode_equals_transformers():
    folder, expected = _reference("w2v_group_ctc")
    from transformers import Wav2Vec2CTCTokenizer

    ours = km.Tokenizer.from_preset(folder)
    theirs = Wav2Vec2CTCTokenizer.from_pretrained(folder)
    ids = np.array([[0, 5, 5, 0, 5, 4, 4, 6, 0, 7, 7, 2, 1, 9], [3, 4, 8, 8, 0, 8, 4, 0, 0, 0, 0, 0, 0, 0],
                    list(np.argmax(expected["logits"][0], -1)[:14])])
    for skip in (False, True):
        assert ours.batch_decode(ids, skip_special_tokens=skip) == theirs.batch_decode(ids, skip_special_tokens=skip)
    assert list(ours("AB CA'D")["input_ids"][0]) == theirs("AB CA'D").input_ids


def test_transcribe_and_extractor_from_preset():
    folder, _ = _reference("w2v_group_ctc")
    model = km.SpeechRecognizer.from_preset(folder)
    assert model.tokenizer is not None and model.preprocessor is not None
    texts = model.transcribe([WAVES[0], WAVES[1, :290]], sampling_rate=16000)
    assert len(texts) == 2 and all(isinstance(t, str) for t in texts)


def test_bad_config_is_named(tmp_path):
    from keras_models.errors import ConfigError

    folder, _ = _reference("w2v_base")
    config = json.loads((folder / "config.json").read_text())
    for key, value in (("use_weighted_layer_sum", True), ("feat_extract_norm", "batch"), ("conv_kernel", [3])):
        bad = tmp_path / key
        bad.mkdir()
        for f in folder.iterdir():
            (bad / f.name).write_bytes(f.read_bytes())
        (bad / "config.json").write_text(json.dumps({**config, key: value}))
        with pytest.raises(ConfigError, match=key.split("_")[0]):
            km.Backbone.from_preset(bad)


def test_torch_inference_conv_paths_match_keras():
    """Torch with autograd off (KM_TORCH_FAST_CONV1D): the feature-encoder convs as GEMMs on
    strided views and the cached position conv give the plain Keras path's values."""
    import keras

    if keras.backend.backend() != "torch":
        pytest.skip("torch-only fast path")
    import torch

    from keras_models import torch_kernels

    rng = np.random.RandomState(1)
    for k, s in ((3, 2), (2, 2), (1, 2), (5, 2), (3, 1), (4, 3)):
        x = torch.tensor(rng.randn(2, 23, 8).astype("float32"))
        kernel = torch.tensor(rng.randn(k, 8, 5).astype("float32"))
        bias = torch.tensor(rng.randn(5).astype("float32"))
        want = keras.ops.conv(x, kernel, strides=s) + bias
        with torch.no_grad():
            got = torch_kernels.torch_conv1d_taps(x, torch_kernels.torch_conv1d_taps_weight(kernel, s), bias, s)
        np.testing.assert_allclose(got.numpy(), want.numpy(), atol=1e-5, err_msg=f"kernel {k} stride {s}")

    folder, expected = _reference("w2v_group_ctc")
    model = km.SpeechRecognizer.from_preset(folder)
    try:
        outs = {}
        for fast in (True, False):
            torch_kernels.FAST_CONV1D = fast
            with torch.no_grad():
                outs[fast] = keras.ops.convert_to_numpy(model(INPUTS))
    finally:
        torch_kernels.FAST_CONV1D = True
    np.testing.assert_allclose(outs[True], outs[False], atol=1e-5)
    assert_close(outs[True], expected["logits"], atol=1e-4, what="fast path logits")

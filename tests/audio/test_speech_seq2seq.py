"""Speech seq2seq models against tiny random Transformers models: Speech2Text (conv subsampler +
pre-norm encoder-decoder) encoder states and LM logits on a padded batch (feature mask and decoder
mask), greedy generate equal to Transformers', and save_to_preset reloaded by Transformers."""

import numpy as np
import pytest

import keras_models as km
from tests.parity import assert_close, hf_reference

S2T_EOS, S2T_PAD, S2T_START = 2, 1, 3


def _speech_to_text():
    import torch
    from transformers import Speech2TextConfig, Speech2TextForConditionalGeneration

    # odd options: two input channels, unequal kernels (5, 3), narrow conv channels, gelu, start
    # token != eos, an odd frame count (21) and a padded row (13 frames)
    cfg = Speech2TextConfig(vocab_size=64, d_model=16, encoder_layers=2, decoder_layers=1, encoder_attention_heads=2,
                            decoder_attention_heads=4, encoder_ffn_dim=32, decoder_ffn_dim=24, conv_kernel_sizes=[5, 3],
                            num_conv_layers=2, conv_channels=12, input_feat_per_channel=6, input_channels=2,
                            max_source_positions=30, max_target_positions=24, activation_function="gelu",
                            pad_token_id=S2T_PAD, eos_token_id=S2T_EOS, bos_token_id=0,
                            decoder_start_token_id=S2T_START)
    model = Speech2TextForConditionalGeneration(cfg)
    with torch.no_grad():  # decisive logits; norms and biases off 1 / 0
        for p in model.parameters():
            p.add_(torch.randn_like(p) * (0.3 if p.ndim == 1 else 0.5))
        model.model.decoder.embed_tokens.weight[S2T_EOS] *= 3.0  # some rows stop early
    return model


def _s2t_inputs():
    rng = np.random.RandomState(0)
    feats = rng.randn(2, 21, 12).astype("float32")
    mask = np.array([[1] * 21, [1] * 13 + [0] * 8], "int64")
    dec = np.array([[S2T_START, 5, 17, 33, 9, 40], [S2T_START, 8, 11, S2T_PAD, S2T_PAD, S2T_PAD]], "int64")
    dec_mask = np.array([[1] * 6, [1] * 3 + [0] * 3], "int64")
    return {"input_features": feats, "attention_mask": mask, "decoder_input_ids": dec,
            "decoder_attention_mask": dec_mask}


GREEDY = dict(max_new_tokens=9, do_sample=False, num_beams=1)


def _s2t_generate(folder, model):
    import torch

    inputs = _s2t_inputs()
    with torch.no_grad():
        out = model.generate(input_features=torch.tensor(inputs["input_features"]),
                             attention_mask=torch.tensor(inputs["attention_mask"]), **GREEDY)
    np.save(folder / "greedy.npy", out.numpy())


def _s2t_reference():
    return hf_reference("speech_to_text", _speech_to_text, _s2t_inputs(), extra_save=_s2t_generate)


def test_speech_to_text_matches_transformers():
    folder, expected = _s2t_reference()
    inputs = _s2t_inputs()
    model = km.Seq2SeqLM.from_preset(folder)
    assert type(model).__name__ == "Speech2TextSeq2SeqLM"
    dec_mask = inputs["decoder_attention_mask"]
    assert_close(model(inputs), expected["logits"], mask=dec_mask, what="logits")
    states = model.backbone(inputs)["encoder_last_hidden_state"]
    assert_close(states, expected["encoder_last_hidden_state"], what="encoder")
    greedy = np.load(folder / "greedy.npy")
    out = model.generate(inputs["input_features"], attention_mask=inputs["attention_mask"], **GREEDY)
    np.testing.assert_array_equal(np.asarray(out), greedy)
    assert (greedy == S2T_EOS).any(), "the reference should stop a row early"
    with pytest.raises(ValueError, match="input_features"):
        model.backbone.encode(inputs["input_features"][..., :6])


def test_speech_to_text_save_to_preset_reloads_in_transformers(tmp_path):
    import torch
    from transformers import Speech2TextForConditionalGeneration

    folder, expected = _s2t_reference()
    km.Seq2SeqLM.from_preset(folder).save_to_preset(tmp_path / "saved")
    hf = Speech2TextForConditionalGeneration.from_pretrained(tmp_path / "saved").eval()
    with torch.no_grad():
        logits = hf(**{k: torch.tensor(v) for k, v in _s2t_inputs().items()}).logits.numpy()
    assert_close(logits, expected["logits"], mask=_s2t_inputs()["decoder_attention_mask"], what="reloaded logits")


def test_speech_to_text_feature_extractor(tmp_path):
    """Kaldi-style fbank + utterance CMVN (numpy) equal to Transformers' extractor without
    torchaudio, padded to the longest, to max_length with truncation, and unpadded."""
    import transformers

    from keras_models.models.speech_to_text import Speech2TextFeatureExtractor

    rng = np.random.RandomState(0)
    waves = [rng.randn(n).astype("float32") * 0.1 for n in (8000, 5000, 6173)]
    hf = transformers.Speech2TextFeatureExtractor(feature_size=24, num_mel_bins=24, normalize_vars=False)
    hf.save_pretrained(tmp_path)
    ours = Speech2TextFeatureExtractor.from_preset(tmp_path)
    for kw in (dict(padding=True), dict(padding="max_length", max_length=40, truncation=True)):
        ref = hf(waves, sampling_rate=16000, return_tensors="np", **kw)
        got = ours(waves, sampling_rate=16000, **kw)
        assert_close(got["input_features"], ref["input_features"], what=f"features {kw}")
        np.testing.assert_array_equal(got["attention_mask"], ref["attention_mask"])
    ours.normalize_vars = hf.normalize_vars = True
    ref, got = hf(waves, sampling_rate=16000), ours(waves, sampling_rate=16000, padding=False)
    for a, b in zip(got["input_features"], ref["input_features"]):
        assert_close(a, b, what="unpadded features")

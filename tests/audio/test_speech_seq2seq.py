"""Speech seq2seq models against tiny random Transformers models, on padded audio and decoder
batches: Speech2Text (conv subsampler + pre-norm encoder-decoder) and SpeechEncoderDecoder
(wav2vec2 + BART decoder): encoder / decoder states, LM logits, greedy generate equal to
Transformers'; both exports reloaded by Transformers; Speech2TextFeatureExtractor (numpy)."""

import numpy as np
import pytest

import keras_models as km
from keras_models.errors import ConfigError
from tests.parity import assert_close, hf_reference, to_numpy

S2T_EOS, S2T_PAD, S2T_START = 2, 1, 3


def _speech_to_text():
    from transformers import Speech2TextConfig, Speech2TextForConditionalGeneration

    # odd options: two input channels, unequal kernels (5, 3), narrow conv channels, gelu, start
    # token != eos, an untied head, an odd frame count (21) and a padded row (13 frames)
    cfg = Speech2TextConfig(vocab_size=64, d_model=16, encoder_layers=2, decoder_layers=1, encoder_attention_heads=2,
                            decoder_attention_heads=4, encoder_ffn_dim=32, decoder_ffn_dim=24, conv_kernel_sizes=[5, 3],
                            num_conv_layers=2, conv_channels=12, input_feat_per_channel=6, input_channels=2,
                            max_source_positions=30, max_target_positions=24, activation_function="gelu",
                            pad_token_id=S2T_PAD, eos_token_id=S2T_EOS, bos_token_id=0,
                            decoder_start_token_id=S2T_START, tie_word_embeddings=False)
    return Speech2TextForConditionalGeneration(cfg)


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
    """After the reference's re-initialisation: a likelier end token (so that a row stops early),
    saved again; then Transformers' greedy ids (the recorded logits come after this hook)."""
    import torch

    inputs = _s2t_inputs()
    with torch.no_grad():
        model.lm_head.weight[S2T_EOS] *= 1.5
        model.save_pretrained(folder)
        out = model.generate(input_features=torch.tensor(inputs["input_features"]),
                             attention_mask=torch.tensor(inputs["attention_mask"]), **GREEDY)
    np.save(folder / "greedy.npy", out.numpy())


def _s2t_reference():
    return hf_reference("speech_to_text", _speech_to_text, _s2t_inputs(), extra_save=_s2t_generate, seed=3)


def test_speech_to_text_matches_transformers():
    folder, expected = _s2t_reference()
    inputs = _s2t_inputs()
    model = km.Seq2SeqLM.from_preset(folder)
    assert type(model).__name__ == "Speech2TextSeq2SeqLM"
    dec_mask = inputs["decoder_attention_mask"]
    assert_close(model(inputs), expected["logits"], mask=dec_mask, what="logits")
    out = model.backbone(inputs)
    assert_close(out["encoder_last_hidden_state"], expected["encoder_last_hidden_state"], what="encoder")
    assert_close(out["last_hidden_state"], expected["last_hidden_state"], mask=dec_mask, what="decoder")
    greedy = np.load(folder / "greedy.npy")
    out = model.generate(inputs["input_features"], attention_mask=inputs["attention_mask"], **GREEDY)
    np.testing.assert_array_equal(np.asarray(out), greedy)
    assert (greedy == S2T_EOS).any() and (greedy[0] != greedy[1]).any()  # a row stops early; rows differ
    with pytest.raises(ValueError, match="input_features"):
        model.backbone.encode(inputs["input_features"][..., :6])
    with pytest.raises(ValueError, match="max_source_positions=30"):
        model.backbone.encode(np.zeros((1, 200, 12), "float32"))


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


# --- SpeechEncoderDecoder: wav2vec2 (stable layer norm, layer-norm conv stack) + BART decoder ---------
SED_START, SED_EOS, SED_PAD = 2, 3, 1


def _speech_encoder_decoder():
    import transformers as T

    enc = T.Wav2Vec2Config(hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=24,
                           conv_dim=(8, 12), conv_kernel=(7, 3), conv_stride=(4, 2), num_conv_pos_embeddings=6,
                           num_conv_pos_embedding_groups=2, feat_extract_norm="layer", do_stable_layer_norm=True,
                           conv_bias=True, vocab_size=None)
    # decoder wider than the encoder (enc_to_dec_proj), scaled embeddings, untied head
    dec = T.BartConfig(vocab_size=48, d_model=24, decoder_layers=1, decoder_attention_heads=4, decoder_ffn_dim=32,
                       encoder_layers=1, encoder_attention_heads=2, encoder_ffn_dim=8, max_position_embeddings=32,
                       scale_embedding=True, pad_token_id=SED_PAD, bos_token_id=0, eos_token_id=SED_EOS,
                       forced_eos_token_id=None, dropout=0.0, activation_function="gelu_new",
                       tie_word_embeddings=False)
    cfg = T.SpeechEncoderDecoderConfig.from_encoder_decoder_configs(enc, dec)
    cfg.decoder_start_token_id, cfg.pad_token_id, cfg.eos_token_id = SED_START, SED_PAD, SED_EOS
    return T.SpeechEncoderDecoderModel(cfg)


def _sed_inputs():
    rng = np.random.RandomState(1)
    values = rng.randn(2, 400).astype("float32")
    mask = np.array([[1] * 400, [1] * 250 + [0] * 150], "int64")
    values[1, 250:] = 0.0
    dec = np.array([[SED_START, 5, 17, 33, 9], [SED_START, 8, 11, SED_PAD, SED_PAD]], "int64")
    dec_mask = np.array([[1] * 5, [1] * 3 + [0] * 2], "int64")
    return {"input_values": values, "attention_mask": mask, "decoder_input_ids": dec,
            "decoder_attention_mask": dec_mask}


def _sed_generate(folder, model):
    import torch

    inputs = _sed_inputs()
    with torch.no_grad():
        out = model.generate(inputs=torch.tensor(inputs["input_values"]),
                             attention_mask=torch.tensor(inputs["attention_mask"]), **GREEDY)
    np.save(folder / "greedy.npy", out.numpy())


def _sed_reference():
    return hf_reference("speech-encoder-decoder", _speech_encoder_decoder, _sed_inputs(), extra_save=_sed_generate)


def test_speech_encoder_decoder_matches_transformers(tmp_path):
    folder, expected = _sed_reference()
    inputs = _sed_inputs()
    model = km.Seq2SeqLM.from_preset(folder)
    assert type(model).__name__ == "SpeechEncoderDecoderSeq2SeqLM"
    assert_close(model(inputs), expected["logits"], mask=inputs["decoder_attention_mask"], what="logits")
    out = model.backbone(inputs)
    frames = to_numpy(model.backbone.encoder_mask(inputs["attention_mask"], out["encoder_last_hidden_state"].shape[1]))
    assert_close(out["encoder_last_hidden_state"], expected["encoder_last_hidden_state"], mask=frames, what="encoder")
    greedy = np.load(folder / "greedy.npy")
    got = model.generate(inputs["input_values"], attention_mask=inputs["attention_mask"], **GREEDY)
    np.testing.assert_array_equal(np.asarray(got), greedy)
    assert (greedy[0] != greedy[1]).any()  # the rows follow their own audio
    # the downsampling adapter is refused, naming the key
    import json

    cfg = json.loads((folder / "config.json").read_text())
    cfg["encoder"]["add_adapter"] = True
    (tmp_path / "adapter").mkdir()
    (tmp_path / "adapter" / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ConfigError, match="add_adapter"):
        km.Backbone.from_preset(tmp_path / "adapter")


def test_save_to_preset_reloads_in_transformers(tmp_path):
    """Speech2Text and SpeechEncoderDecoder exports load in Transformers with equal logits."""
    import torch
    import transformers as T

    for name, reference, inputs, cls in (
            ("s2t", _s2t_reference, _s2t_inputs(), T.Speech2TextForConditionalGeneration),
            ("sed", _sed_reference, _sed_inputs(), T.SpeechEncoderDecoderModel)):
        folder, expected = reference()
        km.Seq2SeqLM.from_preset(folder).save_to_preset(tmp_path / name)
        hf = cls.from_pretrained(tmp_path / name).eval()
        with torch.no_grad():
            logits = hf(**{k: torch.tensor(v) for k, v in inputs.items()}).logits.numpy()
        assert_close(logits, expected["logits"], mask=inputs["decoder_attention_mask"], what=f"{name} reloaded logits")

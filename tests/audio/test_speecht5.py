"""SpeechT5 against tiny random Transformers models on padded audio / text batches.

ASR (SpeechT5ForSpeechToText): a layer-norm conv feature encoder with biases and unequal
strides, an even conv position kernel, a relative-position window (5) shorter than the frames
(so the clipping shows), scaled token embeddings, relu feed-forwards, unequal head counts, an untied LM head:
encoder / decoder states, LM logits, greedy generate equal to Transformers'; the export
reloaded by Transformers; a .keras round trip; bad configs refused naming the key."""

import json

import numpy as np
import pytest

import keras_models as km
from keras_models.errors import ConfigError, InputError
from tests.parity import assert_close, hf_reference

EOS, PAD = 2, 1
GREEDY = dict(max_new_tokens=8, do_sample=False, num_beams=1)


def _asr():
    from transformers import SpeechT5Config, SpeechT5ForSpeechToText

    cfg = SpeechT5Config(vocab_size=48, hidden_size=16, encoder_layers=2, decoder_layers=1, encoder_attention_heads=2,
                         decoder_attention_heads=4, encoder_ffn_dim=24, decoder_ffn_dim=20, hidden_act="relu",
                         conv_dim=(8, 12), conv_kernel=(5, 3), conv_stride=(3, 2), conv_bias=True,
                         feat_extract_norm="layer", num_conv_pos_embeddings=6, num_conv_pos_embedding_groups=2,
                         max_speech_positions=80, max_text_positions=24, encoder_max_relative_position=5,
                         scale_embedding=True, pad_token_id=PAD, eos_token_id=EOS, bos_token_id=0,
                         decoder_start_token_id=EOS, tie_word_embeddings=False)
    return SpeechT5ForSpeechToText(cfg)


def _asr_inputs():
    rng = np.random.RandomState(0)
    values = rng.randn(2, 400).astype("float32")
    values[1, 250:] = 0.0
    mask = np.array([[1] * 400, [1] * 250 + [0] * 150], "int64")
    dec = np.array([[EOS, 5, 17, 33, 9, 40], [EOS, 8, 11, PAD, PAD, PAD]], "int64")
    dec_mask = np.array([[1] * 6, [1] * 3 + [0] * 3], "int64")
    return {"input_values": values, "attention_mask": mask, "decoder_input_ids": dec,
            "decoder_attention_mask": dec_mask}


def _asr_generate(folder, model):
    """Transformers' greedy ids (both rows reach the end token, by different paths)."""
    import torch

    inputs = _asr_inputs()
    with torch.no_grad():
        out = model.generate(input_values=torch.tensor(inputs["input_values"]),
                             attention_mask=torch.tensor(inputs["attention_mask"]), **GREEDY)
    np.save(folder / "greedy.npy", out.numpy())


def _asr_reference():
    return hf_reference("speecht5_asr", _asr, _asr_inputs(), extra_save=_asr_generate, seed=6)


def _frames(model, inputs, states):
    from tests.parity import to_numpy

    return to_numpy(model.backbone.encoder_mask(inputs["attention_mask"], states.shape[1]))


def test_speecht5_asr_matches_transformers():
    folder, expected = _asr_reference()
    inputs = _asr_inputs()
    model = km.Seq2SeqLM.from_preset(folder)
    assert type(model).__name__ == "SpeechT5SpeechToText"
    dec_mask = inputs["decoder_attention_mask"]
    assert_close(model.predict_on_batch(inputs), expected["logits"], mask=dec_mask, what="logits")
    out = model.backbone.predict_on_batch(inputs)
    enc = expected["encoder_last_hidden_state"]
    assert_close(out["encoder_last_hidden_state"], enc, mask=_frames(model, inputs, enc), what="encoder")
    assert_close(out["last_hidden_state"], expected["last_hidden_state"], mask=dec_mask, what="decoder")
    greedy = np.load(folder / "greedy.npy")
    got = model.generate(inputs["input_values"], attention_mask=inputs["attention_mask"], **GREEDY)
    np.testing.assert_array_equal(np.asarray(got), greedy)
    assert (greedy[:, -1] == EOS).all() and (greedy[0] != greedy[1]).any()  # the rows follow their own audio


def test_speecht5_bad_configs(tmp_path):
    folder, _ = _asr_reference()
    cfg = json.loads((folder / "config.json").read_text())
    for key, value, match in (("feat_extract_norm", "batch", "feat_extract_norm"),
                              ("conv_kernel", [5], "conv_kernel"),
                              ("encoder_attention_heads", 3, "encoder_attention_heads"),
                              ("encoder_max_relative_position", 0, "encoder_max_relative_position")):
        bad = tmp_path / key
        bad.mkdir()
        (bad / "config.json").write_text(json.dumps(dict(cfg, **{key: value})))
        with pytest.raises(ConfigError, match=match):
            km.Backbone.from_preset(bad, load_weights=False)


@pytest.mark.backend_independent  # CI time: the file format does not depend on the backend (torch pass)
def test_speecht5_keras_round_trip(tmp_path):
    """model.save / keras.saving.load_model: the same class, backbone config and logits."""
    import keras

    folder, _ = _asr_reference()
    inputs = _asr_inputs()
    model = km.Seq2SeqLM.from_preset(folder)
    model.save(tmp_path / "m.keras")
    restored = keras.saving.load_model(tmp_path / "m.keras")
    assert type(restored) is type(model)
    drop = ("name", "dtype")
    assert {k: v for k, v in restored.backbone.get_config().items() if k not in drop} == {
        k: v for k, v in model.backbone.get_config().items() if k not in drop}
    np.testing.assert_allclose(restored.predict_on_batch(inputs), model.predict_on_batch(inputs), atol=1e-6)


def test_speecht5_save_to_preset_reloads_in_transformers(tmp_path):
    """The ASR and TTS exports and the vocoder's load in Transformers with equal outputs."""
    import torch
    from transformers import SpeechT5ForSpeechToText, SpeechT5ForTextToSpeech, SpeechT5HifiGan

    folder, expected = _asr_reference()
    inputs = _asr_inputs()
    km.Seq2SeqLM.from_preset(folder).save_to_preset(tmp_path / "asr")
    hf = SpeechT5ForSpeechToText.from_pretrained(tmp_path / "asr").eval()
    with torch.no_grad():
        logits = hf(**{k: torch.tensor(v) for k, v in inputs.items()}).logits.numpy()
    assert_close(logits, expected["logits"], mask=inputs["decoder_attention_mask"], what="reloaded logits")

    folder, _ = _tts_reference()
    inputs = _tts_inputs()
    km.TextToAudio.from_preset(folder).save_to_preset(tmp_path / "tts")
    hf = SpeechT5ForTextToSpeech.from_pretrained(tmp_path / "tts").eval()
    with torch.no_grad():
        spectrogram = hf(**{k: torch.tensor(v) for k, v in inputs.items()}).spectrogram.numpy()
    assert_close(spectrogram, np.load(folder / "spectrogram.npy"), what="reloaded spectrogram")

    folder, spectrogram = _hifigan_reference()
    km.Backbone.from_preset(folder).save_to_preset(tmp_path / "vocoder")
    hf = SpeechT5HifiGan.from_pretrained(tmp_path / "vocoder").eval()
    with torch.no_grad():
        waveform = hf(torch.tensor(spectrogram)).numpy()
    assert_close(waveform, np.load(folder / "waveform.npy"), what="reloaded waveform")


# --- text to speech: text encoder pre-net, speech decoder pre-net / post-net --------------------------
def _tts():
    from transformers import SpeechT5Config, SpeechT5ForTextToSpeech

    # odd options: gelu_new, deeper decoder than encoder, 6 mel bins, a 7-wide speaker embedding, a
    # 3-layer post-net of kernel 3, relative window 4 < tokens. Transformers' always-on pre-net dropout
    # keeps a unit with probability speech_decoder_prenet_dropout: 0 is its deterministic setting (the
    # pre-net's linears then contribute nothing; _check_prenet checks them without it)
    cfg = SpeechT5Config(vocab_size=40, hidden_size=16, encoder_layers=1, decoder_layers=2, encoder_attention_heads=2,
                         decoder_attention_heads=2, encoder_ffn_dim=24, decoder_ffn_dim=20, hidden_act="gelu_new",
                         num_mel_bins=6, speech_decoder_prenet_layers=2, speech_decoder_prenet_units=10,
                         speech_decoder_prenet_dropout=0.0, speaker_embedding_dim=7, speech_decoder_postnet_layers=3,
                         speech_decoder_postnet_units=9, speech_decoder_postnet_kernel=3, reduction_factor=2,
                         max_speech_positions=40, max_text_positions=20, encoder_max_relative_position=4,
                         pad_token_id=PAD)
    return SpeechT5ForTextToSpeech(cfg)


def _tts_inputs():
    rng = np.random.RandomState(1)
    ids = np.array([[5, 9, 13, 7, 22, 30, 2], [6, 11, 19, 2, PAD, PAD, PAD]], "int64")
    dec_mask = np.array([[1] * 5, [1] * 3 + [0] * 2], "int64")
    return {"input_ids": ids, "attention_mask": (ids != PAD).astype("int64"),
            "decoder_input_values": rng.randn(2, 5, 6).astype("float32"),
            "speaker_embeddings": rng.randn(2, 7).astype("float32"), "decoder_attention_mask": dec_mask}


SPEECH = dict(maxlenratio=4.0, threshold=0.5)


def _tts_generate(folder, model):
    """A sharper stop logit (so the rows end at different steps, before the limit), saved again;
    then Transformers' spectrogram output and its generate_speech (padded, with lengths)."""
    import torch

    inputs = {k: torch.tensor(v) for k, v in _tts_inputs().items()}
    with torch.no_grad():
        model.speech_decoder_postnet.prob_out.weight *= 10.0
        model.speech_decoder_postnet.prob_out.bias.fill_(-22.5)
        model.save_pretrained(folder)
        np.save(folder / "spectrogram.npy", model(**inputs).spectrogram.numpy())
        spec, lengths = model.generate_speech(inputs["input_ids"], inputs["speaker_embeddings"],
                                              attention_mask=inputs["attention_mask"], return_output_lengths=True,
                                              **SPEECH)
    np.savez(folder / "speech.npz", batch=spec.numpy(), lengths=np.array(lengths))


def _tts_reference():
    return hf_reference("speecht5_tts", _tts, _tts_inputs(), extra_save=_tts_generate, seed=0)


def test_speecht5_tts_matches_transformers():
    folder, expected = _tts_reference()
    inputs = _tts_inputs()
    model = km.TextToAudio.from_preset(folder)
    assert type(model).__name__ == "SpeechT5TextToSpeech"
    assert_close(model.predict_on_batch(inputs), np.load(folder / "spectrogram.npy"), what="spectrogram")
    out = model.backbone.predict_on_batch(inputs)
    assert_close(out["encoder_last_hidden_state"], expected["encoder_last_hidden_state"],
                 mask=inputs["attention_mask"], what="encoder")
    assert_close(out["last_hidden_state"], expected["last_hidden_state"], what="decoder")
    ref = np.load(folder / "speech.npz")
    spec, lengths = model.generate_speech(inputs["input_ids"], inputs["speaker_embeddings"],
                                          attention_mask=inputs["attention_mask"], return_output_lengths=True, **SPEECH)
    assert lengths == ref["lengths"].tolist() and len(set(lengths)) == 2  # the rows stop at different steps
    assert_close(spec, ref["batch"], what="generated spectrograms")
    spec, lengths = model.generate({"input_ids": inputs["input_ids"]}, speaker_embeddings=inputs["speaker_embeddings"],
                                   return_output_lengths=True, **SPEECH)  # the mask from the pad id
    assert lengths == ref["lengths"].tolist()
    assert_close(spec, ref["batch"], what="generated spectrograms (TextToAudio.generate)")
    _check_prenet(model, folder, inputs)


def _check_prenet(model, folder, inputs):
    """The speech decoder pre-net's linears (zeroed by the reference's p = 0 dropout) against
    Transformers' pre-net with its dropout replaced by the identity on both sides."""
    import torch
    from transformers import SpeechT5ForTextToSpeech

    prenet = SpeechT5ForTextToSpeech.from_pretrained(folder).eval().speecht5.decoder.prenet
    prenet._consistent_dropout = lambda x, p: x
    with torch.no_grad():
        ref = prenet(torch.tensor(inputs["decoder_input_values"]), torch.tensor(inputs["speaker_embeddings"])).numpy()
    got = model.backbone.embed_speech_decoder(inputs["decoder_input_values"], inputs["speaker_embeddings"],
                                              consistent_dropout=False)
    assert_close(got, ref, what="speech pre-net")


# --- speech to speech: speech encoder pre-net + speech decoder ------------------------------------------
def _s2s():
    from transformers import SpeechT5Config, SpeechT5ForSpeechToSpeech

    # a group-norm conv stack without biases, an odd position-conv kernel, reduction factor 1
    cfg = SpeechT5Config(vocab_size=40, hidden_size=16, encoder_layers=1, decoder_layers=1, encoder_attention_heads=4,
                         decoder_attention_heads=2, encoder_ffn_dim=24, decoder_ffn_dim=20, conv_dim=(8, 12),
                         conv_kernel=(5, 3), conv_stride=(3, 2), num_conv_pos_embeddings=5,
                         num_conv_pos_embedding_groups=4, num_mel_bins=5, speech_decoder_prenet_layers=1,
                         speech_decoder_prenet_units=10, speech_decoder_prenet_dropout=0.0, speaker_embedding_dim=6,
                         speech_decoder_postnet_layers=2, speech_decoder_postnet_units=7,
                         speech_decoder_postnet_kernel=5, reduction_factor=1, max_speech_positions=80,
                         max_text_positions=20, encoder_max_relative_position=6, pad_token_id=PAD)
    return SpeechT5ForSpeechToSpeech(cfg)


def _s2s_inputs():
    rng = np.random.RandomState(3)
    values = rng.randn(2, 160).astype("float32")
    values[1, 100:] = 0.0
    return {"input_values": values, "attention_mask": np.array([[1] * 160, [1] * 100 + [0] * 60], "int64"),
            "decoder_input_values": rng.randn(2, 4, 5).astype("float32"),
            "speaker_embeddings": rng.randn(2, 6).astype("float32")}


def _s2s_generate(folder, model):
    import torch

    inputs = {k: torch.tensor(v) for k, v in _s2s_inputs().items()}
    with torch.no_grad():
        np.save(folder / "spectrogram.npy", model(**inputs).spectrogram.numpy())
        spec, lengths = model.generate_speech(inputs["input_values"], inputs["speaker_embeddings"],
                                              attention_mask=inputs["attention_mask"], return_output_lengths=True,
                                              maxlenratio=0.5)
    np.savez(folder / "speech.npz", batch=spec.numpy(), lengths=np.array(lengths))


@pytest.mark.one_case_per_pass("part")
@pytest.mark.parametrize("part", ["forward", "generate"])
def test_speecht5_speech_to_speech_matches_transformers(part):
    folder, expected = hf_reference("speecht5_s2s", _s2s, _s2s_inputs(), extra_save=_s2s_generate, seed=1)
    inputs = _s2s_inputs()
    model = km.models.SpeechT5SpeechToSpeech.from_preset(folder)
    if part == "forward":
        assert_close(model.predict_on_batch(inputs), np.load(folder / "spectrogram.npy"), what="spectrogram")
        return
    ref = np.load(folder / "speech.npz")
    spec, lengths = model.generate(inputs, speaker_embeddings=inputs["speaker_embeddings"], return_output_lengths=True,
                                   maxlenratio=0.5)
    assert lengths == ref["lengths"].tolist()
    assert_close(spec, ref["batch"], what="generated spectrograms")


def _hifigan():
    from transformers import SpeechT5HifiGan, SpeechT5HifiGanConfig

    # odd options: two upsamplings with kernels != 2 x rate, unequal dilations, slope 0.2, normalised input
    cfg = SpeechT5HifiGanConfig(model_in_dim=6, upsample_initial_channel=8, upsample_rates=(3, 2),
                                upsample_kernel_sizes=(7, 4), resblock_kernel_sizes=(3, 5),
                                resblock_dilation_sizes=((1, 3), (1, 2, 4)), leaky_relu_slope=0.2,
                                normalize_before=True)
    model = SpeechT5HifiGan(cfg)
    import torch

    with torch.no_grad():  # buffers the parity helper leaves alone
        model.mean.uniform_(-1, 1)
        model.scale.uniform_(0.5, 2)
    return model


def _hifigan_reference():
    spectrogram = np.random.RandomState(2).randn(2, 9, 6).astype("float32")

    def record(folder, model):
        import torch

        with torch.no_grad():
            np.save(folder / "waveform.npy", model(torch.tensor(spectrogram)).numpy())

    folder, _ = hf_reference("speecht5_hifigan", _hifigan, {"spectrogram": spectrogram}, extra_save=record)
    return folder, spectrogram


def test_speecht5_hifigan_matches_transformers(tmp_path):
    folder, spectrogram = _hifigan_reference()
    vocoder = km.Backbone.from_preset(folder)
    assert type(vocoder).__name__ == "SpeechT5HifiGanBackbone"
    got = vocoder.predict_on_batch({"spectrogram": spectrogram})
    assert got.shape == (2, 9 * 6)
    assert_close(got, np.load(folder / "waveform.npy"), what="waveform")
    assert_close(vocoder(spectrogram[0]), got[0], what="unbatched waveform")
    cfg = json.loads((folder / "config.json").read_text())
    for key, value in (("upsample_kernel_sizes", [6, 4]), ("resblock_kernel_sizes", [3, 4])):
        (tmp_path / key).mkdir()
        (tmp_path / key / "config.json").write_text(json.dumps(dict(cfg, **{key: value})))
        with pytest.raises(ConfigError, match=key):
            km.Backbone.from_preset(tmp_path / key, load_weights=False)


# --- SpeechT5Tokenizer: spm_char.model (python-only in Transformers) --------------------------------
@pytest.mark.backend_independent
@pytest.mark.parametrize("model_type", ["char", "bpe"])
def test_speecht5_tokenizer(tmp_path, model_type):
    """Ids (single texts, a pair, a padded batch) and decoding equal to Transformers' AutoTokenizer,
    for a char model (as SpeechT5's) and a BPE one; the number normaliser is refused."""
    import io

    import sentencepiece
    from transformers import AutoTokenizer, SpeechT5Tokenizer

    from keras_models.errors import TokenizerFileError

    corpus = ["mister quilter is the apostle of the middle classes", "and we are glad to welcome his gospel",
              "nor is mister quilter's manner less interesting than his matter"]
    buf = io.BytesIO()
    sentencepiece.SentencePieceTrainer.train(
        sentence_iterator=iter(corpus * 10), model_writer=buf, model_type=model_type,
        vocab_size=28 if model_type == "char" else 40, bos_id=0, pad_id=1, eos_id=2, unk_id=3,
        character_coverage=1.0, hard_vocab_limit=False, minloglevel=2)
    (tmp_path / "spm_char.model").write_bytes(buf.getvalue())
    SpeechT5Tokenizer(str(tmp_path / "spm_char.model")).save_pretrained(tmp_path)
    hf, ours = AutoTokenizer.from_pretrained(tmp_path), km.Tokenizer.from_preset(tmp_path)
    texts = ["Mister Quilter is glad!", "and  we are glad ", "he tells us", "", "the gospel, 12 times"]
    for text in texts:
        ids = hf(text).input_ids
        assert np.asarray(ours(text)["input_ids"]).reshape(-1).tolist() == ids, text
        assert ours.decode(ids, skip_special_tokens=True) == hf.decode(ids, skip_special_tokens=True), text
    assert np.asarray(ours("a b", "c d")["input_ids"]).reshape(-1).tolist() == hf("a b", "c d").input_ids
    batch = hf(texts[:3], padding=True, return_tensors="np")
    got = ours(texts[:3], padding=True)
    np.testing.assert_array_equal(got["input_ids"], batch["input_ids"])
    np.testing.assert_array_equal(got["attention_mask"], batch["attention_mask"])
    config = json.loads((tmp_path / "tokenizer_config.json").read_text())
    (tmp_path / "tokenizer_config.json").write_text(json.dumps(dict(config, normalize=True)))
    with pytest.raises(TokenizerFileError, match="normalize"):
        km.Tokenizer.from_preset(tmp_path)


@pytest.mark.backend_independent
def test_speecht5_feature_extractor(tmp_path):
    """The audio path of SpeechT5FeatureExtractor (numpy) equal to Transformers': padded with the
    mask, normalised over the real samples or not, and unpadded."""
    import transformers

    rng = np.random.RandomState(5)
    waves = [rng.randn(n).astype("float32") * 0.3 + 0.1 for n in (900, 500, 731)]
    for normalize in (False, True):
        hf = transformers.SpeechT5FeatureExtractor(do_normalize=normalize)
        hf.save_pretrained(tmp_path / str(normalize))
        ours = km.AudioFeatureExtractor.from_preset(tmp_path / str(normalize))
        assert type(ours).__name__ == "SpeechT5FeatureExtractor"
        ref = hf(audio=waves, sampling_rate=16000, padding=True, return_tensors="np")
        got = ours(waves, sampling_rate=16000)
        assert_close(got["input_values"], ref["input_values"], what=f"input_values (do_normalize={normalize})")
        np.testing.assert_array_equal(got["attention_mask"], ref["attention_mask"])
        ref = hf(audio=waves, sampling_rate=16000)
        got = ours(waves, sampling_rate=16000, padding=False)
        for a, b in zip(got["input_values"], ref["input_values"]):
            assert_close(a, b, what="unpadded input_values")
    with pytest.raises(InputError, match="audio_target"):
        ours(audio_target=waves, sampling_rate=16000)

"""MusicGen Melody (and MusicGen's unconditional generation) against tiny random Transformers models.

* ``MusicgenMelodyForConditionalGeneration``: a gated-GELU T5 text encoder (16 wide) projected by
  ``enc_to_dec_proj`` to a 24-wide decoder (2 codebooks, ReLU), 12 chroma bins projected by
  ``audio_enc_to_dec_proj``, chroma_length 7 (a 3-frame melody repeated and cut to it), a causal
  EnCodec. Logits over [prefix | codes] with a melody and with the null chroma (text only, padded);
  greedy generation with a melody and guidance 3, text only without guidance, and unconditional
  (Transformers' processor.get_unconditional_inputs: the text fully masked), codes and waveform.
* ``MusicgenMelodyForCausalLM`` alone (21 wide: odd sinusoidal width, 3 codebooks), with and without
  a prepended prefix and masks.
* MusicGen: ``get_unconditional_inputs`` generation equal to Transformers' (zero text states).
"""

import numpy as np
import pytest

import keras_models as km
from tests.parity import assert_close, cached_folder, jit_under_jax, randomize_weights

ENCODEC = dict(hidden_size=8, num_filters=4, codebook_size=16, sampling_rate=1000, kernel_size=5, last_kernel_size=3,
               upsampling_ratios=[2, 2], target_bandwidths=[2.0], num_lstm_layers=1)
TEXT = dict(vocab_size=64, d_model=16, d_kv=8, d_ff=24, num_layers=2, num_heads=2, feed_forward_proj="gated-gelu",
            relative_attention_num_buckets=8, relative_attention_max_distance=16)
DECODER = dict(vocab_size=16, max_position_embeddings=64, num_hidden_layers=2, ffn_dim=40, num_attention_heads=4,
               hidden_size=24, num_codebooks=2, pad_token_id=16, bos_token_id=16, activation_function="relu")
CAUSAL = dict(vocab_size=16, max_position_embeddings=64, num_hidden_layers=2, ffn_dim=30, num_attention_heads=3,
              hidden_size=21, num_codebooks=3, pad_token_id=16, bos_token_id=16, activation_function="silu")
NEW_TOKENS = 8
IDS = np.array([[5, 9, 3, 7, 1], [4, 8, 1, 0, 0]])
MASK = (np.arange(5)[None] < np.array([[5], [3]])).astype("int64")
UNCOND = dict(input_ids=np.ones((2, 1), "int64"), attention_mask=np.zeros((2, 1), "int64"))


def _key():
    import hashlib
    import inspect
    import sys

    import transformers

    return hashlib.sha1((inspect.getsource(sys.modules[__name__]) + transformers.__version__).encode()).hexdigest()[:10]


def _chroma():
    """A 3-frame one-hot chroma (what the feature extractor gives), (batch, frames, 12)."""
    idx = np.random.RandomState(3).randint(0, 12, (2, 3))
    return np.eye(12, dtype="float32")[idx]


def _decoder_ids(k=2, t=6):
    return np.random.RandomState(1).randint(0, 17, (2 * k, t))


def _generate(model, codec, **kwargs):
    """Transformers' generate, with the codes it hands to EnCodec recorded."""
    import torch

    seen = []
    decode = codec.decode

    def record(codes, *args, **kw):
        seen.append(codes.numpy().copy())
        return decode(codes, *args, **kw)

    codec.decode = record
    with torch.no_grad():
        audio = model.generate(**{k: torch.tensor(v) if isinstance(v, np.ndarray) else v for k, v in kwargs.items()},
                               do_sample=False, max_new_tokens=NEW_TOKENS)
    codec.decode = decode
    return seen[0], audio.numpy()


def _reference():
    def build(tmp):
        import torch
        import transformers

        torch.manual_seed(0)
        config = transformers.MusicgenMelodyConfig(text_encoder=transformers.T5Config(**TEXT),
                                                   audio_encoder=transformers.EncodecConfig(**ENCODEC),
                                                   decoder=transformers.MusicgenMelodyDecoderConfig(**DECODER),
                                                   chroma_length=7)
        model = transformers.MusicgenMelodyForConditionalGeneration(config).eval()
        randomize_weights(model)
        with torch.no_grad():
            for layer in model.audio_encoder.quantizer.layers:
                layer.codebook.embed.normal_()
        model.save_pretrained(tmp / "model")
        model = transformers.MusicgenMelodyForConditionalGeneration.from_pretrained(tmp / "model").eval()
        ids, mask, dec = torch.tensor(IDS), torch.tensor(MASK), torch.tensor(_decoder_ids())
        expected = {}
        with torch.no_grad():
            out = model(input_ids=ids, attention_mask=mask, input_features=torch.tensor(_chroma()), decoder_input_ids=dec)
            expected["logits_melody"], expected["prefix_melody"] = out.logits.numpy(), out.encoder_hidden_states.numpy()
            out = model(input_ids=ids, attention_mask=mask, decoder_input_ids=dec)
            expected["logits_text"] = out.logits.numpy()
        runs = {"melody": dict(input_ids=IDS, attention_mask=MASK, input_features=_chroma(), guidance_scale=3.0),
                "text": dict(input_ids=IDS, attention_mask=MASK, guidance_scale=1.0),
                "uncond": dict(**UNCOND, guidance_scale=3.0)}
        for name, kwargs in runs.items():
            expected[f"codes_{name}"], expected[f"audio_{name}"] = _generate(model, model.audio_encoder, **kwargs)
        np.savez(tmp / "expected.npz", **expected)

    folder = cached_folder(f"audio-musicgen-melody-{_key()}", build)
    return folder / "model", dict(np.load(folder / "expected.npz"))


def _causal_inputs():
    rng = np.random.RandomState(2)
    ids = rng.randint(0, 17, (2 * CAUSAL["num_codebooks"], 5))
    prefix = rng.randn(2, 4, CAUSAL["hidden_size"]).astype("float32")
    prefix_mask = np.array([[1, 1, 1, 1], [1, 1, 0, 0]])
    mask = np.array([[1, 1, 1, 1, 1], [0, 1, 1, 1, 1]])
    return ids, prefix, prefix_mask, mask


def _causal_reference():
    def build(tmp):
        import torch
        import transformers

        torch.manual_seed(0)
        model = transformers.MusicgenMelodyForCausalLM(transformers.MusicgenMelodyDecoderConfig(**CAUSAL)).eval()
        randomize_weights(model)
        model.save_pretrained(tmp / "model")
        model = transformers.MusicgenMelodyForCausalLM.from_pretrained(tmp / "model").eval()
        ids, prefix, prefix_mask, mask = (torch.tensor(a) for a in _causal_inputs())
        with torch.no_grad():
            plain = model(input_ids=ids).logits.numpy()
            prefixed = model(input_ids=ids, encoder_hidden_states=prefix).logits.numpy()
            masked = model(input_ids=ids, encoder_hidden_states=prefix, encoder_attention_mask=prefix_mask,
                           attention_mask=mask).logits.numpy()
        np.savez(tmp / "expected.npz", plain=plain, prefixed=prefixed, masked=masked)

    folder = cached_folder(f"audio-musicgen-melody-causal-{_key()}", build)
    return folder / "model", dict(np.load(folder / "expected.npz"))


def _musicgen_unconditional_reference():
    def build(tmp):
        import torch
        import transformers

        torch.manual_seed(0)
        config = transformers.MusicgenConfig(text_encoder=transformers.T5Config(**TEXT),
                                             audio_encoder=transformers.EncodecConfig(**ENCODEC),
                                             decoder=transformers.MusicgenDecoderConfig(**DECODER))
        model = transformers.MusicgenForConditionalGeneration(config).eval()
        randomize_weights(model)
        with torch.no_grad():
            for layer in model.audio_encoder.quantizer.layers:
                layer.codebook.embed.normal_()
        model.save_pretrained(tmp / "model")
        model = transformers.MusicgenForConditionalGeneration.from_pretrained(tmp / "model").eval()
        uncond = model.get_unconditional_inputs(num_samples=2)
        codes, audio = _generate(model, model.audio_encoder, **uncond)
        np.savez(tmp / "expected.npz", codes=codes, audio=audio)

    folder = cached_folder(f"audio-musicgen-uncond-{_key()}", build)
    return folder / "model", dict(np.load(folder / "expected.npz"))


def test_melody_logits_and_generation_parity():
    folder, expected = _reference()
    model = km.TextToAudio.from_preset(folder)
    assert type(model).__name__ == "MusicgenMelodyTextToAudio"
    base = {"input_ids": IDS, "attention_mask": MASK, "decoder_input_ids": _decoder_ids()}

    def forward(x, features):  # one compiled program under jax
        melody = model.backbone({**x, "input_features": features})
        text = model.backbone(x)
        return (model.codebook_logits(melody["last_hidden_state"]), melody["encoder_hidden_states"],
                model.codebook_logits(text["last_hidden_state"]))

    logits, prefix, text = jit_under_jax(forward)(base, _chroma())
    assert_close(logits, expected["logits_melody"], what="logits (melody)")
    assert_close(prefix, expected["prefix_melody"], what="conditioning prefix")
    assert_close(text, expected["logits_text"], what="logits (null chroma)")
    runs = {"melody": ({"input_ids": IDS, "attention_mask": MASK}, dict(input_features=_chroma(), guidance_scale=3.0)),
            "text": ({"input_ids": IDS, "attention_mask": MASK}, dict(guidance_scale=1.0)),
            "uncond": (model.get_unconditional_inputs(2), dict(guidance_scale=3.0))}
    for name, (inputs, kwargs) in runs.items():
        got = model.generate(inputs, do_sample=False, max_new_tokens=NEW_TOKENS, return_codes=True, **kwargs)
        want = expected[f"codes_{name}"]
        assert len(np.unique(want)) > 3, "degenerate reference: the codes hardly vary"
        np.testing.assert_array_equal(got["audio_codes"], want, err_msg=name)
        assert_close(got["audio_values"], expected[f"audio_{name}"], what=f"audio ({name})")


def test_melody_causal_lm_parity():
    folder, expected = _causal_reference()
    ids, prefix, prefix_mask, mask = _causal_inputs()
    model = km.CausalLM.from_preset(folder)
    assert type(model).__name__ == "MusicgenMelodyCausalLM"

    def forward(ids, prefix, prefix_mask, mask):
        return (model({"input_ids": ids}), model({"input_ids": ids, "encoder_hidden_states": prefix}),
                model({"input_ids": ids, "encoder_hidden_states": prefix, "encoder_attention_mask": prefix_mask,
                       "attention_mask": mask}))

    plain, prefixed, masked = jit_under_jax(forward)(ids, prefix, prefix_mask, mask)
    assert_close(plain, expected["plain"], what="logits")
    assert_close(prefixed, expected["prefixed"], what="logits with a prefix")
    assert_close(masked, expected["masked"], what="logits with a prefix and masks")


def test_musicgen_unconditional_generation():
    folder, expected = _musicgen_unconditional_reference()
    model = km.TextToAudio.from_preset(folder)
    assert type(model).__name__ == "MusicgenTextToAudio"
    got = model.generate(model.get_unconditional_inputs(num_samples=2), do_sample=False, max_new_tokens=NEW_TOKENS,
                         guidance_scale=1.0, return_codes=True)
    assert len(np.unique(expected["codes"])) > 3
    np.testing.assert_array_equal(got["audio_codes"], expected["codes"])
    assert_close(got["audio_values"], expected["audio"], what="unconditional audio")


def test_melody_bad_inputs_are_named():
    from keras_models.errors import InputError
    from keras_models.generation.config import GenerationError

    folder, _ = _reference()
    model = km.TextToAudio.from_preset(folder)
    with pytest.raises(GenerationError, match="input_features"):
        model.generate({"input_ids": IDS}, input_features=np.zeros((2, 3, 5), "float32"), max_new_tokens=NEW_TOKENS)
    with pytest.raises(GenerationError, match="input_values"):
        model.generate({"input_ids": IDS}, input_values=np.zeros((2, 1, 20), "float32"), max_new_tokens=NEW_TOKENS)
    with pytest.raises(InputError, match="input_features"):
        model.backbone({"input_ids": IDS, "decoder_input_ids": _decoder_ids(),
                        "input_features": np.zeros((2, 3, 5), "float32")})


def _fake_torchaudio():
    """torchaudio's Spectrogram as MusicgenMelodyFeatureExtractor builds it (power 2, 'window'
    normalisation, centred reflect-padded frames, periodic Hann window), over torch.stft: no torchaudio
    build loads with the installed torch, and Transformers' extractor needs only this class of it."""
    import types

    import torch

    class Spectrogram(torch.nn.Module):
        def __init__(self, n_fft, win_length, hop_length, power, center, pad, normalized):
            super().__init__()
            assert power == 2 and center and pad == 0 and normalized is True and win_length == n_fft
            self.n_fft, self.hop, self.window = n_fft, hop_length, torch.hann_window(n_fft)

        def forward(self, x):
            shape = x.shape
            spec = torch.stft(x.reshape(-1, shape[-1]), self.n_fft, self.hop, self.n_fft, self.window, center=True,
                              pad_mode="reflect", normalized=False, onesided=True, return_complex=True)
            spec = spec.reshape(shape[:-1] + spec.shape[-2:]) / self.window.pow(2.0).sum().sqrt()
            return spec.abs().pow(2.0)

    return types.SimpleNamespace(transforms=types.SimpleNamespace(Spectrogram=Spectrogram))


@pytest.mark.backend_independent  # numpy only
def test_melody_feature_extractor_equals_transformers(tmp_path, monkeypatch):
    import transformers.models.musicgen_melody.feature_extraction_musicgen_melody as theirs

    if getattr(theirs, "torchaudio", None) is None:
        monkeypatch.setattr(theirs, "torchaudio", _fake_torchaudio(), raising=False)
    fe = theirs.MusicgenMelodyFeatureExtractor(n_fft=256, hop_length=64, sampling_rate=8000, chunk_length=1)
    fe.save_pretrained(tmp_path)
    ours = km.AudioFeatureExtractor.from_preset(tmp_path)
    assert type(ours).__name__ == "MusicgenMelodyFeatureExtractor"
    rng = np.random.RandomState(0)
    t = np.arange(9000) / 8000
    tone = (np.sin(2 * np.pi * 440 * t) + 0.5 * np.sin(2 * np.pi * 262 * t)).astype("float32")
    cases = [([rng.randn(1300).astype("float32"), tone, rng.randn(100).astype("float32")], True),  # pad + cut
             ([rng.randn(100).astype("float32")], False),  # shorter than n_fft: centred zero padding
             ([rng.randn(2, 700).astype("float32"), rng.randn(2, 500).astype("float32")], True)]  # stereo -> mono
    for waves, mask in cases:
        want = fe(waves, sampling_rate=8000, return_tensors="np", return_attention_mask=mask)
        got = ours(waves, sampling_rate=8000, return_attention_mask=mask)
        assert sorted(got) == sorted(want.keys())
        for key in want.keys():
            np.testing.assert_array_equal(got[key], want[key], err_msg=key)


def test_melody_reloads_in_transformers_and_keras(tmp_path):
    """save_to_preset (num_chroma, chroma_length and both projections written back) reloads in
    Transformers; a .keras file restores the class, spec and variables."""
    import keras
    import torch
    import transformers

    folder, expected = _reference()
    model = km.TextToAudio.from_preset(folder)
    model.save_to_preset(tmp_path / "t2a")
    theirs = transformers.MusicgenMelodyForConditionalGeneration.from_pretrained(tmp_path / "t2a").eval()
    with torch.no_grad():
        out = theirs(input_ids=torch.tensor(IDS), attention_mask=torch.tensor(MASK),
                     input_features=torch.tensor(_chroma()), decoder_input_ids=torch.tensor(_decoder_ids()))
    np.testing.assert_allclose(out.logits.numpy(), expected["logits_melody"], atol=1e-5)
    model.save(tmp_path / "m.keras")
    restored = keras.saving.load_model(tmp_path / "m.keras")
    assert type(restored) is type(model) and restored.backbone.spec == model.backbone.spec
    for a, b in zip(restored.weights, model.weights, strict=True):
        np.testing.assert_array_equal(a.numpy(), b.numpy())

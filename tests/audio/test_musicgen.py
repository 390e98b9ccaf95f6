"""MusicGen against tiny random Transformers models.

* ``mono``: a gated-GELU T5 text encoder (16 wide) projected by ``enc_to_dec_proj`` to a 24-wide
  decoder (2 codebooks, ReLU), a causal EnCodec; ``stereo``: a T5 v1.0 (ReLU) encoder as wide as the
  decoder (no projection), 4 codebooks in left/right pairs (audio_channels=2), EnCodec decoding each
  channel. Logits, encoder and decoder hidden states on a padded text batch; greedy generation
  (guidance_scale 3: classifier-free guidance, mono; 1, stereo), also continuing an audio prompt equal to Transformers' audio codes and waveform.
* ``MusicgenForCausalLM`` alone (21 wide: odd sinusoidal width, 3 codebooks, SiLU), on
  (batch * codebooks, time) ids, with and without cross-attention states.
* save_to_preset reloaded by Transformers; a .keras round trip; bad config values named.
"""

import json

import numpy as np
import pytest

import keras_models as km
from tests.parity import assert_close, cached_folder, jit_under_jax, randomize_weights, to_numpy

ENCODEC = dict(hidden_size=8, num_filters=4, codebook_size=16, sampling_rate=1000, kernel_size=5, last_kernel_size=3,
               upsampling_ratios=[2, 2], target_bandwidths=[2.0], num_lstm_layers=1)
CASES = {
    "mono": dict(
        text=dict(vocab_size=64, d_model=16, d_kv=8, d_ff=24, num_layers=2, num_heads=2, feed_forward_proj="gated-gelu",
                  relative_attention_num_buckets=8, relative_attention_max_distance=16),
        decoder=dict(vocab_size=16, max_position_embeddings=64, num_hidden_layers=2, ffn_dim=40, num_attention_heads=4,
                     hidden_size=24, num_codebooks=2, pad_token_id=16, bos_token_id=16, activation_function="relu")),
    "stereo": dict(
        text=dict(vocab_size=64, d_model=16, d_kv=4, d_ff=20, num_layers=1, num_heads=3, feed_forward_proj="relu",
                  relative_attention_num_buckets=8, relative_attention_max_distance=16),
        decoder=dict(vocab_size=16, max_position_embeddings=64, num_hidden_layers=1, ffn_dim=24, num_attention_heads=2,
                     hidden_size=16, num_codebooks=4, audio_channels=2, pad_token_id=16, bos_token_id=16,
                     activation_function="gelu")),
}
GUIDANCE = {"mono": (3.0,), "stereo": (1.0,)}  # classifier-free guidance / plain greedy
NEW_TOKENS = 8
IDS = np.array([[5, 9, 3, 7, 1], [4, 8, 1, 0, 0]])
MASK = (np.arange(5)[None] < np.array([[5], [3]])).astype("int64")
CAUSAL = dict(vocab_size=16, max_position_embeddings=64, num_hidden_layers=2, ffn_dim=30, num_attention_heads=3,
              hidden_size=21, num_codebooks=3, pad_token_id=16, bos_token_id=16, activation_function="silu")


def _key():
    import hashlib
    import inspect
    import sys

    import transformers

    return hashlib.sha1((inspect.getsource(sys.modules[__name__]) + transformers.__version__).encode()).hexdigest()[:10]


def _decoder_ids(case, t=6):
    k = CASES[case]["decoder"]["num_codebooks"]
    return np.random.RandomState(1).randint(0, 17, (2 * k, t))


def _prompt(case):
    """An audio prompt (batch, channels, 20 samples): 5 EnCodec frames."""
    return np.random.RandomState(5).randn(2, CASES[case]["decoder"].get("audio_channels", 1), 20).astype("float32")


def _reference(case):
    def build(tmp):
        import torch
        import transformers

        c = CASES[case]
        torch.manual_seed(0)
        config = transformers.MusicgenConfig(text_encoder=transformers.T5Config(**c["text"]),
                                             audio_encoder=transformers.EncodecConfig(**ENCODEC),
                                             decoder=transformers.MusicgenDecoderConfig(**c["decoder"]))
        model = transformers.MusicgenForConditionalGeneration(config).eval()
        randomize_weights(model)
        with torch.no_grad():  # EnCodec's codebooks: buffers (zeros in Transformers' init)
            for layer in model.audio_encoder.quantizer.layers:
                layer.codebook.embed.normal_()
        model.save_pretrained(tmp / "model")
        model = transformers.MusicgenForConditionalGeneration.from_pretrained(tmp / "model").eval()
        ids, mask = torch.tensor(IDS), torch.tensor(MASK)
        with torch.no_grad():
            out = model(input_ids=ids, attention_mask=mask, decoder_input_ids=torch.tensor(_decoder_ids(case)),
                        output_hidden_states=True)
        expected = {"logits": out.logits.numpy(), "encoder": out.encoder_last_hidden_state.numpy()}
        with torch.no_grad():  # the decoder's last hidden state (after its final norm)
            expected["decoder"] = model.decoder.model(
                input_ids=torch.tensor(_decoder_ids(case)),
                encoder_hidden_states=model.enc_to_dec_proj(out.encoder_last_hidden_state) * mask[..., None]
                if hasattr(model, "enc_to_dec_proj") else out.encoder_last_hidden_state * mask[..., None],
                encoder_attention_mask=mask).last_hidden_state.numpy()
        runs = [(f"_{gs}", gs, {}) for gs in GUIDANCE[case]]  # text only; text + an audio prompt (5 frames)
        runs.append(("_prompt", GUIDANCE[case][0], {"input_values": torch.tensor(_prompt(case))}))
        for suffix, gs, extra in runs:
            seen = []
            decode = model.audio_encoder.decode

            def record(codes, *args, _decode=decode, **kwargs):
                seen.append(codes.numpy().copy())  # stereo: left (even codebooks), then right (odd)
                return _decode(codes, *args, **kwargs)

            model.audio_encoder.decode = record
            with torch.no_grad():
                audio = model.generate(input_ids=ids, attention_mask=mask, do_sample=False, guidance_scale=gs,
                                       max_new_tokens=NEW_TOKENS - (5 if extra else 0), **extra)
            model.audio_encoder.decode = decode
            codes = np.zeros(seen[0].shape[:2] + (seen[0].shape[2] * len(seen),) + seen[0].shape[3:], "int64")
            for i, part in enumerate(seen):
                codes[:, :, i::len(seen)] = part
            expected[f"codes{suffix}"] = codes
            expected[f"audio{suffix}"] = audio.numpy()
        np.savez(tmp / "expected.npz", **expected)

    folder = cached_folder(f"audio-musicgen-{case}-{_key()}", build)
    return folder / "model", dict(np.load(folder / "expected.npz"))


def _causal_reference():
    def build(tmp):
        import torch
        import transformers

        torch.manual_seed(0)
        model = transformers.MusicgenForCausalLM(transformers.MusicgenDecoderConfig(**CAUSAL)).eval()
        randomize_weights(model)
        model.save_pretrained(tmp / "model")
        model = transformers.MusicgenForCausalLM.from_pretrained(tmp / "model").eval()
        ids, states, mask = (torch.tensor(a) for a in _causal_inputs())
        with torch.no_grad():
            plain = model(input_ids=ids, output_hidden_states=True)
            cross = model(input_ids=ids, encoder_hidden_states=states, encoder_attention_mask=mask)
            hidden = model.model(input_ids=ids).last_hidden_state
        np.savez(tmp / "expected.npz", logits=plain.logits.numpy(), cross=cross.logits.numpy(), hidden=hidden.numpy())

    folder = cached_folder(f"audio-musicgen-causal-{_key()}", build)
    return folder / "model", dict(np.load(folder / "expected.npz"))


def _causal_inputs():
    rng = np.random.RandomState(2)
    ids = rng.randint(0, 17, (2 * CAUSAL["num_codebooks"], 7))
    states = rng.randn(2, 4, CAUSAL["hidden_size"]).astype("float32")
    mask = np.array([[1, 1, 1, 1], [1, 1, 0, 0]])
    return ids, states, mask


@pytest.mark.one_case_per_pass("case")
@pytest.mark.parametrize("case", sorted(CASES))
def test_logits_and_generation_parity(case):
    folder, expected = _reference(case)
    model = km.TextToAudio.from_preset(folder)
    assert type(model).__name__ == "MusicgenTextToAudio"
    inputs = {"input_ids": IDS, "attention_mask": MASK, "decoder_input_ids": _decoder_ids(case)}

    def forward(x):  # one compiled program under jax: the backbone's outputs and the logits
        out = model.backbone(x)
        return {**out, "logits": model.codebook_logits(out["last_hidden_state"])}

    out = jit_under_jax(forward)(inputs)
    assert_close(out["logits"], expected["logits"], what=f"{case} logits")
    assert_close(out["encoder_last_hidden_state"], expected["encoder"], mask=MASK, what=f"{case} encoder states")
    assert_close(out["last_hidden_state"], expected["decoder"], what=f"{case} decoder states")
    for gs in GUIDANCE[case]:
        got = model.generate({"input_ids": IDS, "attention_mask": MASK}, do_sample=False, max_new_tokens=NEW_TOKENS,
                             guidance_scale=gs, return_codes=True)
        want = expected[f"codes_{gs}"]
        assert len(np.unique(want)) > 3, "degenerate reference: the codes hardly vary"
        np.testing.assert_array_equal(got["audio_codes"], want)
        assert_close(got["audio_values"], expected[f"audio_{gs}"], what=f"{case} audio (guidance {gs})")
        sampled = model.generate({"input_ids": IDS, "attention_mask": MASK}, do_sample=True, top_k=1, seed=0,
                                 max_new_tokens=NEW_TOKENS, guidance_scale=gs, return_codes=True)
        np.testing.assert_array_equal(sampled["audio_codes"], want)  # top_k=1 sampling is greedy
    got = model.generate({"input_ids": IDS, "attention_mask": MASK}, input_values=_prompt(case), do_sample=False,
                         max_new_tokens=NEW_TOKENS - 5, guidance_scale=GUIDANCE[case][0], return_codes=True)
    np.testing.assert_array_equal(got["audio_codes"], expected["codes_prompt"])
    assert_close(got["audio_values"], expected["audio_prompt"], what=f"{case} audio (prompted)")


def test_causal_lm_parity():
    folder, expected = _causal_reference()
    ids, states, mask = _causal_inputs()
    model = km.CausalLM.from_preset(folder)
    assert type(model).__name__ == "MusicgenCausalLM"

    def forward(ids, states, mask):  # one compiled program under jax
        hidden = model.backbone({"input_ids": ids})
        cross = model({"input_ids": ids, "encoder_hidden_states": states, "encoder_attention_mask": mask})
        return model.codebook_logits(hidden), cross, hidden

    logits, cross, hidden = jit_under_jax(forward)(ids, states, mask)
    assert_close(logits, expected["logits"], what="logits")
    assert_close(cross, expected["cross"], what="cross-attention logits")
    assert_close(hidden, expected["hidden"], what="hidden")


def test_musicgen_reloads_in_transformers(tmp_path):
    import torch
    import transformers

    folder, expected = _reference("mono")
    km.TextToAudio.from_preset(folder).save_to_preset(tmp_path / "t2a")
    model = transformers.MusicgenForConditionalGeneration.from_pretrained(tmp_path / "t2a").eval()
    with torch.no_grad():
        out = model(input_ids=torch.tensor(IDS), attention_mask=torch.tensor(MASK),
                    decoder_input_ids=torch.tensor(_decoder_ids("mono")))
    np.testing.assert_allclose(out.logits.numpy(), expected["logits"], atol=1e-5)
    folder, expected = _causal_reference()
    km.CausalLM.from_preset(folder).save_to_preset(tmp_path / "causal")
    model = transformers.MusicgenForCausalLM.from_pretrained(tmp_path / "causal").eval()
    with torch.no_grad():
        out = model(input_ids=torch.tensor(_causal_inputs()[0]))
    np.testing.assert_allclose(out.logits.numpy(), expected["logits"], atol=1e-5)


def test_keras_round_trip(tmp_path):
    """Class, spec (the nested tower configs included) and every variable survive a .keras file."""
    import keras

    folder, _ = _reference("stereo")
    model = km.TextToAudio.from_preset(folder)
    model.save(tmp_path / "m.keras")
    restored = keras.saving.load_model(tmp_path / "m.keras")
    assert type(restored) is type(model) and restored.backbone.spec == model.backbone.spec
    assert [v.path for v in restored.weights] == [v.path for v in model.weights]
    for a, b in zip(restored.weights, model.weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy())


def test_bad_config_is_named(tmp_path):
    from keras_models.errors import ConfigError

    folder, _ = _reference("mono")
    config = json.loads((folder / "config.json").read_text())
    for i, (part, key, value) in enumerate((
            ("decoder", "audio_channels", 3), ("decoder", "tie_word_embeddings", True),
            ("decoder", "num_attention_heads", 5), ("decoder", "cross_attention_hidden_size", 8),
            ("decoder", "activation_function", "nope"), ("text_encoder", "model_type", "bert"),
            ("decoder", "pad_token_id", 99))):
        bad = tmp_path / str(i)
        bad.mkdir()
        (bad / "model.safetensors").symlink_to(folder / "model.safetensors")
        (bad / "config.json").write_text(json.dumps({**config, part: {**config[part], key: value}}))
        with pytest.raises(ConfigError, match=key if key != "model_type" else "text_encoder"):
            km.TextToAudio.from_preset(bad)
    stereo = {**config, "decoder": {**config["decoder"], "audio_channels": 2, "num_codebooks": 3}}
    (tmp_path / "s").mkdir()
    (tmp_path / "s" / "config.json").write_text(json.dumps(stereo))
    with pytest.raises(ConfigError, match="num_codebooks"):
        km.Backbone.from_preset(tmp_path / "s", load_weights=False)


@pytest.mark.backend_independent  # numpy and Rust tokenizers only: the torch pass runs it
def test_processor_equals_transformers(tmp_path):
    """MusicgenProcessor = a T5 tokenizer + EnCodec's feature extractor: the model's preprocessor gives
    Transformers' ids, km.AudioFeatureExtractor its input_values / padding_mask."""
    import transformers

    folder, _ = _reference("mono")
    pieces = ["<pad>", "</s>", "<unk>", "\u2581"] + [f"\u2581{w}" for w in ("pop", "rock", "drums", "song", "80s")] + list(
        "abcdefghijklmnopqrstuvwxyz0123456789")
    tok = transformers.T5Tokenizer(vocab=[(p, -float(i)) for i, p in enumerate(pieces)], extra_ids=0)
    features = transformers.EncodecFeatureExtractor(feature_size=1, sampling_rate=32000)
    # as the hub's MusicGen checkpoints: preprocessor_config.json + the tokenizer's files (Transformers 5's
    # MusicgenProcessor.save_pretrained nests the extractor in processor_config.json instead)
    tok.save_pretrained(tmp_path)
    features.save_pretrained(tmp_path)
    for f in folder.iterdir():
        if not (tmp_path / f.name).exists():
            (tmp_path / f.name).symlink_to(f)
    theirs = transformers.MusicgenProcessor.from_pretrained(tmp_path)
    texts = ["80s pop song with drums", "rock"]
    want = theirs(text=texts, padding=True, return_tensors="np")
    model = km.TextToAudio.from_preset(tmp_path, load_weights=False)
    got = model.preprocessor(texts, padding=True, return_tensors=None)
    np.testing.assert_array_equal(np.asarray(got["input_ids"]), want["input_ids"])
    np.testing.assert_array_equal(np.asarray(got["attention_mask"]), want["attention_mask"])
    waves = [np.random.RandomState(0).randn(130).astype("float32"), np.zeros(97, "float32")]
    want = theirs(audio=waves, sampling_rate=32000, padding=True, return_tensors="np")
    got = km.AudioFeatureExtractor.from_preset(tmp_path)(waves, sampling_rate=32000)
    for key in want.keys():
        np.testing.assert_array_equal(got[key], want[key])


@pytest.mark.backend_independent  # numpy only
def test_sampling_warpers():
    from keras_models.generation.config import GenerationError
    from keras_models.models.musicgen.tasks import _sampler

    logits = np.log(np.array([[0.5, 0.3, 0.15, 0.05]] * 4000, "float32"))
    for settings, allowed in (({"top_k": 2}, {0, 1}), ({"top_p": 0.7}, {0, 1}), ({"top_p": 0.9}, {0, 1, 2}),
                              ({"temperature": 0.01}, {0})):
        ids = _sampler({**settings, "seed": 0})(logits)
        assert set(np.unique(ids)) == allowed, settings
    ids = _sampler({"seed": 1})(logits)
    np.testing.assert_allclose(np.bincount(ids, minlength=4) / len(ids), [0.5, 0.3, 0.15, 0.05], atol=0.03)
    np.testing.assert_array_equal(ids, _sampler({"seed": 1})(logits))
    for bad in ({"temperature": 0}, {"top_k": -1}, {"top_p": 1.5}):
        with pytest.raises(GenerationError, match=next(iter(bad))):
            _sampler(bad)


@pytest.mark.backend_independent  # the weight map only
def test_tied_text_embedding_under_either_name(tmp_path):
    """The T5 encoder's token table is tied: a checkpoint holding it as text_encoder.encoder.embed_tokens
    (instead of, or besides, text_encoder.shared) loads the same."""
    from safetensors.numpy import load_file, save_file

    folder, _ = _reference("stereo")
    tensors = load_file(folder / "model.safetensors")
    want = km.Backbone.from_preset(folder)
    for i, renamed in enumerate((
            {("text_encoder.encoder.embed_tokens.weight" if k == "text_encoder.shared.weight" else k): v
             for k, v in tensors.items()},
            {**tensors, "text_encoder.encoder.embed_tokens.weight": tensors["text_encoder.shared.weight"]})):
        bad = tmp_path / str(i)
        bad.mkdir()
        (bad / "config.json").symlink_to(folder / "config.json")
        save_file(renamed, bad / "model.safetensors", metadata={"format": "pt"})
        got = km.Backbone.from_preset(bad)
        for a, b in zip(got.weight_rules(), want.weight_rules()):  # (the unused T5 decoder side is not loaded)
            np.testing.assert_array_equal(a.variable.numpy(), b.variable.numpy(), err_msg=a.hf)

"""CLVP (km.SpeechTextScorer, ``ClvpModelForConditionalGeneration``) against Transformers.

One tiny reference with random weights (tests/parity.randomize_weights) and odd options: a text
encoder whose heads (48 wide) are wider than the rotary part (32: partial rotary over q, k and v),
with q / k / v biases, gelu and mean pooling; a speech encoder without rotary positions, silu,
eps 1e-6 and last-token pooling; a decoder of 4 heads with an n_inner of 48, gelu_new, two
conditioning attention blocks, no q / k / v biases, its own fixing codes and a voice of 12 mel
features; projection widths unlike the towers'. The batch's second text is padded (id 0).

Compared: the forward's logits_per_text and unit embeddings, the speech decoder's logits on the
conditioning prefix, the text features, greedy ``generate`` (speech ids token for token, and its
scores) with the default stop id and with a stop id that occurs (early stop, padding,
``pad_to_max_mel_tokens``), and the speech-id fix-up on crafted rows.
"""

import json
import shutil

import numpy as np
import pytest

from tests.parity import _key, assert_close, cached_folder, randomize_weights

TEXT = dict(vocab_size=40, hidden_size=96, intermediate_size=40, projection_dim=24, num_hidden_layers=2,
            num_attention_heads=2, hidden_act="gelu", use_attention_bias=True, bos_token_id=39, eos_token_id=0)
SPEECH = dict(vocab_size=30, hidden_size=64, intermediate_size=36, projection_dim=24, num_hidden_layers=1,
              num_attention_heads=2, hidden_act="silu", use_rotary_embedding=False, layer_norm_eps=1e-6,
              summary_type="last")
DECODER = dict(vocab_size=30, max_position_embeddings=40, max_text_tokens=20, hidden_size=32, num_hidden_layers=2,
               num_attention_heads=4, n_inner=48, num_mel_attn_blocks=2, feature_size=12, bos_token_id=28,
               eos_token_id=29, decoder_fixing_codes=[3, 4, 5, 6], activation_function="gelu_new",
               use_attention_bias=False)
FIX_ROWS = np.array([[28, 7, 29, 8, 9, 10, 11, 12], [28, 7, 8, 9, 10, 11, 29, 12], [28, 7, 8, 9, 10, 11, 12, 13],
                     [28, 29, 29, 7, 8, 9, 10, 11]])


def _inputs():
    rng = np.random.RandomState(0)
    ids = rng.randint(1, 39, size=(2, 7))
    mask = np.ones_like(ids)
    ids[1, 5:] = 0
    mask[1, 5:] = 0
    feats = rng.randn(2, 12, 9).astype("float32")  # Transformers' (batch, mels, frames)
    return ids, mask, feats


def reference():
    def build(tmp):
        import torch
        import transformers as T

        config = T.ClvpConfig(text_config=TEXT, speech_config=SPEECH, decoder_config=DECODER, projection_dim=24,
                              logit_scale_init_value=2.0)
        torch.manual_seed(0)
        model = randomize_weights(T.ClvpModelForConditionalGeneration(config).eval())
        model.save_pretrained(tmp / "model")
        model = T.ClvpModelForConditionalGeneration.from_pretrained(tmp / "model").eval()
        ids, mask, feats = (torch.tensor(a) for a in _inputs())
        e = {}
        with torch.no_grad():
            out = model(input_ids=ids, input_features=feats, attention_mask=mask)
            for k in ("logits_per_text", "text_embeds", "speech_embeds"):
                e[k] = getattr(out, k).numpy()
            cond = model.conditioning_encoder(input_features=feats, input_ids=ids, attention_mask=mask)
            e["decoder_logits"] = model.speech_decoder_model(inputs_embeds=cond).logits.numpy()
            e["text_features"] = model.get_text_features(input_ids=ids, attention_mask=mask).embeds.numpy()
            e["single_logits_per_text"] = model(input_ids=ids[:1], input_features=feats).logits_per_text.numpy()
            g = model.generate(input_ids=ids, input_features=feats, attention_mask=mask, max_new_tokens=8,
                               do_sample=False, return_dict_in_generate=True)
            e["gen_speech_ids"], e["gen_logits_per_text"] = g.speech_ids.numpy(), g.logits_per_text.numpy()
            stop = int(g.speech_ids[0, 1])  # a token row 0 produces: stops it early
            g = model.generate(input_ids=ids, input_features=feats, attention_mask=mask, max_new_tokens=6,
                               do_sample=False, return_dict_in_generate=True, eos_token_id=stop,
                               pad_to_max_mel_tokens=9)
            e["stop"] = np.array(stop)
            e["stop_speech_ids"], e["stop_logits_per_text"] = g.speech_ids.numpy(), g.logits_per_text.numpy()
            e["fixed"] = model.fix_speech_decoder_output(torch.tensor(FIX_ROWS)).numpy()
        np.savez(tmp / "expected.npz", **e)

    import transformers

    folder = cached_folder(_key("clvp", open(__file__).read(), transformers.__version__), build)
    return folder / "model", dict(np.load(folder / "expected.npz"))


def _ours():
    ids, mask, feats = _inputs()
    return {"input_ids": ids.astype("int32"), "attention_mask": mask.astype("int32"),
            "input_features": feats.transpose(0, 2, 1)}


def test_clvp_scores_and_greedy_generate_equal_transformers(tmp_path):
    import keras

    import keras_models as km
    from keras_models.models.clvp.backbone import fix_speech_ids
    from tests.parity import jit_under_jax, to_numpy

    folder, e = reference()
    model = km.SpeechTextScorer.from_preset(folder)
    assert type(model).__name__ == "ClvpSpeechTextScorer" and model.head_from_checkpoint
    inputs = _ours()
    out = jit_under_jax(model)(inputs)
    for k in ("logits_per_text", "text_embeds", "speech_embeds"):
        assert_close(out[k], e[k], what=k)
    assert_close(out["logits_per_speech"], e["logits_per_text"].T, what="logits_per_speech")
    if keras.backend.backend() == "torch":  # the parts, eagerly (generate checks the decoder on every backend)
        assert_close(model.backbone(inputs), e["decoder_logits"], what="decoder logits")
        assert_close(model.backbone.encode_text(inputs), e["text_features"], what="text features")
        # one text against two voices: the conditioning encoder repeats the text, as Transformers' does
        single = model({"input_ids": inputs["input_ids"][:1], "input_features": inputs["input_features"]})
        assert_close(single["logits_per_text"], e["single_logits_per_text"], what="one text, two voices")
    gen = model.generate(inputs, max_new_tokens=8)
    np.testing.assert_array_equal(gen["speech_ids"], e["gen_speech_ids"])
    assert_close(gen["logits_per_text"], e["gen_logits_per_text"], what="generate logits_per_text")
    # an early stop, padded as wide as the first call's output (the compiled steps are reused)
    gen = model.generate(inputs, max_new_tokens=6, eos_token_id=int(e["stop"]), pad_to_max_mel_tokens=9)
    np.testing.assert_array_equal(gen["speech_ids"], e["stop_speech_ids"])
    assert_close(gen["logits_per_text"], e["stop_logits_per_text"], what="early-stop generate logits_per_text")
    fixed = fix_speech_ids(keras.ops.convert_to_tensor(FIX_ROWS), DECODER["eos_token_id"],
                           DECODER["decoder_fixing_codes"])
    np.testing.assert_array_equal(to_numpy(fixed), e["fixed"])
    # save_to_preset: the config keys written back, the same weights reloaded (Transformers reloads it below)
    model.save_to_preset(tmp_path / "saved")
    config = json.loads((tmp_path / "saved" / "config.json").read_text())
    assert config["model_type"] == "clvp" and config["architectures"] == ["ClvpModelForConditionalGeneration"]
    assert config["decoder_config"]["decoder_fixing_codes"] == [3, 4, 5, 6]
    again = km.SpeechTextScorer.from_preset(tmp_path / "saved")
    for a, b in zip(model.weights, again.weights):
        np.testing.assert_array_equal(to_numpy(a), to_numpy(b), err_msg=a.path)


def test_clvp_reloads_in_transformers(tmp_path):
    import torch
    import transformers as T

    import keras_models as km

    folder, e = reference()
    km.SpeechTextScorer.from_preset(folder).save_to_preset(tmp_path / "saved")
    model = T.ClvpModelForConditionalGeneration.from_pretrained(tmp_path / "saved").eval()
    ids, mask, feats = (torch.tensor(a) for a in _inputs())
    with torch.no_grad():
        out = model(input_ids=ids, input_features=feats, attention_mask=mask)
    assert_close(out.logits_per_text.numpy(), e["logits_per_text"], what="reloaded in Transformers")



def test_clvp_encoder_alone_equals_transformers():
    """A standalone ``ClvpEncoder`` checkpoint (clvp_encoder): the text config with first-token pooling."""
    import keras_models as km
    from tests.parity import jit_under_jax

    def build(tmp):
        import torch
        import transformers as T

        torch.manual_seed(0)
        model = randomize_weights(T.ClvpEncoder(T.ClvpEncoderConfig(**TEXT, summary_type="first")).eval())
        model.save_pretrained(tmp / "model")
        model = T.ClvpEncoder.from_pretrained(tmp / "model").eval()
        ids, mask, _ = _inputs()
        with torch.no_grad():
            out = model(input_ids=torch.tensor(ids), attention_mask=torch.tensor(mask))
        np.savez(tmp / "expected.npz", hidden=out.last_hidden_state.numpy(), embeds=out.embeds.numpy())

    import transformers

    folder = cached_folder(_key("clvp-encoder", open(__file__).read(), transformers.__version__), build)
    e = dict(np.load(folder / "expected.npz"))
    model = km.Backbone.from_preset(folder / "model")
    assert type(model).__name__ == "ClvpEncoderBackbone"
    ids, mask, _ = _inputs()
    inputs = {"input_ids": ids.astype("int32"), "attention_mask": mask.astype("int32")}
    hidden, embeds = jit_under_jax(lambda x: (model(x), model.embed(x)))(inputs)
    assert_close(hidden, e["hidden"], mask=mask, what="ClvpEncoder last hidden state")
    assert_close(embeds, e["embeds"], what="ClvpEncoder embeds")


@pytest.mark.backend_independent
@pytest.mark.parametrize("key,value,match", [
    (("text_config", "summary_type"), "attn", "summary_type"),
    (("text_config", "projection_dim"), 20, "projection_dim"),
    (("speech_config", "num_attention_heads"), 3, "num_attention_heads"),
    (("text_config", "num_attention_heads"), 4, "rotary"),
    (("decoder_config", "hidden_size"), 34, "hidden_size"),
    (("decoder_config", "activation_function"), "nope", "activation_function"),
    (("decoder_config", "eos_token_id"), 99, "eos_token_id"),
])
def test_clvp_bad_config(key, value, match, tmp_path):
    import keras_models as km
    from keras_models.errors import ConfigError

    folder, _ = reference()
    shutil.copytree(folder, tmp_path / "m")
    path = tmp_path / "m" / "config.json"
    config = json.loads(path.read_text())
    config[key[0]][key[1]] = value
    path.write_text(json.dumps(config))
    with pytest.raises(ConfigError, match=match):
        km.SpeechTextScorer.from_preset(tmp_path / "m")


@pytest.mark.backend_independent
def test_clvp_feature_extractor_equals_transformers(tmp_path):
    import transformers as T

    import keras_models as km

    rng = np.random.RandomState(1)
    waves = [rng.randn(700).astype("float32") * 0.3, rng.randn(430).astype("float32") * 0.3]
    norms = list(rng.uniform(0.5, 2.0, size=12))
    for extra in ({}, {"mel_norms": norms}):
        ref = T.ClvpFeatureExtractor(feature_size=12, sampling_rate=16000, default_audio_length=1, hop_length=64,
                                     n_fft=256, **extra)
        ref.save_pretrained(tmp_path)
        ours = km.AudioFeatureExtractor.from_preset(tmp_path)
        assert type(ours).__name__ == "ClvpFeatureExtractor"
        for kwargs in ({}, {"max_length": 600}):
            expected = ref(waves, sampling_rate=16000, return_tensors="np", **kwargs)
            got = ours(waves, sampling_rate=16000, **kwargs)
            assert_close(got["input_features"], expected["input_features"].transpose(0, 2, 1), atol=1e-4,
                         what=f"log-mel {extra and 'with mel_norms'} {kwargs}")
            np.testing.assert_array_equal(got["attention_mask"], expected["attention_mask"])


TOKEN_TEXTS = ["Hello world", "The 2nd of 1,200 dogs cost $3.50 on Dr. Smith's   street", "  the thing  ",
               "naïve café [STOP] <|endoftext|> ok", 'He said "1984", 2005, 1500, £12, 3.14 and the 21st.', ""]


@pytest.mark.backend_independent
def test_clvp_tokenizer_equals_transformers(tmp_path):
    """A tiny byte-level vocabulary with [SPACE]; as written (merges.txt with its #version line) and as
    Transformers' save_pretrained rewrites it (no #version line, so the first merge is dropped)."""
    import transformers as T
    from transformers.models.clvp.tokenization_clvp import bytes_to_unicode

    import keras_models as km

    vocab = {"[STOP]": 0, "[UNK]": 1, "[SPACE]": 2}
    for c in bytes_to_unicode().values():
        vocab.setdefault(c, len(vocab))
    merges = ["t h", "th e", "\u0120 t", "\u0120t he", "i n", "in g", "e r", "\u0120 a", "o n", "\u0120 s", "h e",
              "l l", "\u0120 th", "r e"]
    for m in merges:
        vocab.setdefault(m.replace(" ", ""), len(vocab))
    orig, saved = tmp_path / "orig", tmp_path / "saved"
    orig.mkdir()
    (orig / "vocab.json").write_text(json.dumps(vocab))
    (orig / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n")
    T.ClvpTokenizer(str(orig / "vocab.json"), str(orig / "merges.txt")).save_pretrained(saved)
    shutil.copy(saved / "tokenizer_config.json", orig / "tokenizer_config.json")
    for folder in (orig, saved):
        ref = T.ClvpTokenizer.from_pretrained(folder)
        ours = km.Tokenizer.from_preset(folder)
        assert type(ours).__name__ == "ClvpTokenizer"
        for text in TOKEN_TEXTS:
            ids = ours(text, return_tensors=None)["input_ids"]
            assert ids == ref(text)["input_ids"], (folder.name, text)
            assert ours.decode(ids) == ref.decode(ids), (folder.name, text)
        batch, expected = ours(TOKEN_TEXTS, padding=True), ref(TOKEN_TEXTS, padding=True)
        assert batch["input_ids"].tolist() == expected["input_ids"]
        assert batch["attention_mask"].tolist() == expected["attention_mask"]

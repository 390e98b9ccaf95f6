"""SeamlessM4T's text outputs against tiny random Transformers models: a SeamlessM4TModel (both
encoders; relative positions, one adapter block, odd layer_norm_eps, gelu) on padded speech and
text batches (encoder / decoder states, logits, greedy generate, tgt_lang prompts), and a
SeamlessM4TForSpeechToText checkpoint (speech encoder only; rotary positions, two adapter
blocks, no text encoder in the checkpoint), and a SeamlessM4Tv2ForSpeechToText (relative_key distances,
causal conv, chunked attention). The t2u model and vocoder tensors of the full model are
reported unused (not implemented)."""

import json

import numpy as np
import pytest

import keras_models as km
from keras_models.errors import ConfigError, InputError
from tests.parity import assert_close, hf_reference

PAD, EOS, START = 0, 3, 3
LANGS = {"fra": 7, "eng": 9}
GREEDY = dict(max_new_tokens=8, do_sample=False, num_beams=1)

COMMON = dict(
    vocab_size=64, hidden_size=16, encoder_layers=2, decoder_layers=2, encoder_attention_heads=2,
    decoder_attention_heads=4, encoder_ffn_dim=24, decoder_ffn_dim=20, max_position_embeddings=40,
    activation_function="gelu", speech_encoder_layers=2, speech_encoder_attention_heads=2,
    speech_encoder_intermediate_size=20, speech_encoder_hidden_act="gelu", feature_projection_input_dim=12,
    conv_depthwise_kernel_size=5, layer_norm_eps=1e-3, pad_token_id=PAD, bos_token_id=2, eos_token_id=EOS,
    decoder_start_token_id=START,
    # tiny text-to-unit model and vocoder (built by Transformers, not used here)
    t2u_vocab_size=20, t2u_encoder_layers=1, t2u_decoder_layers=1, t2u_encoder_ffn_dim=16, t2u_decoder_ffn_dim=16,
    t2u_encoder_attention_heads=2, t2u_decoder_attention_heads=2, t2u_max_position_embeddings=40,
    unit_hifi_gan_vocab_size=20, unit_embed_dim=8, lang_embed_dim=4, spkr_embed_dim=4, vocoder_num_langs=3,
    vocoder_num_spkrs=2, upsample_initial_channel=8, upsample_rates=[2, 2], upsample_kernel_sizes=[4, 4],
    resblock_kernel_sizes=[3], resblock_dilation_sizes=[[1, 3]], variance_predictor_kernel_size=3)
CASES = {
    # 21 frames -> adapter (kernel 4, stride 3) 7 frames; the padded row keeps 5
    "model": ("SeamlessM4TModel", dict(position_embeddings_type="relative", adaptor_kernel_size=4,
                                       adaptor_stride=3, num_adapter_layers=1)),
    "speech": ("SeamlessM4TForSpeechToText", dict(position_embeddings_type="rotary", rotary_embedding_base=300,
                                                  adaptor_kernel_size=3, adaptor_stride=2, num_adapter_layers=2,
                                                  layer_norm_eps=1e-5, activation_function="relu")),
    # v2: relative_key distances clamped at -3 / +2, causal conv + LayerNorm, chunks of 4 frames seeing
    # one chunk back
    "v2_speech": ("SeamlessM4Tv2ForSpeechToText", dict(left_max_position_embeddings=3, right_max_position_embeddings=2,
                                                       speech_encoder_chunk_size=4, speech_encoder_left_chunk_num=1,
                                                       adaptor_kernel_size=4, adaptor_stride=3)),
}


def _speech_inputs():
    rng = np.random.RandomState(0)
    feats = rng.randn(2, 21, 12).astype("float32")
    mask = np.array([[1] * 21, [1] * 14 + [0] * 7], "int64")
    feats[1, 14:] = 0.0
    dec = np.array([[START, 5, 17, 33, 9, 40], [START, 8, 11, PAD, PAD, PAD]], "int64")
    dec_mask = np.array([[1] * 6, [1] * 3 + [0] * 3], "int64")
    return {"input_features": feats, "attention_mask": mask, "decoder_input_ids": dec,
            "decoder_attention_mask": dec_mask}


def _text_inputs():
    ids = np.array([[5, 9, 14, 22, 7, 31, 12, 4, EOS], [6, 18, 25, 11, EOS, PAD, PAD, PAD, PAD]], "int64")
    mask = (ids != PAD).astype("int64")
    dec = np.array([[START, 7, 17, 33, 9], [START, 9, 11, 21, PAD]], "int64")
    return {"input_ids": ids, "attention_mask": mask, "decoder_input_ids": dec,
            "decoder_attention_mask": (np.arange(5) < np.array([[5], [4]])).astype("int64")}


def _builder(case):
    def build():
        import transformers

        arch, extra = CASES[case]
        if case.startswith("v2"):
            config = transformers.SeamlessM4Tv2Config(**{**COMMON, **extra}, char_vocab_size=30)
        else:
            config = transformers.SeamlessM4TConfig(**{**COMMON, **extra})
        return getattr(transformers, arch)(config)

    return build


def _extra(case):
    def save(folder, model):
        """A likelier end token (tied table: rows end early), saved again with a generation config
        holding language codes; then Transformers' text outputs, greedy ids and tgt_lang ids."""
        import torch
        import transformers

        with torch.no_grad():
            model.shared.weight[EOS] *= 1.6
        model.save_pretrained(folder)
        gen = json.loads((folder / "generation_config.json").read_text())
        gen["text_decoder_lang_to_code_id"] = LANGS
        (folder / "generation_config.json").write_text(json.dumps(gen))
        out = {}
        speech = {k: torch.tensor(v) for k, v in _speech_inputs().items()}
        s2t = getattr(transformers, CASES[case][0].replace("Model", "ForSpeechToText")).from_pretrained(folder).eval()
        s2t.generation_config.text_decoder_lang_to_code_id = LANGS
        with torch.no_grad():
            out["speech_greedy"] = s2t.generate(input_features=speech["input_features"],
                                                attention_mask=speech["attention_mask"], **GREEDY).numpy()
            out["speech_lang"] = s2t.generate(input_features=speech["input_features"],
                                              attention_mask=speech["attention_mask"], tgt_lang="fra",
                                              **GREEDY).numpy()
        if case == "model":
            text = {k: torch.tensor(v) for k, v in _text_inputs().items()}
            t2t = transformers.SeamlessM4TForTextToText.from_pretrained(folder).eval()
            t2t.generation_config.text_decoder_lang_to_code_id = LANGS
            with torch.no_grad():
                res = model(**text)
                out["text_logits"] = res.logits.numpy()
                out["text_encoder"] = res.encoder_last_hidden_state.numpy()
                out["text_greedy"] = t2t.generate(input_ids=text["input_ids"], attention_mask=text["attention_mask"],
                                                  **GREEDY).numpy()
                out["text_lang"] = t2t.generate(input_ids=text["input_ids"], attention_mask=text["attention_mask"],
                                                tgt_lang="__eng__", **GREEDY).numpy()
        np.savez(folder / "extra.npz", **out)

    return save


def _reference(case):
    return hf_reference(f"seamless-m4t-{case}", _builder(case), _speech_inputs(), extra_save=_extra(case), seed=4)


@pytest.mark.parametrize("case", sorted(CASES))
def test_speech_to_text_matches_transformers(case):
    folder, expected = _reference(case)
    extra = dict(np.load(folder / "extra.npz"))
    inputs = _speech_inputs()
    model = km.Seq2SeqLM.from_preset(folder)
    assert type(model).__name__ == ("SeamlessM4Tv2Seq2SeqLM" if case.startswith("v2") else "SeamlessM4TSeq2SeqLM")
    assert model.backbone.text_encoder == (case == "model")
    dec_mask = inputs["decoder_attention_mask"]
    assert_close(model(inputs), expected["logits"], mask=dec_mask, what="logits")
    out = model.backbone(inputs)
    assert_close(out["encoder_last_hidden_state"], expected["encoder_last_hidden_state"], what="speech encoder")
    for key, kwargs in (("speech_greedy", {}), ("speech_lang", {"tgt_lang": "fra"}))[:2 if case == "model" else 1]:
        got = model.generate(input_features=inputs["input_features"], attention_mask=inputs["attention_mask"],
                             **kwargs, **GREEDY)
        np.testing.assert_array_equal(np.asarray(got), extra[key], err_msg=key)
    assert (extra["speech_greedy"] == EOS).any() or extra["speech_greedy"].shape[1] < 9
    if case != "model":
        with pytest.raises(InputError, match="no text encoder"):
            model.backbone(_text_inputs())


def test_text_to_text_matches_transformers():
    folder, _ = _reference("model")
    extra = dict(np.load(folder / "extra.npz"))
    inputs = _text_inputs()
    model = km.Seq2SeqLM.from_preset(folder)
    assert_close(model(inputs), extra["text_logits"], mask=inputs["decoder_attention_mask"], what="text logits")
    assert_close(model.backbone(inputs)["encoder_last_hidden_state"], extra["text_encoder"],
                 mask=inputs["attention_mask"], what="text encoder")
    ids = {k: inputs[k] for k in ("input_ids", "attention_mask")}
    np.testing.assert_array_equal(np.asarray(model.generate(ids, **GREEDY)), extra["text_greedy"])
    np.testing.assert_array_equal(np.asarray(model.generate(ids, tgt_lang="__eng__", **GREEDY)), extra["text_lang"])
    assert extra["text_lang"][0, 1] == LANGS["eng"]


def test_bad_config_and_inputs(tmp_path):
    folder, _ = _reference("model")
    config = json.loads((folder / "config.json").read_text())
    for key, value, match in (("position_embeddings_type", "alibi", "position_embeddings_type"),
                              ("conv_depthwise_kernel_size", 4, "conv_depthwise_kernel_size"),
                              ("speech_encoder_attention_heads", 3, "speech_encoder_attention_heads")):
        bad = tmp_path / key
        bad.mkdir()
        (bad / "config.json").write_text(json.dumps({**config, key: value}))
        with pytest.raises(ConfigError, match=match):
            km.Backbone.from_preset(bad, load_weights=False)
    v2, _ = _reference("v2_speech")
    config = json.loads((v2 / "config.json").read_text())
    for key, value, match in (("position_embeddings_type", "relative", "position_embeddings_type"),
                              ("speech_encoder_chunk_size", 0, "speech_encoder_chunk_size")):
        bad = tmp_path / f"v2_{key}"
        bad.mkdir()
        (bad / "config.json").write_text(json.dumps({**config, key: value}))
        with pytest.raises(ConfigError, match=match):
            km.Backbone.from_preset(bad, load_weights=False)
    model = km.Backbone.from_preset(folder)
    with pytest.raises(InputError, match="feature_projection_input_dim"):
        model.encode_speech(np.zeros((1, 8, 5), "float32"))


def test_save_to_preset_reloads_in_transformers(tmp_path):
    import torch
    import transformers

    folder, expected = _reference("speech")
    km.Seq2SeqLM.from_preset(folder).save_to_preset(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["architectures"] == ["SeamlessM4TForSpeechToText"]
    theirs = transformers.SeamlessM4TForSpeechToText.from_pretrained(tmp_path).eval()
    with torch.no_grad():
        logits = theirs(**{k: torch.tensor(v) for k, v in _speech_inputs().items()}).logits.numpy()
    assert_close(logits, expected["logits"], mask=_speech_inputs()["decoder_attention_mask"], what="reloaded")

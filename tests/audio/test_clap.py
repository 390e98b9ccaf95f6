"""CLAP (audio-text dual encoder) against Transformers.

Two tiny references, built once per run (tests.parity helpers: weights at unit scale, BatchNorm
statistics measured on the inputs, reloaded from the saved files): ``unfused`` (no qkv bias, ReLU
in the audio blocks, GELU projections, towers and projection of different widths) and ``fused``
(``enable_fusion``: 4-channel features, the local-crop convolution and the AFF block, one row not
``is_longer``). A 101-frame spectrogram exercises the bicubic resize to the model's 128 frames;
the 8x8 patch grid with 4x4 windows exercises shifted windows. Each records ClapModel's outputs
and both towers' last hidden states; ``unfused`` also records ClapAudioModelWithProjection /
ClapTextModelWithProjection loaded from the same files.
"""

import json

import numpy as np
import pytest

from tests.parity import (_key, assert_close, cached_folder, calibrate_batch_norms, jit_under_jax, randomize_weights,
                          to_numpy)

AUDIO = dict(spec_size=32, num_mel_bins=8, window_size=4, patch_size=4, patch_stride=[4, 4], depths=[2, 2],
             num_attention_heads=[2, 4], patch_embeds_hidden_size=16, hidden_size=32)
TEXT = dict(vocab_size=99, hidden_size=24, num_hidden_layers=2, num_attention_heads=4, intermediate_size=37,
            max_position_embeddings=20)
KINDS = {
    "unfused": dict(audio=dict(qkv_bias=False, hidden_act="relu"), projection_hidden_act="gelu"),
    "fused": dict(audio=dict(enable_fusion=True, fusion_type="aff_2d"), projection_hidden_act="relu"),
}


def _config(kind):
    import transformers as T

    k = KINDS[kind]
    return T.ClapConfig(text_config=TEXT, audio_config=dict(AUDIO, **k["audio"]), projection_dim=20,
                        projection_hidden_act=k["projection_hidden_act"])


def _inputs(kind):
    rng = np.random.RandomState(0)
    ids = rng.randint(3, 99, size=(3, 7)).astype("int64")
    mask = np.ones_like(ids)
    ids[:, 0], ids[:, -1] = 0, 2
    ids[2, 4], ids[2, 5:], mask[2, 5:] = 2, 1, 0  # padded with RoBERTa's pad id 1
    fused = kind == "fused"
    out = {"input_ids": ids, "attention_mask": mask,
           "input_features": rng.randn(3, 4 if fused else 1, 101, 8).astype("float32")}
    if fused:
        out["is_longer"] = np.array([[True], [False], [True]])
    return out


def reference(kind):
    def build(tmp):
        import torch
        import transformers as T

        torch.manual_seed(0)
        model = randomize_weights(T.ClapModel(_config(kind)).eval())
        inputs = {k: torch.tensor(v) for k, v in _inputs(kind).items()}
        calibrate_batch_norms(model, inputs)
        model.save_pretrained(tmp / "model")
        model = T.ClapModel.from_pretrained(tmp / "model").eval()
        audio = {k: v for k, v in inputs.items() if k in ("input_features", "is_longer")}
        text = {k: v for k, v in inputs.items() if k in ("input_ids", "attention_mask")}
        with torch.no_grad():
            out = model(**inputs)
            expected = {k: getattr(out, k).numpy() for k in ("logits_per_audio", "logits_per_text", "text_embeds",
                                                             "audio_embeds")}
            expected["text_hidden"] = out.text_model_output.last_hidden_state.numpy()
            expected["audio_hidden"] = out.audio_model_output.last_hidden_state.numpy()
            if kind == "unfused":
                for name, cls, feed in (("audio_proj", T.ClapAudioModelWithProjection, audio),
                                        ("text_proj", T.ClapTextModelWithProjection, text)):
                    tower = cls.from_pretrained(tmp / "model").eval()
                    tower.save_pretrained(tmp / name)
                    o = type(tower).from_pretrained(tmp / name).eval()(**feed)
                    embeds = o.audio_embeds if name == "audio_proj" else o.text_embeds
                    expected[f"{name}_embeds"] = embeds.numpy()
                    expected[f"{name}_hidden"] = o.last_hidden_state.numpy()
                    # the bare tower (ClapAudioModel / ClapTextModel: unprefixed names), same weights
                    inner = tower.audio_model if name == "audio_proj" else tower.text_model
                    bare = (T.ClapAudioModel if name == "audio_proj" else T.ClapTextModel)(tower.config).eval()
                    bare.load_state_dict(inner.state_dict())
                    bare.save_pretrained(tmp / f"{name}_bare")
                    expected[f"{name}_bare_hidden"] = bare(**feed).last_hidden_state.numpy()
        np.savez(tmp / "expected.npz", **expected)

    import transformers

    folder = cached_folder(_key(f"clap-{kind}", open(__file__).read(), transformers.__version__), build)
    return folder, dict(np.load(folder / "expected.npz"))


def _ours(kind):
    return {k: (v.astype("int32") if v.dtype == np.int64 else v) for k, v in _inputs(kind).items()}


def _audio(inputs):
    return {k: v for k, v in inputs.items() if k in ("input_features", "is_longer")}


@pytest.mark.parametrize("kind", list(KINDS))
def test_parity_outputs_and_tower_hidden_states(kind):
    import keras_models as km

    folder, expected = reference(kind)
    model = km.ZeroShotAudioClassifier.from_preset(folder / "model")
    assert type(model).__name__ == "ClapZeroShotAudioClassifier"
    inputs = _ours(kind)
    bb = model.backbone
    text = {k: inputs[k] for k in ("input_ids", "attention_mask")}

    def run(x):  # one compiled function under jax (eager jax dispatches op by op)
        t = {k: x[k] for k in ("input_ids", "attention_mask")}
        return model(x), bb.text_model(t), bb.audio_model(_audio(x)), bb.encode_audio(x)

    out, text_hidden, audio_hidden, audio_features = [to_numpy(v) for v in jit_under_jax(run)(inputs)]
    for k in ("logits_per_audio", "logits_per_text", "text_embeds", "audio_embeds"):
        assert_close(out[k], expected[k], what=f"{kind} {k}")
    assert_close(text_hidden, expected["text_hidden"], mask=text["attention_mask"], what="text tower")
    # Transformers' (batch, hidden, c, positions) map, compared channels_last
    assert_close(audio_hidden, expected["audio_hidden"].transpose(0, 2, 3, 1), what="audio tower")
    # get_audio_features: the projected features before normalisation
    a = audio_features / np.linalg.norm(audio_features, axis=-1, keepdims=True)
    np.testing.assert_allclose(a, expected["audio_embeds"], atol=1e-5)
    if kind == "fused":  # bad audio inputs fail at trace time, naming what is wrong
        from keras_models.errors import InputError

        rng = np.random.RandomState(0)
        for shape, what in (((1, 4, 200, 8), "frames"), ((1, 4, 50, 9), "mel bins"), ((1, 1, 50, 8), "channels")):
            with pytest.raises(InputError, match=what):
                bb.audio_model({"input_features": rng.randn(*shape).astype("float32"),
                                "is_longer": np.ones((1, 1), bool)})


@pytest.mark.one_case_per_pass("tower")
@pytest.mark.parametrize("tower", ["audio", "text"])
def test_with_projection_towers(tower):
    """ClapAudioModelWithProjection / ClapTextModelWithProjection checkpoints (prefixed tower + head)."""
    from keras_models.models import ClapAudioEmbedder, ClapTextEmbedder

    folder, expected = reference("unfused")
    inputs = _ours("unfused")
    if tower == "audio":
        model = ClapAudioEmbedder.from_preset(folder / "audio_proj")
        out = to_numpy(model.predict_on_batch(_audio(inputs)))
        want_hidden = expected["audio_proj_hidden"].transpose(0, 2, 3, 1)
    else:
        model = ClapTextEmbedder.from_preset(folder / "text_proj")
        out = to_numpy(model.predict_on_batch({k: inputs[k] for k in ("input_ids", "attention_mask")}))
        want_hidden = expected["text_proj_hidden"]
    assert model.head_from_checkpoint
    assert_close(out[f"{tower}_embeds"], expected[f"{tower}_proj_embeds"], what=f"{tower} embeds")
    mask = inputs["attention_mask"] if tower == "text" else None
    assert_close(out["last_hidden_state"], want_hidden, mask=mask, what=f"{tower} hidden")
    # the bare tower checkpoint (ClapAudioModel / ClapTextModel) through km.Backbone
    import keras_models as km

    bare = km.Backbone.from_preset(folder / f"{tower}_proj_bare")
    assert type(bare) is type(model.backbone)
    feed = _audio(inputs) if tower == "audio" else {k: inputs[k] for k in ("input_ids", "attention_mask")}
    want = expected[f"{tower}_proj_bare_hidden"]
    assert_close(bare.predict_on_batch(feed), want.transpose(0, 2, 3, 1) if tower == "audio" else want, mask=mask,
                 what=f"bare {tower} tower")


def test_save_to_preset_reloads_in_transformers(tmp_path):
    import torch
    import transformers as T

    import keras_models as km

    folder, expected = reference("fused")
    model = km.ZeroShotAudioClassifier.from_preset(folder / "model")
    model.save_to_preset(tmp_path / "saved")
    saved = json.loads((tmp_path / "saved" / "config.json").read_text())
    assert saved["model_type"] == "clap" and saved["audio_config"]["enable_fusion"] is True
    hf_model = T.ClapModel.from_pretrained(tmp_path / "saved").eval()
    with torch.no_grad():
        out = hf_model(**{k: torch.tensor(v) for k, v in _inputs("fused").items()})
    assert_close(out.logits_per_audio.numpy(), expected["logits_per_audio"], what="transformers reload")
    assert_close(out.audio_embeds.numpy(), expected["audio_embeds"], what="transformers reload")


def test_keras_round_trip(tmp_path):
    """The fused audio tower (BatchNorm, AFF block, Swin stages) through a .keras file: the same
    spec and weights, and the reloaded tower still matches Transformers."""
    import keras

    import keras_models as km

    folder, expected = reference("fused")
    tower = km.Backbone.from_preset(folder / "model").audio_model
    tower.save(tmp_path / "m.keras")
    restored = keras.saving.load_model(tmp_path / "m.keras")
    assert type(restored) is type(tower) and restored.spec == tower.spec
    for a, b in zip(tower.weights, restored.weights):
        assert a.path.endswith(b.path)
        np.testing.assert_array_equal(to_numpy(b), to_numpy(a))
    assert_close(restored.predict_on_batch(_audio(_ours("fused"))), expected["audio_hidden"].transpose(0, 2, 3, 1),
                 what="restored audio tower")


def test_bad_config_values_name_the_key_and_file(tmp_path):
    import keras_models as km
    from keras_models.errors import ConfigError

    folder, _ = reference("unfused")
    config = json.loads((folder / "model" / "config.json").read_text())
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "model.safetensors").symlink_to(folder / "model" / "model.safetensors")
    cases = [
        (lambda c: c.pop("audio_config"), "audio_config"),
        (lambda c: c["audio_config"].update(hidden_size=48), "hidden_size"),
        (lambda c: c["audio_config"].update(depths=[2]), "depths"),
        (lambda c: c["audio_config"].update(num_attention_heads=[3, 4]), "num_attention_heads"),
        (lambda c: c["audio_config"].update(spec_size=36), "spec_size"),
        (lambda c: c["audio_config"].update(window_size=8), "window_size"),
        (lambda c: c["audio_config"].update(enable_fusion=True, fusion_type="channel_map"), "channel_map"),
        (lambda c: c["audio_config"].update(flatten_patch_embeds=False), "flatten_patch_embeds"),
        (lambda c: c["audio_config"].update(patch_stride="4"), "patch_stride"),
        (lambda c: c.update(projection_hidden_act="swishy"), "projection_hidden_act"),
        (lambda c: c["text_config"].update(hidden_act="nope"), "hidden_act"),
        (lambda c: c["text_config"].update(model_type="bert"), "text_config"),
        (lambda c: c.update(logit_scale_init_value=0.0), "logit_scale_init_value"),
    ]
    for mutate, key in cases:
        c = json.loads(json.dumps(config))
        mutate(c)
        (bad / "config.json").write_text(json.dumps(c))
        with pytest.raises(ConfigError, match=key) as info:
            km.ZeroShotAudioClassifier.from_preset(bad)
        assert "config.json" in str(info.value)


# --- preprocessing (numpy / Rust: backend-independent) ---------------------------------------------
SR = 16000
FE = dict(sampling_rate=SR, hop_length=160, fft_window_size=400, max_length_s=1, frequency_max=7000)


def _waves():
    rng = np.random.RandomState(0)
    return [(rng.randn(n) * 0.1).astype("float32") for n in (5000, 16000, 23000)]


@pytest.mark.backend_independent
@pytest.mark.parametrize("truncation", ["fusion", "rand_trunc"])
def test_feature_extractor_matches_transformers(truncation, tmp_path):
    """Short clips (repeatpad / repeat / pad), an exact-length one and a long one (random crop or
    fusion crops: the same numpy draws after the same seed)."""
    import transformers as T

    import keras_models as km

    T.ClapFeatureExtractor(truncation=truncation, **FE).save_pretrained(tmp_path)
    hf = T.ClapFeatureExtractor.from_pretrained(tmp_path)
    ours = km.AudioFeatureExtractor.from_preset(tmp_path)
    assert type(ours).__name__ == "ClapFeatureExtractor"
    for padding in ("repeatpad", "repeat", "pad"):
        np.random.seed(3)
        want = hf(_waves(), sampling_rate=SR, padding=padding, return_tensors="np")
        np.random.seed(3)
        got = ours(_waves(), sampling_rate=SR, padding=padding)
        assert got["input_features"].shape == want["input_features"].shape
        np.testing.assert_array_equal(got["is_longer"], want["is_longer"])
        short = slice(0, 2)  # deterministic rows: equal; the fused long row: torch's float32 bilinear shrink
        np.testing.assert_allclose(got["input_features"][short], want["input_features"][short], rtol=0, atol=1e-5)
        np.testing.assert_allclose(got["input_features"], want["input_features"], rtol=0, atol=1e-4)


@pytest.mark.backend_independent
def test_processor_ids_and_features_equal_transformers(tmp_path):
    import shutil

    import transformers as T
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    import keras_models as km

    folder, _ = reference("unfused")
    shutil.copytree(folder / "model", tmp_path / "m")
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    # the corpus' own characters (not the 256-byte alphabet), so every id fits the tiny model's 99 rows
    trainer = trainers.BpeTrainer(vocab_size=99, special_tokens=["<s>", "<pad>", "</s>", "<unk>", "<mask>"],
                                  show_progress=False)
    tok.train_from_iterator(["the sound of a dog barking", "a cat meowing loudly", "rain on a roof"] * 5, trainer)
    tok.model.save(str(tmp_path))
    # (Transformers 5's RobertaTokenizer(vocab_file=, merges_file=) ignores both files: load the folder)
    hf_tok = T.RobertaTokenizer.from_pretrained(str(tmp_path))
    assert len(hf_tok) > 50  # the trained vocabulary, not only the special tokens
    processor = T.ClapProcessor(feature_extractor=T.ClapFeatureExtractor(truncation="rand_trunc", **FE),
                                tokenizer=hf_tok)
    processor.save_pretrained(tmp_path / "m")
    texts = ["the sound of a dog", "rain"]
    np.random.seed(0)
    want = processor(text=texts, audio=_waves(), sampling_rate=SR, padding=True, return_tensors="np")
    assert int(want["input_ids"].max()) < 99
    model = km.ZeroShotAudioClassifier.from_preset(tmp_path / "m")
    np.random.seed(0)
    got = model.preprocessor(text=texts, audios=_waves(), sampling_rate=SR)
    for k in ("input_ids", "attention_mask"):
        np.testing.assert_array_equal(np.asarray(got[k]), want[k])
    np.testing.assert_allclose(got["input_features"], want["input_features"], atol=1e-5)
    ids = km.Tokenizer.from_preset(tmp_path / "m")(texts, padding=True)["input_ids"]
    np.testing.assert_array_equal(np.asarray(ids), want["input_ids"])


@pytest.mark.backend_independent
def test_feature_extractor_bad_config_and_inputs(tmp_path):
    import keras_models as km
    from keras_models.errors import ConfigError, InputError

    base = dict(FE, feature_extractor_type="ClapFeatureExtractor")
    for change, key in ((dict(truncation="crop"), "truncation"), (dict(padding="zeros"), "padding"),
                        (dict(max_length_s=1e6), "max_length_s"), (dict(fft_window_size="400"), "fft_window_size"),
                        (dict(frequency_max=9000), "frequency_max")):
        (tmp_path / "preprocessor_config.json").write_text(json.dumps({**base, **change}))
        with pytest.raises(ConfigError, match=key):
            km.AudioFeatureExtractor.from_preset(tmp_path)
    (tmp_path / "preprocessor_config.json").write_text(json.dumps(dict(base, fft_window_size=401)))
    fe = km.AudioFeatureExtractor.from_preset(tmp_path)
    with pytest.raises(InputError, match="different shapes"):  # 1 s -> 100 frames, a fused long clip -> 101
        fe([np.zeros(16000, "float32"), np.ones(20000, "float32")], sampling_rate=SR)
    with pytest.raises(InputError, match="sampling_rate|Hz"):
        fe([np.zeros(16000, "float32")], sampling_rate=100)

"""Audio front-ends that call optional libraries, against Transformers 5 on the same files:
Pop2Piano's MIDI tokenizer (pretty-midi) and feature extractor (essentia beat tracking, librosa
resampling), and VITS's phonemizing tokenizer (phonemizer + espeak NG from espeakng-loader).
Host-side numpy / library code: run once (backend_independent)."""

import json
import sys

import numpy as np
import pytest

import keras_models as km
from keras_models.errors import ConfigError, InputError, TokenizerFileError
from keras_models.preprocessing.optional import MissingPackageError

pytestmark = pytest.mark.backend_independent


def _vocab(n_time=40):
    kinds = (("TOKEN_SPECIAL", 3), ("TOKEN_NOTE", 128), ("TOKEN_VELOCITY", 2), ("TOKEN_TIME", n_time))
    return {f"{v}_{kind}": i for i, (kind, v) in enumerate((k, v) for k, n in kinds for v in range(n))}


def _song(seconds, bpm, seed, sr=22050):
    """Noise, a low hum and a decaying 440 Hz click on every beat."""
    rng = np.random.RandomState(seed)
    t = np.arange(int(seconds * sr)) / sr
    x = 0.05 * rng.randn(t.size) + 0.1 * np.sin(2 * np.pi * 110 * t)
    for k in range(int(seconds * bpm / 60) + 1):
        s = int(k * 60 / bpm * sr)
        n = min(2000, t.size - s)
        if n > 0:
            x[s:s + n] += np.sin(2 * np.pi * 440 * t[:n]) * np.exp(-t[:n] * 30)
    return x.astype(np.float32)


FE_CONFIG = dict(feature_size=32, window_size=512, hop_length=256)


@pytest.fixture(scope="module")
def fe_pair(tmp_path_factory):
    pytest.importorskip("essentia")
    from transformers import Pop2PianoFeatureExtractor

    folder = tmp_path_factory.mktemp("p2p_fe")
    theirs = Pop2PianoFeatureExtractor(**FE_CONFIG)
    theirs.save_pretrained(folder)
    return theirs, km.AudioFeatureExtractor.from_preset(folder)


def _check_features(want, got):
    assert sorted(want) == sorted(got)
    for key in want:
        w = np.asarray(want[key])
        assert got[key].shape == w.shape and got[key].dtype == w.dtype, key
        np.testing.assert_allclose(got[key], w, atol=1e-5, rtol=0, err_msg=key)


def test_pop2piano_feature_extractor_equals_transformers(fe_pair):
    theirs, ours = fe_pair
    assert type(ours).__name__ == "Pop2PianoFeatureExtractor"
    a, b = _song(4.0, 120, 0), _song(3.5, 100, 1)
    cases = [dict(audio=a, sampling_rate=22050),
             dict(audio=a, sampling_rate=22050, return_attention_mask=True),
             dict(audio=[a, b], sampling_rate=[22050, 22050], steps_per_beat=3, return_attention_mask=True),
             dict(audio=[a, b.astype(np.float64)], sampling_rate=[22050, 22050])]
    for args in cases:
        _check_features(theirs(**args), ours(**args))


def test_pop2piano_feature_extractor_resamples_like_transformers(fe_pair):
    pytest.importorskip("resampy")
    theirs, ours = fe_pair
    b = _song(4.0, 100, 1, sr=16000)
    _check_features(theirs(b, sampling_rate=16000), ours(b, sampling_rate=16000))


def test_pop2piano_feature_extractor_bad_input(fe_pair, tmp_path):
    _, ours = fe_pair
    with pytest.raises(InputError, match="single-channel"):
        ours(np.zeros((2, 100), np.float32), sampling_rate=22050)
    with pytest.raises(InputError, match="NaN"):
        ours(np.full(30000, np.nan, np.float32), sampling_rate=22050)
    with pytest.raises(InputError, match="beat"):
        ours(np.zeros(3000, np.float32), sampling_rate=22050)
    (tmp_path / "preprocessor_config.json").write_text(json.dumps(
        {"feature_extractor_type": "Pop2PianoFeatureExtractor", "window_size": 0}))
    with pytest.raises(ConfigError, match="window_size"):
        km.AudioFeatureExtractor.from_preset(tmp_path)


@pytest.fixture(scope="module")
def tok_pair(tmp_path_factory):
    pytest.importorskip("pretty_midi")
    from transformers import Pop2PianoTokenizer

    folder = tmp_path_factory.mktemp("p2p_tok")
    (folder / "vocab.json").write_text(json.dumps(_vocab()))
    Pop2PianoTokenizer(str(folder / "vocab.json")).save_pretrained(folder)
    config = json.loads((folder / "tokenizer_config.json").read_text())
    config.update(default_velocity=70, num_bars=2)  # as the hub checkpoint's file holds them
    (folder / "tokenizer_config.json").write_text(json.dumps(config))
    theirs = Pop2PianoTokenizer.from_pretrained(folder)
    assert theirs.default_velocity == 70
    return theirs, km.Tokenizer.from_preset(folder)


def test_pop2piano_tokenizer_encodes_notes_like_transformers(tok_pair, tmp_path):
    import pretty_midi

    theirs, ours = tok_pair
    assert type(ours).__name__ == "Pop2PianoTokenizer"
    assert ours.pad_token_id == theirs.pad_token_id and ours.eos_token_id == theirs.eos_token_id
    notes = np.array([[[0, 3, 60, 1], [1, 5, 64, 90], [2, 4, 10, 0]], [[0, 1, 20, 1], [4, 6, 70, 1], [9, 45, 71, 1]]])
    single = [pretty_midi.Note(velocity=80, pitch=62, start=0.2, end=2.6), pretty_midi.Note(60, 200, 1.0, 3.0)]
    for args in (dict(notes=notes), dict(notes=notes, padding=True), dict(notes=notes[0]), dict(notes=single),
                 dict(notes=[single, single[:1]], padding="max_length", max_length=12),
                 dict(notes=notes, padding=True, truncation=True, max_length=7, return_tensors="np")):
        want, got = theirs(**args), ours(**args)
        assert sorted(want) == sorted(got), args
        for key in want:
            w = want[key].tolist() if isinstance(want[key], np.ndarray) else want[key]
            assert isinstance(got[key], np.ndarray) == isinstance(want[key], np.ndarray), args
            assert (got[key].tolist() if isinstance(got[key], np.ndarray) else got[key]) == w, (args, key)
    # a folder with only vocab.json and a bare config: specials appended after the vocabulary, as Transformers 5
    (tmp_path / "vocab.json").write_text(json.dumps(_vocab(20)))
    (tmp_path / "tokenizer_config.json").write_text(json.dumps({"tokenizer_class": "Pop2PianoTokenizer"}))
    from transformers import Pop2PianoTokenizer

    bare = km.Tokenizer.from_preset(tmp_path)
    assert bare.get_vocab() == Pop2PianoTokenizer.from_pretrained(tmp_path).get_vocab()
    ours.save_to_preset(tmp_path / "again")
    assert Pop2PianoTokenizer.from_pretrained(tmp_path / "again")(notes[0])["token_ids"] == ours(notes[0])["token_ids"]


def _random_rows(rows, length, seed):
    """Plausible generated ids: time / velocity / note events, eos (1) at varying places, then pad (0)."""
    rng = np.random.RandomState(seed)
    out = np.zeros((rows, length), np.int64)
    for r in range(rows):
        n = rng.randint(length // 2, length)
        for j in range(n):
            kind = rng.rand()
            out[r, j] = (133 + rng.randint(0, 6) if kind < 0.3 else 131 + rng.randint(0, 2) if kind < 0.45
                         else 3 + rng.choice([40, 41, 60, 62, 64]))
        out[r, n] = 1
    return out


def _note_tuples(notes):
    return [(n.pitch, int(n.velocity), round(float(n.start), 5), round(float(n.end), 5)) for n in notes]


def test_pop2piano_batch_decode_equals_transformers(tok_pair, fe_pair):
    (their_tok, ours_tok), (their_fe, ours_fe) = tok_pair, fe_pair
    a, b = _song(4.0, 120, 0), _song(3.5, 100, 1)
    for audio, rate, kwargs in ((a, 22050, {}), ([a, b], [22050, 22050], dict(return_attention_mask=True))):
        want_fe, got_fe = their_fe(audio, sampling_rate=rate, **kwargs), ours_fe(audio, sampling_rate=rate, **kwargs)
        ids = _random_rows(len(got_fe["input_features"]), 24, seed=len(kwargs))
        want = their_tok.batch_decode(ids, want_fe)
        got = ours_tok.batch_decode(ids, got_fe)
        assert len(got["notes"]) > 3
        assert _note_tuples(got["notes"]) == _note_tuples(want["notes"])
        assert len(got["pretty_midi_objects"]) == len(want["pretty_midi_objects"])
        for g, w in zip(got["pretty_midi_objects"], want["pretty_midi_objects"]):
            assert _note_tuples(g.instruments[0].notes) == _note_tuples(w.instruments[0].notes)
        assert "pretty_midi_objects" not in ours_tok.batch_decode(ids, got_fe, return_midi=False)
    with pytest.raises(InputError, match="attention_mask"):
        ours_tok.batch_decode(ids, {k: v for k, v in got_fe.items() if k != "attention_mask"})
    with pytest.raises(InputError, match="eos"):
        ours_tok.batch_decode(np.zeros_like(ids), got_fe)


def test_pop2piano_tokenizer_bad_files(tmp_path):
    (tmp_path / "vocab.json").write_text(json.dumps({"3_TOKEN_BEAT": 0}))
    (tmp_path / "tokenizer_config.json").write_text(json.dumps({"tokenizer_class": "Pop2PianoTokenizer"}))
    with pytest.raises(TokenizerFileError, match="TOKEN_BEAT"):
        km.Tokenizer.from_preset(tmp_path)
    (tmp_path / "vocab.json").write_text(json.dumps(_vocab(4)))
    (tmp_path / "tokenizer_config.json").write_text(json.dumps({"tokenizer_class": "Pop2PianoTokenizer",
                                                                "num_bars": 0}))
    with pytest.raises(TokenizerFileError, match="num_bars"):
        km.Tokenizer.from_preset(tmp_path)


def test_missing_extras_name_the_package(tok_pair, fe_pair, monkeypatch, tmp_path):
    _, ours_tok = tok_pair
    _, ours_fe = fe_pair
    monkeypatch.setitem(sys.modules, "pretty_midi", None)
    with pytest.raises(ImportError, match=r"pretty-midi.*keras-models\[midi\]"):
        ours_tok.batch_decode(np.ones((1, 3), np.int64), {"beatsteps": np.zeros((1, 3)),
                                                         "extrapolated_beatstep": np.zeros((1, 3))})
    monkeypatch.setitem(sys.modules, "essentia.standard", None)
    with pytest.raises(MissingPackageError, match=r"essentia.*keras-models\[music\]"):
        ours_fe(_song(1.0, 120, 0), sampling_rate=22050)
    monkeypatch.setitem(sys.modules, "phonemizer", None)
    (tmp_path / "vocab.json").write_text(json.dumps({"_": 0, "a": 1}))
    (tmp_path / "tokenizer_config.json").write_text(json.dumps({"tokenizer_class": "VitsTokenizer",
                                                                "phonemize": True}))
    with pytest.raises(ImportError, match=r"phonemizer.*keras-models\[phonemes\]"):
        km.Tokenizer.from_preset(tmp_path).encode("a")


def test_vits_phonemizing_tokenizer_equals_transformers(tmp_path):
    pytest.importorskip("phonemizer")
    from transformers import VitsTokenizer

    from keras_models.preprocessing.optional import phonemizer_with_espeak

    phonemizer = phonemizer_with_espeak("test")  # points Transformers' call at the same espeak NG
    texts = ["Hello, World! It's 42 dogs.", "The QUICK brown fox; jumped over 3 lazy dogs?",
             "Dr. Smith paid $5.50 - twice.", "  spaces   and\ttabs  ", "Ñandú, café!"]
    phones = phonemizer.phonemize(texts, language="en-us", backend="espeak", strip=True,
                                  preserve_punctuation=True, with_stress=True)
    chars = sorted(set("".join(phones)) - {"ɾ", "z"})  # two characters left out: they read as <unk>
    vocab = {c: i for i, c in enumerate(["_"] + chars + ["<unk>", "<pad>"])}
    (tmp_path / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
    for i, kw in enumerate((dict(), dict(add_blank=False), dict(normalize=False))):
        theirs = VitsTokenizer(str(tmp_path / "vocab.json"), phonemize=True, **kw)
        theirs.save_pretrained(tmp_path / str(i))
        ours = km.Tokenizer.from_preset(tmp_path / str(i))
        for t in texts:
            assert ours.encode(t) == theirs(t).input_ids, (kw, t)
        want, got = theirs(texts, padding=True), ours(texts)
        np.testing.assert_array_equal(got["input_ids"], np.array(want["input_ids"]))
        np.testing.assert_array_equal(got["attention_mask"], np.array(want["attention_mask"]))

"""automatic-speech-recognition (CTC Wav2Vec2), audio-classification (Wav2Vec2 classifier) and
zero-shot-audio-classification (CLAP) against Transformers' pipelines on the same tiny folders
(the models' own parity tests in tests/audio/). Pipeline post-processing is backend-independent,
so these tests run in the torch pass only (the models' numerics are covered on every backend by
their parity tests)."""

import shutil

import numpy as np
import pytest

import keras_models as km
from keras_models.errors import KerasModelsError
from tests.parity import _key, cached_folder
from tests.pipelines.refs import assert_same

pytestmark = pytest.mark.backend_independent

RNG = np.random.RandomState(3)
WAVES = [(RNG.randn(n) * 0.5).astype("float32") for n in (400, 333, 520)]


def _w2v(case):
    from tests.audio.test_wav2vec2 import _reference

    folder, _ = _reference(case)
    return folder


def test_ctc_speech_recognition_matches_transformers():
    folder = _w2v("w2v_group_ctc")
    calls = [([WAVES[0]], {}), ([[WAVES[1], WAVES[2]]], {}),
             ([{"raw": WAVES[2], "sampling_rate": 16000}], {})]
    expected = _hf_outputs("automatic-speech-recognition", folder, calls)
    pipe = km.pipeline("automatic-speech-recognition", model=folder)
    for (args, kwargs), theirs in zip(calls, expected):
        assert_same(pipe(*args, **kwargs), theirs, path="asr-ctc")
    assert_same(pipe([WAVES[1], WAVES[2]], batch_size=2), expected[1])
    assert km.pipeline(model=folder).task == "automatic-speech-recognition"  # ForCTC -> ASR
    with pytest.raises(KerasModelsError, match="sampling_rate"):
        pipe({"raw": WAVES[0]})
    with pytest.raises(KerasModelsError, match="mono"):
        pipe(np.zeros((2, 3, 4), "float32"))
    with pytest.raises(KerasModelsError, match="max_new_tokens"):
        pipe(WAVES[0], max_new_tokens=3)


def test_audio_classification_matches_transformers():
    folder = _w2v("w2v_cls")
    calls = [([WAVES[0]], {}), ([[WAVES[1], WAVES[2]]], {"top_k": 2}),
             ([WAVES[2]], {"function_to_apply": "sigmoid", "top_k": 9})]
    expected = _hf_outputs("audio-classification", folder, calls)
    pipe = km.pipeline("audio-classification", model=folder)
    for (args, kwargs), theirs in zip(calls, expected):
        assert_same(pipe(*args, **kwargs), theirs, path=f"audio-classification {kwargs}")
    with pytest.raises(KerasModelsError, match="function_to_apply"):
        pipe(WAVES[0], function_to_apply="relu")
    with pytest.raises(KerasModelsError, match="top_k"):
        pipe(WAVES[0], top_k=0)


def _clap_folder():
    from tests.audio.test_clap import AUDIO, FE, reference

    fe = dict(FE, feature_size=AUDIO["num_mel_bins"])

    def build(tmp):
        import transformers as T
        from tokenizers import Tokenizer, models, pre_tokenizers, trainers

        src, _ = reference("unfused")
        shutil.copytree(src / "model", tmp / "m")
        tok = Tokenizer(models.BPE())
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        trainer = trainers.BpeTrainer(vocab_size=99, special_tokens=["<s>", "<pad>", "</s>", "<unk>", "<mask>"],
                                      show_progress=False)  # the characters seen only: 99 ids
        tok.train_from_iterator(["This is a sound of a dog barking.", "a cat meowing", "rain on a roof"] * 5, trainer)
        tok.model.save(str(tmp))
        hf_tok = T.RobertaTokenizer.from_pretrained(tmp)  # (5.x ignores vocab_file= / merges_file=)
        T.ClapProcessor(feature_extractor=T.ClapFeatureExtractor(truncation="rand_trunc", **fe),
                        tokenizer=hf_tok).save_pretrained(tmp / "m")

    return cached_folder(_key("pipe-clap-v3", fe), build) / "m"


def test_zero_shot_audio_classification_matches_transformers():
    folder = _clap_folder()
    waves = [np.tile(w, 8)[:3000] for w in WAVES[:2]]  # shorter than the extractor's clip: no random crop
    labels = ["dog", "cat", "rain"]
    calls = [([waves[0]], {"candidate_labels": labels}),
             ([waves[1]], {"candidate_labels": labels[:2], "hypothesis_template": "a {} sound"})]
    expected = _hf_outputs("zero-shot-audio-classification", folder, calls)
    pipe = km.pipeline("zero-shot-audio-classification", model=folder)
    for (args, kwargs), theirs in zip(calls, expected):
        assert_same(pipe(*args, **kwargs), theirs, path=f"zero-shot-audio {kwargs}")
    assert_same(pipe(waves, candidate_labels=labels)[0], expected[0])
    with pytest.raises(KerasModelsError, match="candidate_labels"):
        pipe(waves[0])
    with pytest.raises(KerasModelsError, match="hypothesis_template"):
        pipe(waves[0], candidate_labels=labels, hypothesis_template="no slot")


def _hf_outputs(task, folder, calls):
    """Transformers' pipeline outputs on ``calls`` (waveform arrays inside), built once and cached."""
    import copy
    import hashlib
    import json

    def digest(x):
        if isinstance(x, np.ndarray):
            return hashlib.sha1(x.tobytes()).hexdigest()
        if isinstance(x, dict):
            return {k: digest(v) for k, v in sorted(x.items())}
        if isinstance(x, (list, tuple)):
            return [digest(v) for v in x]
        return x

    key = _key(f"hfpipe-{task}", str(folder), json.dumps(digest(calls), sort_keys=True))

    def build(tmp):
        import transformers

        pipe = transformers.pipeline(task, model=str(folder), device="cpu")
        results = [_plain(pipe(*copy.deepcopy(args), **kwargs)) for args, kwargs in calls]  # it pops dict keys
        (tmp / "out.json").write_text(json.dumps(results))

    return json.loads((cached_folder(key, build) / "out.json").read_text())


def _plain(x):
    if isinstance(x, dict):
        return {k: _plain(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_plain(v) for v in x]
    return x.tolist() if hasattr(x, "tolist") else x

"""Whisper long-form options against Transformers' WhisperGenerationMixin on the tiny timestamp
model of test_whisper (24-frame windows, so a 70-frame input is long-form):
``condition_on_prev_tokens`` (alone, with prompt_ids, batched with attention_mask), temperature
fallback (compression ratio and average log-prob equal Transformers', which windows fall back,
the fallback pass is sampled), and no-speech skipping."""

import inspect
import json

import numpy as np
import pytest

import keras_models as km
from keras_models.models.whisper import scoring as whisper_scoring
from keras_models.models.whisper import tasks as whisper_tasks
from tests.audio.test_whisper import _ts_inputs, _whisper_ts
from tests.parity import cached_folder

PROMPT_IDS = np.array([92, 5, 6])
SETTINGS = {  # name -> (input, generate kwargs), language="en", max_new_tokens=5 each
    "cond": ("long1", dict(condition_on_prev_tokens=True)),
    "cond_prompt": ("long1", dict(condition_on_prev_tokens=True, prompt_ids=PROMPT_IDS)),
    "cond_batch": ("long", dict(condition_on_prev_tokens=True)),
    # thresholds every greedy window passes: the ids are greedy's
    "fallback_passes": ("long1", dict(temperature=(0.0, 0.5), compression_ratio_threshold=1.5,
                                      logprob_threshold=-1.0)),
    # one temperature: windows with a low log-prob and a no-speech probability above 0.001 are skipped
    "no_speech": ("long1", dict(temperature=(0.0,), logprob_threshold=-0.3, no_speech_threshold=0.001)),
}
# the (one-window) greedy pass has an average log-prob of about -0.48: it falls back to sampling
ALIGNMENT_HEADS = [[0, 1], [0, 0]]
TOKEN_TIMESTAMPS = {  # name -> (input, generate kwargs)
    "short": ("short", dict(return_timestamps=True)),
    "long": ("long1", dict()),
}
FALLS_BACK = dict(temperature=(0.0, 1.0), logprob_threshold=-0.4, compression_ratio_threshold=10.0)


def _inputs(kind):
    _, long, mask = _ts_inputs()
    if kind == "short":
        return _ts_inputs()[0][:1], {}
    if kind == "long1":
        return long[:1], {}
    return long, {"attention_mask": mask}


def _record():
    """Patch Transformers' fallback helpers to log (kind, value) per call; returns the log."""
    from transformers.models.whisper import generation_whisper as gw

    log = []
    mixin = gw.WhisperGenerationMixin
    avg, ratio = mixin._retrieve_avg_logprobs, mixin._retrieve_compression_ratio

    def avg_logged(scores, tokens, temperature):
        value = avg(scores, tokens, temperature)
        log.append(["logprob", float(value), float(temperature or 0.0)])
        return value

    def ratio_logged(tokens, vocab_size):
        value = ratio(tokens, vocab_size)
        log.append(["ratio", float(value)])
        return value

    mixin._retrieve_avg_logprobs = staticmethod(avg_logged)
    mixin._retrieve_compression_ratio = staticmethod(ratio_logged)
    return log, lambda: (setattr(mixin, "_retrieve_avg_logprobs", staticmethod(avg)),
                         setattr(mixin, "_retrieve_compression_ratio", staticmethod(ratio)))


def _reference():
    """Transformers' ids, segments and fallback values under every SETTINGS entry (cached)."""
    import hashlib

    src = inspect.getsource(inspect.getmodule(_reference)) + inspect.getsource(_whisper_ts)
    key = "whisper-longform-" + hashlib.sha1(src.encode()).hexdigest()[:10]

    def build(tmp):
        import torch

        def whisper():
            model = _whisper_ts()
            model.generation_config.alignment_heads = ALIGNMENT_HEADS
            return model

        model = whisper()
        model.generation_config._from_model_config = False
        model.save_pretrained(tmp / "model")
        ids, extra = {}, {}
        log, restore = _record()
        try:
            with torch.no_grad():
                for name, (kind, setting) in list(SETTINGS.items()) + [("falls_back", ("short", FALLS_BACK))]:
                    feats, more = _inputs(kind)
                    args = {k: torch.tensor(v) if isinstance(v, np.ndarray) else v for k, v in {**setting, **more}.items()}
                    del log[:]
                    torch.manual_seed(0)
                    out = whisper().generate(torch.tensor(feats), language="en", max_new_tokens=5,
                                             return_segments=True, **args)
                    ids[name] = out["sequences"].numpy()
                    extra[name] = {"log": list(log),
                                   "segments": [[s["tokens"].tolist() for s in row] for row in out["segments"]]}
            with torch.no_grad():
                for name, (kind, setting) in TOKEN_TIMESTAMPS.items():
                    feats, more = _inputs(kind)
                    out = whisper().generate(torch.tensor(feats), language="en", max_new_tokens=5,
                                             return_segments=True, return_token_timestamps=True, **setting, **more)
                    ids["tt_" + name] = out["sequences"].numpy()
                    ids["tt_times_" + name] = out["token_timestamps"].numpy()
                    extra["tt_" + name] = {"segments": [[s["token_timestamps"].tolist() for s in row]
                                                        for row in out["segments"]]}
        finally:
            restore()
        np.savez(tmp / "expected.npz", **ids)
        (tmp / "extra.json").write_text(json.dumps(extra))

    folder = cached_folder(key, build)
    return folder / "model", dict(np.load(folder / "expected.npz")), json.loads((folder / "extra.json").read_text())


def _our_log(monkeypatch):
    """Log our compression ratios and average log-probs like _record does Transformers'."""
    log = []
    ratio, avg = whisper_tasks.compression_ratio, whisper_tasks.WhisperSeq2SeqLM._avg_logprob

    def ratio_logged(tokens, vocab_size):
        value = ratio(tokens, vocab_size)
        log.append(["ratio", float(value)])
        return value

    def avg_logged(self, seq, states, prompt, base, kw, rule, temperature):
        value = avg(self, seq, states, prompt, base, kw, rule, temperature)
        log.append(["logprob", float(value), float(temperature or 0.0)])
        return value

    monkeypatch.setattr(whisper_scoring, "compression_ratio", ratio_logged)
    monkeypatch.setattr(whisper_tasks.WhisperSeq2SeqLM, "_avg_logprob", avg_logged)
    return log


def _compare_logs(got, expected):
    assert [x[0] for x in got] == [x[0] for x in expected]
    np.testing.assert_allclose([x[1:] for x in got if x[0] == "logprob"],
                               [x[1:] for x in expected if x[0] == "logprob"], atol=1e-4)
    np.testing.assert_allclose([x[1] for x in got if x[0] == "ratio"],
                               [x[1] for x in expected if x[0] == "ratio"], atol=1e-12)


@pytest.mark.one_case_per_pass("setting")
@pytest.mark.parametrize("setting", list(SETTINGS))
def test_long_form_options_match_transformers(setting, monkeypatch):
    folder, expected, extra = _reference()
    model = km.Seq2SeqLM.from_preset(folder)
    kind, kwargs = SETTINGS[setting]
    feats, more = _inputs(kind)
    log = _our_log(monkeypatch)
    out = model.generate(feats, language="en", max_new_tokens=5, return_segments=True, **kwargs, **more)
    np.testing.assert_array_equal(out["sequences"], expected[setting])
    assert [[s["tokens"].tolist() for s in row] for row in out["segments"]] == extra[setting]["segments"]
    _compare_logs(log, extra[setting]["log"])


@pytest.mark.backend_independent  # the decisions are numpy; the engine's passes run in the cases above
def test_fallback_decision_and_sampled_pass(monkeypatch):
    """A greedy window below logprob_threshold is decoded again by sampling at the next temperature
    (the first window's greedy values and the decision equal Transformers'; the sampled tokens
    cannot equal torch's RNG)."""
    folder, expected, extra = _reference()
    model = km.Seq2SeqLM.from_preset(folder)
    feats, _ = _inputs("short")
    log = _our_log(monkeypatch)
    passes = []
    decode = whisper_tasks.WhisperSeq2SeqLM._decode

    def decode_logged(self, states, prompt, base, kwargs, *args, **kw):
        out = decode(self, states, prompt, base, kwargs, *args, **kw)
        passes.append((bool(kwargs.get("do_sample")), out[0].tolist()))
        return out

    monkeypatch.setattr(whisper_tasks.WhisperSeq2SeqLM, "_decode", decode_logged)
    out = model.generate(feats, language="en", max_new_tokens=5, seed=3, return_segments=True, **FALLS_BACK)
    reference = extra["falls_back"]["log"]
    # up to the first window that falls back, the greedy passes' ratios and log-probs are
    # Transformers' (and so are the decisions); that window is then decoded by sampling
    first = next(n for n, x in enumerate(reference) if x[0] == "logprob" and x[1] < FALLS_BACK["logprob_threshold"])
    _compare_logs(log[: first + 1], reference[: first + 1])
    assert log[first][1] < FALLS_BACK["logprob_threshold"] and log[first][2] == 0.0
    window = first // 2
    assert [p[0] for p in passes[: window + 2]] == [False] * (window + 1) + [True]
    assert log[first + 2][2] == 1.0  # judged at temperature 1.0, and kept (the last temperature)
    sampled = passes[window + 1][1]
    kept = [s["tokens"].tolist() for s in out["segments"][0]]
    assert any(sampled[: len(seg)] == seg for seg in kept)  # a kept segment is the sampled pass's


def test_long_form_option_errors():
    folder, _, _ = _reference()
    model = km.Seq2SeqLM.from_preset(folder)
    feats, _ = _inputs("long1")
    with pytest.raises(ValueError, match="logprob_threshold with num_beams"):
        model.generate(feats, temperature=(0.0, 0.4), logprob_threshold=-1.0, num_beams=2, max_new_tokens=2)
    with pytest.raises(ValueError, match="cannot be combined"):
        model.generate(feats[:, :, :24], decoder_input_ids=np.array([[94]]), condition_on_prev_tokens=True)


@pytest.mark.one_case_per_pass("setting")
@pytest.mark.parametrize("setting", list(TOKEN_TIMESTAMPS))
def test_token_timestamps_match_transformers(setting):
    """return_token_timestamps: DTW over the alignment heads' cross-attention, per token a time."""
    folder, expected, extra = _reference()
    model = km.Seq2SeqLM.from_preset(folder)
    kind, kwargs = TOKEN_TIMESTAMPS[setting]
    feats, more = _inputs(kind)
    out = model.generate(feats, language="en", max_new_tokens=5, return_segments=True, return_token_timestamps=True,
                         **kwargs, **more)
    np.testing.assert_array_equal(out["sequences"], expected["tt_" + setting])
    np.testing.assert_allclose(out["token_timestamps"], expected["tt_times_" + setting], atol=1e-4)
    got = [[s["token_timestamps"].tolist() for s in row] for row in out["segments"]]
    for row, want in zip(got, extra["tt_" + setting]["segments"]):
        for a, b in zip(row, want):
            np.testing.assert_allclose(a, b, atol=1e-4)

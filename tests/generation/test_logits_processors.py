"""Transformers' further logits processors (forced BOS/EOS, suppress lists, bad words, sequence bias,
encoder n-grams and repetition penalty, exponential decay, typical/epsilon/eta sampling, classifier-free
guidance, inf/NaN removal, renormalisation): each against Transformers' own processor class on random
scores, and combined through ``generate`` (greedy and beam search) against Transformers' ``generate``
on tiny random Llama and BART checkpoints."""

import json

import numpy as np
import pytest
from keras import ops

from keras_models.generation import processors as P
from keras_models.generation.config import GenerationConfig, GenerationError

VOCAB = 23


def _scores(seed=0, batch=3, scale=3.0):
    rng = np.random.RandomState(seed)
    tokens = rng.randint(1, 6, size=(batch, 14)).astype("int32")  # few ids: n-grams repeat
    return tokens, (rng.randn(batch, VOCAB) * scale).astype("float32")


def _hf(proc, tokens, scores, cur):
    import torch

    return proc(torch.tensor(tokens[:, :cur], dtype=torch.long), torch.tensor(scores)).numpy()


def _same(ours, ref, rtol=1e-5, atol=1e-6):
    ours = ops.convert_to_numpy(ours)
    np.testing.assert_array_equal(np.isneginf(ours), np.isneginf(ref))
    keep = ~np.isneginf(ref)
    np.testing.assert_allclose(ours[keep], ref[keep], rtol=rtol, atol=atol)
    return ours


T = ops.convert_to_tensor


def _compiled(fn):
    """``fn`` compiled like the decode loop: jax.jit, tf.function(jit_compile=True), or eager torch."""
    import keras

    if keras.backend.backend() == "jax":
        import jax

        return jax.jit(fn)
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        return tf.function(fn, jit_compile=True)
    return fn


# --- one processor at a time, on random scores ------------------------------------------------------
@pytest.mark.parametrize("mass,keep", [(0.2, 1), (0.7, 1), (0.5, 6)])
def test_typical_p(mass, keep):
    from transformers.generation.logits_process import TypicalLogitsWarper

    _, scores = _scores(1)
    scores[0, :4] = -np.inf  # already filtered ids stay filtered (0 * log 0 in the entropy)
    ours = _same(P.typical_p(T(scores), mass, keep), _hf(TypicalLogitsWarper(mass, min_tokens_to_keep=keep),
                                                        np.zeros((3, 1), "int64"), scores, 1))
    assert np.isneginf(ours).sum(axis=1).min() > 4


@pytest.mark.parametrize("name,eps,keep", [("epsilon", 0.03, 1), ("epsilon", 0.9, 2), ("eta", 0.02, 1),
                                           ("eta", 0.5, 3)])
def test_epsilon_and_eta_cutoff(name, eps, keep):
    from transformers.generation.logits_process import EpsilonLogitsWarper, EtaLogitsWarper

    _, scores = _scores(2)
    ref_cls, ours_fn = {"epsilon": (EpsilonLogitsWarper, P.epsilon_cutoff),
                        "eta": (EtaLogitsWarper, P.eta_cutoff)}[name]
    ref = _hf(ref_cls(eps, min_tokens_to_keep=keep), np.zeros((3, 1), "int64"), scores, 1)
    ours = _same(ours_fn(T(scores), eps, keep), ref)
    assert np.isneginf(ours).any() and (~np.isneginf(ours)).sum(axis=1).min() >= keep


def test_sequence_bias_and_bad_words():
    from transformers.generation.logits_process import NoBadWordsLogitsProcessor, SequenceBiasLogitsProcessor

    tokens, scores = _scores(3)
    cur = 9
    tail = [int(t) for t in tokens[0, cur - 2:cur]]
    bias = [[[7], 2.5], [[tail[-1], 11], -4.0], [tail + [12], 3.0], [[tail[-1], 12], 1.5], [[9, 9, 9, 13], 5.0]]
    cfg = GenerationConfig(sequence_bias=bias)
    ref = _hf(SequenceBiasLogitsProcessor(bias), tokens, scores, cur)
    ours = _same(P.sequence_bias(T(scores), T(tokens), cur, cfg.sequence_bias), ref)
    assert not np.allclose(ours[0], scores[0])
    # bad words: one id, a two-id and a three-id sequence ending the context, and [eos] (never banned)
    bad = [[5], [tail[-1], 14], tail + [15], [2]]
    ref = _hf(NoBadWordsLogitsProcessor(bad, eos_token_id=2), tokens, scores, cur)
    _, words = P._bias_list(GenerationConfig(bad_words_ids=bad), (2,))
    ours = _same(P.sequence_bias(T(scores), T(tokens), cur, words), ref)
    assert np.isneginf(ours[0, [5, 14, 15]]).all() and not np.isneginf(ours[:, 2]).any()
    # a prefix longer than the real context (``offset`` extra padding columns) never matches
    short = P.sequence_bias(T(scores), T(tokens), 3, ((tuple(tokens[0, :2]) + (16,), float("-inf")),), offset=2)
    assert not np.isneginf(ops.convert_to_numpy(short)).any()


def test_encoder_penalty_and_ngrams():
    import torch
    from transformers.generation.logits_process import (
        EncoderNoRepeatNGramLogitsProcessor, EncoderRepetitionPenaltyLogitsProcessor,
    )

    tokens, scores = _scores(4)
    source = np.random.RandomState(5).randint(1, 6, size=(3, 8)).astype("int32")
    for penalty in (1.7, 0.6):
        ref = _hf(EncoderRepetitionPenaltyLogitsProcessor(penalty, torch.tensor(source, dtype=torch.long)),
                  tokens, scores, 10)
        _same(P.encoder_repetition_penalty(T(scores), T(source), penalty), ref)
    for n, cur in ((2, 10), (3, 10), (3, 2), (1, 4)):
        ref = _hf(EncoderNoRepeatNGramLogitsProcessor(n, torch.tensor(source, dtype=torch.long)), tokens, scores, cur)
        ours = _same(P.encoder_no_repeat_ngram(T(scores), T(tokens), cur, T(source), n), ref)
        if n <= 2:
            assert np.isneginf(ours).any()


def test_position_dependent_processors():
    """Forced BOS (length 1) and EOS (max_length - 1), begin-suppression (at the prompt's end),
    exponential decay (after start + prompt), suppression, inf/NaN removal, renormalisation."""
    import torch
    from transformers.generation.logits_process import (
        ExponentialDecayLengthPenalty, ForcedBOSTokenLogitsProcessor, ForcedEOSTokenLogitsProcessor,
        InfNanRemoveLogitsProcessor, LogitNormalization, SuppressTokensAtBeginLogitsProcessor,
        SuppressTokensLogitsProcessor,
    )

    tokens, scores = _scores(6)
    for cur in (1, 2):
        _same(P.force_ids(T(scores), (4,), cur == 1), _hf(ForcedBOSTokenLogitsProcessor(4), tokens, scores, cur))
    for cur in (8, 9):
        _same(P.force_ids(T(scores), (3, 5), ops.equal(cur, 10 - 1)),
              _hf(ForcedEOSTokenLogitsProcessor(10, [3, 5]), tokens, scores, cur))
    _same(P.suppress_ids(T(scores), (1, 7, 40), T(True)), _hf(SuppressTokensLogitsProcessor([1, 7, 40]), tokens,
                                                               scores, 4))
    for cur in (5, 6):
        _same(P.suppress_ids(T(scores), (2, 8), ops.equal(cur, 5)),
              _hf(SuppressTokensAtBeginLogitsProcessor([2, 8], 5), tokens, scores, cur))
    neg = scores.copy()
    neg[1, 2] = -np.inf
    for cur in (6, 9):
        ref = _hf(ExponentialDecayLengthPenalty((2, 1.7), [2, 3], 4), tokens, neg, cur)
        _same(P.exponential_decay_length_penalty(T(neg), (2, 3), cur - (2 + 4), 1.7), ref)
    bad = scores.copy()
    bad[0, 1], bad[1, 3], bad[2, 4] = np.nan, np.inf, -np.inf
    ref = _hf(InfNanRemoveLogitsProcessor(), tokens, bad, 3)
    np.testing.assert_array_equal(ops.convert_to_numpy(P.remove_invalid(T(bad))), ref)
    ref = _hf(LogitNormalization(), tokens, scores, 3)
    np.testing.assert_allclose(ops.convert_to_numpy(ops.log_softmax(T(scores), axis=-1)), ref, rtol=1e-5, atol=1e-6)
    del torch


def test_full_chain_order():
    """Everything at once, chained by ``Processors`` as Transformers' ``_get_logits_processor``
    orders it (on a step where every position-dependent one is active), compiled as the decode loop
    is (jax.jit / XLA tf.function, the length a tensor)."""
    import torch
    from transformers.generation.logits_process import (
        EncoderNoRepeatNGramLogitsProcessor, EncoderRepetitionPenaltyLogitsProcessor, EpsilonLogitsWarper,
        EtaLogitsWarper, ExponentialDecayLengthPenalty, LogitNormalization, LogitsProcessorList,
        MinLengthLogitsProcessor, NoBadWordsLogitsProcessor, SequenceBiasLogitsProcessor,
        SuppressTokensAtBeginLogitsProcessor, SuppressTokensLogitsProcessor, TemperatureLogitsWarper,
        TypicalLogitsWarper,
    )

    tokens, scores = _scores(7)
    source = np.random.RandomState(8).randint(1, 6, size=(3, 6)).astype("int32")
    prompt, cur = 6, 6
    kw = dict(sequence_bias=[[[int(tokens[0, cur - 1]), 3], 2.0], [[9], -1.0]], encoder_repetition_penalty=1.4,
              encoder_no_repeat_ngram_size=2, bad_words_ids=[[4, 4], [10]], suppress_tokens=[11],
              begin_suppress_tokens=[12], exponential_decay_length_penalty=(0, 1.5), renormalize_logits=True,
              temperature=0.8, typical_p=0.95, epsilon_cutoff=0.01, eta_cutoff=0.02, do_sample=True, top_k=0)
    cfg = GenerationConfig(**kw).validate()
    procs = P.Processors(cfg, min_length=0, eos_ids=(2, 13), sampling=True, prompt_len=prompt)
    assert procs.needs_source and not procs.needs_uncond
    # decay starts after the prompt: check one step later too (begin-suppression then off)
    run = _compiled(lambda sc, tok, step, src: procs(sc, tok, step, source=src))
    for step in (cur, cur + 1):
        ours = run(T(scores), T(tokens), T(step, "int32"), T(source))
        src = torch.tensor(source, dtype=torch.long)
        chain = LogitsProcessorList([
            SequenceBiasLogitsProcessor(kw["sequence_bias"]), EncoderRepetitionPenaltyLogitsProcessor(1.4, src),
            EncoderNoRepeatNGramLogitsProcessor(2, src), NoBadWordsLogitsProcessor(kw["bad_words_ids"], [2, 13]),
            MinLengthLogitsProcessor(0, [2, 13]), ExponentialDecayLengthPenalty((0, 1.5), [2, 13], prompt),
            SuppressTokensLogitsProcessor([11]), SuppressTokensAtBeginLogitsProcessor([12], prompt),
            TemperatureLogitsWarper(0.8), TypicalLogitsWarper(0.95), EpsilonLogitsWarper(0.01),
            EtaLogitsWarper(0.02), LogitNormalization(),
        ])
        _same(ours, _hf(chain, tokens, scores, step), rtol=1e-4, atol=1e-5)


def test_config_values_and_errors():
    cfg = GenerationConfig(forced_eos_token_id=3, suppress_tokens=[], bad_words_ids=[[4, 5]],
                           sequence_bias={(6,): -1}, exponential_decay_length_penalty=[3, 1.2])
    assert cfg.forced_eos_token_id == (3,) and cfg.suppress_tokens is None
    assert cfg.bad_words_ids == ((4, 5),) and cfg.sequence_bias == (((6,), -1.0),)
    assert cfg.exponential_decay_length_penalty == (3, 1.2)
    # min_length and min_new_tokens both hold EOS back, as Transformers' two processors: the later wins
    assert GenerationConfig(min_length=10, min_new_tokens=2).resolved_lengths(5)[1] == 10
    assert GenerationConfig(min_length=6, min_new_tokens=3).resolved_lengths(5)[1] == 8
    for bad in (dict(bad_words_ids=[[]]), dict(sequence_bias=[[[1], "x"]]), dict(forced_bos_token_id=-1),
                dict(exponential_decay_length_penalty=5)):
        with pytest.raises(GenerationError):
            GenerationConfig(**bad)
    for bad in (dict(typical_p=0.0), dict(epsilon_cutoff=1.0), dict(eta_cutoff=-0.1), dict(renormalize_logits=1)):
        with pytest.raises(GenerationError, match=next(iter(bad))):
            GenerationConfig(**bad).validate()
    with pytest.raises(GenerationError, match="not supported"):  # no implementation: still an error
        GenerationConfig(penalty_alpha=0.6)


# --- through generate, against Transformers' generate -----------------------------------------------
def _llama_reference(cases):
    """(model folder, {"case<i>": HF output ids, "case<i>_kw": the kwargs used, as JSON}).

    ``"auto"`` values are derived from Transformers' own output for the case without them, so that
    they change the result: ``bad_words_ids`` bans a two-id sequence (and one id) that the output
    contains, ``sequence_bias`` biases against another one and towards an id it lacks.
    """
    import inspect

    from tests.generation.helpers import BUILDERS, vocab_size
    from tests.parity import _key, cached_folder

    src = inspect.getsource(_llama_reference) + inspect.getsource(BUILDERS["llama"])
    key = _key("gen-logits-processors", src, [({k: np.asarray(v).tolist() for k, v in i.items()}, kw)
                                              for i, kw in cases])

    def build(tmp):
        import torch

        torch.manual_seed(0)
        model = BUILDERS["llama"](vocab_size()).eval()
        with torch.no_grad():
            for p in model.parameters():
                p.add_(torch.randn_like(p) * 0.24)
        model.save_pretrained(tmp / "model")
        outs = {}
        with torch.no_grad():
            for i, (inp, kw) in enumerate(cases):
                t = {k: torch.tensor(np.asarray(v)) for k, v in inp.items()}
                width = t["input_ids"].shape[1]
                kw = dict(kw)
                must_change = kw.pop("_must_change", [])
                auto = [k for k, v in kw.items() if v == "auto"]
                if auto:
                    free = model.generate(**t, **{k: v for k, v in kw.items() if k not in auto}).numpy()
                    new = free[:, width:]
                    if "bad_words_ids" in auto:
                        kw["bad_words_ids"] = [[int(new[0, 1]), int(new[0, 2])], [int(new[-1, 3])]]
                    if "sequence_bias" in auto:
                        kw["sequence_bias"] = [[[int(new[1, 0]), int(new[1, 1])], -6.0],
                                               [[int(new[0, 0])], -2.5]]
                out = model.generate(**t, **kw).numpy()
                if auto:
                    assert not np.array_equal(out, free), f"case {i}: the derived values change nothing"
                for name in must_change:  # the case really exercises each of these
                    without = model.generate(**t, **{k: v for k, v in kw.items() if k != name}).numpy()
                    assert not np.array_equal(out, without), f"case {i}: {name} changes nothing"
                outs[f"case{i}"] = out
                outs[f"case{i}_kw"] = np.asarray(json.dumps(kw))
        np.savez(tmp / "expected.npz", **outs)

    folder = cached_folder(key, build)
    return folder / "model", dict(np.load(folder / "expected.npz"))


def _llama_cases():
    from tests.generation.helpers import left_padded, vocab_size

    v = vocab_size()
    single = left_padded(2, [1, 1], v, seed=12)
    # prompts that repeat themselves, so that the reply meets their bigrams (encoder n-grams)
    repeats = np.asarray([[53, 273, 44, 53, 273, 44, 61], [89, 46, 14, 89, 46, 14, 261],
                          [185, 131, 297, 185, 131, 297, 278]])
    mask = np.ones_like(repeats)
    repeats[1, :3] = repeats[2, :6] = mask[1, :3] = mask[2, :6] = 0
    repeats = {"input_ids": repeats, "attention_mask": mask}
    cases = []
    for beams in (1, 3):
        b = dict(num_beams=beams, do_sample=False)
        cases += [
            # guidance (unconditional pass), encoder (prompt) n-grams and penalty, exponential decay,
            # bad words (two ids, one id) and sequence bias taken from the output, suppression of a
            # block of ids, another block suppressed at the first new token, inf/NaN removal and
            # renormalisation
            (repeats, dict(b, max_new_tokens=8, eos_token_id=[2, 40], guidance_scale=1.5,
                           encoder_no_repeat_ngram_size=2, encoder_repetition_penalty=3.0,
                           exponential_decay_length_penalty=(2, 1.6), bad_words_ids="auto", sequence_bias="auto",
                           suppress_tokens=list(range(150, 250, 2)), begin_suppress_tokens=list(range(3, 150)),
                           remove_invalid_values=True, renormalize_logits=True,
                           _must_change=["guidance_scale", "encoder_no_repeat_ngram_size", "encoder_repetition_penalty",
                                         "exponential_decay_length_penalty", "suppress_tokens",
                                         "begin_suppress_tokens"])),
            # one-token prompts: forced BOS at length 1, begin-suppression moves one step later, forced
            # EOS wins over min_new_tokens == max_new_tokens (the output ends on it)
            (single, dict(b, max_new_tokens=5, min_new_tokens=5, eos_token_id=2, forced_bos_token_id=5,
                          forced_eos_token_id=2, begin_suppress_tokens=list(range(3, 200)),
                          _must_change=["forced_bos_token_id", "begin_suppress_tokens"])),
        ]
    return cases


_MODELS = {}


def _llama():
    if "llama" not in _MODELS:
        import keras_models as km

        cases = _llama_cases()
        folder, expected = _llama_reference(cases)
        _MODELS["llama"] = (km.CausalLM.from_preset(folder), cases, expected)
    return _MODELS["llama"]


# beam search with forced BOS / EOS is also covered by the Seq2SeqLM test: not in CI (compile time)
@pytest.mark.parametrize("case", [0, 1, 2, pytest.param(3, marks=pytest.mark.slow)])
def test_causal_lm_generate_matches_transformers(case):
    model, cases, expected = _llama()
    inputs = {k: v.astype("int32") for k, v in cases[case][0].items()}
    kw = json.loads(str(expected[f"case{case}_kw"]))
    out = model.generate(inputs, **kw)
    ref = expected[f"case{case}"]
    assert out.shape == ref.shape, (out, ref)
    np.testing.assert_array_equal(out, ref)
    if kw.get("forced_eos_token_id") is not None:
        assert (out[:, -1] == kw["forced_eos_token_id"]).all()
        assert (out[:, 1] == kw["forced_bos_token_id"]).all()


@pytest.mark.slow  # (test_full_chain_order compiles them; this is the whole loop: compile time)
def test_sampling_filters_run_in_generate():
    """typical-p / epsilon / eta sampling traced in the decode loop (their numerics: the tests
    above); the same seed gives the same ids."""
    model, cases, _ = _llama()
    inputs = {k: v.astype("int32") for k, v in cases[0][0].items()}
    kw = dict(do_sample=True, max_new_tokens=3, typical_p=0.9, epsilon_cutoff=0.001, eta_cutoff=0.002, seed=3)
    a = model.generate(inputs, **kw)
    assert a.shape == (3, 10)
    np.testing.assert_array_equal(a, model.generate(inputs, **kw))


# --- Seq2SeqLM: BART-CNN-like forced BOS/EOS, Marian-like pad ban, Whisper-like suppress lists ------
S2S = dict(max_new_tokens=6, min_new_tokens=6, forced_bos_token_id=0, forced_eos_token_id=2, bad_words_ids=[[1]],
           suppress_tokens=list(range(10, 60)), begin_suppress_tokens=list(range(60, 99)),
           encoder_no_repeat_ngram_size=2, encoder_repetition_penalty=3.0)
# what each setting is reset to when checking that it matters; (greedy, beam search) each check theirs
S2S_NEUTRAL = dict(max_new_tokens=6, min_new_tokens=None, forced_bos_token_id=None, forced_eos_token_id=None,
                   bad_words_ids=None, suppress_tokens=None, begin_suppress_tokens=None,
                   encoder_no_repeat_ngram_size=0, encoder_repetition_penalty=1.0)
S2S_MATTERS = {1: ["min_new_tokens", "forced_bos_token_id", "forced_eos_token_id", "bad_words_ids", "suppress_tokens",
                   "begin_suppress_tokens", "encoder_repetition_penalty"],
               3: ["min_new_tokens", "forced_bos_token_id", "forced_eos_token_id", "bad_words_ids", "suppress_tokens",
                   "begin_suppress_tokens", "encoder_repetition_penalty", "encoder_no_repeat_ngram_size"]}


def _bart_reference():
    import inspect

    from tests.models.test_seq2seq_parity import _bart_like, seq2seq_inputs
    from tests.parity import _key, cached_folder

    inputs = seq2seq_inputs(1, 0)
    enc = {"input_ids": inputs["input_ids"], "attention_mask": inputs["attention_mask"]}
    key = _key("gen-logits-processors-bart", inspect.getsource(_bart_reference), S2S, S2S_NEUTRAL, S2S_MATTERS,
               inspect.getsource(_bart_like), {k: v.tolist() for k, v in enc.items()})

    def build(tmp):
        import torch

        torch.manual_seed(0)
        model = _bart_like("BartForConditionalGeneration", "BartConfig", encoder_layers=1, decoder_layers=1,
                           init_std=0.3).eval()
        with torch.no_grad():  # pad (banned) and eos (held back by min_new_tokens) become likely
            model.final_logits_bias[0, 1:3] += 2.0
        model.generation_config.update(**S2S)  # the checkpoint's generation_config.json carries them
        model.save_pretrained(tmp / "model")
        outs = {}
        with torch.no_grad():
            t = {k: torch.tensor(v) for k, v in enc.items()}
            for beams in (1, 3):
                out = outs[f"beams{beams}"] = model.generate(**t, do_sample=False, num_beams=beams).numpy()
                for name in S2S_MATTERS[beams]:  # the case really exercises each of these
                    without = model.generate(**t, do_sample=False, num_beams=beams, **{name: S2S_NEUTRAL[name]})
                    assert not np.array_equal(out, without.numpy()), f"{name} changes nothing ({beams} beams)"
        np.savez(tmp / "expected.npz", **outs)

    folder = cached_folder(key, build)
    return folder / "model", enc, dict(np.load(folder / "expected.npz"))


# greedy decoding of these settings is covered by the CausalLM test: not in CI (compile time)
@pytest.mark.parametrize("beams", [pytest.param(1, marks=pytest.mark.slow), 3])
def test_seq2seq_generate_matches_transformers(beams):
    import keras_models as km

    folder, enc, expected = _bart_reference()
    saved = json.loads((folder / "generation_config.json").read_text())
    assert saved["bad_words_ids"] == [[1]] and saved["forced_bos_token_id"] == 0
    model = km.Seq2SeqLM.from_preset(folder)
    out = np.asarray(model.generate(enc, do_sample=False, num_beams=beams))  # settings from the file
    ref = expected[f"beams{beams}"]
    assert out.shape == ref.shape, (out, ref)
    np.testing.assert_array_equal(out, ref)
    assert (out[:, 1] == 0).all() and (out[:, -1] == 2).all() and not np.isin(out[:, 2:-1], [1, 2]).any()
    with pytest.raises(GenerationError, match="guidance_scale"):
        model.generate(enc, guidance_scale=2.0, max_new_tokens=2)

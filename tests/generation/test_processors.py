"""Logits processors and warpers against Transformers' own, on random arrays (no model)."""

import numpy as np
import pytest
from keras import ops

from keras_models.generation import processors as P
from keras_models.generation.config import GenerationConfig

VOCAB = 23


def _case(seed=0, batch=3, length=14, cur=11, pads=(0, 3, 5)):
    rng = np.random.RandomState(seed)
    # few distinct ids so that n-grams and repeats actually occur
    tokens = rng.randint(1, 6, size=(batch, length)).astype("int32")
    for i, p in enumerate(pads):
        tokens[i, :p] = 0
    scores = rng.randn(batch, VOCAB).astype("float32") * 3
    return tokens, scores, cur, np.asarray(pads)


def _hf(proc, tokens, scores, cur):
    import torch

    return proc(torch.tensor(tokens[:, :cur], dtype=torch.long), torch.tensor(scores)).numpy()


def _np(x):
    return ops.convert_to_numpy(x)


@pytest.mark.parametrize("penalty", [1.3, 0.7])
def test_repetition_penalty(penalty):
    from transformers.generation.logits_process import RepetitionPenaltyLogitsProcessor
    import torch

    tokens, scores, cur, pads = _case()
    valid = (np.arange(tokens.shape[1])[None] >= pads[:, None]) & (np.arange(tokens.shape[1])[None] < cur)
    presence = P.presence_from_tokens(tokens, valid, VOCAB)
    ours = _np(P.repetition_penalty(ops.convert_to_tensor(scores), presence, penalty))
    ref = _hf(RepetitionPenaltyLogitsProcessor(penalty, prompt_ignore_length=torch.tensor(pads)), tokens, scores, cur)
    np.testing.assert_allclose(ours, ref, rtol=1e-6)
    assert not np.allclose(ours, scores)


@pytest.mark.parametrize("n,cur", [(2, 11), (3, 11), (3, 2), (4, 14), (1, 5)])
def test_no_repeat_ngram(n, cur):
    from transformers.generation.logits_process import NoRepeatNGramLogitsProcessor

    tokens, scores, _, _ = _case(seed=n)
    ours = _np(P.no_repeat_ngram(ops.convert_to_tensor(scores), ops.convert_to_tensor(tokens), cur, n))
    ref = _hf(NoRepeatNGramLogitsProcessor(n), tokens, scores, cur)
    np.testing.assert_array_equal(np.isinf(ours), np.isinf(ref))
    np.testing.assert_allclose(ours[~np.isinf(ours)], ref[~np.isinf(ref)])
    if n <= 2 and cur >= 5:
        assert np.isinf(ours).any()


@pytest.mark.parametrize("k", [1, 5, 50])
def test_top_k(k):
    from transformers.generation.logits_process import TopKLogitsWarper

    _, scores, cur, _ = _case()
    ours = _np(P.top_k(ops.convert_to_tensor(scores), k))
    ref = _hf(TopKLogitsWarper(k), np.zeros((3, 1), "int64"), scores, 1)
    np.testing.assert_array_equal(ours, ref)


@pytest.mark.parametrize("p,keep", [(0.3, 1), (0.9, 1), (1e-4, 1), (0.5, 4)])
def test_top_p(p, keep):
    from transformers.generation.logits_process import TopPLogitsWarper

    _, scores, _, _ = _case(seed=2)
    ours = _np(P.top_p(ops.convert_to_tensor(scores), p, keep))
    ref = _hf(TopPLogitsWarper(p, min_tokens_to_keep=keep), np.zeros((3, 1), "int64"), scores, 1)
    np.testing.assert_array_equal(ours, ref)


@pytest.mark.parametrize("p,keep", [(0.05, 1), (0.5, 1), (0.9, 3)])
def test_min_p(p, keep):
    from transformers.generation.logits_process import MinPLogitsWarper

    _, scores, _, _ = _case(seed=3)
    ours = _np(P.min_p(ops.convert_to_tensor(scores), p, keep))
    ref = _hf(MinPLogitsWarper(p, min_tokens_to_keep=keep), np.zeros((3, 1), "int64"), scores, 1)
    np.testing.assert_array_equal(ours, ref)


def test_full_chain_matches_transformers_order():
    """Processors + warpers chained as generate builds them (min_new_tokens, temperature, ...)."""
    import torch
    from transformers.generation.logits_process import (
        LogitsProcessorList, MinNewTokensLengthLogitsProcessor, NoRepeatNGramLogitsProcessor,
        RepetitionPenaltyLogitsProcessor, TemperatureLogitsWarper, TopKLogitsWarper, TopPLogitsWarper,
    )

    tokens, scores, cur, pads = _case(seed=4)
    prompt = 6
    cfg = GenerationConfig(repetition_penalty=1.2, no_repeat_ngram_size=2, temperature=0.7, top_k=9,
                           top_p=0.8, min_new_tokens=8, do_sample=True)
    procs = P.Processors(cfg, min_length=prompt + 8, eos_ids=(2, 4), sampling=True)
    valid = (np.arange(tokens.shape[1])[None] >= pads[:, None]) & (np.arange(tokens.shape[1])[None] < cur)
    presence = P.presence_from_tokens(tokens, valid, VOCAB)
    ours = _np(procs(ops.convert_to_tensor(scores), ops.convert_to_tensor(tokens), cur, presence))
    chain = LogitsProcessorList([
        RepetitionPenaltyLogitsProcessor(1.2, prompt_ignore_length=torch.tensor(pads)),
        NoRepeatNGramLogitsProcessor(2),
        MinNewTokensLengthLogitsProcessor(prompt, 8, torch.tensor([2, 4])),
        TemperatureLogitsWarper(0.7), TopKLogitsWarper(9), TopPLogitsWarper(0.8),
    ])
    ref = _hf(chain, tokens, scores, cur)
    np.testing.assert_array_equal(np.isinf(ours), np.isinf(ref))
    np.testing.assert_allclose(ours[~np.isinf(ours)], ref[~np.isinf(ref)], rtol=1e-5, atol=1e-6)
    assert np.isinf(ours[:, [2, 4]]).all()  # eos suppressed before min_new_tokens


def test_sample_follows_distribution():
    from keras_models.generation import backend

    scores = np.log(np.asarray([[0.7, 0.2, 0.1, 0.0]], "float32") + 1e-30).repeat(4000, 0)
    rng = backend.make_rng(3, 4000)
    u = backend.uniform(rng, ops.convert_to_tensor(5, "int32"), (4000, 4))
    draws = _np(P.sample(ops.convert_to_tensor(scores), u))
    freq = np.bincount(draws, minlength=4) / len(draws)
    np.testing.assert_allclose(freq, [0.7, 0.2, 0.1, 0.0], atol=0.03)


def test_greedy_picks_the_first_maximum_like_argmax():
    rng = np.random.default_rng(3)
    scores = rng.normal(size=(6, 50)).astype("float32")
    scores[1, [4, 9, 30]] = 9.0  # ties: the first index wins
    scores[2, :] = -np.inf
    scores[2, 17] = 0.0
    scores[3, :] = -np.inf  # all filtered: index 0, as argmax
    scores[4, [7, 12]] = np.nan  # NaN counts as the maximum (first NaN), as argmax
    scores[5, -1] = 100.0
    got = ops.convert_to_numpy(P.greedy(ops.convert_to_tensor(scores)))
    np.testing.assert_array_equal(got, np.argmax(scores, axis=-1))
    assert got.dtype == np.int32

"""Logits processors and samplers on (batch, vocab) float32 scores, in keras.ops only.

The order and the numerics follow Transformers (``GenerationMixin._get_logits_processor``; see
``Processors``). Filtered entries become -inf. Every function is traceable (static shapes, the current
length ``cur`` may be a tensor).
"""

from __future__ import annotations

import numpy as np
from keras import ops

from keras_models.generation import backend

NEG_INF = float("-inf")


def presence_from_tokens(tokens, valid, vocab_size):
    """(batch, vocab) float 1/0: which ids occur in ``tokens`` (batch, L) where ``valid`` is true."""
    b, length = ops.shape(tokens)[0], ops.shape(tokens)[1]
    rows = ops.repeat(ops.arange(b, dtype="int32")[:, None], length, axis=1)
    idx = ops.stack([ops.reshape(rows, (-1,)), ops.reshape(ops.cast(tokens, "int32"), (-1,))], axis=1)
    counts = ops.scatter(idx, ops.reshape(ops.cast(valid, "float32"), (-1,)), (b, vocab_size))
    return ops.cast(counts > 0, "float32")


def repetition_penalty(scores, presence, penalty):
    """Transformers' RepetitionPenaltyLogitsProcessor: seen ids get score*p (<0) or score/p."""
    penalised = ops.where(scores < 0, scores * penalty, scores / penalty)
    return ops.where(presence > 0, penalised, scores)


def no_repeat_ngram(scores, tokens, cur, n):
    """Ban every id that would complete an n-gram already present in ``tokens[:, :cur]``.

    ``tokens`` is the whole (batch, L) buffer (prompt padding included, as Transformers does).
    """
    length = int(tokens.shape[1])
    vocab = int(scores.shape[-1])
    if n > length:
        return scores
    windows_idx = np.arange(length - n + 1)[:, None] + np.arange(n)[None, :]
    windows = ops.take(tokens, ops.convert_to_tensor(windows_idx, "int32"), axis=1)  # (b, W, n)
    prefix_idx = ops.clip(cur - (n - 1) + ops.arange(n - 1, dtype="int32"), 0, length - 1)
    prefix = ops.take(tokens, prefix_idx, axis=1)  # (b, n-1)
    matches = ops.all(ops.equal(windows[:, :, : n - 1], prefix[:, None, :]), axis=-1)
    # a window ending at j + n - 1 <= cur - 1 is complete; with cur < n nothing can be banned
    window_ok = ops.arange(length - n + 1, dtype="int32") + (n - 1) <= cur - 1
    matches = ops.logical_and(matches, window_ok[None, :])
    b = ops.shape(tokens)[0]
    w = length - n + 1
    rows = ops.repeat(ops.arange(b, dtype="int32")[:, None], w, axis=1)
    idx = ops.stack([ops.reshape(rows, (-1,)), ops.reshape(ops.cast(windows[:, :, n - 1], "int32"), (-1,))], 1)
    banned = ops.scatter(idx, ops.reshape(ops.cast(matches, "float32"), (-1,)), (b, vocab))
    return ops.where(banned > 0, NEG_INF, scores)


def suppress_ids(scores, ids, active):
    """Set ``ids`` (tuple of ints) to -inf where ``active`` (scalar or (batch,) bool)."""
    vocab = int(scores.shape[-1])
    hit = np.zeros((vocab,), dtype=bool)
    hit[[i for i in ids if i < vocab]] = True
    mask = ops.logical_and(ops.convert_to_tensor(hit)[None, :], ops.reshape(active, (-1, 1)))
    return ops.where(mask, NEG_INF, scores)


def temperature(scores, t):
    return scores / t


def top_k(scores, k, min_keep=1):
    k = min(max(k, min_keep), int(scores.shape[-1]))
    kth = ops.top_k(scores, k, sorted=True)[0][:, k - 1 : k]
    return ops.where(scores < kth, NEG_INF, scores)


def top_p(scores, p, min_keep=1):
    """Keep the smallest set of ids whose probability reaches ``p`` (at least ``min_keep``)."""
    vocab = int(scores.shape[-1])
    sorted_scores = ops.flip(ops.sort(scores, axis=-1), axis=-1)  # descending
    probs = ops.softmax(sorted_scores, axis=-1)
    before = ops.cumsum(probs, axis=-1) - probs  # mass strictly above each rank
    keep = before < p
    keep = ops.logical_or(keep, (ops.arange(vocab) < min_keep)[None, :])
    n_keep = ops.sum(ops.cast(keep, "int32"), axis=-1, keepdims=True)
    cutoff = ops.take_along_axis(sorted_scores, n_keep - 1, axis=-1)
    return ops.where(scores < cutoff, NEG_INF, scores)


def min_p(scores, p, min_keep=1):
    """Drop ids whose probability is below ``p`` times the most likely id's."""
    probs = ops.softmax(scores, axis=-1)
    threshold = p * ops.max(probs, axis=-1, keepdims=True)
    remove = probs < threshold
    if min_keep > 1:
        kth = ops.top_k(scores, min(min_keep, int(scores.shape[-1])), sorted=True)[0][:, -1:]
        remove = ops.logical_and(remove, scores < kth)
    return ops.where(remove, NEG_INF, scores)


def _tail(tokens, cur, m):
    """(batch, m): ``tokens[:, cur - m : cur]`` (indices clipped at 0; callers guard ``cur >= m``)."""
    length = int(tokens.shape[1])
    idx = ops.clip(cur - m + ops.arange(m, dtype="int32"), 0, length - 1)
    return ops.take(tokens, idx, axis=1)


def _rows_to_vocab(weights, ids, vocab):
    """(batch, G) weights summed into (batch, vocab) at the static ids (G,), as a matmul."""
    table = np.zeros((len(ids), vocab), dtype="float32")
    table[np.arange(len(ids)), np.asarray(ids)] = 1.0
    return ops.matmul(ops.cast(weights, "float32"), ops.convert_to_tensor(table))


def sequence_bias(scores, tokens, cur, biases, offset=0):
    """Transformers' SequenceBiasLogitsProcessor (and NoBadWords, with -inf biases).

    ``biases``: tuple of (ids tuple, float). A one-token sequence's bias is always added; a longer
    one's is added to its last id when the sequence's other ids end ``tokens[:, :cur]``. The
    sequence length counts from ``offset`` (extra left padding of the buffer), so a prefix longer
    than the real context never matches. -inf biases ban the id (no 0 * inf).
    """
    vocab = int(scores.shape[-1])
    bad = [i for seq, _ in biases for i in seq if i >= vocab]
    if bad:
        from keras_models.generation.config import GenerationError

        raise GenerationError(f"the model's vocabulary has {vocab} ids, but these are biased / banned: {bad}")
    single = np.zeros((vocab,), "float32")
    single_ban = np.zeros((vocab,), bool)
    groups = {}
    for seq, b in biases:
        if len(seq) == 1:
            if b == NEG_INF:
                single_ban[seq[0]] = True
            else:
                single[seq[0]] += b
        else:
            groups.setdefault(len(seq) - 1, []).append((seq, b))
    finite = ops.broadcast_to(ops.convert_to_tensor(single)[None, :], tuple(scores.shape))
    banned = ops.broadcast_to(ops.convert_to_tensor(single_ban)[None, :], tuple(scores.shape))
    for m, group in groups.items():
        prefixes = ops.convert_to_tensor(np.asarray([seq[:-1] for seq, _ in group], "int32"))  # (G, m)
        tail = ops.cast(_tail(tokens, cur, m), "int32")  # (batch, m)
        match = ops.all(ops.equal(tail[:, None, :], prefixes[None, :, :]), axis=-1)  # (batch, G)
        match = ops.logical_and(match, cur - offset >= m)
        last = [seq[-1] for seq, _ in group]
        values = np.asarray([b for _, b in group], "float32")
        fin = np.where(np.isneginf(values), 0.0, values).astype("float32")
        if fin.any():
            finite = finite + _rows_to_vocab(ops.where(match, fin[None, :], 0.0), last, vocab)
        if np.isneginf(values).any():
            hits = ops.logical_and(match, ops.convert_to_tensor(np.isneginf(values))[None, :])
            banned = ops.logical_or(banned, _rows_to_vocab(hits, last, vocab) > 0)
    scores = scores + finite
    return ops.where(banned, NEG_INF, scores)


def encoder_repetition_penalty(scores, source, penalty):
    """Transformers' EncoderRepetitionPenaltyLogitsProcessor: ids of ``source`` (the encoder /
    prompt ids, padding included) get the inverse repetition penalty."""
    inverse = 1.0 / penalty
    present = presence_from_tokens(source, ops.ones(ops.shape(source), "bool"), int(scores.shape[-1]))
    rewarded = ops.where(scores < 0, scores * inverse, scores / inverse)
    return ops.where(present > 0, rewarded, scores)


def encoder_no_repeat_ngram(scores, tokens, cur, source, n, offset=0):
    """Transformers' EncoderNoRepeatNGramLogitsProcessor: ban the ids that would complete an
    n-gram of ``source`` (batch, S) after the last ``n - 1`` ids of ``tokens[:, :cur]``."""
    s_len = int(source.shape[1])
    vocab = int(scores.shape[-1])
    if n > s_len:
        return scores
    windows_idx = np.arange(s_len - n + 1)[:, None] + np.arange(n)[None, :]
    windows = ops.cast(ops.take(source, ops.convert_to_tensor(windows_idx, "int32"), axis=1), "int32")
    if n > 1:
        prefix = ops.cast(_tail(tokens, cur, n - 1), "int32")
        matches = ops.all(ops.equal(windows[:, :, : n - 1], prefix[:, None, :]), axis=-1)
        matches = ops.logical_and(matches, cur - offset >= n - 1)
    else:
        matches = ops.ones(tuple(windows.shape[:2]), "bool")
    b = ops.shape(source)[0]
    w = s_len - n + 1
    rows = ops.repeat(ops.arange(b, dtype="int32")[:, None], w, axis=1)
    idx = ops.stack([ops.reshape(rows, (-1,)), ops.reshape(windows[:, :, n - 1], (-1,))], 1)
    banned = ops.scatter(idx, ops.reshape(ops.cast(matches, "float32"), (-1,)), (b, vocab))
    return ops.where(banned > 0, NEG_INF, scores)


def force_ids(scores, ids, active):
    """Where ``active`` (scalar bool): -inf everywhere but ``ids``, which get 0 (forced BOS / EOS)."""
    vocab = int(scores.shape[-1])
    forced = np.full((vocab,), NEG_INF, "float32")
    forced[[i for i in ids if i < vocab]] = 0.0
    return ops.where(active, ops.convert_to_tensor(forced)[None, :], scores)


def remove_invalid(scores):
    """Transformers' InfNanRemoveLogitsProcessor: NaN -> 0, +-inf -> the largest finite floats."""
    big = float(np.finfo(np.float32).max)
    scores = ops.where(ops.isnan(scores), 0.0, scores)
    return ops.clip(scores, -big, big)


def exponential_decay_length_penalty(scores, eos_ids, steps, factor):
    """Transformers' ExponentialDecayLengthPenalty: after ``steps`` > 0 steps past the start
    index, eos scores grow by ``|score| * (factor ** steps - 1)`` (non-finite ones unchanged)."""
    vocab = int(scores.shape[-1])
    hit = np.zeros((vocab,), bool)
    hit[[i for i in eos_ids if i < vocab]] = True
    steps = ops.cast(steps, "float32")
    grow = ops.where(steps > 0, ops.power(ops.cast(factor, "float32"), steps) - 1.0, 0.0)
    penalty = ops.where(ops.isfinite(scores), ops.abs(scores) * grow, 0.0)
    return ops.where(ops.convert_to_tensor(hit)[None, :], scores + penalty, scores)


def _kth_largest(scores, k):
    k = min(max(k, 1), int(scores.shape[-1]))
    return ops.top_k(scores, k, sorted=True)[0][:, k - 1 : k]


def _entropy(logp, probs):
    """Entropy from log-probabilities and probabilities, 0 * log 0 counted as 0."""
    plogp = probs * logp
    return -ops.sum(ops.where(ops.isnan(plogp), 0.0, plogp), axis=-1, keepdims=True)


def typical_p(scores, mass, min_keep=1):
    """Transformers' TypicalLogitsWarper: keep the ids whose surprisal is closest to the entropy,
    up to probability ``mass``."""
    vocab = int(scores.shape[-1])
    logp = ops.log_softmax(scores, axis=-1)
    ent = _entropy(logp, ops.exp(logp))
    shifted = ops.abs(-logp - ent)
    order = ops.argsort(shifted, axis=-1)  # ascending
    sorted_shifted = ops.take_along_axis(shifted, order, axis=-1)
    sorted_logits = ops.take_along_axis(scores, order, axis=-1)
    cumulative = ops.cumsum(ops.softmax(sorted_logits, axis=-1), axis=-1)
    last = ops.sum(ops.cast(cumulative < mass, "int32"), axis=-1, keepdims=True)
    last = ops.maximum(ops.minimum(last, vocab - 1), min(min_keep, vocab) - 1)
    threshold = ops.take_along_axis(sorted_shifted, last, axis=-1)
    # Decided on the sorted copy and moved back (as Transformers does): comparing ``shifted`` itself
    # with the threshold can drop the threshold's own id when a compiler computes the two copies of
    # ``shifted`` with different roundings (XLA:CPU without its fusion emitters did).
    remove = ops.take_along_axis(sorted_shifted > threshold, ops.argsort(order, axis=-1), axis=-1)
    return ops.where(remove, NEG_INF, scores)


def epsilon_cutoff(scores, epsilon, min_keep=1):
    """Transformers' EpsilonLogitsWarper: drop ids with probability below ``epsilon``."""
    remove = ops.softmax(scores, axis=-1) < epsilon
    remove = ops.logical_and(remove, scores < _kth_largest(scores, min_keep))
    return ops.where(remove, NEG_INF, scores)


def eta_cutoff(scores, epsilon, min_keep=1):
    """Transformers' EtaLogitsWarper: drop ids with probability below
    ``min(epsilon, sqrt(epsilon) * exp(-entropy))``."""
    probs = ops.softmax(scores, axis=-1)
    ent = _entropy(ops.log_softmax(scores, axis=-1), probs)
    eps = ops.convert_to_tensor(epsilon, "float32")
    eta = ops.minimum(eps, ops.sqrt(eps) * ops.exp(-ent))
    remove = ops.logical_and(probs < eta, scores < _kth_largest(scores, min_keep))
    return ops.where(remove, NEG_INF, scores)


def classifier_free_guidance(scores, uncond_logits, scale):
    """Transformers' UnbatchedClassifierFreeGuidanceLogitsProcessor on log-probabilities."""
    scores = ops.log_softmax(scores, axis=-1)
    uncond = ops.log_softmax(ops.cast(uncond_logits, "float32"), axis=-1)
    return scale * (scores - uncond) + uncond


def _logsumexp(x, axis=-1):
    """logsumexp that gives -inf (not NaN) for an all -inf row on every backend."""
    top = ops.max(x, axis=axis, keepdims=True)
    safe = ops.where(ops.isfinite(top), top, 0.0)
    return ops.squeeze(ops.log(ops.sum(ops.exp(x - safe), axis=axis, keepdims=True)) + safe, axis)


def whisper_timestamps(scores, tokens, cur, begin, rule):
    """Transformers' WhisperTimeStampLogitsProcessor over the (rows, L) buffer ``tokens``, whose
    generated part is ``tokens[:, begin:cur]``. ``rule`` = (no_timestamps_token_id, eos id,
    max_initial_timestamp_index or None). Ids above no_timestamps_token_id are timestamps: they
    come in pairs (a single one is followed by another or by text below eos, a pair by text),
    never decrease, the first one is a timestamp <= begin + max_initial_timestamp_index, and when
    the timestamps' total probability exceeds every text token's, a timestamp is forced."""
    no_ts, eos, max_initial = rule
    vocab = int(scores.shape[-1])
    length = int(tokens.shape[1])
    ts_begin = no_ts + 1
    ids = ops.arange(vocab, dtype="int32")[None, :]
    is_ts_id = ids >= ts_begin
    tokens = ops.cast(tokens, "int32")
    scores = ops.where(ops.equal(ids, no_ts), NEG_INF, scores)
    n = cur - begin
    last = ops.take(tokens, ops.clip(cur - 1, 0, length - 1), axis=1)
    penult = ops.take(tokens, ops.clip(cur - 2, 0, length - 1), axis=1)
    last_ts = ops.logical_and(n >= 1, last >= ts_begin)[:, None]
    penult_ts = ops.logical_or(n < 2, penult >= ts_begin)[:, None]
    scores = ops.where(ops.logical_and(ops.logical_and(last_ts, penult_ts), is_ts_id), NEG_INF, scores)
    single = ops.logical_and(last_ts, ops.logical_not(penult_ts))
    scores = ops.where(ops.logical_and(single, ids < eos), NEG_INF, scores)
    # the last timestamp generated so far (by position): later ones may not be smaller
    pos = ops.arange(length, dtype="int32")[None, :]
    stamp = ops.logical_and(ops.logical_and(pos >= begin, pos < cur), tokens >= ts_begin)
    where = ops.max(ops.where(stamp, pos, -1), axis=1)
    value = ops.take_along_axis(tokens, ops.clip(where, 0, length - 1)[:, None], axis=1)
    floor = ops.where(where[:, None] < 0, ts_begin, ops.where(single, value, value + 1))
    scores = ops.where(ops.logical_and(is_ts_id, ids < floor), NEG_INF, scores)
    first = ops.equal(n, 0)
    scores = ops.where(ops.logical_and(first, ids < ts_begin), NEG_INF, scores)
    if max_initial is not None:
        scores = ops.where(ops.logical_and(first, ids > ts_begin + int(max_initial)), NEG_INF, scores)
    logp = ops.log_softmax(scores, axis=-1)
    ts_mass = _logsumexp(ops.where(is_ts_id, logp, NEG_INF))
    text_best = ops.max(ops.where(is_ts_id, NEG_INF, logp), axis=-1)
    force = (ts_mass > text_best)[:, None]
    return ops.where(ops.logical_and(force, ops.logical_not(is_ts_id)), NEG_INF, scores)


def _bias_list(config, eos_ids):
    """(sequence_bias, bad-word biases) of a config as tuples of (ids, float)."""
    seq = tuple(getattr(config, "sequence_bias", None) or ())
    bad = tuple((tuple(w), NEG_INF) for w in (getattr(config, "bad_words_ids", None) or ())
                if not (len(w) == 1 and w[0] in eos_ids))
    return seq, bad


class Processors:
    """The processors a GenerationConfig asks for, applied in Transformers' order
    (``GenerationMixin._get_logits_processor``): classifier-free guidance, sequence bias, encoder
    repetition penalty, repetition penalty, no-repeat n-grams, encoder no-repeat n-grams, bad
    words, min length, forced BOS, forced EOS, inf/NaN removal, exponential decay length
    penalty, suppressed tokens, begin-suppressed tokens, Whisper's timestamp rule; when sampling, temperature, top-k, top-p,
    min-p, typical-p, epsilon and eta cutoffs; last, renormalisation.

    ``__call__(scores, tokens, cur, presence, limit, source, uncond)``: ``tokens`` the (rows, L)
    buffer, ``cur`` the number of filled positions, ``presence`` the (rows, vocab) seen-id mask
    (read with a repetition penalty), ``limit`` the maximum length (forced EOS at ``limit - 1``),
    ``source`` the (rows, S) encoder / prompt ids (encoder n-grams and penalty), ``uncond`` the
    unconditional logits of classifier-free guidance. ``prompt_len`` is where the new tokens start
    in the buffer, ``offset`` how many extra padding columns the buffer has in front of what
    Transformers' ``input_ids`` would hold (Transformers' length = ``cur - offset``).
    """

    def __init__(self, config, min_length, eos_ids, sampling, min_keep=1, prompt_len=None, offset=0,
                 timestamps=None):
        self.timestamps = timestamps  # Whisper's timestamp rule (whisper_timestamps), after begin-suppress
        self.rep = float(config.repetition_penalty)
        self.ngram = int(config.no_repeat_ngram_size or 0)
        self.min_length = int(min_length or 0)
        self.eos_ids = tuple(eos_ids or ())
        self.sampling = sampling
        self.temperature = float(config.temperature)
        self.top_k = int(config.top_k or 0)
        self.top_p = float(config.top_p)
        self.min_p = config.min_p
        self.min_keep = min_keep
        self.offset = int(offset)
        self.prompt_len = prompt_len
        g = lambda name, default=None: getattr(config, name, default)  # noqa: E731
        self.guidance = g("guidance_scale")
        if self.guidance is not None and float(self.guidance) == 1.0:
            self.guidance = None
        self.seq_bias, self.bad_words = _bias_list(config, self.eos_ids)
        self.enc_rep = float(g("encoder_repetition_penalty", 1.0) or 1.0)
        self.enc_ngram = int(g("encoder_no_repeat_ngram_size", 0) or 0)
        self.forced_bos = g("forced_bos_token_id")
        self.forced_eos = tuple(g("forced_eos_token_id") or ())
        self.remove_invalid = bool(g("remove_invalid_values", False))
        self.decay = g("exponential_decay_length_penalty")
        self.suppress = tuple(g("suppress_tokens") or ())
        self.begin_suppress = tuple(g("begin_suppress_tokens") or ())
        self.typical_p = float(g("typical_p", 1.0) or 1.0)
        self.epsilon = float(g("epsilon_cutoff", 0.0) or 0.0)
        self.eta = float(g("eta_cutoff", 0.0) or 0.0)
        self.renormalize = bool(g("renormalize_logits", False))
        needs_start = self.decay is not None or self.begin_suppress or self.forced_bos is not None
        if needs_start and prompt_len is None:
            raise ValueError("Processors: prompt_len is needed for forced BOS, begin-suppressed tokens "
                             "and the exponential decay length penalty")

    @property
    def needs_presence(self):
        return self.rep != 1.0

    @property
    def needs_source(self):
        return self.enc_rep != 1.0 or self.enc_ngram > 0

    @property
    def needs_uncond(self):
        return self.guidance is not None

    def __call__(self, scores, tokens, cur, presence=None, limit=None, source=None, uncond=None):
        if self.guidance is not None:
            scores = classifier_free_guidance(scores, uncond, float(self.guidance))
        if self.seq_bias:
            scores = sequence_bias(scores, tokens, cur, self.seq_bias, self.offset)
        if self.enc_rep != 1.0:
            scores = encoder_repetition_penalty(scores, source, self.enc_rep)
        if self.rep != 1.0:
            scores = repetition_penalty(scores, presence, self.rep)
        if self.ngram > 0:
            scores = no_repeat_ngram(scores, tokens, cur, self.ngram)
        if self.enc_ngram > 0:
            scores = encoder_no_repeat_ngram(scores, tokens, cur, source, self.enc_ngram, self.offset)
        if self.bad_words:
            scores = sequence_bias(scores, tokens, cur, self.bad_words, self.offset)
        if self.min_length > 0 and self.eos_ids:
            scores = suppress_ids(scores, self.eos_ids, cur < self.min_length)
        if self.forced_bos is not None:
            scores = force_ids(scores, (int(self.forced_bos),), ops.equal(cur - self.offset, 1))
        if self.forced_eos:
            if limit is None:
                raise ValueError("Processors: forced EOS needs the maximum length (limit)")
            scores = force_ids(scores, self.forced_eos, ops.equal(cur, ops.cast(limit, "int32") - 1))
        if self.remove_invalid:
            scores = remove_invalid(scores)
        if self.decay is not None and self.eos_ids:
            start = int(self.decay[0]) + self.prompt_len
            scores = exponential_decay_length_penalty(scores, self.eos_ids, cur - start, float(self.decay[1]))
        if self.suppress:
            scores = suppress_ids(scores, self.suppress, ops.convert_to_tensor(True))
        if self.begin_suppress:
            begin = self.prompt_len
            if self.prompt_len - self.offset == 1 and self.forced_bos is not None:
                begin += 1
            scores = suppress_ids(scores, self.begin_suppress, ops.equal(cur, begin))
        if self.timestamps is not None:
            scores = whisper_timestamps(scores, tokens, cur, self.prompt_len, self.timestamps)
        if self.sampling:
            scores = self.warp(scores)
        if self.renormalize:
            scores = ops.log_softmax(scores, axis=-1)
        return scores

    def warp(self, scores):
        if self.temperature != 1.0:
            scores = temperature(scores, self.temperature)
        if self.top_k:
            scores = top_k(scores, self.top_k, self.min_keep)
        if self.top_p < 1.0:
            scores = top_p(scores, self.top_p, self.min_keep)
        if self.min_p is not None:
            scores = min_p(scores, float(self.min_p), self.min_keep)
        if self.typical_p < 1.0:
            scores = typical_p(scores, self.typical_p, self.min_keep)
        if 0.0 < self.epsilon < 1.0:
            scores = epsilon_cutoff(scores, self.epsilon, self.min_keep)
        if 0.0 < self.eta < 1.0:
            scores = eta_cutoff(scores, self.eta, self.min_keep)
        return scores


def sample(scores, u):
    """Draw one id per row from softmax(scores) with Gumbel-max, given uniforms ``u`` (rows, vocab)."""
    gumbel = -ops.log(-ops.log(u))
    return first_argmax(scores + gumbel)


def greedy(scores):
    return first_argmax(scores)


def first_argmax(scores):
    """(rows, vocab) -> (rows,) int32: the first index of each row's maximum (of its first NaN,
    if any), as ``argmax``. Under XLA (jax, tensorflow) argmax is a variadic (value, index)
    reduction that runs ~10x slower on CPU than this max, compare and min (1.1 ms vs 0.1 ms for
    8 x 32000 scores: 4% of a decode step); torch keeps its own argmax."""
    if backend.BACKEND == "torch":
        if backend.direct_ops(scores):
            return scores.argmax(-1).int()
        return ops.cast(ops.argmax(scores, axis=-1), "int32")
    vocab = int(scores.shape[-1])
    top = ops.max(scores, axis=-1, keepdims=True)
    hit = ops.logical_or(ops.equal(scores, top), ops.isnan(scores))
    index = ops.arange(vocab, dtype="int32")[None, :]
    return ops.min(ops.where(hit, index, vocab), axis=-1)

"""Stop strings as tensor ops, with the semantics of Transformers' StopStringCriteria.

A row stops when its text ends in a stop string that overlaps the last token (the last token may
run past the stop string's end; earlier tokens may run off its start). As in Transformers, the
match is computed from per-token tables, so the check runs inside the compiled decode step:

* ``end[v, p]``: token ``v`` contains the last ``p`` characters of the stop string, ending inside
  it, with nothing of the stop string before its start unless ``p`` is the whole string;
* ``valid[v, p]``: with ``p`` characters matched from the end, token ``v`` (entirely) is the
  text just before them (or runs off the start of the stop string);
* ``length[v]``: characters in token ``v``.

A backwards pass over the last few tokens follows the set of matched lengths. Matching is on
characters of each token's decoded text (tokens that are incomplete UTF-8 never match).
"""

from __future__ import annotations

import numpy as np
from keras import ops

_PREFIX = "abcdef"


def token_texts(tokenizer):
    """The text each token id contributes when it follows other text (list indexed by id)."""
    vocab = tokenizer.get_vocab()
    size = max(vocab.values()) + 1
    texts = [""] * size
    base = tokenizer.convert_ids_to_tokens(tokenizer(_PREFIX, add_special_tokens=False, return_tensors=None)["input_ids"])
    for token, idx in vocab.items():
        full = tokenizer.convert_tokens_to_string(list(base) + [token])
        at = full.find(_PREFIX)
        texts[idx] = full[at + len(_PREFIX):] if at >= 0 else tokenizer.convert_tokens_to_string([token])
    return texts


def tables(texts, stop):
    """(end, valid, length) numpy tables of one stop string over the token texts."""
    n = len(stop)
    vocab = len(texts)
    end = np.zeros((vocab, n + 1), dtype=bool)
    valid = np.zeros((vocab, n + 1), dtype=bool)
    length = np.zeros((vocab,), dtype=np.int32)
    for v, tok in enumerate(texts):
        length[v] = len(tok)
        if "\ufffd" in tok:
            continue
        # end overlaps: stop[-p:] == tok[i+1-p : i+1] with p = min(i+1, n)
        for i in range(len(tok)):
            p = min(i + 1, n)
            if tok[i + 1 - p : i + 1] == stop[n - p :]:
                end[v, p] = True
        # valid positions: p chars matched already, tok is the text right before them
        for p in range(1, n):
            remaining = stop[: n - p]
            if not tok:
                continue
            if len(tok) <= len(remaining):
                valid[v, p] = remaining.endswith(tok)
            else:
                valid[v, p] = tok.endswith(remaining)
    return end, valid, length


class StopStrings:
    """Compiled-friendly stop-string check for a tokenizer and a list of stop strings."""

    def __init__(self, tokenizer, stop_strings, model_vocab_size=None):
        texts = token_texts(tokenizer)
        if model_vocab_size is not None and model_vocab_size > len(texts):
            texts = texts + [""] * (model_vocab_size - len(texts))
        self.stop_strings = list(stop_strings)
        self.tables = [tables(texts, s) for s in self.stop_strings]

    def __call__(self, tokens, cur):
        """(rows,) bool: does the text of ``tokens[:, :cur]`` end in a stop string?"""
        length_buf = int(tokens.shape[1])
        cur = ops.cast(ops.convert_to_tensor(cur), "int32")
        hit = None
        for stop, (end, valid, length) in zip(self.stop_strings, self.tables):
            n = len(stop)
            end_t = ops.convert_to_tensor(end)
            valid_t = ops.convert_to_tensor(valid)
            len_t = ops.convert_to_tensor(length)
            last = ops.take(tokens, ops.clip(cur - 1, 0, length_buf - 1), axis=1)
            state = ops.take(end_t, last, axis=0)  # (rows, n+1)
            found = state[:, n]
            q = ops.arange(n + 1, dtype="int32")
            for k in range(n + 1):
                pos = cur - 2 - k
                tok = ops.take(tokens, ops.clip(pos, 0, length_buf - 1), axis=1)
                ok = ops.logical_and(ops.take(valid_t, tok, axis=0), pos >= 0)
                contrib = ops.logical_and(state, ok)  # (rows, n+1)
                new_p = ops.minimum(q[None, :] + ops.take(len_t, tok, axis=0)[:, None], n)  # (rows, n+1)
                moves = ops.equal(new_p[:, :, None], q[None, None, :])  # (rows, p, q)
                state = ops.any(ops.logical_and(contrib[:, :, None], moves), axis=1)
                found = ops.logical_or(found, state[:, n])
            hit = found if hit is None else ops.logical_or(hit, found)
        return hit

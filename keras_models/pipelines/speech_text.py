"""Token grouping for the automatic-speech-recognition pipeline (keras_models.pipelines.audio):
Whisper's word-level timestamps (tokens grouped into words, per language) and the merging of
overlapping chunk transcriptions (chunked long-form input), as Transformers' pipeline does them."""

from __future__ import annotations

import numpy as np

# Whisper's languages written without spaces between words (code -> the name Transformers checks)
_NO_SPACE_LANGUAGES = {"zh": "chinese", "ja": "japanese", "th": "thai", "lo": "lao", "my": "myanmar",
                       "yue": "cantonese"}
_PREPEND = "\"'\u201c\u00a1\u00bf([{-"
_APPEND = "\"'.\u3002,\uff0c!\uff01?\uff1f:\uff1a\u201d)]}\u3001"
_PUNCTUATION = "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~"


def _tokenizer_language(tokenizer):
    """The ``language`` a Whisper tokenizer was saved with (tokenizer_config.json), else None."""
    for name in ("init_kwargs", "config", "tokenizer_config"):
        config = getattr(tokenizer, name, None)
        if isinstance(config, dict) and config.get("language"):
            return config["language"]
    return None


def _whisper_words(decode, ids, language=None, eos_id=None):
    """``[(word, [positions in ids])]`` as Transformers' Whisper word timestamps group tokens:
    for Chinese, Japanese, Thai, Lao, Myanmar and Cantonese (by name; None counts as English) a
    word ends wherever the tokens so far decode to whole characters; otherwise those pieces are
    joined into words that start at a piece beginning with a space, a punctuation piece or a
    special token. Then opening punctuation (a piece ``" ("``, ...) joins the next word and closing
    punctuation (``"."``, ``","``, ...) the previous one (unless that ends with a space)."""
    decode_ids = lambda x: decode(list(x), skip_special_tokens=False)  # noqa: E731
    pieces = _split_on_unicode(decode_ids, ids)
    if (language or "english") not in _NO_SPACE_LANGUAGES.values():
        words = []
        for text, idx in pieces:
            first = ids[idx[0]]
            if ((eos_id is not None and first >= eos_id) or text.startswith(" ") or text.strip() in _PUNCTUATION
                    or not words):
                words.append([text, list(idx)])
            else:
                words[-1][0] += text
                words[-1][1].extend(idx)
        pieces = words
    words = [[text, list(idx)] for text, idx in pieces]
    j = len(words) - 1
    for i in range(len(words) - 2, -1, -1):  # opening punctuation joins the word after it
        if words[i][0].startswith(" ") and words[i][0].strip() in _PREPEND:
            words[j] = [words[i][0] + words[j][0], words[i][1] + words[j][1]]
            words[i] = ["", []]
        else:
            j = i
    i = 0
    for j in range(1, len(words)):  # closing punctuation joins the word before it
        if not words[i][0].endswith(" ") and words[j][0] in _APPEND:
            words[i] = [words[i][0] + words[j][0], words[i][1] + words[j][1]]
            words[j] = ["", []]
        else:
            i = j
    return [(text, idx) for text, idx in words if text and idx]


def _split_on_unicode(decode_ids, ids):
    """``[(text, [positions])]``: the shortest runs of ``ids`` that decode to whole characters
    (a run whose text has a replacement character goes on, unless the whole text has one there)."""
    full = decode_ids(ids)
    out, run, offset = [], [], 0
    for pos in range(len(ids)):
        run.append(pos)
        text = decode_ids(ids[p] for p in run)
        bad = text.find("\ufffd")
        if bad < 0 or offset + bad >= len(full) or full[offset + bad] == "\ufffd":
            out.append((text, run))
            run, offset = [], offset + len(text)
    return out


def _merge_overlaps(sequences, times=None):
    """One token list from consecutive windows' lists: each pair joined at the middle of their best
    overlap (most equal tokens per overlap length, at least two), as Transformers' Whisper ASR
    pipeline does. With ``times`` (per window, per token a (start, end)): an equal token counts
    only when its left time is not after its right one, and ``(tokens, times)`` come back cut
    the same way."""
    if not sequences:
        return ([], []) if times is not None else []
    left, total = list(sequences[0]), []
    if times is not None:
        left_t, total_t = list(times[0]) if times else [], []
    for k, right in enumerate(sequences[1:]):
        best, cut = 0.0, (len(left), len(left), 0, 0)
        for i in range(1, len(left) + len(right)):
            ls, le = max(0, len(left) - i), min(len(left), len(left) + len(right) - i)
            rs, re_ = max(0, i - len(left)), min(len(right), i)
            if times:
                matches = sum(1 for n in range(le - ls)
                              if left[ls + n] == right[rs + n] and left_t[ls + n] <= times[k + 1][rs + n])
            else:
                matches = int(np.sum(np.array(left[ls:le]) == np.array(right[rs:re_])))
            score = matches / i + i / 10000.0
            if matches > 1 and score > best:
                best, cut = score, (ls, le, rs, re_)
        total.extend(left[: (cut[0] + cut[1]) // 2])
        left = list(right[(cut[2] + cut[3]) // 2 :])
        if times:
            total_t.extend(left_t[: (cut[0] + cut[1]) // 2])
            left_t = list(times[k + 1][(cut[2] + cut[3]) // 2 :])
    if times is None:
        return total + left
    return total + left, (total_t + left_t if times else [])

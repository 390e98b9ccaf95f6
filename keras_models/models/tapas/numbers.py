"""Numbers and dates in TAPAS tables and questions (the column-rank and numeric-relation token
types), following Transformers' TapasTokenizer (itself after google-research/tapas'
number_annotation_utils) rule for rule:

* a text's numeric spans: numbers (``-1,234.5``, ``3rd``), number and ordinal words up to twelve,
  and dates of 1700-2016 in a fixed list of formats; the longest spans win, nested ones are dropped;
* a column's value per row: the first value of the column's most common type (dates win ties),
  when at least 70% of the rows have one;
* values compare as floats, or dates as the (year, month, day) parts every compared value has.
"""

from __future__ import annotations

import datetime
import math
import re
from collections import Counter

EMPTY_TEXT = "EMPTY"
MIN_YEAR, MAX_YEAR = 1700, 2016
MAX_DATE_WORDS = 5
CONSOLIDATION_FRACTION = 0.7
# relation bits in the numeric_relations token type: question value ==, < or > the cell's
EQ, LT, GT = 1, 2, 4

NUMBER_WORDS = ("zero one two three four five six seven eight nine ten eleven twelve").split()
ORDINAL_WORDS = ("zeroth first second third fourth fifth sixth seventh eighth ninth tenth eleventh "
                 "twelfth").split()
ORDINAL_SUFFIXES = ("st", "nd", "rd", "th")
NUMBER = re.compile(r"((^|\s)[+-])?((\.\d+)|(\d+(,\d\d\d)*(\.\d*)?))")

# (strptime format, which of year / month / day it fixes)
_Y, _YM, _YMD, _M, _MD = (1, 0, 0), (1, 1, 0), (1, 1, 1), (0, 1, 0), (0, 1, 1)
DATE_FORMATS = (
    ("%B", _M), ("%Y", _Y), ("%Ys", _Y), ("%b %Y", _YM), ("%B %Y", _YM), ("%B %d", _MD), ("%b %d", _MD),
    ("%d %b", _MD), ("%d %B", _MD), ("%B %d, %Y", _YMD), ("%d %B %Y", _YMD), ("%m-%d-%Y", _YMD),
    ("%Y-%m-%d", _YMD), ("%Y-%m", _YM), ("%B %Y", _YM), ("%d %b %Y", _YMD), ("%Y-%m-%d", _YMD),
    ("%b %d, %Y", _YMD), ("%d.%m.%Y", _YMD), ("%A, %b %d", _MD), ("%A, %B %d", _MD),
)
_FIELDS = {"%A": r"\w+", "%B": r"\w+", "%Y": r"\d{4}", "%b": r"\w{3}", "%d": r"\d{1,2}", "%m": r"\d{1,2}"}


def _prefilter(fmt):
    """A regex a text must match before strptime is tried with ``fmt``."""
    out = ""
    i = 0
    while i < len(fmt):
        if fmt[i] == "%":
            out += _FIELDS[fmt[i:i + 2]]
            i += 2
            continue
        out += r"\s+" if fmt[i] == " " else re.escape(fmt[i])
        i += 1
    return re.compile(f"^{out}$")


_DATE_RULES = tuple((fmt, parts, _prefilter(fmt)) for fmt, parts in DATE_FORMATS)


def number_value(text):
    """A float for a plain or ordinal number (``"1,234"``, ``"3rd"``), else None."""
    for suffix in ORDINAL_SUFFIXES:
        if text.endswith(suffix):
            text = text[: -len(suffix)]
            break
    try:
        value = float(text.replace(",", ""))
    except ValueError:
        return None
    if math.isnan(value) or value == math.inf:
        return None
    return value


def date_value(text):
    """A date as a (year, month, day) tuple of floats or None for the parts its format lacks."""
    text = re.sub(r"Sept\b", "Sep", text)
    for fmt, parts, regex in _DATE_RULES:
        if not regex.match(text):
            continue
        try:
            date = datetime.datetime.strptime(text, fmt).date()
        except ValueError:
            continue
        if not MIN_YEAR <= date.year <= MAX_YEAR:
            continue
        return tuple(float(v) if keep else None for v, keep in zip((date.year, date.month, date.day), parts))
    return None


def word_spans(text, max_words):
    """(begin, end) of every run of 1..max_words consecutive alphanumeric words (the text between
    them included), in order of their end."""
    starts = []
    for i, ch in enumerate(text):
        if not ch.isalnum():
            continue
        if i == 0 or not text[i - 1].isalnum():
            starts.append(i)
        if i + 1 == len(text) or not text[i + 1].isalnum():
            for start in starts[-max_words:]:
                yield start, i + 1


def numeric_spans(text):
    """[(begin, end, values)] of the longest non-nested numeric spans, by position; a value is a
    float (number) or a (year, month, day) tuple (date)."""
    spans = {}
    for m in NUMBER.finditer(text):
        value = number_value(text[m.start():m.end()])
        if value is not None:
            spans.setdefault(m.span(), []).append(value)
    for span in word_spans(text, 1):
        if span in spans:
            continue
        piece = text[span[0]:span[1]]
        value = number_value(piece)
        if value is not None:
            spans.setdefault(span, []).append(value)
        for words in (NUMBER_WORDS, ORDINAL_WORDS):
            if piece in words:
                spans.setdefault(span, []).append(float(words.index(piece)))
    for span in word_spans(text, MAX_DATE_WORDS):
        value = date_value(text[span[0]:span[1]])
        if value is not None:
            spans.setdefault(span, []).append(value)
    kept = []
    for (begin, end), values in sorted(spans.items(), key=lambda kv: (kv[0][0] - kv[0][1], kv[0][0])):
        if not any(b <= begin and end <= e for b, e, _ in kept):
            kept.append((begin, end, values))
    return sorted(kept, key=lambda s: s[0])


def normalize(text):
    return " ".join(text.lower().split())


def value_type(value):
    return "date" if isinstance(value, tuple) else "number"


def column_values(cells):
    """{row: value} of one column's cell texts: the first value of the most common type per row
    (rows without one left out); {} when fewer than 70% of the rows have a value of that type."""
    per_row = {row: [v for _, _, vs in numeric_spans(normalize(text)) for v in vs] for row, text in enumerate(cells)}
    counts = Counter(t for values in per_row.values() for t in {value_type(v) for v in values})
    if not counts:
        return {}
    top = max(counts.values())
    if top < len(per_row) * CONSOLIDATION_FRACTION:
        return {}
    kind = "date" if counts.get("date") == top else "number"
    out = {}
    for row, values in per_row.items():
        for v in values:
            if value_type(v) == kind:
                out[row] = v
                break
    return out


def sort_key(values):
    """A key making ``values`` comparable (floats; dates by the parts all of them have), or None
    when they mix numbers and dates or share no date part."""
    kinds = {value_type(v) for v in values}
    if len(kinds) != 1:
        return None
    if kinds == {"number"}:
        return lambda v: v
    parts = [i for i in range(3) if all(v[i] is not None for v in values)]
    if not parts:
        return None
    return lambda v: tuple(v[i] for i in parts)


def column_ranks(values):
    """{row: (rank, inverse rank)} of a column's values (1 = smallest; equal values share a rank)."""
    key = sort_key(list(values.values())) if values else None
    if key is None:
        return {}
    keys = {row: key(v) for row, v in values.items()}
    order = sorted(set(keys.values()))
    rank = {k: i + 1 for i, k in enumerate(order)}
    return {row: (rank[k], len(order) - rank[k] + 1) for row, k in keys.items()}


def relations(question_values, values):
    """{row: bits} of the relations (EQ / LT / GT) between the question's values and a column's."""
    out = {}
    for q in question_values:
        key = sort_key(list(values.values()) + [q]) if values else None
        if key is None:
            continue
        for row, v in values.items():
            a, b = key(q), key(v)
            bit = EQ if a == b else LT if a < b else GT if a > b else 0
            if bit:
                out.setdefault(row, set()).add(bit)
    return {row: sum(bits) for row, bits in out.items()}


def format_text(text):
    """Transformers' check for an empty cell: lower-cased, punctuation to spaces; EMPTY when
    nothing is left (or the text is n/a, ? or nan)."""
    text = text.lower().strip()
    if text in ("n/a", "?", "nan"):
        text = EMPTY_TEXT
    text = " ".join(re.sub(r"[^\w\d]+", " ", text).replace("_", " ").split()).strip()
    return text or EMPTY_TEXT

"""CLVP's tokenizer (Transformers' ``ClvpTokenizer``, python-only there): byte-level BPE (GPT-2's
``vocab.json`` + ``merges.txt``) behind Tortoise's English text cleaner.

Each stretch of text between added tokens is cleaned before the BPE (Transformers' ``EnglishNormalizer``):
non-ASCII characters dropped, lower-cased, numbers spelt out (commas inside numbers removed; ``£N`` ->
"N pounds"; ``$D.C`` -> "D dollars, C cents"; decimals "X point Y"; ordinals "first"...; 1001-2999 read
as years, e.g. 1984 -> "nineteen eighty-four"), abbreviations expanded ("mrs." -> "misess", "dr." ->
"doctor", ...), whitespace runs made one space, double quotes removed. A BPE piece that is a lone
space (``Ġ``) gets the id of ``[SPACE]`` when the vocabulary has that token. No special tokens are
added around the ids. Decoding joins the tokens; with ``clean_up_tokenization_spaces`` it writes
``[SPACE]`` and ``[STOP]`` as spaces and drops the unknown token, as Transformers' class does.
"""

from __future__ import annotations

import json
import re

from keras_models.tokenizers.tokenizer import Tokenizer

SPACE_TOKEN = "[SPACE]"
BYTE_SPACE = "\u0120"

_ABBREVIATIONS = [(re.compile(rf"\b{a}\.", re.IGNORECASE), b) for a, b in (
    ("mrs", "misess"), ("mr", "mister"), ("dr", "doctor"), ("st", "saint"), ("co", "company"), ("jr", "junior"),
    ("maj", "major"), ("gen", "general"), ("drs", "doctors"), ("rev", "reverend"), ("lt", "lieutenant"),
    ("hon", "honorable"), ("sgt", "sergeant"), ("capt", "captain"), ("esq", "esquire"), ("ltd", "limited"),
    ("col", "colonel"), ("ft", "fort"))]
_ONES = ["", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
_TEENS = ["ten", "eleven", "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen", "nineteen"]
_TENS = ["", "", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety"]
_SCALES = [(10**15, "quadrillion"), (10**12, "trillion"), (10**9, "billion"), (10**6, "million"), (10**3, "thousand")]


def number_to_words(n: int) -> str:
    """English words for ``n`` (as Tortoise's cleaner writes them: "twenty-one", "one thousand, two")."""
    if n == 0:
        return "zero"
    if n < 0:
        return "minus " + number_to_words(-n)
    if n < 10:
        return _ONES[n]
    if n < 20:
        return _TEENS[n - 10]
    if n < 100:
        return _TENS[n // 10] + ("-" + number_to_words(n % 10) if n % 10 else "")
    if n < 1000:
        return _ONES[n // 100] + " hundred" + (" " + number_to_words(n % 100) if n % 100 else "")
    if n >= 10**18:
        return "number out of range"
    for scale, name in _SCALES:
        if n >= scale:
            rest = n % scale
            return number_to_words(n // scale) + " " + name + (", " + number_to_words(rest) if rest else "")
    raise AssertionError(n)


def _dollars(m) -> str:
    parts = m.group(1).split(".")
    if len(parts) > 2:
        return m.group(1) + " dollars"
    dollars = int(parts[0]) if parts[0] else 0
    cents = int(parts[1]) if len(parts) > 1 and parts[1] else 0
    d_unit, c_unit = ("dollar" if dollars == 1 else "dollars"), ("cent" if cents == 1 else "cents")
    if dollars and cents:
        return f"{dollars} {d_unit}, {cents} {c_unit}"
    if dollars:
        return f"{dollars} {d_unit}"
    return f"{cents} {c_unit}" if cents else "zero dollars"


def _ordinal(m) -> str:
    n = int(m.group(0)[:-2])
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return number_to_words(n) + suffix


def _number(m) -> str:
    n = int(m.group(0))
    if 1000 < n < 3000:
        if n == 2000:
            return "two thousand"
        if 2000 < n < 2010:
            return "two thousand " + number_to_words(n % 100)
        if n % 100 == 0:
            return number_to_words(n // 100) + " hundred"
    return number_to_words(n)


def clean_english(text: str) -> str:
    """Tortoise's text cleaner, as Transformers' ``EnglishNormalizer`` applies it."""
    text = text.encode("ascii", "ignore").decode("utf-8").lower()
    text = re.sub(r"([0-9][0-9,]+[0-9])", lambda m: m.group(1).replace(",", ""), text)
    text = re.sub(r"£([0-9,]*[0-9])", r"\1 pounds", text)
    text = re.sub(r"\$([0-9.,]*[0-9])", _dollars, text)
    text = re.sub(r"([0-9]++\.[0-9]+)", lambda m: m.group(1).replace(".", " point "), text)
    text = re.sub(r"[0-9]++(st|nd|rd|th)", _ordinal, text)
    text = re.sub(r"[0-9]+", _number, text)
    for pattern, replacement in _ABBREVIATIONS:
        text = pattern.sub(replacement, text)
    return re.sub(r"\s+", " ", text).replace('"', "")


class ClvpTokenizer(Tokenizer):
    """:class:`~keras_models.tokenizers.Tokenizer` with CLVP's text cleaner and ``[SPACE]`` piece."""

    @classmethod
    def from_preset(cls, preset, **overrides) -> "ClvpTokenizer":
        from keras_models.presets.resolve import resolve_preset
        from keras_models.tokenizers.loading import load_tokenizer

        tok = load_tokenizer(preset, cls=cls, **overrides)
        tok._rebuild_model(resolve_preset(preset))
        return tok

    from_pretrained = from_preset

    def _rebuild_model(self, folder):
        """The BPE as Transformers' class reads it: merges.txt's first and last lines skipped whatever
        they hold (its own ``save_pretrained`` writes no ``#version`` line, so a reloaded copy drops the
        first merge), and the lone-space piece numbered as ``[SPACE]``."""
        from tokenizers.models import BPE

        from keras_models.errors import TokenizerFileError

        backend = self._backend
        if type(backend.model).__name__ != "BPE":
            return
        model = json.loads(backend.to_str())["model"]
        vocab = dict(model["vocab"])
        merges = [tuple(m.split(" ", 1)) if isinstance(m, str) else tuple(m) for m in model["merges"]]
        path = folder / "merges.txt"
        if path.is_file() and self.source_format != "tokenizer.json":
            try:
                lines = path.read_text(encoding="utf-8").split("\n")[1:-1]
            except (OSError, UnicodeDecodeError) as e:
                raise TokenizerFileError(f"{path}: not a readable text file ({e})") from e
            merges = [tuple(line.split()) for line in lines]
            bad = [i for i, m in enumerate(merges) if len(m) != 2]
            if bad:
                raise TokenizerFileError(f"{path}: line {bad[0] + 2} is not a merge of two pieces")
        space = vocab.get(SPACE_TOKEN, backend.token_to_id(SPACE_TOKEN))
        if space is not None:
            vocab[BYTE_SPACE] = space
        try:
            backend.model = BPE(vocab=vocab, merges=merges, dropout=None, unk_token=model.get("unk_token"),
                                continuing_subword_prefix=model.get("continuing_subword_prefix") or "",
                                end_of_word_suffix=model.get("end_of_word_suffix") or "", fuse_unk=False,
                                byte_fallback=bool(model.get("byte_fallback")))
        except Exception as e:  # the Rust constructor raises a bare Exception (a merge outside the vocabulary)
            raise TokenizerFileError(f"{folder}: vocab.json / merges.txt are inconsistent: {e}") from e

    def _clean(self, text):
        if not isinstance(text, str):
            return [self._clean(t) for t in text] if isinstance(text, (list, tuple)) else text
        added = sorted(self.get_added_vocab(), key=len, reverse=True)
        if not added:
            return clean_english(text)
        parts = re.split("(" + "|".join(re.escape(a) for a in added) + ")", text)
        return "".join(p if i % 2 else clean_english(p) for i, p in enumerate(parts))

    def _encode_batch(self, texts, pairs=None, **kwargs):
        texts = [self._clean(t) for t in texts]
        pairs = None if pairs is None else [self._clean(p) for p in pairs]
        return super()._encode_batch(texts, pairs, **kwargs)

    def _decode_one(self, ids, skip_special_tokens, clean_up_tokenization_spaces):
        ids = [int(i) for i in ids]
        tokens = self.convert_ids_to_tokens(ids, skip_special_tokens=skip_special_tokens)
        space = self._backend.get_vocab().get(SPACE_TOKEN)
        if space is not None:  # the lone-space piece shares [SPACE]'s id: Transformers writes the token
            kept = [i for i in ids if not skip_special_tokens or i not in self.all_special_ids]
            tokens = [SPACE_TOKEN if i == space else t for i, t in zip(kept, tokens)] if len(kept) == len(tokens) \
                else tokens
        tokens = [t for t in tokens if t is not None]
        text = self.convert_tokens_to_string(tokens)
        if clean_up_tokenization_spaces is None:
            clean_up_tokenization_spaces = self.clean_up_tokenization_spaces
        if not clean_up_tokenization_spaces:
            return text
        vocab = self.get_vocab()
        for token in (SPACE_TOKEN, "[STOP]"):
            if token in vocab:
                text = text.replace(token, " ")
        if self.unk_token:
            text = text.replace(self.unk_token, "")
        return text.replace("   ", " ").replace("  ", " ")


__all__ = ["ClvpTokenizer", "clean_english", "number_to_words"]

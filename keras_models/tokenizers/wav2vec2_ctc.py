"""Wav2Vec2's CTC character tokenizer (``Wav2Vec2CTCTokenizer``, a python-only class in Transformers).

The file: ``vocab.json`` (character -> id; MMS checkpoints nest one table per language, picked by
``target_lang``). Encoding: spaces become the word delimiter (``|``), then one token per character
(multi-character vocabulary entries such as ``<pad>`` are matched whole). Decoding (CTC): ids to
tokens (special tokens dropped when ``skip_special_tokens``, the word delimiter kept), runs of one
token grouped into one, the pad (CTC blank) token removed, the word delimiter written as
``replace_word_delimiter_char`` (a space), the text stripped and lower-cased when ``do_lower_case``.
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path

from tokenizers import Regex
from tokenizers import Tokenizer as RustTokenizer
from tokenizers import normalizers, pre_tokenizers

from keras_models.errors import TokenizerFileError

VOCAB_NAME = "vocab.json"


def _content(token, default):
    if token is None:
        return default
    return str(token.get("content")) if isinstance(token, dict) else str(token)


class CtcDecoder:
    """Transformers' CTC decoding of ids (``id_to_token`` / ``tokens_to_string``)."""

    def __init__(self, id_to_token: dict, unk: str, pad: str, delimiter: str | None, replace_char: str, lower: bool):
        self.table, self.unk, self.pad = id_to_token, unk, pad
        self.delimiter, self.replace_char, self.lower = delimiter, replace_char, lower

    def id_to_token(self, tok, index: int) -> str:
        if index in self.table:
            return self.table[index]
        added = tok.backend_tokenizer.get_added_tokens_decoder().get(index)
        return added.content if added is not None else self.unk

    def tokens_to_string(self, tokens) -> str:
        grouped = [t for t, _ in itertools.groupby(tokens)]
        chars = [self.replace_char if t == self.delimiter else t for t in grouped if t != self.pad]
        text = "".join(chars).strip()
        return text.lower() if self.lower else text


def ctc_backend(folder: Path, config: dict, class_name: str, info: dict) -> RustTokenizer:
    """A word-level model over vocab.json, characters as words (" " -> the word delimiter); the CTC
    decoder goes to ``config["_python_decoder"]``."""
    from tokenizers import AddedToken
    from tokenizers.models import WordLevel

    path = folder / VOCAB_NAME
    if not path.is_file():
        raise TokenizerFileError(f"{folder} has no {VOCAB_NAME}: tokenizer class {class_name} reads it")
    try:
        vocab = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise TokenizerFileError(f"{path}: invalid JSON ({e})") from e
    target_lang = config.get("target_lang")
    if target_lang is not None:
        if target_lang not in vocab or not isinstance(vocab[target_lang], dict):
            raise TokenizerFileError(f"{path}: target_lang={target_lang!r} is not one of its languages")
        vocab = vocab[target_lang]
    if not isinstance(vocab, dict) or not all(isinstance(v, int) for v in vocab.values()):
        raise TokenizerFileError(f"{path}: expected a JSON object of token -> id (or target_lang for a nested one)")
    specials = info["specials"]
    unk = _content(config.get("unk_token"), specials["unk_token"])
    pad = _content(config.get("pad_token"), specials["pad_token"])
    delimiter = config.get("word_delimiter_token", "|")
    if config.get("do_lower_case"):
        raise TokenizerFileError(f"{folder}: do_lower_case=True (upper-casing before lookup) is not implemented")
    backend = RustTokenizer(WordLevel(vocab=vocab, unk_token=unk if unk in vocab else None))
    if delimiter is not None:
        backend.normalizer = normalizers.Replace(" ", str(delimiter))
    backend.pre_tokenizer = pre_tokenizers.Split(Regex("."), behavior="isolated")
    backend.add_tokens([AddedToken(t, lstrip=True, rstrip=True, normalized=False) for t in vocab if len(t) > 1])
    config["_python_decoder"] = CtcDecoder({i: t for t, i in vocab.items()}, unk, pad,
                                           None if delimiter is None else str(delimiter),
                                           config.get("replace_word_delimiter_char", " "), False)
    return backend


class PhonemeCtcDecoder(CtcDecoder):
    """Transformers' Wav2Vec2PhonemeCTCTokenizer decoding: grouped, blank (pad) and word delimiter
    dropped, the phonemes joined by spaces."""

    def tokens_to_string(self, tokens) -> str:
        grouped = [t for t, _ in itertools.groupby(tokens)]
        kept = [t for t in grouped if t != self.pad and (self.delimiter is None or t != self.delimiter)]
        return " ".join(kept).strip()


def _read_vocab(folder: Path, class_name: str) -> dict:
    path = folder / VOCAB_NAME
    if not path.is_file():
        raise TokenizerFileError(f"{folder} has no {VOCAB_NAME}: tokenizer class {class_name} reads it")
    try:
        vocab = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise TokenizerFileError(f"{path}: invalid JSON ({e})") from e
    if not isinstance(vocab, dict) or not all(isinstance(v, int) for v in vocab.values()):
        raise TokenizerFileError(f"{path}: expected a JSON object of phoneme -> id")
    return vocab


def phoneme_backend(folder: Path, config: dict, class_name: str, info: dict) -> RustTokenizer:
    """Wav2Vec2PhonemeCTCTokenizer with ``do_phonemize=False``: the text is already phonemes, stripped
    and split on spaces, each piece looked up whole in vocab.json (unknown -> unk). Encoding with
    ``do_phonemize`` on is refused by the Tokenizer (Tokenizer.phonemize_refusal)."""
    from tokenizers.models import WordLevel

    vocab = _read_vocab(folder, class_name)
    specials = info["specials"]
    unk = _content(config.get("unk_token"), specials["unk_token"])
    pad = _content(config.get("pad_token"), specials["pad_token"])
    delimiter = config.get("word_delimiter_token")
    phone_delimiter = config.get("phone_delimiter_token", " ")
    if phone_delimiter != " ":
        raise TokenizerFileError(
            f"{folder / 'tokenizer_config.json'}: phone_delimiter_token={phone_delimiter!r} is not supported "
            "(only ' ', the value every Wav2Vec2Phoneme checkpoint uses)"
        )
    backend = RustTokenizer(WordLevel(vocab=vocab, unk_token=unk if unk in vocab else None))
    backend.normalizer = normalizers.Strip()
    backend.pre_tokenizer = pre_tokenizers.Split(" ", behavior="removed")
    config["_python_decoder"] = PhonemeCtcDecoder({i: t for t, i in vocab.items()}, unk, pad,
                                                  None if delimiter is None else _content(delimiter, None), " ",
                                                  False)
    return backend


def phonemize_refusal(config: dict) -> str | None:
    """Why this Wav2Vec2PhonemeCTCTokenizer cannot encode text (None when it can)."""
    if config.get("do_phonemize", True):
        return (
            "Wav2Vec2PhonemeCTCTokenizer with do_phonemize=True turns text into phonemes with the `phonemizer` "
            "backend (phonemizer package + espeak), which keras_models does not support. Decoding works; to "
            "encode text that is already phonemes, load with Tokenizer.from_preset(preset, do_phonemize=False)"
        )
    return None


def finish_ctc(tok, folder):
    """No post-processor: the class adds no bos / eos around the ids."""
    tok._backend.post_processor = None


__all__ = ["CtcDecoder", "PhonemeCtcDecoder", "ctc_backend", "finish_ctc", "phoneme_backend", "phonemize_refusal",
           "VOCAB_NAME"]

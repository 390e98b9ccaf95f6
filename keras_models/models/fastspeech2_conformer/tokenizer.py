"""FastSpeech2-Conformer's phoneme tokenizer (Transformers' ``FastSpeech2ConformerTokenizer``,
python-only there): English text -> ARPAbet phonemes with the `g2p_en` package -> ids through
``vocab.json``.

Files: ``vocab.json`` (phoneme / punctuation -> id) and ``tokenizer_config.json``
(``should_strip_spaces``, the special tokens, ``added_tokens_decoder``; ``added_tokens.json`` too).
Encoding, as Transformers does it:

1. the text is rewritten: ``;`` and ``:`` become ``,``, ``-`` a space, ``&`` ``and``; the characters
   ``( ) [ ] < > "`` are dropped, whitespace runs become one space, and everything is upper-cased
   (so special tokens written in the text are not recognised: their brackets are gone);
2. the text is split on added tokens (the ones listed in the files, matched on the rewritten text);
   every other non-empty piece goes through ``g2p_en.G2p`` (numbers spelled out, accents stripped,
   NLTK POS tags choosing homograph pronunciations, the CMU dictionary, a small GRU for words
   outside it), its ``" "`` word separators dropped when ``should_strip_spaces``, and
   ``eos_token`` appended to each piece. An empty string gives no tokens at all;
3. each token's id from the added tokens, then ``vocab.json``; anything else gets ``unk_token``'s id.

``decode`` returns the list of tokens, not a string (phonemes do not map back to text), as in
Transformers. Special tokens missing from ``vocab.json`` get the next ids in the order bos, eos, unk,
pad, as Transformers adds them. Two differences, both where Transformers misbehaves: an unknown
phoneme maps to ``unk_token``'s id even when that token is an added one (Transformers gives ``None``
there), and ``decode(..., skip_special_tokens=True)`` drops the special tokens (Transformers
ignores the argument).

Needs the optional packages ``g2p-en`` and ``nltk>=3.9`` (``pip install keras-models[g2p]``), and two
NLTK data packages that nobody ships on a package registry, downloaded by the user once:
``nltk.download("averaged_perceptron_tagger_eng")`` (the POS tagger, JSON files) and
``nltk.download("cmudict")``. g2p_en 2.1.0 also looks for the old pickled tagger
(``taggers/averaged_perceptron_tagger.zip``) when imported and downloads it when it is missing;
NLTK >= 3.9 never reads it. So before importing g2p_en this tokenizer checks for all three and,
when one is missing, raises :class:`MissingNLTKDataError` naming it and the ``nltk.download(...)``
line, instead of letting g2p_en reach the network. Older NLTK (< 3.9) loads its tagger from a
pickle and is refused. The tokenizer loads without g2p_en (``decode`` and
``convert_tokens_to_ids`` work on phonemes you bring); text encoding needs it.
"""

from __future__ import annotations

import json
import re
import threading
from pathlib import Path

import numpy as np

from keras_models.errors import InputError, TokenizerFileError
from keras_models.tokenizers.loading import read_json

SPECIAL_KEYS = ("bos_token", "eos_token", "unk_token", "pad_token")
DEFAULT_SPECIALS = {"bos_token": "<sos/eos>", "eos_token": "<sos/eos>", "unk_token": "<unk>", "pad_token": "<blank>"}
WHAT = "FastSpeech2ConformerTokenizer (text -> phonemes with g2p_en)"

# the NLTK resources g2p_en needs: (resource name for nltk.data.find, nltk.download id, why)
NLTK_RESOURCES = (
    ("taggers/averaged_perceptron_tagger_eng/", "averaged_perceptron_tagger_eng",
     "NLTK's English POS tagger (JSON), which g2p_en uses to pick homograph pronunciations"),
    ("corpora/cmudict.zip", "cmudict",
     "the CMU pronouncing dictionary as NLTK packages it (g2p_en looks for the zip when imported)"),
    ("taggers/averaged_perceptron_tagger.zip", "averaged_perceptron_tagger",
     "the old pickled tagger: g2p_en 2.1.0 looks for it when imported and downloads it when missing; "
     "NLTK >= 3.9 never reads it, so an empty zip file at that path is enough"),
)


class MissingNLTKDataError(InputError, LookupError):
    """NLTK data that g2p_en needs is not installed; the message names each resource and the
    ``nltk.download(...)`` line that fetches it."""


def _content(token):
    return str(token.get("content")) if isinstance(token, dict) else str(token)


_G2P_LOCK = threading.Lock()
_G2P_CACHE = {}


def _version_tuple(text):
    return tuple(int(p) for p in re.findall(r"\d+", text)[:2])


def load_g2p():
    """A ``g2p_en.G2p`` (one per NLTK data path, shared), after checking that the packages and NLTK
    data are there, so that importing g2p_en never starts a download."""
    import importlib.util
    import sys

    from keras_models.preprocessing.optional import MissingPackageError, require

    nltk = require("nltk", "nltk", "g2p", WHAT)
    if _version_tuple(getattr(nltk, "__version__", "0")) < (3, 9):
        raise MissingPackageError(
            f"{WHAT} needs nltk>=3.9 (found {nltk.__version__}): older NLTK loads its POS tagger from a pickle, "
            "which keras_models never does; pip install -U nltk (or keras-models[g2p])")
    if "g2p_en" not in sys.modules and importlib.util.find_spec("g2p_en") is None:
        require("g2p_en", "g2p-en", "g2p", WHAT)  # raises MissingPackageError
    key = tuple(str(p) for p in nltk.data.path)
    with _G2P_LOCK:
        if key in _G2P_CACHE:
            return _G2P_CACHE[key]
        missing = []
        for resource, package, why in NLTK_RESOURCES:
            try:
                nltk.data.find(resource)
            except LookupError:
                missing.append((resource, package, why, "not found"))
            except Exception as e:  # a file that is there but is no readable zip
                missing.append((resource, package, why, f"unreadable: {type(e).__name__}: {e}"))
        if missing:
            lines = "\n".join(f"  - {resource} ({state}): {why}; import nltk; nltk.download({package!r})"
                              for resource, package, why, state in missing)
            raise MissingNLTKDataError(
                f"{WHAT} needs NLTK data that is not installed (searched nltk.data.path = {list(nltk.data.path)}; "
                f"set NLTK_DATA to choose the folder). keras_models does not download it for you:\n{lines}")
        g2p_en = require("g2p_en", "g2p-en", "g2p", WHAT)
        g2p = g2p_en.G2p()
        _G2P_CACHE[key] = g2p
        return g2p


class FastSpeech2ConformerTokenizer:
    """``tokenizer(texts, padding=True)`` -> ``{"input_ids", "attention_mask"}`` (numpy int32 for a
    batch; lists of ints for one string with ``return_tensors=None``). ``tokenize(text)`` gives the
    phonemes, ``decode(ids)`` the tokens back."""

    tokenizer_class = "FastSpeech2ConformerTokenizer"

    def __init__(self, vocab, bos_token="<sos/eos>", eos_token="<sos/eos>", pad_token="<blank>", unk_token="<unk>",
                 should_strip_spaces=False, added_tokens=None, padding_side="right", **_):
        if not isinstance(vocab, dict) or not all(isinstance(k, str) and isinstance(v, int) and not isinstance(
                v, bool) for k, v in vocab.items()):
            raise TokenizerFileError("vocab.json: expected a JSON object of phoneme -> id")
        if padding_side not in ("left", "right"):
            raise TokenizerFileError(f"tokenizer_config.json: padding_side must be 'left' or 'right', got "
                                     f"{padding_side!r}")
        self.vocab = dict(vocab)
        self.bos_token, self.eos_token = _content(bos_token), _content(eos_token)
        self.pad_token, self.unk_token = _content(pad_token), _content(unk_token)
        self.should_strip_spaces = bool(should_strip_spaces)
        self.padding_side = padding_side
        self.added = {}
        for token, i in dict(added_tokens or {}).items():
            if not isinstance(i, int) or isinstance(i, bool):
                raise TokenizerFileError(f"added token {token!r}: id must be an integer, got {i!r}")
            self.added[str(token)] = i
        next_id = max(list(self.vocab.values()) + list(self.added.values()) + [-1]) + 1
        for token in (self.bos_token, self.eos_token, self.unk_token, self.pad_token):
            if token not in self.vocab and token not in self.added:
                self.added[token] = next_id
                next_id += 1
        self.id_to_token = {v: k for k, v in self.vocab.items()}
        self.id_to_token.update({v: k for k, v in self.added.items()})
        self.specials = list(dict.fromkeys([self.bos_token, self.eos_token, self.unk_token, self.pad_token]))
        pieces = sorted(self.added, key=len, reverse=True)
        self._split = re.compile("(" + "|".join(re.escape(t) for t in pieces) + ")") if pieces else None
        self._g2p = None

    # --- loading / saving -----------------------------------------------------------------------------
    @classmethod
    def from_preset(cls, preset, **overrides):
        from keras_models.presets.resolve import resolve_preset

        folder = Path(resolve_preset(preset))
        path = folder / "vocab.json"
        if not path.is_file():
            raise TokenizerFileError(f"{folder} has no vocab.json: FastSpeech2ConformerTokenizer reads it")
        vocab = read_json(path, "vocabulary")
        cfg_path = folder / "tokenizer_config.json"
        config = read_json(cfg_path, "tokenizer config") if cfg_path.is_file() else {}
        if not isinstance(config, dict):
            raise TokenizerFileError(f"{cfg_path}: expected a JSON object")
        added = {}
        decoder = config.get("added_tokens_decoder") or {}
        if not isinstance(decoder, dict):
            raise TokenizerFileError(f"{cfg_path}: added_tokens_decoder must be an object of id -> token")
        for i, token in decoder.items():
            try:
                added[_content(token)] = int(i)
            except ValueError as e:
                raise TokenizerFileError(f"{cfg_path}: added_tokens_decoder key {i!r} is not an id") from e
        added_path = folder / "added_tokens.json"
        if added_path.is_file():
            extra = read_json(added_path, "added tokens")
            if not isinstance(extra, dict):
                raise TokenizerFileError(f"{added_path}: expected a JSON object of token -> id")
            added.update(extra)
        kwargs = {k: config[k] for k in SPECIAL_KEYS if config.get(k) is not None}
        for key in ("should_strip_spaces", "padding_side"):
            if key in config:
                kwargs[key] = config[key]
        kwargs.update(overrides)
        return cls(vocab, added_tokens=added, **kwargs)

    def save_to_preset(self, folder):
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "vocab.json").write_text(json.dumps(self.vocab, ensure_ascii=False) + "\n", encoding="utf-8")
        config = {"tokenizer_class": self.tokenizer_class, "should_strip_spaces": self.should_strip_spaces,
                  "padding_side": self.padding_side,
                  **{k: getattr(self, k) for k in SPECIAL_KEYS},
                  "added_tokens_decoder": {str(i): {"content": t, "lstrip": False, "normalized": False,
                                                    "rstrip": False, "single_word": False,
                                                    "special": t in self.specials}
                                           for t, i in sorted(self.added.items(), key=lambda kv: kv[1])}}
        (folder / "tokenizer_config.json").write_text(json.dumps(config, indent=2, ensure_ascii=False) + "\n",
                                                      encoding="utf-8")

    save_pretrained = save_to_preset

    # --- ids ----------------------------------------------------------------------------------------------
    @property
    def vocab_size(self):
        return len(self.vocab)

    def get_vocab(self):
        return {**self.vocab, **self.added}

    def token_to_id(self, token):
        if token in self.added:
            return self.added[token]
        if token in self.vocab:
            return self.vocab[token]
        return self.added.get(self.unk_token, self.vocab.get(self.unk_token))

    def convert_tokens_to_ids(self, tokens):
        return self.token_to_id(tokens) if isinstance(tokens, str) else [self.token_to_id(t) for t in tokens]

    @property
    def pad_token_id(self):
        return self.token_to_id(self.pad_token)

    @property
    def eos_token_id(self):
        return self.token_to_id(self.eos_token)

    @property
    def unk_token_id(self):
        return self.token_to_id(self.unk_token)

    # --- encoding ---------------------------------------------------------------------------------------
    @staticmethod
    def prepare(text):
        """The text rewrite before g2p_en (punctuation mapped / dropped, spaces squeezed, upper case)."""
        if not isinstance(text, str):
            raise InputError(f"FastSpeech2ConformerTokenizer: expected a string, got {type(text).__name__}")
        text = text.replace(";", ",").replace(":", ",").replace("-", " ").replace("&", "and")
        text = re.sub(r"[()\[\]<>\"]+", "", text)
        return re.sub(r"\s+", " ", text).upper()

    def phonemize(self, text):
        """g2p_en's phonemes for one piece of text (a list of ARPAbet symbols, punctuation and " ")."""
        if self._g2p is None:
            self._g2p = load_g2p()
        return list(self._g2p(text))

    def tokenize(self, text):
        text = self.prepare(text)
        pieces = self._split.split(text) if self._split is not None else [text]
        tokens = []
        for piece in pieces:
            if not piece:
                continue
            if piece in self.added:
                tokens.append(piece)
                continue
            phones = self.phonemize(piece)
            if self.should_strip_spaces:
                phones = [p for p in phones if p != " "]
            tokens += phones + [self.eos_token]
        return tokens

    def encode(self, text):
        return [self.token_to_id(t) for t in self.tokenize(text)]

    def __call__(self, texts, padding=True, return_tensors="np", **_):
        single = isinstance(texts, str)
        if not single and not isinstance(texts, (list, tuple)):
            raise InputError(f"FastSpeech2ConformerTokenizer: expected a string or a list of strings, got "
                             f"{type(texts).__name__}")
        rows = [self.encode(t) for t in ([texts] if single else list(texts))]
        if single and return_tensors is None:
            return {"input_ids": rows[0], "attention_mask": [1] * len(rows[0])}
        if not padding and len({len(r) for r in rows}) > 1:
            return {"input_ids": rows, "attention_mask": [[1] * len(r) for r in rows]}
        width = max([len(r) for r in rows] + [0])
        pad, left = self.pad_token_id, self.padding_side == "left"
        ids, mask = [], []
        for r in rows:
            fill = width - len(r)
            ids.append([pad] * fill + r if left else r + [pad] * fill)
            mask.append([0] * fill + [1] * len(r) if left else [1] * len(r) + [0] * fill)
        return {"input_ids": np.array(ids, dtype="int32").reshape(len(rows), width),
                "attention_mask": np.array(mask, dtype="int32").reshape(len(rows), width)}

    # --- decoding ---------------------------------------------------------------------------------------
    def convert_ids_to_tokens(self, ids):
        if isinstance(ids, (int, np.integer)):
            return self.id_to_token.get(int(ids), self.unk_token)
        return [self.id_to_token.get(int(i), self.unk_token) for i in np.asarray(ids).reshape(-1)]

    def decode(self, ids, skip_special_tokens=False):
        """The tokens (phonemes) for ``ids``: a list, as Transformers returns (not a string)."""
        tokens = self.convert_ids_to_tokens(ids)
        if skip_special_tokens and isinstance(tokens, list):
            tokens = [t for t in tokens if t not in self.specials]
        return tokens

    def batch_decode(self, rows, skip_special_tokens=False):
        return [self.decode(r, skip_special_tokens) for r in rows]


__all__ = ["FastSpeech2ConformerTokenizer", "MissingNLTKDataError", "load_g2p"]

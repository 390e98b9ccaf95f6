"""VITS's character tokenizer (Transformers' ``VitsTokenizer``, python-only there).

Files: ``vocab.json`` (character -> id) and ``tokenizer_config.json`` (``add_blank``, ``normalize``,
``phonemize``, ``is_uroman``, ``language``, special tokens). Encoding, as Transformers:
``normalize``: the text scanned left to right, a vocabulary entry (or special token) kept as
written where it matches, any other character lower-cased; then (without ``phonemize``) the
characters not in the vocabulary dropped and the ends stripped; Romanian ``ț`` written ``ţ``; the
special tokens split out whole, every other character one token (unknown -> ``unk_token``), and
with ``add_blank`` id 0 put before, between and after the characters of each piece. Padding is on
the right with ``pad_token``.

``phonemize=True`` (the `phonemizer` package and espeak: the eSpeak NG library that `espeakng-loader`
bundles unless phonemizer was pointed at another; extra ``keras-models[phonemes]``) and ``is_uroman=True`` on non-Roman text
(the `uroman` romaniser) run only where those packages are installed; otherwise an error (an ``ImportError`` and an
:class:`~keras_models.errors.InputError`) names the package and says what to do (load with ``phonemize=False``, or
romanise the text first).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np

from keras_models.errors import InputError, TokenizerFileError
from keras_models.tokenizers.loading import read_json

DEFAULT_SPECIALS = {"pad_token": "<pad>", "unk_token": "<unk>"}
CONFIG_KEYS = ("add_blank", "normalize", "phonemize", "is_uroman", "language")


def _content(token):
    return str(token.get("content")) if isinstance(token, dict) else str(token)


class VitsTokenizer:
    """``tokenizer(texts, padding=True)`` -> ``{"input_ids", "attention_mask"}`` (numpy int32 for a
    batch; lists of ints for one string with ``return_tensors=None``)."""

    tokenizer_class = "VitsTokenizer"

    def __init__(self, vocab, pad_token="<pad>", unk_token="<unk>", language=None, add_blank=True, normalize=True,
                 phonemize=True, is_uroman=False, added_tokens=None, **_):
        if not isinstance(vocab, dict) or not all(isinstance(k, str) and isinstance(v, int) and not isinstance(
                v, bool) for k, v in vocab.items()):
            raise TokenizerFileError("vocab.json: expected a JSON object of character -> id")
        self.vocab = dict(vocab)
        self.id_to_token = {v: k for k, v in self.vocab.items()}
        self.pad_token, self.unk_token = _content(pad_token), _content(unk_token)
        self.language, self.add_blank, self.normalize = language, bool(add_blank), bool(normalize)
        self.phonemize, self.is_uroman = bool(phonemize), bool(is_uroman)
        # special tokens outside vocab.json get the next ids, as Transformers adds them
        self.added = dict(added_tokens or {})
        for token in (self.unk_token, self.pad_token):
            if token not in self.vocab and token not in self.added:
                self.added[token] = len(self.vocab) + len(self.added)
        for token, i in self.added.items():
            self.id_to_token.setdefault(i, token)
        self.specials = [self.unk_token, self.pad_token] + [t for t in self.added if t not in (self.unk_token,
                                                                                                 self.pad_token)]
        pattern = "|".join(re.escape(t) for t in sorted(set(self.specials), key=len, reverse=True))
        self._split = re.compile(f"({pattern})")
        if 0 not in self.id_to_token and self.add_blank:
            raise TokenizerFileError("vocab.json: add_blank needs a token with id 0 (the blank)")

    # --- loading / saving -----------------------------------------------------------------------------
    @classmethod
    def from_preset(cls, preset, **overrides):
        from keras_models.presets.resolve import resolve_preset

        folder = Path(resolve_preset(preset))
        path = folder / "vocab.json"
        if not path.is_file():
            raise TokenizerFileError(f"{folder} has no vocab.json: VitsTokenizer reads it")
        try:
            vocab = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as e:
            raise TokenizerFileError(f"{path}: invalid JSON ({e})") from e
        cfg_path = folder / "tokenizer_config.json"
        config = read_json(cfg_path, "tokenizer config") if cfg_path.is_file() else {}
        if not isinstance(config, dict):
            raise TokenizerFileError(f"{cfg_path}: expected a JSON object")
        added = {}
        for i, token in (config.get("added_tokens_decoder") or {}).items():
            added[_content(token)] = int(i)
        added_path = folder / "added_tokens.json"
        if added_path.is_file():
            try:
                added.update(json.loads(added_path.read_text(encoding="utf-8")))
            except (json.JSONDecodeError, TypeError, ValueError) as e:
                raise TokenizerFileError(f"{added_path}: invalid ({e})") from e
        kwargs = {k: config[k] for k in CONFIG_KEYS if k in config}
        for key in ("pad_token", "unk_token"):
            if config.get(key) is not None:
                kwargs[key] = config[key]
        kwargs.update(overrides)
        return cls(vocab, added_tokens={k: v for k, v in added.items() if k not in vocab}, **kwargs)

    def save_to_preset(self, folder):
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "vocab.json").write_text(json.dumps(self.vocab, indent=2, sort_keys=True, ensure_ascii=False) + "\n",
                                           encoding="utf-8")
        config = {"tokenizer_class": "VitsTokenizer", "pad_token": self.pad_token, "unk_token": self.unk_token,
                  "language": self.language, "add_blank": self.add_blank, "normalize": self.normalize,
                  "phonemize": self.phonemize, "is_uroman": self.is_uroman,
                  "added_tokens_decoder": {str(i): {"content": t, "lstrip": False, "normalized": False,
                                                    "rstrip": False, "single_word": False, "special": True}
                                           for t, i in self.added.items()}}
        (folder / "tokenizer_config.json").write_text(json.dumps(config, indent=2, ensure_ascii=False) + "\n",
                                                      encoding="utf-8")

    save_pretrained = save_to_preset

    # --- encoding ---------------------------------------------------------------------------------------
    @property
    def pad_token_id(self):
        return self.token_to_id(self.pad_token)

    @property
    def unk_token_id(self):
        return self.vocab.get(self.unk_token, self.added.get(self.unk_token))

    def token_to_id(self, token):
        if token in self.vocab:
            return self.vocab[token]
        return self.added.get(token, self.unk_token_id)

    def normalize_text(self, text):
        words = list(self.vocab) + list(self.added)
        out, i = [], 0
        while i < len(text):
            for word in words:
                if word and text.startswith(word, i):
                    out.append(word)
                    i += len(word)
                    break
            else:
                out.append(text[i].lower())
                i += 1
        return "".join(out)

    def prepare(self, text):
        if not isinstance(text, str):
            raise InputError(f"VitsTokenizer: expected a string, got {type(text).__name__}")
        if self.normalize:
            text = self.normalize_text(text)
        if self.language == "ron":
            text = text.replace("ț", "ţ")
        if self.is_uroman and re.search(r"[^\x00-\x7F]", text):
            try:
                import uroman
            except ImportError as e:
                raise InputError("VitsTokenizer: this checkpoint romanises non-Roman text (is_uroman) with the "
                                 "`uroman` package, which is not installed; pip install uroman, or romanise the "
                                 "text first") from e
            text = uroman.Uroman().romanize_string(text)
        if self.phonemize:
            from keras_models.preprocessing.optional import phonemizer_with_espeak

            phonemizer = phonemizer_with_espeak(
                "VitsTokenizer with phonemize=True (text -> phonemes; or pass phonemes and load with "
                "Tokenizer.from_preset(preset, phonemize=False))")
            text = phonemizer.phonemize(text, language="en-us", backend="espeak", strip=True,
                                        preserve_punctuation=True, with_stress=True)
            text = re.sub(r"\s+", " ", text)
        elif self.normalize:
            text = "".join(c for c in text if c in self.vocab).strip()
        return text

    def tokenize(self, text):
        tokens = []
        for piece in self._split.split(self.prepare(text)):
            if not piece:
                continue
            if piece in self.specials:
                tokens.append(piece)
                continue
            chars = list(piece)
            if self.add_blank:
                blank = self.id_to_token[0]
                spread = [blank] * (2 * len(chars) + 1)
                spread[1::2] = chars
                chars = spread
            tokens += chars
        return tokens

    def encode(self, text):
        return [self.token_to_id(t) for t in self.tokenize(text)]

    def __call__(self, texts, padding=True, return_tensors="np", **_):
        single = isinstance(texts, str)
        rows = [self.encode(t) for t in ([texts] if single else list(texts))]
        if single and return_tensors is None:
            return {"input_ids": rows[0], "attention_mask": [1] * len(rows[0])}
        width = max([len(r) for r in rows] + [0]) if padding else None
        if width is None and len({len(r) for r in rows}) > 1:
            return {"input_ids": rows, "attention_mask": [[1] * len(r) for r in rows]}
        width = width if width is not None else len(rows[0])
        pad = self.pad_token_id
        ids = np.array([r + [pad] * (width - len(r)) for r in rows], dtype="int32").reshape(len(rows), width)
        mask = np.array([[1] * len(r) + [0] * (width - len(r)) for r in rows], dtype="int32").reshape(len(rows), width)
        return {"input_ids": ids, "attention_mask": mask}

    def decode(self, ids, skip_special_tokens=False):
        ids = [int(i) for i in np.asarray(ids).reshape(-1)]
        tokens = [self.id_to_token.get(i, self.unk_token) for i in ids]
        if skip_special_tokens:
            tokens = [t for t in tokens if t not in self.specials]
        if self.add_blank and len(tokens) > 1:
            tokens = tokens[1::2]
        return "".join(tokens)

    def batch_decode(self, rows, skip_special_tokens=False):
        return [self.decode(r, skip_special_tokens) for r in rows]


__all__ = ["VitsTokenizer"]

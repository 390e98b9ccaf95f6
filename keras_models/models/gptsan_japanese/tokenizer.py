"""GPTSAN-japanese's tokenizer (Transformers 4.x ``GPTSanJapaneseTokenizer``, python-only there).

Files: ``vocab.txt`` (one id per line; a line with commas lists several spellings of that id, the
first one its decoded form), ``emoji.json`` (``emoji``: character -> token, ``emoji_inv``: back)
and ``tokenizer_config.json`` (special tokens, ``do_clean_text``). Encoding, as Transformers:

* the text becomes ``bos + prefix_text + sep + text`` (``sep`` only when the text holds none, or
  as ``add_sep_token`` says; each piece only if the vocabulary has it);
* the special tokens are split out whole; in the rest spaces become ``<SP>``, line breaks ``<BR>``,
  tabs ``<TAB>``, dashes "ー", emoji their tokens, and with ``do_clean_text`` URLs, e-mails,
  phone numbers, dates, prices and box-drawing runs their placeholder tokens;
* scanning left to right, of the vocabulary words that start at the position (within three
  characters, or any length from a "<"), the one with the smallest id is taken (a "<...>" word
  of more than two characters wins outright); otherwise one character: ``<KIGOU>`` (some
  two-byte symbols), ``<U2000U2BFF>``, or its UTF-8 bytes as ``<|byteN|>`` tokens;
* unknown tokens get ``unk_token``'s id; ``token_type_ids`` are 1 up to the first ``sep`` (the
  prefix), 0 after.

Decoding joins the tokens back (bytes decoded as UTF-8 with replacement, emoji restored,
``<|bagoftoken|>`` repeating the previous piece three times, other ``<|...|>`` tokens empty).
Batches are padded on the right with ``pad_token`` (token type 0, mask 0).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np

from keras_models.errors import InputError, TokenizerFileError
from keras_models.tokenizers.loading import read_json

SPECIALS = {"unk_token": "<|nottoken|>", "pad_token": "<|separator|>", "bos_token": "<|startoftext|>",
            "eos_token": "<|endoftext|>", "sep_token": "<|segmenter|>"}
_PLACEHOLDERS = {"<SP>": " ", "<BR>": "\n", "<TAB>": "\t", "<BLOCK>": "▀", "<KIGOU>": "ǀ", "<U2000U2BFF>": "‖"}
_CLEAN = [
    (re.compile(r"(https?|ftp)(:\/\/[-_\.!~*\'()a-zA-Z0-9;\/?:\@&=\+$,%#]+)"), "<URL>"),
    (re.compile(r"[A-Za-z0-9\._+]*@[\-_0-9A-Za-z]+(\.[A-Za-z]+)*"), "<EMAIL>"),
    (re.compile(r"[\(]{0,1}[0-9]{2,4}[\)\-\(]{0,1}[0-9]{2,4}[\)\-]{0,1}[0-9]{3,4}"), "<TEL>"),
    (re.compile(r"([12]\d{3}[/\-年])*(0?[1-9]|1[0-2])[/\-月]((0?[1-9]|[12][0-9]|3[01])日?)*(\d{1,2}|:|\d{1,2}時|"
                r"\d{1,2}分|\(日\)|\(月\)|\(火\)|\(水\)|\(木\)|\(金\)|\(土\)|㈰|㈪|㈫|㈬|㈭|㈮|㈯)*"), "<DATE>"),
    (re.compile(r"(明治|大正|昭和|平成|令和|㍾|㍽|㍼|㍻|\u32ff)\d{1,2}年(0?[1-9]|1[0-2])月(0?[1-9]|[12][0-9]|3[01])日"
                r"(\d{1,2}|:|\d{1,2}時|\d{1,2}分|\(日\)|\(月\)|\(火\)|\(水\)|\(木\)|\(金\)|\(土\)|㈰|㈪|㈫|㈬|㈭|㈮|㈯)*"),
     "<DATE>"),
    (re.compile(r"(?:\d,\d{3}|[\d億])*+(?:\d,\d{3}|[\d万])*+(?:\d,\d{3}|[\d千])*+(?:千円|万円|千万円|円|千ドル|万ドル|"
                r"千万ドル|ドル|千ユーロ|万ユーロ|千万ユーロ|ユーロ)+(?:\(税込\)|\(税抜\)|\+tax)*"), "<PRICE>"),
]
_BLOCKS = str.maketrans(dict.fromkeys(
    "─━│┃┄┅┆┇┈┉┊┋┌┍┎┏┐┑┒┓└┕┖┗┘┙┚┛├┝┞┟┠┡┢┣┤┥┦┧┨┩┪┫┬┭┮┯┰┱┲┳┴┵┶┷┸┹┺┻┼┽┾┿╀╁╂╃╄╅╆╇╈╉╊╋╌╍╎╏═║╒╓╔╕╖╗╘╙╚╛╜╝╞╟╠"
    "╡╢╣╤╥╦╧╨╩╪╫╬╭╮╯╰╱╲╳╴╵╶╷╸╹╺╻╼╽╾╿▀▁▂▃▄▅▆▇█▉▊▋▌▍▎▏▐░▒▓▔▕▖▗▘▙▚▛▜▝▞▟", "<BLOCK>"))


def _content(token):
    return str(token.get("content")) if isinstance(token, dict) else str(token)


def _is_symbol(ch):
    """A two-byte UTF-8 character in the ranges Transformers maps to ``<KIGOU>``."""
    e = ch.encode()
    if len(e) != 2:
        return False
    c = (e[0] << 8) + e[1]
    return 49825 <= c <= 49855 or 51072 <= c <= 51075 or 51897 <= c <= 52159 or 52352 <= c <= 52642


def _is_u2e(ch):
    e = ch.encode()
    return len(e) == 3 and 14844032 <= (e[0] << 16) + (e[1] << 8) + e[2] <= 14856319


class GPTSanJapaneseTokenizer:
    """``tokenizer(texts, prefix_text=None, padding=True)`` -> ``{"input_ids", "token_type_ids",
    "attention_mask"}`` (numpy int32 for a batch; lists for one string with ``return_tensors=None``).
    A batch item may be a ``(prefix, text)`` pair."""

    tokenizer_class = "GPTSanJapaneseTokenizer"

    def __init__(self, lines, emoji, do_clean_text=False, **specials):
        self.lines = [list(line) for line in lines]
        if not self.lines:
            raise TokenizerFileError("vocab.txt: empty vocabulary")
        if not (isinstance(emoji, dict) and isinstance(emoji.get("emoji"), dict)
                and isinstance(emoji.get("emoji_inv"), dict)):
            raise TokenizerFileError("emoji.json: expected an object with 'emoji' and 'emoji_inv' objects")
        self.emoji = emoji
        self.vocab = {}
        for i, spellings in enumerate(self.lines):
            for word in spellings:
                self.vocab[word] = i
        self.maxlen = max(len(w) for w in self.vocab)
        self.do_clean_text = bool(do_clean_text)
        self.specials = {k: _content(specials.get(k) or v) for k, v in SPECIALS.items()}
        for key, token in self.specials.items():
            setattr(self, key, token)
        self.special_ids = {self.vocab[t] for t in self.specials.values() if t in self.vocab}
        pattern = "|".join(re.escape(t) for t in sorted(set(self.specials.values()), key=len, reverse=True))
        self._split = re.compile(f"({pattern})")

    # --- loading / saving -----------------------------------------------------------------------------
    @classmethod
    def from_preset(cls, preset, **overrides):
        from keras_models.presets.resolve import resolve_preset

        folder = Path(resolve_preset(preset))
        paths = {name: folder / name for name in ("vocab.txt", "emoji.json")}
        for name, path in paths.items():
            if not path.is_file():
                raise TokenizerFileError(f"{folder} has no {name}: GPTSanJapaneseTokenizer reads vocab.txt and "
                                         "emoji.json")
        try:
            text = paths["vocab.txt"].read_text(encoding="utf-8")
            emoji = json.loads(paths["emoji.json"].read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise TokenizerFileError(f"{folder}: unreadable vocab.txt / emoji.json ({e})") from e
        # as Transformers reads it (lines with their newline): a line "," is the comma itself, other
        # lines with commas list spellings
        raw = re.findall(r"[^\n]*\n|[^\n]+\Z", text)
        lines = [[t.rstrip("\n")] if t == ",\n" or "," not in t else t.rstrip("\n").split(",") for t in raw]
        cfg_path = folder / "tokenizer_config.json"
        config = read_json(cfg_path, "tokenizer config") if cfg_path.is_file() else {}
        if not isinstance(config, dict):
            raise TokenizerFileError(f"{cfg_path}: expected a JSON object")
        kwargs = {k: config[k] for k in (*SPECIALS, "do_clean_text") if config.get(k) is not None}
        kwargs.update(overrides)
        return cls(lines, emoji, **kwargs)

    def save_to_preset(self, folder):
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "vocab.txt").write_text("".join(",".join(s) + "\n" for s in self.lines), encoding="utf-8")
        (folder / "emoji.json").write_text(json.dumps(self.emoji, ensure_ascii=False), encoding="utf-8")
        config = {"tokenizer_class": self.tokenizer_class, "do_clean_text": self.do_clean_text, **self.specials}
        (folder / "tokenizer_config.json").write_text(json.dumps(config, indent=2, ensure_ascii=False) + "\n",
                                                      encoding="utf-8")

    save_pretrained = save_to_preset

    # --- encoding ---------------------------------------------------------------------------------------
    @property
    def vocabulary_size(self):
        return len(self.lines)

    @property
    def pad_token_id(self):
        return self.token_to_id(self.pad_token)

    def token_to_id(self, token):
        return self.vocab.get(token, self.vocab.get(self.unk_token))

    def prepare(self, text, prefix_text=None, add_sep_token=None):
        if not isinstance(text, str) or not (prefix_text is None or isinstance(prefix_text, str)):
            raise InputError(f"GPTSanJapaneseTokenizer: expected strings, got {type(text).__name__}")
        if add_sep_token is None:
            add_sep_token = self.sep_token not in text
        out = self.bos_token if self.bos_token in self.vocab else ""
        out += prefix_text or ""
        if add_sep_token and self.sep_token in self.vocab:
            out += self.sep_token
        return out + text

    def _words(self, text):
        for a, b in ((" ", "<SP>"), ("\u3000", "<SP>"), ("\r\n", "<BR>"), ("\n", "<BR>"), ("\r", "<BR>"),
                     ("\t", "<TAB>"), ("—", "ー"), ("−", "ー")):
            text = text.replace(a, b)
        for k, v in self.emoji["emoji"].items():
            text = text.replace(k, v)
        if self.do_clean_text:
            for pattern, token in _CLEAN:
                text = pattern.sub(token, text)
            text = text.translate(_BLOCKS)
            while "<BLOCK><BLOCK>" in text:
                text = text.replace("<BLOCK><BLOCK>", "<BLOCK>")
        pos, out = 0, []
        while pos < len(text):
            end = min(len(text), pos + self.maxlen + 1) if text[pos] == "<" else pos + 3
            found = []
            for e in range(end, pos, -1):
                word = text[pos:e]
                if word in self.vocab:
                    if word[0] == "<" and len(word) > 2:
                        found = [(self.vocab[word], word, e)]
                        break
                    found.append((self.vocab[word], word, e))
            if found:
                _, word, pos = min(found, key=lambda c: c[0])
                out.append(word)
                continue
            ch = text[pos]
            if _is_symbol(ch):
                out.append("<KIGOU>")
            elif _is_u2e(ch):
                out.append("<U2000U2BFF>")
            else:
                out += [f"<|byte{b}|>" for b in ch.encode("utf-8")]
            pos += 1
        return out

    def tokenize(self, text, prefix_text=None, add_sep_token=None):
        tokens = []
        for piece in self._split.split(self.prepare(text, prefix_text, add_sep_token)):
            if piece in self.specials.values():
                tokens.append(piece)
            elif piece:
                tokens += self._words(piece)
        return tokens

    def encode_one(self, text, prefix_text=None, add_sep_token=None):
        ids = [self.token_to_id(t) for t in self.tokenize(text, prefix_text, add_sep_token)]
        sep = self.vocab.get(self.sep_token)
        prefix = ids.index(sep) if sep is not None and sep in ids else 0
        return ids, [1] * prefix + [0] * (len(ids) - prefix)

    def __call__(self, texts, prefix_text=None, padding=True, return_tensors="np", add_sep_token=None, **_):
        single = isinstance(texts, str)
        items = [texts] if single else list(texts)
        rows = []
        for item in items:
            if isinstance(item, (tuple, list)):  # (prefix, text): joined by sep, as Transformers' batches
                if len(item) != 2:
                    raise InputError("GPTSanJapaneseTokenizer: a batch item must be a string or a (prefix, text) pair")
                rows.append(self.encode_one(item[0] + self.sep_token + item[1], None, add_sep_token))
            else:
                rows.append(self.encode_one(item, prefix_text, add_sep_token))
        if single and return_tensors is None:
            ids, types = rows[0]
            return {"input_ids": ids, "token_type_ids": types, "attention_mask": [1] * len(ids)}
        width = max(len(r[0]) for r in rows)
        if not padding and len({len(r[0]) for r in rows}) > 1:
            raise InputError("GPTSanJapaneseTokenizer: texts of different lengths need padding=True")
        pad = self.pad_token_id

        def fill(values, value):
            return values + [value] * (width - len(values))

        return {"input_ids": np.array([fill(i, pad) for i, _ in rows], "int32"),
                "token_type_ids": np.array([fill(t, 0) for _, t in rows], "int32"),
                "attention_mask": np.array([fill([1] * len(i), 0) for i, _ in rows], "int32")}

    # --- decoding ---------------------------------------------------------------------------------------
    def id_to_token(self, i):
        if not 0 <= i < len(self.lines):
            raise InputError(f"GPTSanJapaneseTokenizer: id {i} is outside the vocabulary ({len(self.lines)})")
        return self.lines[i][0]

    def decode(self, ids, skip_special_tokens=False):
        ids = [int(i) for i in np.asarray(ids).reshape(-1)]
        if skip_special_tokens:
            ids = [i for i in ids if i not in self.special_ids]
        words, pending = [], []
        for token in (self.id_to_token(i) for i in ids):
            if token.startswith("<|byte") and token.endswith("|>"):
                pending.append(int(token[6:-2]))
                continue
            if pending:
                words.append(bytearray(pending).decode("utf-8", errors="replace"))
                pending = []
            if token.startswith("<|emoji") and token.endswith("|>"):
                words.append(self.emoji["emoji_inv"].get(token, ""))
            elif token in _PLACEHOLDERS:
                words.append(_PLACEHOLDERS[token])
            elif token == "<|bagoftoken|>":
                if words:
                    words += [words[-1]] * 3
            elif token.startswith("<|") and token.endswith("|>"):
                words.append("")
            else:
                words.append(token)
        if pending:
            words.append(bytearray(pending).decode("utf-8", errors="replace"))
        return "".join(words)

    def batch_decode(self, rows, skip_special_tokens=False):
        return [self.decode(r, skip_special_tokens) for r in rows]


__all__ = ["GPTSanJapaneseTokenizer"]

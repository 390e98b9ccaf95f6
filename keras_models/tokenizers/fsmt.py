"""FSMT (fairseq WMT19 translation models, ``FSMTTokenizer``): a python-only class in Transformers.

The files: ``vocab-src.json`` (ids of the inputs), ``vocab-tgt.json`` (tokens of the ids decoded) and
``merges.txt`` (BPE merges, ``</w>`` on the piece that ends a word). Encoding: optional lower-casing,
a table of Unicode punctuation replacements, Moses punctuation normalisation, removal of non-printing
characters (Unicode category C), Moses tokenisation (aggressive dash splits, XML escaping) of the
SOURCE language, BPE of each Moses token, lookup in the source vocabulary, ``</s>`` appended. The
targets (``text_target=``) go through the very same pipeline, as in Transformers. Decoding: ids mapped
through the TARGET vocabulary, pieces joined at ``</w>`` and Moses-detokenised in the target language.

Moses is the ``sacremoses`` package (optional extra ``keras-models[moses]``), imported only here.
"""

from __future__ import annotations

import re
import unicodedata
from pathlib import Path

from tokenizers import NormalizedString
from tokenizers import Tokenizer as RustTokenizer

from keras_models.errors import TokenizerFileError
from keras_models.tokenizers._classes import FAMILIES
from keras_models.tokenizers._special import token_content
from keras_models.tokenizers.files import read_id_vocab

FSMT_FILES = FAMILIES["fsmt"].files  # vocab-src.json, vocab-tgt.json, merges.txt

# Unicode punctuation -> ASCII, applied before Moses (a port of Moses' replace-unicode-punctuation.perl)
_PUNCT_TABLE = {
    "，": ",", "、": ",", "”": '"', "“": '"', "∶": ":", "：": ":", "？": "?", "《": '"', "》": '"', "）": ")",
    "！": "!", "（": "(", "；": ";", "」": '"', "「": '"', "～": "~", "’": "'", "…": "...", "━": "-",
    "〈": "<", "〉": ">", "【": "[", "】": "]", "％": "%",
}
_PUNCT_TABLE.update({chr(0xFF10 + d): str(d) for d in range(10)})  # full-width digits
_FULL_STOPS = re.compile(r"[。．]\s*")


def _sacremoses():
    try:
        import sacremoses
    except ImportError as e:
        raise ImportError(
            "FSMT tokenizers (FSMTTokenizer) need the `sacremoses` package for Moses tokenisation: "
            "pip install keras-models[moses]  (or: pip install sacremoses)"
        ) from e
    return sacremoses


def _replace_unicode_punct(text: str) -> str:
    text = "".join(_PUNCT_TABLE.get(c, c) if c not in "。．" else c for c in text)
    return _FULL_STOPS.sub(". ", text)


def _remove_non_printing(text: str) -> str:
    return "".join(c for c in text if not unicodedata.category(c).startswith("C"))


def read_fsmt_files(folder: Path):
    vocabs = []
    for name in FSMT_FILES[:2]:
        path = folder / name
        vocabs.append(read_id_vocab(path, "FSMT vocabulary"))
    path = folder / FSMT_FILES[2]
    try:
        with open(path, encoding="utf-8") as f:
            lines = f.read().split("\n")[:-1]  # the text after the last newline is not a merge
    except (OSError, UnicodeDecodeError) as e:
        raise TokenizerFileError(f"Cannot read FSMT merges {path}: {e}") from e
    merges = [tuple(line.split()[:2]) for line in lines]
    return vocabs[0], vocabs[1], [m for m in merges if len(m) == 2]


class FsmtSplitter:
    """The Python pre-tokenizer: Moses pipeline + Moses tokens + ``</w>`` BPE pieces (the pieces
    replace the text, which Moses rewrites: offsets are not meaningful)."""

    def __init__(self, merges, lang: str, do_lower_case: bool):
        from keras_models.tokenizers.python_bpe import FastBpeSplitter

        sm = _sacremoses()
        self.lang, self.do_lower_case = lang, bool(do_lower_case)
        self._bpe = FastBpeSplitter(merges)
        self._norm = sm.MosesPunctNormalizer(lang=lang)
        self._moses = sm.MosesTokenizer(lang=lang)

    def __getstate__(self):
        return {"merges": sorted(self._bpe.ranks, key=self._bpe.ranks.get), "lang": self.lang,
                "do_lower_case": self.do_lower_case}

    def __setstate__(self, state):
        self.__init__(state["merges"], state["lang"], state["do_lower_case"])

    def tokens(self, text: str) -> list[str]:
        if self.do_lower_case:
            text = text.lower()
        text = _remove_non_printing(self._norm.normalize(_replace_unicode_punct(text)))
        words = self._moses.tokenize(text, aggressive_dash_splits=True, return_str=False, escape=True)
        out = []
        for word in words:
            if not word:
                continue
            spans = self._bpe.pieces(word)
            for n, (start, end) in enumerate(spans):
                out.append(word[start:end] + ("</w>" if n == len(spans) - 1 else ""))
        return out

    def _split(self, _index, normalized):
        return [NormalizedString(t) for t in self.tokens(str(normalized))]

    def pre_tokenize(self, pretok):
        pretok.split(self._split)

    @staticmethod
    def words_pre_tokenizer():
        from tokenizers import pre_tokenizers

        return pre_tokenizers.WhitespaceSplit()

    def pre_tokenizer(self):
        from tokenizers import pre_tokenizers

        return pre_tokenizers.PreTokenizer.custom(self)


class FsmtDecoder:
    """Decoding as Transformers' FSMTTokenizer: ids through the target vocabulary (the unknown token
    for ids it lacks; added tokens by their own content), pieces joined at ``</w>``, Moses
    detokenisation in the target language."""

    def __init__(self, tgt_vocab: dict, lang: str, unk: str):
        self.lang, self.unk = lang, unk
        self.tokens = {i: t for t, i in tgt_vocab.items()}
        self._detok = _sacremoses().MosesDetokenizer(lang=lang)

    def __getstate__(self):
        return {"tokens": self.tokens, "lang": self.lang, "unk": self.unk}

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._detok = _sacremoses().MosesDetokenizer(lang=self.lang)

    def id_to_token(self, tok, index: int) -> str:
        added = tok.backend_tokenizer.get_added_tokens_decoder().get(index)
        if added is not None:
            return added.content
        return self.tokens.get(index, self.unk)

    def tokens_to_string(self, tokens) -> str:
        words = "".join(t.replace(" ", "").replace("</w>", " ") for t in tokens).split()
        return self._detok.detokenize(words)


def fsmt_backend(folder: Path, config: dict, class_name: str, info: dict) -> RustTokenizer:
    """Source pipeline (a word-level model over vocab-src.json behind :class:`FsmtSplitter`); the
    splitter goes to ``config["_python_pre_tokenizer"]`` and the decoder to ``config["_python_decoder"]``."""
    from tokenizers.models import WordLevel

    for name in FSMT_FILES:
        if not (folder / name).is_file():
            raise TokenizerFileError(f"{folder} has no {name}: tokenizer class {class_name} reads {' + '.join(FSMT_FILES)}")
    langs = config.get("langs")
    if not (isinstance(langs, (list, tuple)) and len(langs) == 2 and all(isinstance(x, str) for x in langs)):
        raise TokenizerFileError(
            f"{folder / 'tokenizer_config.json'} must set langs to [source, target] languages, got {langs!r}"
        )
    src_vocab, tgt_vocab, merges = read_fsmt_files(folder)
    unk = token_content(config.get("unk_token") or info["specials"]["unk_token"])
    if unk not in src_vocab:
        raise TokenizerFileError(f"FSMT vocabulary {folder / FSMT_FILES[0]} has no unknown token {unk!r}")
    splitter = FsmtSplitter(merges, langs[0], config.get("do_lower_case", False))
    backend = RustTokenizer(WordLevel(vocab=src_vocab, unk_token=unk))
    backend.normalizer = None
    backend.pre_tokenizer = splitter.pre_tokenizer()
    config["_python_pre_tokenizer"] = splitter
    config["_python_decoder"] = FsmtDecoder(tgt_vocab, langs[1], unk)
    return backend


def finish_fsmt(tok, folder: Path):
    """FSMT's post-processor: "A </s>", "A </s> B </s>"."""
    from tokenizers import processors

    eos = tok.sep_token
    tok.backend_tokenizer.post_processor = processors.TemplateProcessing(
        single=f"$A:0 {eos}:0", pair=f"$A:0 {eos}:0 $B:1 {eos}:1", special_tokens=[(eos, tok.sep_token_id)]
    )

"""The jieba-based tokenizers: CPM's ``CpmTokenizer`` / ``CpmTokenizerFast`` and CPM-Ant's ``CpmAntTokenizer``.

Both segment Chinese text into words with jieba first (Transformers uses rjieba, the jieba-rs binding,
as ``cut(text, False)``: the dictionary's best path, no HMM for unseen words; here the `jieba` package
does the same with ``HMM=False``, the same algorithm over the same dictionary). jieba is an optional
dependency (``pip install keras-models[chinese]``), imported when such a tokenizer is loaded, never
when keras_models is imported.

* CPM (``CpmTokenizer``, over the ``tokenizer.json`` the CPM-Generate repository ships next to its
  ``spiece.model``: XLNet's SentencePiece pipeline, ``X <sep> <cls>``, token type 2 on ``<cls>``, padding
  type 3): each text is cut into words, spaces and line breaks written as "\u2582" / "\u2583", and the
  words joined with spaces before the SentencePiece pipeline. Decoding removes every space and turns
  "\u2582" / "\u2583" back into spaces and line breaks. This is Transformers 4.x's ``CpmTokenizerFast``;
  Transformers 5's classes skip the segmentation (its fast class hooks a method 5.x no longer calls, and
  the python ``CpmTokenizer`` never segmented), so ids were checked against 4.57.1. Offsets refer to the
  segmented text, as there. A text pair is segmented side by side (Transformers 4.x fails on pairs).
* CPM-Ant (``CpmAntTokenizer``, python-only in Transformers, over ``vocab.txt``; the vocabulary's
  ``</_>`` and ``</n>`` lines are the ids of a space and a line break): the text between added tokens is
  cut into words, each word into the longest vocabulary entries from its start (a character that starts
  none is the unknown token; a word over 200 characters is one unknown token). ``<s>`` goes before the
  ids; padding is on the left. Decoding drops the pad, bos and eos ids and joins the tokens.
"""

from __future__ import annotations

from pathlib import Path

from keras_models.errors import TokenizerFileError
from keras_models.tokenizers._special import token_content
from keras_models.tokenizers.files import read_lines
from keras_models.tokenizers.tokenizer import Tokenizer

SPACE, LINE = "\u2582", "\u2583"
_TRANSLATE = str.maketrans(" \n", SPACE + LINE)
MAX_WORD_CHARS = 200  # CPM-Ant: a longer word is one unknown token


def jieba_cut():
    """jieba's word segmentation (``cut_all=False, HMM=False``), or an ImportError naming the package."""
    try:
        import jieba
    except ImportError as e:
        raise ImportError(
            "CPM / CPM-Ant tokenizers (CpmTokenizer, CpmAntTokenizer) segment Chinese text with the `jieba` "
            "package: pip install keras-models[chinese]  (or: pip install jieba)"
        ) from e

    def cut(text: str) -> list[str]:
        return jieba.lcut(text, cut_all=False, HMM=False)

    return cut


class CpmTokenizer(Tokenizer):
    """:class:`~keras_models.tokenizers.Tokenizer` with CPM's jieba segmentation before SentencePiece."""

    @classmethod
    def from_preset(cls, preset, **overrides) -> "CpmTokenizer":
        from keras_models.presets.resolve import resolve_preset
        from keras_models.tokenizers.loading import load_tokenizer

        cut = jieba_cut()
        folder = Path(resolve_preset(preset))
        if not (folder / "tokenizer.json").is_file():
            raise TokenizerFileError(
                f"{folder} has no tokenizer.json: CpmTokenizer reads the tokenizer.json that CPM checkpoints ship "
                "beside spiece.model (a lone spiece.model is not converted, as for XLNet)"
            )
        tok = load_tokenizer(folder, cls=cls, **overrides)
        tok._cut = cut
        if "pad_token_type_id" not in tok.init_config:
            tok.pad_token_type_id = 3  # XLNet's padding segment
        # save_pretrained copies these back and names CpmTokenizer, so the segmentation is kept on reload
        tok.source_files = {n: folder / n for n in ("tokenizer.json", "spiece.model") if (folder / n).is_file()}
        return tok

    from_pretrained = from_preset

    def _segment(self, text):
        if isinstance(text, (list, tuple)):  # pre-split words (is_split_into_words)
            return [self._segment(t) for t in text]
        if not isinstance(text, str):
            return text  # the base class raises its own error on it
        return " ".join(word.translate(_TRANSLATE) for word in self._cut(text))

    def _encode_batch(self, texts, pairs=None, **kwargs):
        texts = [self._segment(t) for t in texts]
        pairs = None if pairs is None else [self._segment(p) for p in pairs]
        return super()._encode_batch(texts, pairs, **kwargs)

    def _decode_one(self, ids, skip_special_tokens, clean_up_tokenization_spaces):
        text = super()._decode_one(ids, skip_special_tokens, clean_up_tokenization_spaces)
        return text.replace(" ", "").replace(SPACE, " ").replace(LINE, "\n")

    def batch_decode(self, sequences, skip_special_tokens: bool = False, clean_up_tokenization_spaces=None):
        from keras_models.tokenizers.tokenizer import _to_id_list

        return [self._decode_one(s, skip_special_tokens, clean_up_tokenization_spaces) for s in _to_id_list(sequences)]

    def __setstate__(self, state):
        super().__setstate__(state)
        self._cut = jieba_cut()

    def __getstate__(self):
        state = super().__getstate__()
        state.pop("_cut", None)
        return state


# ----------------------------------------------------------------------------- CPM-Ant
class CpmAntSplitter:
    """The Python pre-tokenizer of CPM-Ant: jieba words, each cut into the longest vocabulary entries
    from its start; the pieces are then numbered by a word-level model over the same vocabulary."""

    def __init__(self, vocab):
        self.vocab = set(vocab)
        self.longest = max((len(t) for t in vocab), default=1)
        self._cut = jieba_cut()

    def __getstate__(self):
        return {"vocab": sorted(self.vocab)}

    def __setstate__(self, state):
        self.__init__(state["vocab"])

    def lengths(self, word: str) -> list[int]:
        if len(word) > MAX_WORD_CHARS:
            return [len(word)]  # not in the vocabulary: the unknown token
        out, start = [], 0
        while start < len(word):
            end = min(len(word), start + self.longest)
            while end > start and word[start:end] not in self.vocab:
                end -= 1
            end = end if end > start else start + 1  # unknown character: one unknown token
            out.append(end - start)
            start = end
        return out

    def _split(self, _index, normalized):
        text = str(normalized)
        out, start = [], 0
        for word in self._cut(text):
            for length in self.lengths(word):
                out.append(normalized[start : start + length])
                start += length
        return out

    def pre_tokenize(self, pretok):
        pretok.split(self._split)

    @staticmethod
    def words_pre_tokenizer():
        """The serializable part (nothing: jieba cannot be written into tokenizer.json)."""
        from tokenizers import pre_tokenizers

        return pre_tokenizers.Sequence([])

    def pre_tokenizer(self):
        from tokenizers import pre_tokenizers

        return pre_tokenizers.PreTokenizer.custom(self)


def read_cpmant_vocab(path: Path, config: dict, info: dict) -> dict[str, int]:
    """vocab.txt as Transformers reads it: line i is token i (a repeated line keeps its last id); the
    space and line tokens' ids become those of " " and "\\n"."""
    vocab: dict[str, int] = {}
    for index, line in enumerate(read_lines(path, "CPM-Ant vocabulary")):
        vocab[line[:-1] if line.endswith("\n") else line] = index
    for key, char in (("space_token", " "), ("line_token", "\n")):
        name = token_content(config.get(key) or {"space_token": "</_>", "line_token": "</n>"}[key])
        if name not in vocab:
            raise TokenizerFileError(f"CPM-Ant vocabulary {path} has no {key} {name!r} (tokenizer_config.json {key!r})")
        vocab[char] = vocab.pop(name)
    return vocab


def cpmant_backend(folder: Path, config: dict, class_name: str, info: dict):
    from tokenizers import Tokenizer as RustTokenizer
    from tokenizers import decoders
    from tokenizers.models import WordLevel

    path = folder / "vocab.txt"
    if not path.is_file():
        raise TokenizerFileError(f"{folder} has no vocab.txt: tokenizer class {class_name} reads it")
    vocab = read_cpmant_vocab(path, config, info)
    unk = token_content(config.get("unk_token") or info["specials"]["unk_token"])
    if unk not in vocab:
        raise TokenizerFileError(f"CPM-Ant vocabulary {path} has no unknown token {unk!r}")
    splitter = CpmAntSplitter(vocab)
    backend = RustTokenizer(WordLevel(vocab=vocab, unk_token=unk))
    backend.normalizer = None
    backend.pre_tokenizer = splitter.pre_tokenizer()
    config["_python_pre_tokenizer"] = splitter
    backend.decoder = decoders.Fuse()
    return backend


def cpmant_processor(tok, config: dict):
    """``<s>`` before each sequence."""
    from keras_models.tokenizers.builders import bos_eos_template

    return bos_eos_template(tok, True, False)


class CpmAntTokenizer(Tokenizer):
    """:class:`~keras_models.tokenizers.Tokenizer` for CPM-Ant (decoding drops pad / bos / eos ids)."""

    @classmethod
    def from_preset(cls, preset, **overrides) -> "CpmAntTokenizer":
        from keras_models.tokenizers.loading import load_tokenizer

        jieba_cut()  # a clear error before anything else when jieba is missing
        return load_tokenizer(preset, cls=cls, **overrides)

    from_pretrained = from_preset

    def _decode_one(self, ids, skip_special_tokens, clean_up_tokenization_spaces):
        from keras_models.tokenizers.tokenizer import _to_id_list

        dropped = {self.pad_token_id, self.eos_token_id, self.bos_token_id}
        ids = [i for i in _to_id_list(ids) if i >= 0 and i not in dropped]
        return super()._decode_one(ids, skip_special_tokens, clean_up_tokenization_spaces)

    def batch_decode(self, sequences, skip_special_tokens: bool = False, clean_up_tokenization_spaces=None):
        from keras_models.tokenizers.tokenizer import _to_id_list

        return [self._decode_one(s, skip_special_tokens, clean_up_tokenization_spaces) for s in _to_id_list(sequences)]


__all__ = ["CpmTokenizer", "CpmAntTokenizer", "jieba_cut", "cpmant_backend", "cpmant_processor"]

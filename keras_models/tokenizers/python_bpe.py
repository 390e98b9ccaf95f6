"""Tokenizers whose word splitting Transformers does in Python: fastBPE ("@@" continuation codes;
BERTweet, PhoBERT), BARTpho (SentencePiece pieces over a reduced dict.txt) and BlenderbotSmall
(vocab.json + "@@" merges). Each is a Python splitter feeding a Rust WordLevel lookup, so ids agree
with ``transformers.AutoTokenizer``; the vocab-file builders they share live in builders.py.
"""

from __future__ import annotations

from pathlib import Path

from tokenizers import Tokenizer as RustTokenizer

from keras_models.errors import TokenizerFileError
from keras_models.tokenizers._special import token_content
from keras_models.tokenizers.files import read_id_vocab, read_lines, read_text

# ----------------------------------------------------------------------------- fastBPE (BERTweet, PhoBERT)
FASTBPE_SUFFIX = "</w>"
# Python's whitespace (str.isspace), which Transformers' word regex r"\S+\n?" splits on
PY_WHITESPACE = r"\t\n\x0b\x0c\r\x1c-\x20\x{85}\x{a0}\x{1680}\x{2000}-\x{200a}\x{2028}\x{2029}\x{202f}\x{205f}\x{3000}"


def read_fairseq_dict(path: Path, specials: list[str]) -> dict[str, int]:
    """A fairseq ``vocab.txt`` ("token count" per line) after the fixed specials (ids 0..n-1), numbered
    as Transformers' BERTweet / PhoBERT classes number it (a repeated token takes the current size)."""
    lines = read_lines(path, "fastBPE vocabulary")
    encoder: dict[str, int] = {}
    for token in specials:
        encoder[token] = len(encoder)
    for number, raw in enumerate(lines, 1):
        line = raw.strip()
        cut = line.rfind(" ")
        if cut == -1:
            raise TokenizerFileError(f"fastBPE vocabulary {path} line {number}: expected '<token> <count>', got {raw!r}")
        encoder[line[:cut]] = len(encoder)
    return encoder


def read_fastbpe_codes(path: Path) -> list[tuple[str, str]]:
    """``bpe.codes``: one "left right count" merge per line, in rank order (``</w>`` ends a word)."""
    text = read_text(path, "fastBPE codes", plural=True)
    merges = []
    # like Transformers: the text after the last newline is not a merge
    for number, line in enumerate(text.split("\n")[:-1], 1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) != 3 or not parts[2].isdigit():
            raise TokenizerFileError(
                f"fastBPE codes {path} line {number}: expected '<left> <right> <count>', got {line!r}"
            )
        merges.append((parts[0], parts[1]))
    if not merges:
        raise TokenizerFileError(f"fastBPE codes {path} hold no merges")
    return merges


class FastBpeSplitter:
    """Splits each word into its fastBPE pieces, ``@@`` appended to pieces that do not end the word.

    A Python pre-tokenizer rather than the Rust BPE model: fastBPE merges pieces whether or not they are
    in the vocabulary and only the final pieces are looked up (anything else is the unknown token),
    which a BPE model, whose merges must all land in the vocabulary, cannot express.
    """

    def __init__(self, merges: list[tuple[str, str]]):
        self.ranks: dict[tuple[str, str], int] = {}
        for rank, pair in enumerate(merges):
            self.ranks[pair] = rank  # a repeated merge keeps its last rank, as in Transformers
        self._cache: dict[str, list[tuple[int, int]]] = {}

    def pieces(self, word: str) -> list[tuple[int, int]]:
        """(start, end) character spans of the pieces of ``word``."""
        cached = self._cache.get(word)
        if cached is not None:
            return cached
        symbols = list(word[:-1]) + [word[-1] + FASTBPE_SUFFIX]
        while len(symbols) > 1:
            best, best_rank = None, None
            for pair in zip(symbols, symbols[1:]):
                rank = self.ranks.get(pair)
                if rank is not None and (best_rank is None or rank < best_rank):
                    best, best_rank = pair, rank
            if best is None:
                break
            merged, i = [], 0
            while i < len(symbols):
                if i + 1 < len(symbols) and (symbols[i], symbols[i + 1]) == best:
                    merged.append(symbols[i] + symbols[i + 1])
                    i += 2
                else:
                    merged.append(symbols[i])
                    i += 1
            symbols = merged
        spans, start = [], 0
        for symbol in symbols:
            end = start + len(symbol) - (len(FASTBPE_SUFFIX) if symbol.endswith(FASTBPE_SUFFIX) else 0)
            spans.append((start, end))
            start = end
        spans[-1] = (spans[-1][0], len(word))
        if len(self._cache) < 100_000:
            self._cache[word] = spans
        return spans

    def _split(self, _index, normalized):
        word = str(normalized)
        if not word:
            return []
        spans = self.pieces(word)
        out = []
        for n, (start, end) in enumerate(spans):
            piece = normalized[start:end]
            if n < len(spans) - 1:
                piece.append("@@")
            out.append(piece)
        return out

    def pre_tokenize(self, pretok):
        pretok.split(self._split)

    @staticmethod
    def words_pre_tokenizer():
        """The serializable part: words are runs of non-spaces plus one optional newline."""
        from tokenizers import Regex, pre_tokenizers

        return pre_tokenizers.Split(Regex(f"[^{PY_WHITESPACE}]+\\n?"), behavior="removed", invert=True)

    def pre_tokenizer(self):
        from tokenizers import pre_tokenizers

        return pre_tokenizers.Sequence([self.words_pre_tokenizer(), pre_tokenizers.PreTokenizer.custom(self)])


def fastbpe_backend(vocab_path: Path, codes_path: Path, config: dict, info: dict) -> RustTokenizer:
    """BERTweet / PhoBERT: whitespace words, fastBPE pieces, vocabulary lookup (a word-level model).
    The Python splitter goes to ``config["_python_pre_tokenizer"]`` (the Tokenizer keeps it to copy and
    pickle the pipeline, which tokenizers cannot serialize with it inside)."""
    defaults = info["specials"]
    specials = [
        token_content(config.get(key) or defaults[key]) for key in ("bos_token", "pad_token", "eos_token", "unk_token")
    ]
    encoder = read_fairseq_dict(vocab_path, specials)
    splitter = FastBpeSplitter(read_fastbpe_codes(codes_path))
    return at_at_bpe_backend(encoder, specials[3], splitter, config)


def at_at_bpe_backend(vocab: dict[str, int], unk: str, splitter, config: dict) -> RustTokenizer:
    """A vocabulary lookup (WordLevel) behind a Python splitter that cuts words into "@@" BPE pieces
    (fastBPE, BlenderbotSmall), decoding as Transformers does: tokens joined with spaces, every "@@ "
    dropped, the ends stripped. The splitter goes to ``config["_python_pre_tokenizer"]`` (the
    Tokenizer keeps it to re-attach after a copy or pickle)."""
    from tokenizers import Regex, decoders
    from tokenizers.models import WordLevel

    backend = RustTokenizer(WordLevel(vocab=vocab, unk_token=unk))
    backend.normalizer = None
    backend.pre_tokenizer = splitter.pre_tokenizer()
    config["_python_pre_tokenizer"] = splitter
    backend.decoder = decoders.Sequence(
        [
            decoders.Replace(Regex(r"\z"), " "),
            decoders.Fuse(),
            decoders.Replace(Regex(r" \z"), ""),
            decoders.Replace("@@ ", ""),
            decoders.Replace(Regex(f"\\A[{PY_WHITESPACE}]+|[{PY_WHITESPACE}]+\\z"), ""),
        ]
    )
    return backend


# ----------------------------------------------------------------------------- BARTpho (SentencePiece + dict.txt)
def read_monolingual_dict(path: Path, specials: list[str]) -> dict[str, int]:
    """BARTpho's ``dict.txt``: the specials first (ids 0..), then the first field of each line, in order."""
    lines = read_lines(path, "monolingual vocabulary")
    vocab: dict[str, int] = {}
    for token in specials:
        vocab.setdefault(token, len(vocab))
    for number, line in enumerate(lines, 1):
        fields = line.strip().split()
        if not fields:
            raise TokenizerFileError(f"monolingual vocabulary {path} line {number} is empty: expected '<token> [count]'")
        if fields[0] in vocab:
            raise TokenizerFileError(
                f"monolingual vocabulary {path} line {number}: {fields[0]!r} is already in the vocabulary "
                "(Transformers would renumber it and leave a hole in the ids)"
            )
        vocab[fields[0]] = len(vocab)
    return vocab


class SentencePieceSplitter:
    """Splits each ``▁word`` into the pieces of a SentencePiece unigram model (the Viterbi search runs in
    Rust, in a ``tokenizers`` Unigram model); a word-level model then numbers the pieces with another
    vocabulary, pieces outside it being the unknown token (BARTpho's dict.txt). A Python pre-tokenizer
    because no Rust model maps several pieces to one id."""

    def __init__(self, pieces: list[tuple[str, float]], unk_id: int):
        self.pieces, self.unk_id = pieces, unk_id
        self._model = None
        self._cache: dict[str, list[int]] = {}

    def __getstate__(self):
        return {"pieces": self.pieces, "unk_id": self.unk_id}

    def __setstate__(self, state):
        self.__init__(state["pieces"], state["unk_id"])

    def lengths(self, word: str) -> list[int]:
        cached = self._cache.get(word)
        if cached is not None:
            return cached
        if self._model is None:
            from tokenizers.models import Unigram

            self._model = Unigram(self.pieces, unk_id=self.unk_id, byte_fallback=False)
        # a token's value is its text (an unknown run included), so character lengths come from it
        lengths = [len(t.value) for t in self._model.tokenize(word)]
        if sum(lengths) != len(word):  # offsets are bytes: fall back to them
            lengths = [len(word.encode("utf-8")[s:e].decode("utf-8")) for s, e in
                       (t.offsets for t in self._model.tokenize(word))]
        if len(self._cache) < 100_000:
            self._cache[word] = lengths
        return lengths

    def _split(self, _index, normalized):
        word = str(normalized)
        if not word:
            return []
        lengths = self.lengths(word)
        if len(lengths) == 1:  # a whole-word piece (most words with a real vocabulary): no slicing
            return [normalized]
        out, start = [], 0
        for length in lengths:
            out.append(normalized[start : start + length])
            start += length
        return out

    def pre_tokenize(self, pretok):
        pretok.split(self._split)

    @staticmethod
    def words_pre_tokenizer():
        from tokenizers import pre_tokenizers

        # SentencePiece splits words on " " only (its normalizer has already mapped other spaces)
        return pre_tokenizers.Sequence(
            [
                pre_tokenizers.Split(" ", behavior="removed"),
                pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always"),
            ]
        )

    def pre_tokenizer(self):
        from tokenizers import pre_tokenizers

        return pre_tokenizers.Sequence([self.words_pre_tokenizer(), pre_tokenizers.PreTokenizer.custom(self)])


def bartpho_backend(model_path: Path, dict_path: Path, config: dict, info: dict) -> RustTokenizer:
    """BARTpho: SentencePiece pieces (``sentencepiece.bpe.model``) numbered by ``dict.txt`` as
    Transformers' BartphoTokenizer numbers them (bos, pad, eos, unk, then the file; ``<mask>`` last).
    The Python splitter goes to ``config["_python_pre_tokenizer"]`` (see fastbpe_backend)."""
    from tokenizers import Regex, decoders, normalizers
    from tokenizers.models import WordLevel

    from keras_models.tokenizers import sentencepiece_model as spm

    model = spm.load_model(model_path)
    if model.trainer_spec.model_type != spm.UNIGRAM:
        raise TokenizerFileError(f"SentencePiece model {model_path} is not a unigram model, as BARTpho's is")
    defaults = info["specials"]
    names = {k: token_content(config.get(k) or defaults[k]) for k in defaults}
    order = ("bos_token", "pad_token", "eos_token", "unk_token", "sep_token", "cls_token")
    vocab = read_monolingual_dict(dict_path, [names[k] for k in order])
    vocab.setdefault(names["mask_token"], len(vocab))
    splitter = SentencePieceSplitter([(p.piece, p.score) for p in model.pieces], model.trainer_spec.unk_id)
    backend = RustTokenizer(WordLevel(vocab=vocab, unk_token=names["unk_token"]))
    charsmap = model.normalizer_spec.precompiled_charsmap
    backend.normalizer = normalizers.Precompiled(charsmap) if charsmap else None
    backend.pre_tokenizer = splitter.pre_tokenizer()
    config["_python_pre_tokenizer"] = splitter
    # Transformers joins the tokens, turns "▁" into spaces and strips the ends
    backend.decoder = decoders.Sequence(
        [
            decoders.Replace("▁", " "),
            decoders.Fuse(),
            decoders.Replace(Regex(f"\\A[{PY_WHITESPACE}]+|[{PY_WHITESPACE}]+\\z"), ""),
        ]
    )
    return backend


# ----------------------------------------------------------------------------- BlenderbotSmall (vocab.json + "@@" BPE)
# Whitespace as Transformers' BlenderbotSmallTokenizer sees it: its word regex r"\S+\n?" runs on the
# `regex` module, whose \s (Unicode White_Space) leaves out \x1c-\x1f, unlike str.isspace
REGEX_WHITESPACE = r"\t\n\x0b\x0c\r\x20\x{85}\x{a0}\x{1680}\x{2000}-\x{200a}\x{2028}\x{2029}\x{202f}\x{205f}\x{3000}"
BBSMALL_PUNCTUATION = frozenset(".,!?()")
BBSMALL_NEWLINE = "__newln__"


def read_bbsmall_files(vocab_path: Path, merges_path: Path):
    """vocab.json (final pieces, ``@@`` on pieces that do not end a word) and merges.txt read as
    Transformers' BlenderbotSmallTokenizer reads them: the first line and the text after the last newline
    are not merges, and the merged symbols need not be in the vocabulary."""
    vocab = read_id_vocab(vocab_path, "BlenderbotSmall vocabulary")
    if len(set(vocab.values())) != len(vocab):
        raise TokenizerFileError(f"BlenderbotSmall vocabulary {vocab_path} gives the same id to several tokens")
    # universal newlines, as Transformers reads it
    lines = read_text(merges_path, "BlenderbotSmall merges", plural=True).split("\n")[1:-1]
    merges = []
    for number, line in enumerate(lines, 2):
        parts = line.split()
        if not parts:
            continue
        if len(parts) != 2:
            raise TokenizerFileError(f"BlenderbotSmall merges {merges_path} line {number}: expected 'left right', got {line!r}")
        merges.append((parts[0], parts[1]))
    return vocab, merges


class BlenderbotSmallSplitter(FastBpeSplitter):
    """Splits each word as Transformers' BlenderbotSmallTokenizer does before its vocabulary lookup: a
    piece starts at each of ``.,!?()``, ``'`` is a piece of its own, a final newline is the piece
    ``__newln__`` (dropped after ``'``), each piece is lower-cased (Python's str.lower) and, unless one
    character long, cut into fastBPE pieces (``@@`` on all but the last). Python because the merged
    symbols are not in the vocabulary (see FastBpeSplitter)."""

    def _word_pieces(self, normalized):
        word = str(normalized)
        core_len = len(word) - 1 if word.endswith("\n") else len(word)
        spans, start = [], 0
        for i in range(core_len):
            char = word[i]
            if char in BBSMALL_PUNCTUATION:
                if i > start:
                    spans.append((start, i))
                start = i
            elif char == "'":
                if i > start:
                    spans.append((start, i))
                spans.append((i, i + 1))
                start = i + 1
        if start < core_len:
            spans.append((start, core_len))
        pieces = [normalized[s:e] for s, e in spans]
        # the newline survives unless a "'" put a space before it (the class squeezes whitespace runs)
        if core_len < len(word) and word[core_len - 1] != "'":
            newline = normalized[core_len:]
            newline.replace("\n", BBSMALL_NEWLINE)
            pieces.append(newline)
        return pieces

    def _split(self, _index, normalized):
        out = []
        for piece in self._word_pieces(normalized):
            text = str(piece)
            lowered = text.lower()
            if lowered != text:
                piece.replace(text, lowered)
            if len(lowered) == 1:
                out.append(piece)
                continue
            spans = self.pieces(lowered)
            for n, (start, end) in enumerate(spans):
                part = piece[start:end]
                if n < len(spans) - 1:
                    part.append("@@")
                out.append(part)
        return out

    @staticmethod
    def words_pre_tokenizer():
        from tokenizers import Regex, pre_tokenizers

        return pre_tokenizers.Split(Regex(f"[^{REGEX_WHITESPACE}]+\\n?"), behavior="removed", invert=True)


def blenderbot_small_backend(vocab_path: Path, merges_path: Path, config: dict, info: dict) -> RustTokenizer:
    """BlenderbotSmall (blenderbot_small-90M, blenderbot-90M): words split and cut into pieces by
    :class:`BlenderbotSmallSplitter`, each piece looked up in vocab.json (anything else is the unknown
    token); the lookup and decoding are :func:`at_at_bpe_backend`'s."""
    vocab, merges = read_bbsmall_files(vocab_path, merges_path)
    unk = token_content(config.get("unk_token") or info["specials"]["unk_token"])
    if unk not in vocab:
        raise TokenizerFileError(
            f"BlenderbotSmall vocabulary {vocab_path} has no unknown token {unk!r}: words outside the "
            "vocabulary could not be encoded"
        )
    splitter = BlenderbotSmallSplitter(merges)
    return at_at_bpe_backend(vocab, unk, splitter, config)

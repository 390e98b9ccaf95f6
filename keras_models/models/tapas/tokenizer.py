"""TapasTokenizer: a question and a table (a pandas DataFrame of strings) to TAPAS inputs.

Transformers' ``TapasTokenizer`` is python-only; this one gives the same ``input_ids``,
``attention_mask`` and ``token_type_ids`` (batch, seq, 7) for a table and one or more queries:

* text: BERT's WordPiece (Rust ``tokenizers``: BERT normaliser and pre-tokenizer over
  ``vocab.txt``); special tokens in the text are kept whole; an empty cell ("", "?", "n/a",
  punctuation only) becomes ``[EMPTY]``;
* layout: ``[CLS] question [SEP]`` then the header and the rows, row by row, each token tagged
  with its column (from 1) and row (header 0, data rows from 1);
* column ranks / inverse ranks and numeric relations with the question: see ``numbers.py``;
* ``truncation=True`` (``"drop_rows_to_fit"``) drops the last rows, then trims every cell to its
  first words, until the example fits ``max_length`` (default ``model_max_length``).

Not implemented: training labels (``answer_coordinates`` / ``answer_text``, and with them the
``prev_labels`` token type of conversational SQA batches, left 0), ``return_tensors`` other than
numpy.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np

from keras_models.errors import InputError, TokenizerFileError
from keras_models.models.tapas import numbers
from keras_models.models.tapas.backbone import TOKEN_TYPES

SPECIAL_KEYS = ("unk_token", "sep_token", "pad_token", "cls_token", "mask_token", "empty_token")
DEFAULT_SPECIALS = dict(unk_token="[UNK]", sep_token="[SEP]", pad_token="[PAD]", cls_token="[CLS]",
                        mask_token="[MASK]", empty_token="[EMPTY]")
VERY_LARGE = int(1e30)


def _content(token):
    return token.get("content") if isinstance(token, dict) else token


class TapasTokenizer:
    """``tokenizer(table, queries, padding=..., truncation=..., max_length=...)`` -> dict of numpy
    arrays. ``table``: a pandas DataFrame (or a dict of column -> cells) of strings."""

    def __init__(self, vocab, do_lower_case=True, strip_accents=None, tokenize_chinese_chars=True,
                 cell_trim_length=-1, max_column_id=None, max_row_id=None, strip_column_names=False,
                 min_question_length=None, max_question_length=None, model_max_length=512,
                 additional_special_tokens=None, **specials):
        from tokenizers import Tokenizer as RustTokenizer
        from tokenizers import normalizers, pre_tokenizers
        from tokenizers.models import WordPiece

        self.specials = {k: _content(specials.get(k) or v) for k, v in DEFAULT_SPECIALS.items()}
        self.vocab = dict(vocab)
        for key, token in self.specials.items():
            if token not in self.vocab and key != "empty_token":
                raise TokenizerFileError(f"vocab.txt has no {key} {token!r}")
        self.do_lower_case, self.strip_accents = do_lower_case, strip_accents
        self.tokenize_chinese_chars = tokenize_chinese_chars
        self.cell_trim_length = cell_trim_length
        self.model_max_length = model_max_length
        fallback = model_max_length if model_max_length is not None else VERY_LARGE
        self.max_column_id = max_column_id if max_column_id is not None else fallback
        self.max_row_id = max_row_id if max_row_id is not None else fallback
        self.strip_column_names = strip_column_names
        self.min_question_length, self.max_question_length = min_question_length, max_question_length
        extra = [_content(t) for t in (additional_special_tokens or [])]
        self.special_tokens = list(dict.fromkeys(list(self.specials.values()) + extra))
        # longest first, so that a special token containing another is matched whole
        pattern = "|".join(re.escape(t) for t in sorted(self.special_tokens, key=len, reverse=True))
        self._split = re.compile(f"({pattern})")
        backend = RustTokenizer(WordPiece(self.vocab, unk_token=self.specials["unk_token"],
                                          max_input_chars_per_word=100))
        backend.normalizer = normalizers.BertNormalizer(
            clean_text=True, handle_chinese_chars=tokenize_chinese_chars, strip_accents=strip_accents,
            lowercase=do_lower_case)
        backend.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
        self.backend = backend

    # --- loading and saving -------------------------------------------------------------------
    @classmethod
    def from_preset(cls, preset):
        from keras_models.presets.resolve import resolve_preset
        from keras_models.tokenizers.builders import read_wordpiece_vocab

        folder = Path(resolve_preset(preset))
        path = folder / "vocab.txt"
        if not path.is_file():
            raise TokenizerFileError(f"{folder}: no vocab.txt (TapasTokenizer's vocabulary)")
        config = {}
        if (folder / "tokenizer_config.json").is_file():
            try:
                config = json.loads((folder / "tokenizer_config.json").read_text())
            except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
                raise TokenizerFileError(f"{folder / 'tokenizer_config.json'} is not valid JSON: {e}") from e
        if (folder / "special_tokens_map.json").is_file():
            try:
                config = {**json.loads((folder / "special_tokens_map.json").read_text()), **config}
            except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
                raise TokenizerFileError(f"{folder / 'special_tokens_map.json'} is not valid JSON: {e}") from e
        keys = ("do_lower_case", "strip_accents", "tokenize_chinese_chars", "cell_trim_length", "max_column_id",
                "max_row_id", "strip_column_names", "min_question_length", "max_question_length",
                "model_max_length", "additional_special_tokens") + SPECIAL_KEYS
        kwargs = {k: config[k] for k in keys if k in config}
        if "additional_special_tokens" not in kwargs and isinstance(config.get("extra_special_tokens"), list):
            kwargs["additional_special_tokens"] = config["extra_special_tokens"]  # Transformers 5's name
        if config.get("do_basic_tokenize") is False or config.get("never_split"):
            raise TokenizerFileError(f"{folder}/tokenizer_config.json: do_basic_tokenize=False and never_split "
                                     "are not supported by keras_models' TapasTokenizer")
        if isinstance(kwargs.get("model_max_length"), (int, float)) and kwargs["model_max_length"] > VERY_LARGE:
            kwargs["model_max_length"] = None
        return cls(read_wordpiece_vocab(path), **kwargs)

    def save_pretrained(self, folder):
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        ordered = sorted(self.vocab.items(), key=lambda kv: kv[1])
        (folder / "vocab.txt").write_text("".join(t + "\n" for t, _ in ordered), encoding="utf-8")
        config = dict(tokenizer_class="TapasTokenizer", do_lower_case=self.do_lower_case,
                      strip_accents=self.strip_accents, tokenize_chinese_chars=self.tokenize_chinese_chars,
                      cell_trim_length=self.cell_trim_length, max_column_id=self.max_column_id,
                      max_row_id=self.max_row_id, strip_column_names=self.strip_column_names,
                      min_question_length=self.min_question_length, max_question_length=self.max_question_length,
                      model_max_length=self.model_max_length, **self.specials)
        (folder / "tokenizer_config.json").write_text(json.dumps(config, indent=2))
        return folder

    # --- text -----------------------------------------------------------------------------------
    def tokenize(self, text):
        """Word pieces of ``text``; special tokens kept whole, an empty-looking piece -> [EMPTY]."""
        if not isinstance(text, str):
            raise InputError(f"TapasTokenizer: expected a string, got {type(text).__name__} {text!r}")
        out = []
        for piece in self._split.split(text):
            if not piece:
                continue
            if piece in self.special_tokens:
                out.append(piece)
            elif numbers.format_text(piece) == numbers.EMPTY_TEXT:
                out.append(self.specials["empty_token"])
            else:
                out.extend(self.backend.encode(piece, add_special_tokens=False).tokens)
        return out

    def convert_tokens_to_ids(self, tokens):
        unk = self.vocab[self.specials["unk_token"]]
        return [self.vocab.get(t, unk) for t in tokens]

    # --- tables ---------------------------------------------------------------------------------
    @staticmethod
    def _table(table):
        """(header, rows) of strings."""
        from keras_models.tokenizers.tapex import _header_and_rows

        try:
            header, rows = _header_and_rows(table)
        except (TypeError, ValueError) as e:
            raise InputError(f"TapasTokenizer: {e}") from e
        for row in [header] + rows:
            for cell in row:
                if not isinstance(cell, str):
                    raise InputError(f"TapasTokenizer: table cell or column name {cell!r} is a "
                                     f"{type(cell).__name__}; TAPAS tables hold strings (convert with "
                                     "table.astype(str))")
        return [str(h) for h in header], rows

    def _question_tokens(self, query):
        tokens = self.tokenize(query)
        if ((self.max_question_length is not None and len(tokens) > self.max_question_length)
                or (self.min_question_length is not None and len(tokens) < self.min_question_length)):
            return "", []  # skipped, as Transformers does (with a warning)
        return query, tokens

    @staticmethod
    def _cells(tokenized, num_rows, num_columns, num_tokens):
        """(token, column id, row id) of the table part: rows up to ``num_rows`` (plus the header)
        and, in each cell, the word pieces of the words that start among its first ``num_tokens``
        pieces (a word is never cut)."""
        for r, row in enumerate(tokenized[: num_rows + 1]):
            for c, cell in enumerate(row[:num_columns]):
                start = -1  # leading ## pieces belong to no word start: always kept
                for i, token in enumerate(cell):
                    if not token.startswith("##"):
                        start = i
                    if start < num_tokens:
                        yield token, c + 1, r

    def _fit(self, question_tokens, tokenized, num_rows, num_columns, max_length, longest):
        """Transformers' drop-rows-to-fit: the rows and words per cell that fit ``max_length``."""
        budget = (max_length if max_length is not None else self.model_max_length) - len(question_tokens) - 2
        limit = longest
        if self.cell_trim_length >= 0 and limit > self.cell_trim_length:
            limit = self.cell_trim_length
        while True:
            words = 0
            for words in range(limit + 1):
                if sum(1 for _ in self._cells(tokenized, num_rows, num_columns, words + 1)) > budget:
                    break
            fits = not (words < limit and (self.cell_trim_length >= 0 or words == 0))
            if fits:
                return num_rows, words or 1
            num_rows -= 1
            if num_rows < 1:
                return num_rows, 1

    def encode_one(self, table, query, truncation=False, max_length=None, _parsed=None):
        """One (table, query) pair: lists ``input_ids``, ``attention_mask``, ``token_type_ids``."""
        header, rows, tokenized, columns = _parsed or self._prepare(table)
        query, q_tokens = self._question_tokens(query if query is not None else "")
        num_rows, num_columns = len(rows), len(header)
        if num_rows >= self.max_row_id:
            if not truncation:
                raise InputError(f"TapasTokenizer: the table has {num_rows} rows, max_row_id={self.max_row_id}")
            num_rows = self.max_row_id - 1
        if num_columns >= self.max_column_id:
            raise InputError(f"TapasTokenizer: the table has {num_columns} columns, "
                             f"max_column_id={self.max_column_id}")
        longest = max([len(cell) for row in tokenized for cell in row], default=0)
        words = longest
        if truncation:
            num_rows, words = self._fit(q_tokens, tokenized, num_rows, num_columns, max_length, longest)
        cells = list(self._cells(tokenized, num_rows, num_columns, words))
        specials = self.specials
        ids = self.convert_tokens_to_ids([specials["cls_token"]] + q_tokens + [specials["sep_token"]]
                                         + [t for t, _, _ in cells])
        if max_length is not None and len(ids) > max_length:
            raise InputError(f"TapasTokenizer: the query and the table header take {len(ids)} tokens, more than "
                             f"max_length={max_length}")
        n_q = len(q_tokens) + 2
        types = np.zeros((len(ids), len(TOKEN_TYPES)), "int64")
        types[n_q:, 0] = 1
        types[n_q:, 1] = [c for _, c, _ in cells]
        types[n_q:, 2] = [r for _, _, r in cells]
        where = {}
        for i, (_, c, r) in enumerate(cells):
            where.setdefault((c - 1, r - 1), []).append(n_q + i)
        question_values = [v for _, _, vs in numbers.numeric_spans(numbers.normalize(query)) for v in vs]
        for c, values in enumerate(columns):
            for r, (rank, inverse) in numbers.column_ranks(values).items():
                for i in where.get((c, r), ()):
                    types[i, 4], types[i, 5] = rank, inverse
            for r, bits in numbers.relations(question_values, values).items():
                for i in where.get((c, r), ()):
                    types[i, 6] = bits
        return {"input_ids": ids, "attention_mask": [1] * len(ids), "token_type_ids": types.tolist()}

    def _prepare(self, table):
        header, rows = self._table(table)
        head = [self.tokenize("") if self.strip_column_names else self.tokenize(h) for h in header]
        tokenized = [head] + [[self.tokenize(cell) for cell in row] for row in rows]
        columns = [numbers.column_values([row[c] for row in rows]) for c in range(len(header))]
        return header, rows, tokenized, columns

    def __call__(self, table, queries=None, padding=False, truncation=False, max_length=None):
        """Token ids for ``table`` with each query: a dict of numpy arrays ``input_ids`` and
        ``attention_mask`` (batch, seq) and ``token_type_ids`` (batch, seq, 7). ``padding``: False
        (every example must then have the same length), True / "longest" or "max_length";
        ``truncation``: False, True / "drop_rows_to_fit"."""
        if truncation not in (False, True, "drop_rows_to_fit", "do_not_truncate"):
            raise InputError(f"TapasTokenizer: truncation={truncation!r} (expected True, False or 'drop_rows_to_fit')")
        truncation = truncation in (True, "drop_rows_to_fit")
        if padding not in (False, True, "longest", "max_length", "do_not_pad"):
            raise InputError(f"TapasTokenizer: padding={padding!r} (expected True, False, 'longest' or 'max_length')")
        if queries is None or isinstance(queries, str):
            queries = [queries]
        parsed = self._prepare(table)
        examples = [self.encode_one(table, q, truncation, max_length, _parsed=parsed) for q in queries]
        lengths = [len(e["input_ids"]) for e in examples]
        if padding == "max_length":
            target = max_length if max_length is not None else self.model_max_length
        elif padding in (True, "longest"):
            target = max(lengths)
        else:
            if len(set(lengths)) > 1:
                raise InputError(f"TapasTokenizer: examples of different lengths {lengths}: pass padding=True")
            target = lengths[0]
        pad = self.vocab[self.specials["pad_token"]]
        out = {"input_ids": np.full((len(examples), target), pad, "int64"),
               "attention_mask": np.zeros((len(examples), target), "int64"),
               "token_type_ids": np.zeros((len(examples), target, len(TOKEN_TYPES)), "int64")}
        for b, e in enumerate(examples):
            n = len(e["input_ids"])
            out["input_ids"][b, :n] = e["input_ids"]
            out["attention_mask"][b, :n] = 1
            out["token_type_ids"][b, :n] = e["token_type_ids"]
        return out


__all__ = ["TapasTokenizer"]

"""Reading tokenizer side files (vocabularies, merges, codes) with errors that name the file."""

from __future__ import annotations

import io
import json
from pathlib import Path

from keras_models.errors import TokenizerFileError


def read_text(path: Path, what: str, plural: bool = False) -> str:
    """The UTF-8 text of ``path`` (universal newlines); ``what`` names the file in errors ("fastBPE
    codes"), ``plural`` words them for a plural name ("... are not valid UTF-8")."""
    try:
        return Path(path).read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise TokenizerFileError(f"{what} {path} {'are' if plural else 'is'} not valid UTF-8: {e}") from e
    except OSError as e:
        raise TokenizerFileError(f"Cannot read {what} {path}: {e}") from e


def read_lines(path: Path, what: str) -> list[str]:
    """``read_text`` split after each newline, ends kept (what ``open(path).readlines()`` gives)."""
    return io.StringIO(read_text(path, what), newline="\n").readlines()


def read_id_vocab(path: Path, what: str) -> dict[str, int]:
    """A JSON vocabulary mapping token strings to integer ids (vocab.json of BPE formats)."""
    try:
        vocab = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise TokenizerFileError(f"{what} {path} is not a readable JSON file: {e}") from e
    if not isinstance(vocab, dict) or not all(isinstance(v, int) and not isinstance(v, bool) for v in vocab.values()):
        raise TokenizerFileError(f"{what} {path} must map token strings to integer ids")
    return vocab

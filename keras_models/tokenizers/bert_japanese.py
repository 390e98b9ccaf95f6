"""BertJapaneseTokenizer (a python-only class in Transformers) over its ``vocab.txt``.

Supported: ``word_tokenizer_type="basic"`` (BERT's basic tokenizer, CJK characters not split apart)
with ``subword_tokenizer_type="wordpiece"`` (BERT's WordPiece) or ``"character"`` (each character of a
word, NFKC-normalised, one token; unknown ones [UNK]). Refused with an error naming the option:
the MeCab / Sudachi / Juman++ word tokenizers (``"mecab"``, ``"sudachi"``, ``"jumanpp"``: they need
fugashi + a dictionary, SudachiPy, rhoknp, none of which keras_models uses), the ``"sentencepiece"``
subword tokenizer, ``do_word_tokenize=False`` / ``do_subword_tokenize=False`` and ``never_split``.
"""

from __future__ import annotations

from pathlib import Path

from tokenizers import Regex
from tokenizers import Tokenizer as RustTokenizer
from tokenizers import decoders, normalizers, pre_tokenizers
from tokenizers.models import WordLevel

from keras_models.errors import TokenizerFileError
from keras_models.tokenizers._special import token_content

WORD_TOKENIZERS = ("basic",)
SUBWORD_TOKENIZERS = ("wordpiece", "character")


def _refuse(folder: Path, message: str):
    raise TokenizerFileError(f"{folder / 'tokenizer_config.json'}: BertJapaneseTokenizer {message}")


def bert_japanese_backend(folder: Path, config: dict, class_name: str, info: dict) -> RustTokenizer:
    from keras_models.tokenizers.builders import read_wordpiece_vocab, wordpiece_from_vocab_txt

    word = config.get("word_tokenizer_type", "basic")
    subword = config.get("subword_tokenizer_type", "wordpiece")
    if word not in WORD_TOKENIZERS:
        _refuse(folder, f"word_tokenizer_type={word!r} is not supported (supported: {', '.join(WORD_TOKENIZERS)}); "
                        "MeCab / Sudachi / Juman++ word segmentation is not available in keras_models")
    if subword not in SUBWORD_TOKENIZERS:
        _refuse(folder, f"subword_tokenizer_type={subword!r} is not supported "
                        f"(supported: {', '.join(SUBWORD_TOKENIZERS)})")
    for key in ("do_word_tokenize", "do_subword_tokenize"):
        if not config.get(key, True):
            _refuse(folder, f"{key}=False is not supported")
    if config.get("never_split"):
        _refuse(folder, f"never_split={config['never_split']!r} is not supported; list them as added tokens instead")
    path = folder / "vocab.txt"
    if not path.is_file():
        raise TokenizerFileError(f"{folder} has no vocab.txt: tokenizer class {class_name} reads it")
    # the basic tokenizer as the class builds it: CJK characters not split apart, lower-cased (and accents
    # stripped) only with do_lower_case, which defaults to False here
    basic = {"tokenize_chinese_chars": False, "do_lower_case": bool(config.get("do_lower_case", False)),
             "strip_accents": None}
    if subword == "wordpiece":
        backend = wordpiece_from_vocab_txt(path, basic, info)
        backend.decoder = decoders.WordPiece(prefix="##", cleanup=False)  # the class joins tokens, no clean-up
        return backend
    vocab = read_wordpiece_vocab(path)
    unk = token_content(config.get("unk_token", info["specials"]["unk_token"]))
    if unk not in vocab:
        raise TokenizerFileError(f"character vocabulary {path} has no unknown token {unk!r}")
    backend = RustTokenizer(WordLevel(vocab, unk_token=unk))
    backend.normalizer = normalizers.Sequence([
        normalizers.BertNormalizer(clean_text=True, handle_chinese_chars=False, strip_accents=None,
                                   lowercase=basic["do_lower_case"]),
        normalizers.NFKC(),
    ])
    backend.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.BertPreTokenizer(), pre_tokenizers.Split(Regex("."), behavior="isolated")]
    )
    backend.decoder = decoders.WordPiece(prefix="##", cleanup=False)
    return backend


__all__ = ["bert_japanese_backend", "WORD_TOKENIZERS", "SUBWORD_TOKENIZERS"]

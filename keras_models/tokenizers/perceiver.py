"""PerceiverTokenizer (python-only in Transformers): each UTF-8 byte of the text is one token, id
``byte + 6`` after [PAD] 0, [BOS] 1, [EOS] 2, [MASK] 3, [CLS] 4 and [SEP] 5 (which are split out of
the text wherever they occur); [CLS] A [SEP] (a pair: [CLS] A [SEP] B [SEP]); no vocabulary file.
Rust does it all, as for ByT5: ByteLevel maps bytes to characters, a BPE model without merges gives
each its id."""

from __future__ import annotations

from pathlib import Path

from tokenizers import AddedToken, decoders, pre_tokenizers, processors
from tokenizers import Tokenizer as RustTokenizer
from tokenizers.models import BPE

from keras_models.errors import TokenizerFileError

SPECIAL_KEYS = ("pad_token", "bos_token", "eos_token", "mask_token", "cls_token", "sep_token")


def perceiver_backend(folder: Path, config: dict, class_name: str, info: dict) -> RustTokenizer:
    from keras_models.tokenizers._special import token_content
    from keras_models.tokenizers.builders import byte_level_chars

    names = [token_content(config.get(key) or info["specials"][key]) for key in SPECIAL_KEYS]
    if len(set(names)) != len(names) or not all(isinstance(n, str) and n for n in names):
        raise TokenizerFileError(f"{folder / 'tokenizer_config.json'}: {class_name}'s six special tokens must be "
                                 f"distinct strings, got {names}")
    vocab = {name: i for i, name in enumerate(names)}
    vocab.update({char: b + len(names) for b, char in byte_level_chars().items()})
    backend = RustTokenizer(BPE(vocab=vocab, merges=[], dropout=None))
    backend.normalizer = None
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    backend.decoder = decoders.ByteLevel()
    backend.add_special_tokens([AddedToken(n, lstrip=False, rstrip=False, special=True, normalized=False)
                                for n in names])
    return backend


def perceiver_processor(tok, config: dict):
    """[CLS] A [SEP] / [CLS] A [SEP] B [SEP], all of token type 0."""
    cls, sep = tok.cls_token, tok.sep_token
    return processors.TemplateProcessing(
        single=f"{cls}:0 $A:0 {sep}:0", pair=f"{cls}:0 $A:0 {sep}:0 $B:0 {sep}:0",
        special_tokens=[(cls, tok.cls_token_id), (sep, tok.sep_token_id)])


__all__ = ["perceiver_backend", "perceiver_processor"]

"""SeamlessM4TTokenizer (SeamlessM4T / v2 checkpoints' tokenizer.json): NLLB-style language codes.

Inputs are ``__src__ A </s>`` (pairs ``__src__ A B </s>``) with ``src_lang`` from
tokenizer_config.json (default "eng"); targets (``text_target=``) ``</s> __tgt__ A </s>`` with
``tgt_lang`` (default "fra"), as Transformers switches between them. A code may be given with or
without the underscores; one missing from the vocabulary becomes the unknown token's id, as
Transformers does (with a warning there)."""

from __future__ import annotations

import logging
from pathlib import Path

from tokenizers import processors

logger = logging.getLogger("keras_models")


def _code(tok, config, key, default):
    lang = config.get(key) or default
    lang = lang if "__" in lang else f"__{lang}__"
    token_id = tok.backend_tokenizer.token_to_id(lang)
    if token_id is None:
        logger.warning("%s=%r is not in the vocabulary: the unknown token's id is used", key, lang)
        return tok.unk_token, tok.unk_token_id
    return lang, token_id


def _template(tok, prefix):
    eos = (tok.eos_token, tok.eos_token_id)
    specials = dict(prefix + [eos])
    names = [p[0] for p in prefix]
    return processors.TemplateProcessing(single=names + ["$A", eos[0]], pair=names + ["$A", "$B", eos[0]],
                                         special_tokens=list(specials.items()))


def finish_seamless(tok, folder: Path):
    from tokenizers import Tokenizer as Rust

    config = tok.init_config
    tok.backend_tokenizer.post_processor = _template(tok, [_code(tok, config, "src_lang", "eng")])
    target = type(tok)(Rust.from_str(tok.backend_tokenizer.to_str()), dict(config), class_name=tok.class_name)
    eos = (tok.eos_token, tok.eos_token_id)
    target.backend_tokenizer.post_processor = _template(target, [eos, _code(tok, config, "tgt_lang", "fra")])
    tok.target_tokenizer = target


__all__ = ["finish_seamless"]

"""Tokenizers of translation checkpoints that ship no tokenizer.json (python-only classes in
Transformers), rebuilt as Rust pipelines.

Marian (``MarianTokenizer``): ``source.spm`` segments the inputs and ``target.spm`` the targets
(``text_target=``); both map their pieces through the shared ``vocab.json`` (its ids, not the .spm
ids; a piece outside it is the unknown token); ``</s>`` ends every sequence, a pair is ``A B </s>``.
"""

from __future__ import annotations

from pathlib import Path

from tokenizers import Tokenizer as RustTokenizer
from tokenizers import processors
from tokenizers.models import Unigram

from keras_models.errors import TokenizerFileError
from keras_models.tokenizers import sentencepiece_model as spm
from keras_models.tokenizers._special import token_content

MARIAN_FILES = ("source.spm", "target.spm", "vocab.json")
# Score per character of vocab.json entries the .spm model does not hold: never chosen over the model's
# own pieces, only over the unknown token, where SentencePiece gives the unknown surface text and
# Transformers looks it up in vocab.json. (A run of several unknown characters is one surface piece in
# SentencePiece; here it is split into vocab.json entries when it is not one: a known difference.)
_FOREIGN_SCORE = -1e9


def read_vocab_json(path: Path) -> dict[str, int]:
    from keras_models.tokenizers.loading import read_json

    vocab = read_json(path, "vocabulary")
    if not isinstance(vocab, dict) or not all(isinstance(v, int) and not isinstance(v, bool) for v in vocab.values()):
        raise TokenizerFileError(f"vocabulary {path} must map token strings to integer ids")
    ids = sorted(vocab.values())
    if ids != list(range(len(ids))):
        raise TokenizerFileError(f"vocabulary {path} must number its tokens 0..{len(ids) - 1} without gaps or repeats")
    return vocab


def spm_over_vocab(model_path: Path, vocab: dict[str, int], unk: str) -> RustTokenizer:
    """A unigram pipeline that segments as the SentencePiece model does, with ``vocab``'s ids."""
    from keras_models.tokenizers.spm_convert import _generic

    model = spm.load_model(model_path)
    if model.trainer_spec.model_type != spm.UNIGRAM:
        raise TokenizerFileError(f"SentencePiece model {model_path} is BPE; Marian checkpoints use unigram models")
    scores = {p.piece: p.score for p in model.pieces if p.type in (spm.NORMAL, spm.USER_DEFINED)}
    pieces = [None] * len(vocab)
    for token, index in vocab.items():
        pieces[index] = (token, scores.get(token, _FOREIGN_SCORE * max(1, len(token))))
    if unk not in vocab:
        raise TokenizerFileError(f"vocabulary {model_path.parent / 'vocab.json'} has no unknown token {unk!r}")
    try:
        backend = RustTokenizer(Unigram(pieces, unk_id=vocab[unk], byte_fallback=False))
        stages = _generic(model, {})  # the model's own normalizer / pre-tokenizer / decoder
    except TokenizerFileError:
        raise
    except Exception as e:  # the Rust constructors raise bare Exceptions
        raise TokenizerFileError(f"Cannot build a tokenizer from SentencePiece model {model_path}: {e}") from e
    backend.normalizer = stages.normalizer
    backend.pre_tokenizer = stages.pre_tokenizer
    backend.decoder = stages.decoder
    return backend


def marian_backends(folder: Path, config: dict, class_name: str, info: dict):
    """(source pipeline, target pipeline) for a Marian folder."""
    for name in MARIAN_FILES:
        if not (folder / name).is_file():
            raise TokenizerFileError(
                f"{folder} has no {name}: tokenizer class {class_name} reads source.spm + target.spm + vocab.json"
            )
    if config.get("separate_vocabs"):
        raise TokenizerFileError(
            f"{folder / 'tokenizer_config.json'} sets separate_vocabs=True (target_vocab.json): not supported"
        )
    vocab = read_vocab_json(folder / "vocab.json")
    unk = token_content(config.get("unk_token") or info["specials"]["unk_token"])
    return spm_over_vocab(folder / "source.spm", vocab, unk), spm_over_vocab(folder / "target.spm", vocab, unk)


def eos_suffix_processor(tok):
    """``A </s>`` and ``A B </s>`` (Marian)."""
    eos = tok.eos_token
    return processors.TemplateProcessing(
        single=f"$A:0 {eos}:0", pair=f"$A:0 $B:0 {eos}:0", special_tokens=[(eos, tok.eos_token_id)]
    )


def marian_decoder(special_tokens):
    """Transformers' Marian decoding: the pieces between special tokens are decoded by SentencePiece
    (dummy-prefix space dropped), each special token is followed by a space, the ends are stripped."""
    import re

    from tokenizers import Regex, decoders

    from keras_models.tokenizers.builders import PY_WHITESPACE

    steps = [decoders.Fuse(), decoders.Replace(Regex("\\A\u2581"), "")]
    for token in sorted(special_tokens, key=len, reverse=True):
        steps.append(decoders.Replace(Regex(re.escape(token) + "\u2581?"), token + " "))
    steps += [
        decoders.Replace("\u2581", " "),
        decoders.Replace(Regex(f"\\A[{PY_WHITESPACE}]+|[{PY_WHITESPACE}]+\\z"), ""),
    ]
    return decoders.Sequence(steps)


def attach_target(tok, target_backend: RustTokenizer, config: dict, folder: Path):
    """Finish a Marian tokenizer: post-processors, the target-side tokenizer, the files to save."""
    from keras_models.tokenizers.loading import _add_config_tokens

    tok.backend_tokenizer.post_processor = eos_suffix_processor(tok)
    tok.backend_tokenizer.decoder = marian_decoder(tok.all_special_tokens)
    _add_config_tokens(target_backend, config, folder / "tokenizer_config.json")
    target = type(tok)(target_backend, dict(tok.init_config), class_name=tok.class_name)
    target_backend.post_processor = eos_suffix_processor(target)
    tok.target_tokenizer = target
    tok.source_files = {name: folder / name for name in MARIAN_FILES}

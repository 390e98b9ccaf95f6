"""Convert a SentencePiece ``.model`` into a Rust ``tokenizers`` pipeline.

The pipeline per tokenizer class follows what Transformers assembles from the same file, so ids
agree with ``transformers.AutoTokenizer``:
  * T5 (unigram): pieces + ``<extra_id_N>`` sentinels, precompiled normalizer, whitespace split +
    metaspace, ``$A </s>``;
  * ALBERT (unigram): quote / accent / case normalizers before the precompiled map, [CLS] ... [SEP];
  * XLM-R / CamemBERT (unigram): fairseq id layout (``<s> <pad> </s> <unk>`` first, ``<mask>`` last);
  * Llama (BPE with byte fallback): merges ranked from the vocabulary, metaspace prefix on the first
    chunk only unless ``legacy``, bos from ``add_bos_token``;
  * any other class: the model's own normalizer spec (extra-whitespace removal, dummy prefix).
"""

from __future__ import annotations

import re

from tokenizers import Regex
from tokenizers import Tokenizer as RustTokenizer
from tokenizers import decoders, normalizers, pre_tokenizers
from tokenizers.models import BPE, Unigram

from keras_models.errors import TokenizerFileError
from keras_models.tokenizers import sentencepiece_model as spm
from keras_models.tokenizers._classes import family_of, resolve
from keras_models.tokenizers._special import token_content
from keras_models.tokenizers.pipelines import apply_family_pipeline


def ranked_merges(vocab: dict[str, int]) -> list[tuple[str, str]]:
    """BPE merges implied by a SentencePiece BPE vocabulary: every split of a piece into two pieces,
    ranked by the merged piece's id, then by the lengths of the two halves."""
    found = []
    for piece, piece_id in vocab.items():
        local = []
        for cut in range(1, len(piece)):
            left, right = piece[:cut], piece[cut:]
            if left in vocab and right in vocab:
                local.append((left, right, piece_id))
        local.sort(key=lambda m: (vocab[m[0]], vocab[m[1]]))
        found.extend(local)
    found.sort(key=lambda m: (m[2], len(m[0]), len(m[1])))
    return [(left, right) for left, right, _ in found]


def _score_ranked_merges(model: spm.SentencePieceModel, vocab: dict[str, int]) -> list[tuple[str, str]]:
    """Merges ranked by piece score (SentencePiece's own BPE order), for normal pieces only."""
    normal = {p.piece: (p.score, i) for i, p in enumerate(model.pieces) if p.type == spm.NORMAL}
    ranked = []
    for token, (score, index) in normal.items():
        for cut in range(1, len(token)):
            left, right = token[:cut], token[cut:]
            if left in normal and right in normal:
                ranked.append((-score, index, left, right))
    return [(left, right) for _, _, left, right in sorted(ranked)]


def _extra_special_from_model(model: spm.SentencePieceModel) -> list[dict]:
    """Control and user-defined pieces, which Transformers registers as extra special tokens."""
    return [
        {"content": p.piece, "special": p.type == spm.CONTROL, "normalized": False}
        for p in model.pieces
        if p.type in (spm.CONTROL, spm.USER_DEFINED)
    ]


def _t5(model, config):
    vocab = [(p.piece, p.score) for p in model.pieces]
    extra_ids = int(config.get("extra_ids", 100))
    sentinels = [f"<extra_id_{i}>" for i in range(extra_ids - 1, -1, -1)]
    vocab += [(s, 0.0) for s in sentinels]
    extras = config.get("extra_special_tokens") or _extra_special_from_model(model)
    if not any("<extra_id_" in str(token_content(t)) for t in extras):
        extras = list(extras) + [f"<extra_id_{i}>" for i in range(extra_ids)]
    config["extra_special_tokens"] = extras
    backend = RustTokenizer(Unigram(vocab, unk_id=2, byte_fallback=False))
    apply_family_pipeline(backend, "t5", config, model.normalizer_spec.precompiled_charsmap)
    return backend


def _albert(model, config):
    vocab = [(p.piece, p.score) for p in model.pieces]
    backend = RustTokenizer(Unigram(vocab, unk_id=1, byte_fallback=False))
    apply_family_pipeline(backend, "albert", config, model.normalizer_spec.precompiled_charsmap)
    config.setdefault("extra_special_tokens", _extra_special_from_model(model))
    return backend


def _xlm_roberta(model, config):
    names = {k: token_content(config.get(k)) for k in ("bos_token", "pad_token", "eos_token", "unk_token", "mask_token")}
    defaults = {"bos_token": "<s>", "pad_token": "<pad>", "eos_token": "</s>", "unk_token": "<unk>", "mask_token": "<mask>"}
    names = {k: v or defaults[k] for k, v in names.items()}
    vocab = [(names[k], 0.0) for k in ("bos_token", "pad_token", "eos_token", "unk_token")]
    vocab += [(p.piece, p.score) for p in model.pieces[3:]]
    vocab.append((names["mask_token"], 0.0))
    backend = RustTokenizer(Unigram(vocab, unk_id=3, byte_fallback=False))
    apply_family_pipeline(backend, "xlm_roberta", config, model.normalizer_spec.precompiled_charsmap)
    config.setdefault("extra_special_tokens", _extra_special_from_model(model))
    return backend


def _mbart50(model, config):
    """fairseq numbering (<s> <pad> </s> <unk>, then the pieces after the model's first three), the 52
    language codes, <mask> last."""
    from keras_models.tokenizers.translation import MBART50_LANGUAGE_CODES

    names = {k: token_content(config.get(k)) for k in ("cls_token", "pad_token", "eos_token", "unk_token", "mask_token")}
    defaults = {"cls_token": "<s>", "pad_token": "<pad>", "eos_token": "</s>", "unk_token": "<unk>", "mask_token": "<mask>"}
    names = {k: v or defaults[k] for k, v in names.items()}
    vocab = [(names[k], 0.0) for k in ("cls_token", "pad_token", "eos_token", "unk_token")]
    vocab += [(p.piece, p.score) for p in model.pieces[3:]]
    vocab += [(code, 0.0) for code in MBART50_LANGUAGE_CODES] + [(names["mask_token"], 0.0)]
    backend = RustTokenizer(Unigram(vocab, unk_id=3, byte_fallback=False))
    apply_family_pipeline(backend, "mbart50", config, model.normalizer_spec.precompiled_charsmap)
    return backend


def _barthez(model, config):
    """The model's own pieces and ids (unknown id 3, as BARThez's fairseq-trained model numbers it)."""
    backend = RustTokenizer(Unigram([(p.piece, p.score) for p in model.pieces], unk_id=3, byte_fallback=False))
    apply_family_pipeline(backend, "barthez", config, model.normalizer_spec.precompiled_charsmap)
    return backend


def _llama(model, config):
    vocab = {}
    for i, p in enumerate(model.pieces):
        vocab.setdefault(p.piece, i)
    merges = ranked_merges(vocab)
    backend = RustTokenizer(BPE(vocab=vocab, merges=merges, fuse_unk=True, byte_fallback=True, dropout=None))
    apply_family_pipeline(backend, "llama", config)
    config.setdefault("extra_special_tokens", _extra_special_from_model(model))
    return backend


def _generic(model, config):
    """Follow the model's own normalizer spec (classes without a dedicated pipeline)."""
    spec, trainer = model.normalizer_spec, model.trainer_spec
    legacy = bool(config.get("legacy", True))
    user_defined = [p.piece for p in model.pieces if p.type == spm.USER_DEFINED]
    if trainer.model_type == spm.BPE:
        vocab = {}
        for i, p in enumerate(model.pieces):
            vocab.setdefault(p.piece, i)
        backend = RustTokenizer(
            BPE(
                vocab=vocab,
                merges=_score_ranked_merges(model, vocab),
                unk_token=trainer.unk_piece,
                fuse_unk=True,
                byte_fallback=trainer.byte_fallback,
                dropout=None,
                ignore_merges=bool(user_defined),
            )
        )
    else:
        vocab = [(p.piece, p.score) for p in model.pieces]
        backend = RustTokenizer(Unigram(vocab, unk_id=trainer.unk_id, byte_fallback=trainer.byte_fallback))
    steps = []
    if spec.precompiled_charsmap:
        steps.append(normalizers.Precompiled(spec.precompiled_charsmap))
    if spec.remove_extra_whitespaces:
        steps += [normalizers.Replace(Regex(r"\A +| +\z"), ""), normalizers.Replace(Regex(" {2,}"), " ")]
    if spec.escape_whitespaces:
        steps.append(normalizers.Replace(" ", "▁"))
    if spec.add_dummy_prefix and legacy:
        steps.append(normalizers.Replace(Regex(r"\A▁"), "▁▁"))
    backend.normalizer = normalizers.Sequence(steps)
    pre = []
    if spec.add_dummy_prefix:
        pre.append(pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always" if legacy else "first", split=False))
    if user_defined:
        pattern = "|".join(re.escape(p) for p in sorted(user_defined, key=len, reverse=True))
        pre.append(pre_tokenizers.Split(Regex(pattern), behavior="isolated"))
    if pre:
        backend.pre_tokenizer = pre_tokenizers.Sequence(pre)
    steps = [decoders.Replace("▁", " ")]
    if trainer.byte_fallback:
        steps.append(decoders.ByteFallback())
    if spec.add_dummy_prefix:
        steps += [decoders.Fuse(), decoders.Strip(content=" ", left=1)]
    elif trainer.byte_fallback:
        steps.append(decoders.Fuse())
    backend.decoder = decoders.Sequence(steps)
    for key, index, piece in (
        ("bos_token", trainer.bos_id, trainer.bos_piece),
        ("eos_token", trainer.eos_id, trainer.eos_piece),
        ("unk_token", trainer.unk_id, trainer.unk_piece),
    ):
        if index >= 0:
            config.setdefault(key, piece or None)
    extras = [t for t in _extra_special_from_model(model) if t["special"]]
    config.setdefault("extra_special_tokens", extras)
    return backend


GENERIC_CLASSES = ("TokenizersBackend", "PreTrainedTokenizerFast")


def sentencepiece_backend(path, config: dict, class_name: str) -> RustTokenizer:
    """Build the Rust tokenizer for ``path`` as Transformers' ``class_name`` would (mutates ``config``
    with the special tokens the model file defines)."""
    model = spm.load_model(path)
    convert = family_of(class_name).spm  # the family's converter (_classes.FAMILIES), if any
    if convert is None and class_name not in GENERIC_CLASSES:
        raise TokenizerFileError(
            f"{path.parent} has only the SentencePiece model {path.name}, and converting it for tokenizer class "
            f"{class_name} is not supported (supported: T5, ALBERT, XLM-RoBERTa, Llama and generic "
            "TokenizersBackend / PreTrainedTokenizerFast); a tokenizer.json is needed"
        )
    build = _generic if convert is None else resolve(convert)
    if build is _llama and model.trainer_spec.model_type != spm.BPE:
        build = _generic
    if build in (_t5, _albert, _xlm_roberta) and model.trainer_spec.model_type != spm.UNIGRAM:
        raise TokenizerFileError(
            f"SentencePiece model {path} is BPE but {class_name} expects a unigram model"
        )
    try:
        return build(model, config)
    except TokenizerFileError:
        raise
    except Exception as e:  # the Rust constructors raise bare Exceptions on inconsistent vocabularies
        raise TokenizerFileError(f"Cannot build a tokenizer from SentencePiece model {path}: {e}") from e

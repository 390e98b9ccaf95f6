"""Tokenizers of translation checkpoints that ship no tokenizer.json (python-only classes in
Transformers), rebuilt as Rust pipelines.

Marian (``MarianTokenizer``): ``source.spm`` segments the inputs and ``target.spm`` the targets
(``text_target=``); both map their pieces through the shared ``vocab.json`` (its ids, not the .spm
ids; a piece outside it is the unknown token); ``</s>`` ends every sequence, a pair is ``A B </s>``.

M2M100 (``M2M100Tokenizer``): a SentencePiece BPE ``sentencepiece.bpe.model`` over a fairseq-numbered
``vocab.json``; the language tokens ``__xx__`` follow the vocabulary (ids ``len(vocab.json) + i`` in
the order of ``language_codes``), prefix every sequence (``src_lang``, or ``tgt_lang`` for
``text_target=``) and ``</s>`` ends it. As in Transformers they are not split out of the text nor
skipped when decoding, and only the tokens of ``tokenizer_config.json`` are special; unlike
Transformers' ``len()`` / ``get_vocab()``, ours count them (they are ids the model has).

PLBart (``PLBartTokenizer``): one ``sentencepiece.bpe.model`` numbered with fairseq's offset (``<s> <pad>
</s> <unk>`` first, piece ``i`` at ``i + 1``), then the language codes of ``language_codes`` (base /
multi) and, for base, ``<mask>``; sequences end ``</s> [lang]`` (``src_lang``, ``tgt_lang`` for
``text_target=``; no language token when it is None in base). The multi vocabulary has no ``<mask>``
(Transformers maps it to ``<unk>``'s id): ours has no mask token there.
"""

from __future__ import annotations

from pathlib import Path

from tokenizers import AddedToken
from tokenizers import Tokenizer as RustTokenizer
from tokenizers import processors
from tokenizers.models import Unigram

from keras_models.errors import TokenizerFileError
from keras_models.tokenizers import sentencepiece_model as spm
from keras_models.tokenizers._special import token_content

MARIAN_FILES = ("source.spm", "target.spm", "vocab.json")
M2M100_FILES = ("sentencepiece.bpe.model", "vocab.json")
# fairseq's language lists of M2M100 checkpoints (tokenizer_config.json ``language_codes``)
M2M100_LANGUAGE_CODES = {
    "m2m100": (
        "af am ar ast az ba be bg bn br bs ca ceb cs cy da de el en es et fa ff fi fr fy ga gd gl gu ha he hi hr "
        "ht hu hy id ig ilo is it ja jv ka kk km kn ko lb lg ln lo lt lv mg mk ml mn mr ms my ne nl no ns oc or "
        "pa pl ps pt ro ru sd si sk sl so sq sr ss su sv sw ta th tl tn tr uk ur uz vi wo xh yi yo zh zu"
    ).split(),
    "wmt21": "en ha is ja cs ru zh de".split(),
}
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
    source, target = spm_over_vocab(folder / "source.spm", vocab, unk), spm_over_vocab(folder / "target.spm", vocab, unk)
    # Language codes (">>fra<<") of vocab.json: Transformers takes one off the start of the text (and of
    # each stretch between special tokens) as a token. As added tokens they are split out there; unlike
    # Transformers, also elsewhere in the text (a known difference; a code that vocab.json lacks is not
    # one token here, where Transformers gives the unknown token).
    codes = [t for t in sorted(vocab, key=vocab.get) if t.startswith(">>") and t.endswith("<<")]
    for backend in (source, target):
        backend.add_tokens([AddedToken(c, normalized=False, special=False) for c in codes])
    config["_marian_language_codes"] = codes
    return source, target


def marian_backend(folder: Path, config: dict, class_name: str, info: dict) -> RustTokenizer:
    """The source pipeline; the target one goes to ``config["_target_backend"]`` (see :func:`attach_target`)."""
    backend, config["_target_backend"] = marian_backends(folder, config, class_name, info)
    return backend


def eos_suffix_processor(tok):
    """``A </s>`` and ``A B </s>`` (Marian)."""
    eos = tok.eos_token
    return processors.TemplateProcessing(
        single=f"$A:0 {eos}:0", pair=f"$A:0 $B:0 {eos}:0", special_tokens=[(eos, tok.eos_token_id)]
    )


def m2m100_backend(folder: Path, config: dict, class_name: str, info: dict) -> RustTokenizer:
    """SentencePiece BPE segmentation with vocab.json ids, then the language tokens."""
    from tokenizers.models import BPE

    from keras_models.tokenizers.spm_convert import _generic, _score_ranked_merges

    for name in M2M100_FILES:
        if not (folder / name).is_file():
            raise TokenizerFileError(
                f"{folder} has no {name}: tokenizer class {class_name} reads sentencepiece.bpe.model + vocab.json"
            )
    codes = config.get("language_codes") or "m2m100"
    if codes not in M2M100_LANGUAGE_CODES:
        raise TokenizerFileError(
            f"{folder / 'tokenizer_config.json'}: language_codes {codes!r} is not one of {sorted(M2M100_LANGUAGE_CODES)}"
        )
    path = folder / "sentencepiece.bpe.model"
    model = spm.load_model(path)
    if model.trainer_spec.model_type != spm.BPE:
        raise TokenizerFileError(f"SentencePiece model {path} is unigram; {class_name} expects a BPE model")
    vocab = read_vocab_json(folder / "vocab.json")
    unk = token_content(config.get("unk_token") or info["specials"]["unk_token"])
    if unk not in vocab:
        raise TokenizerFileError(f"vocabulary {folder / 'vocab.json'} has no unknown token {unk!r}")
    # merges whose pieces vocab.json leaves out could only produce unknown tokens
    merges = [(a, b) for a, b in _score_ranked_merges(model, vocab) if a in vocab and b in vocab and a + b in vocab]
    for lang in M2M100_LANGUAGE_CODES[codes]:
        vocab.setdefault(f"__{lang}__", len(vocab))
    try:
        backend = RustTokenizer(BPE(vocab=vocab, merges=merges, unk_token=unk, fuse_unk=True, dropout=None))
        stages = _generic(model, {})
    except Exception as e:  # the Rust constructors raise bare Exceptions
        raise TokenizerFileError(f"Cannot build a tokenizer from {path} and {folder / 'vocab.json'}: {e}") from e
    backend.normalizer = stages.normalizer
    backend.pre_tokenizer = stages.pre_tokenizer
    return backend


def lang_prefix_processor(tok, lang_token: str):
    """``__xx__ A </s>`` and ``__xx__ A B </s>`` (M2M100)."""
    eos = tok.eos_token
    lang_id = tok.backend_tokenizer.token_to_id(lang_token)
    return processors.TemplateProcessing(
        single=f"{lang_token}:0 $A:0 {eos}:0",
        pair=f"{lang_token}:0 $A:0 $B:0 {eos}:0",
        special_tokens=[(lang_token, lang_id), (eos, tok.eos_token_id)],
    )


class _NoTarget:
    def __init__(self, message):
        self.message = message

    def _call_one(self, *args, **kwargs):
        raise ValueError(self.message)


def _language_token(tok, lang, key):
    token = f"__{lang}__"
    if tok.backend_tokenizer.token_to_id(token) is None:
        codes = tok.init_config.get("language_codes") or "m2m100"
        raise ValueError(f"{key}={lang!r} is not a language of language_codes {codes!r}")
    return token


def finish_m2m100(tok, folder: Path):
    from tokenizers import Tokenizer as Rust

    config = tok.init_config
    src = config.get("src_lang") or "en"
    tok.backend_tokenizer.post_processor = lang_prefix_processor(tok, _language_token(tok, src, "src_lang"))
    tok.backend_tokenizer.decoder = spm_groups_decoder(tok.all_special_tokens, "")
    tgt = config.get("tgt_lang")
    if tgt is None:
        tok.target_tokenizer = _NoTarget("text_target needs tgt_lang (from_preset(..., tgt_lang=...))")
    else:
        target = type(tok)(Rust.from_str(tok.backend_tokenizer.to_str()), dict(config), class_name=tok.class_name)
        target.backend_tokenizer.post_processor = lang_prefix_processor(target, _language_token(tok, tgt, "tgt_lang"))
        tok.target_tokenizer = target
    tok.source_files = {name: folder / name for name in M2M100_FILES}


# mBART-50's language codes, in the order its vocabulary appends them
MBART50_LANGUAGE_CODES = (
    "ar_AR cs_CZ de_DE en_XX es_XX et_EE fi_FI fr_XX gu_IN hi_IN it_IT ja_XX kk_KZ ko_KR lt_LT lv_LV my_MM ne_NP "
    "nl_XX ro_RO ru_RU si_LK tr_TR vi_VN zh_CN af_ZA az_AZ bn_IN fa_IR he_IL hr_HR id_ID ka_GE km_KH mk_MK ml_IN "
    "mn_MN mr_IN pl_PL ps_AF pt_XX sv_SE sw_KE ta_IN te_IN th_TH tl_XX uk_UA ur_PK xh_ZA gl_ES sl_SI"
).split()


def finish_mbart50(tok, folder: Path):
    """MBart50Tokenizer: ``src_lang A </s>`` (pairs ``src_lang A B </s>``); targets (``text_target=``) the
    same with ``tgt_lang`` (``src_lang`` when it is None); the language codes are extra special tokens."""
    from tokenizers import Tokenizer as Rust

    config = tok.init_config

    def code(key, default):
        lang = config.get(key) or default
        if tok.backend_tokenizer.token_to_id(lang) is None:
            raise ValueError(f"{key}={lang!r} is not one of mBART-50's language codes {MBART50_LANGUAGE_CODES}")
        return lang

    missing = [c for c in MBART50_LANGUAGE_CODES if c not in tok.extra_special_tokens]
    if missing:  # Transformers' class lists them all among its extra special tokens
        tok.add_special_tokens({"extra_special_tokens": missing}, replace_extra_special_tokens=False)
    src = code("src_lang", "en_XX")
    tgt = code("tgt_lang", src)
    tok.backend_tokenizer.post_processor = mbart50_processor(tok, src)
    target = type(tok)(Rust.from_str(tok.backend_tokenizer.to_str()), dict(config), class_name=tok.class_name)
    target.backend_tokenizer.post_processor = mbart50_processor(target, tgt)
    tok.target_tokenizer = target


def mbart50_processor(tok, lang_token: str):
    """``xx_XX A </s>`` and ``xx_XX A B </s>``."""
    eos = tok.eos_token
    return processors.TemplateProcessing(
        single=[lang_token, "$A", eos], pair=[lang_token, "$A", "$B", eos],
        special_tokens=[(lang_token, tok.backend_tokenizer.token_to_id(lang_token)), (eos, tok.eos_token_id)],
    )


PLBART_FILE = "sentencepiece.bpe.model"
PLBART_LANGUAGE_CODES = {
    "base": ["__java__", "__python__", "__en_XX__"],
    "multi": ["__java__", "__python__", "__en_XX__", "__javascript__", "__php__", "__ruby__", "__go__"],
}


def plbart_language(lang):
    """PLBart's short names (``java``) for its language tokens (``__java__``)."""
    short = {code.strip("_"): code for codes in PLBART_LANGUAGE_CODES.values() for code in codes}
    return short.get(lang, lang)


def plbart_backend(folder: Path, config: dict, class_name: str, info: dict) -> RustTokenizer:
    from tokenizers import decoders

    from keras_models.tokenizers.spm_convert import _generic

    path = folder / PLBART_FILE
    if not path.is_file():
        raise TokenizerFileError(f"{folder} has no {PLBART_FILE}: tokenizer class {class_name} reads it")
    codes = config.get("language_codes") or "base"
    if codes not in PLBART_LANGUAGE_CODES:
        raise TokenizerFileError(
            f"{folder / 'tokenizer_config.json'}: language_codes {codes!r} is not one of {sorted(PLBART_LANGUAGE_CODES)}"
        )
    model = spm.load_model(path)
    if model.trainer_spec.model_type != spm.UNIGRAM:
        raise TokenizerFileError(f"SentencePiece model {path} is BPE; {class_name} expects a unigram model")
    if [p.type for p in model.pieces[:3]] != [spm.UNKNOWN, spm.CONTROL, spm.CONTROL]:
        raise TokenizerFileError(
            f"SentencePiece model {path} does not start with <unk> <s> </s>: fairseq's id layout does not apply"
        )
    vocab = [(t, 0.0) for t in ("<s>", "<pad>", "</s>", "<unk>")]
    vocab += [(p.piece, p.score) for p in model.pieces[3:]]
    vocab += [(code, 0.0) for code in PLBART_LANGUAGE_CODES[codes]]
    if codes == "base":
        vocab.append((token_content(config.get("mask_token")) or "<mask>", 0.0))
    extras = list(PLBART_LANGUAGE_CODES[codes])
    for token in config.get("extra_special_tokens") or []:
        if token_content(token) not in extras:
            extras.append(token)
    config["extra_special_tokens"] = extras
    config.setdefault("clean_up_tokenization_spaces", True)
    if codes == "multi":
        # the multi vocabulary has no <mask>: Transformers gives it the unknown token's id, which one
        # vocabulary cannot express; we leave the mask token unset (a known difference)
        config["mask_token"] = None
    config.setdefault("mask_token", {"content": "<mask>", "lstrip": True, "rstrip": False, "special": True,
                                     "normalized": False, "single_word": False})
    try:
        backend = RustTokenizer(Unigram(vocab, unk_id=3, byte_fallback=False))
        stages = _generic(model, {})
    except Exception as e:  # the Rust constructors raise bare Exceptions
        raise TokenizerFileError(f"Cannot build a tokenizer from SentencePiece model {path}: {e}") from e
    backend.normalizer = stages.normalizer
    backend.pre_tokenizer = stages.pre_tokenizer
    # Transformers joins the tokens, turns the metaspace into spaces and strips the ends
    from tokenizers import Regex

    from keras_models.tokenizers.python_bpe import PY_WHITESPACE

    backend.decoder = decoders.Sequence([
        decoders.Replace("\u2581", " "),
        decoders.Fuse(),
        decoders.Replace(Regex(f"\\A[{PY_WHITESPACE}]+|[{PY_WHITESPACE}]+\\z"), ""),
    ])
    return backend


def lang_suffix_processor(tok, lang_token):
    """``A </s> [lang]`` and ``A B </s> [lang]`` (PLBart; no language token when it is None)."""
    eos = tok.eos_token
    specials = [(eos, tok.eos_token_id)]
    tail = f"{eos}:0"
    if lang_token is not None:
        specials.append((lang_token, tok.backend_tokenizer.token_to_id(lang_token)))
        tail += f" {lang_token}:0"
    return processors.TemplateProcessing(single=f"$A:0 {tail}", pair=f"$A:0 $B:0 {tail}", special_tokens=specials)


def finish_plbart(tok, folder: Path):
    from tokenizers import Tokenizer as Rust

    config = tok.init_config
    codes = config.get("language_codes") or "base"

    def language(key, default):
        lang = plbart_language(config.get(key)) or default
        if lang is not None and lang not in PLBART_LANGUAGE_CODES[codes]:
            raise ValueError(f"{key}={config.get(key)!r} is not a language of language_codes {codes!r}")
        return lang

    default = None if codes == "base" else "__en_XX__"
    tok.backend_tokenizer.post_processor = lang_suffix_processor(tok, language("src_lang", default))
    target = type(tok)(Rust.from_str(tok.backend_tokenizer.to_str()), dict(config), class_name=tok.class_name)
    target.backend_tokenizer.post_processor = lang_suffix_processor(target, language("tgt_lang", None))
    tok.target_tokenizer = target
    tok.source_files = {PLBART_FILE: folder / PLBART_FILE}


def marian_decoder(special_tokens):
    return spm_groups_decoder(special_tokens, " ")


def spm_groups_decoder(special_tokens, after_special: str):
    """Transformers' decoding for Marian / M2M100: the pieces between special tokens are decoded by
    SentencePiece (dummy-prefix space dropped), each special token is followed by ``after_special``
    (a space for Marian), the ends are stripped."""
    import re

    from tokenizers import Regex, decoders

    from keras_models.tokenizers.python_bpe import PY_WHITESPACE

    steps = [decoders.Fuse(), decoders.Replace(Regex("\\A\u2581"), "")]
    for token in sorted(special_tokens, key=len, reverse=True):
        steps.append(decoders.Replace(Regex(re.escape(token) + "\u2581?"), token + after_special))
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
    config.pop("_marian_language_codes", None)
    tok.derived_added_tokens = tuple(tok.init_config.pop("_marian_language_codes", ()))
    target.init_config.pop("_marian_language_codes", None)

"""Per-family normalizer / pre-tokenizer / decoder, as Transformers' tokenizer classes assemble them.

Transformers 5 rebuilds these three stages from the class and ``tokenizer_config.json`` even when a
``tokenizer.json`` is present (only the vocabulary, merges and, for some classes, the
post-processor come from the file), so we do the same to return the same ids.
"""

from __future__ import annotations

import base64
import functools

from tokenizers import Regex
from tokenizers import decoders, normalizers, pre_tokenizers

from keras_models.tokenizers import _classes

# Qwen2's pre-tokenization pattern (GPT-4 style, one digit per token)
QWEN2_PATTERN = (
    r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+"""
    r"""|\s+(?!\S)|\s+"""
)


def precompiled_charsmap(tokenizer_json: dict) -> bytes | None:
    """The SentencePiece character map inside a tokenizer.json normalizer, if any."""
    norm = tokenizer_json.get("normalizer") or {}
    items = norm.get("normalizers", []) if norm.get("type") == "Sequence" else [norm]
    for item in items:
        if isinstance(item, dict) and item.get("type") == "Precompiled" and item.get("precompiled_charsmap"):
            return base64.b64decode(item["precompiled_charsmap"])
    return None


def _metaspace(backend, scheme, split=True):
    backend.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Metaspace(replacement="▁", prepend_scheme=scheme, split=split)]
    )
    backend.decoder = decoders.Metaspace(replacement="▁", prepend_scheme=scheme, split=split)


def _add_prefix_space(config, default):
    value = config.get("add_prefix_space")
    return default if value is None else bool(value)


# Python's str.lower() turns a capital sigma ending a word into a final sigma (Unicode's Final_Sigma
# context); the Rust lower-casing maps every capital sigma to the medial one
FINAL_SIGMA = r"(?<=\p{Cased}\p{Case_Ignorable}*)\x{3A3}(?!\p{Case_Ignorable}*\p{Cased})"
# the code points Transformers' python BERT basic tokenizer puts spaces around ("Chinese characters")
_CJK_RANGES = (
    (0x4E00, 0x9FFF), (0x3400, 0x4DBF), (0x20000, 0x2A6DF), (0x2A700, 0x2B73F), (0x2B740, 0x2B81F),
    (0x2B820, 0x2CEAF), (0xF900, 0xFAFF), (0x2F800, 0x2FA1F),
)


def _char_class(ranges) -> str:
    return "[" + "".join(f"\\x{{{a:x}}}" + (f"-\\x{{{b:x}}}" if b > a else "") for a, b in ranges) + "]"


@functools.lru_cache(maxsize=None)
def python_char_classes() -> dict[str, str]:
    """Regex classes of the characters Transformers' python BERT basic tokenizer tests with Python's
    own ``unicodedata`` (whose Unicode version the Rust BERT normalizer's tables do not follow):
    ``control`` (dropped: categories C*, NUL, U+FFFD; not tab / newline / return), ``space`` (made a
    space: Zs, tab, newline, return), ``punct`` (split off: P* and ASCII symbols), ``mn`` (stripped with
    the accents), ``cjk`` (split off when tokenize_chinese_chars)."""
    import itertools
    import unicodedata

    cats = [unicodedata.category(chr(cp)) for cp in range(0x110000)]
    # the class's own exceptions, as categories: tab / newline / return are spaces, not controls; U+FFFD
    # is dropped; ASCII symbols count as punctuation; surrogates never reach the tokenizer
    for cp in (9, 10, 13):
        cats[cp] = "Zs"
    cats[0xFFFD] = "Cc"
    for cp in (*range(33, 48), *range(58, 65), *range(91, 97), *range(123, 127)):
        cats[cp] = "Po"
    cats[0xD800:0xE000] = ["surrogate"] * 0x800
    tests = {
        "control": lambda cat: cat[0] == "C",
        "space": lambda cat: cat == "Zs",
        "punct": lambda cat: cat[0] == "P",
        "mn": lambda cat: cat == "Mn",
    }
    ranges = {name: [] for name in tests}
    cp = 0
    for cat, run in itertools.groupby(cats):
        end = cp + sum(1 for _ in run)
        for name, test in tests.items():
            if test(cat):
                spans = ranges[name]
                if spans and spans[-1][1] == cp - 1:
                    spans[-1] = (spans[-1][0], end - 1)
                else:
                    spans.append((cp, end - 1))
        cp = end
    classes = {name: _char_class(spans) for name, spans in ranges.items()}
    classes["cjk"] = _char_class(_CJK_RANGES)
    return classes


def prophetnet(backend, config: dict, charsmap: bytes | None = None):
    """Transformers' python-only ProphetNetTokenizer: its own BERT basic tokenizer (control characters
    dropped, spaces normalised, NFC, then lower-casing with Python's final sigma and accent stripping;
    words split on spaces, punctuation and Chinese characters), WordPiece, and a decoder that only joins
    "##" pieces (its clean-up is the generic one, applied by the Tokenizer). Character classes come from
    Python's unicodedata, as the class reads them."""
    lowercase = bool(config.get("do_lower_case", True))
    strip_accents = config.get("strip_accents")
    strip = lowercase if strip_accents is None else bool(strip_accents)
    if config.get("do_basic_tokenize", True):
        chars = python_char_classes()
        steps = [
            normalizers.Replace(Regex(chars["control"]), ""),
            normalizers.Replace(Regex(chars["space"]), " "),
            normalizers.NFC(),
        ]
        if lowercase:
            steps += [normalizers.Replace(Regex(FINAL_SIGMA), "\u03c2"), normalizers.Lowercase()]
        if strip:
            steps += [normalizers.NFD(), normalizers.Replace(Regex(chars["mn"]), "")]
        backend.normalizer = normalizers.Sequence(steps)
        splits = [pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Split(Regex(chars["punct"]), behavior="isolated")]
        if config.get("tokenize_chinese_chars", True):
            splits.append(pre_tokenizers.Split(Regex(chars["cjk"]), behavior="isolated"))
        backend.pre_tokenizer = pre_tokenizers.Sequence(splits)
    else:  # WordPiece straight on the text split as Python's str.split() splits it
        from keras_models.tokenizers.python_bpe import PY_WHITESPACE

        backend.normalizer = None
        backend.pre_tokenizer = pre_tokenizers.Split(Regex(f"[{PY_WHITESPACE}]+"), behavior="removed")
    backend.decoder = decoders.WordPiece(prefix="##", cleanup=False)


# The pipelines, named by the families' ``pipeline`` field in _classes.FAMILIES:
# fn(backend, config, charsmap) sets the normalizer, pre-tokenizer and decoder
def wordpiece(backend, config: dict, charsmap: bytes | None = None):
    backend.normalizer = normalizers.BertNormalizer(
        clean_text=True,
        handle_chinese_chars=config.get("tokenize_chinese_chars", True),
        strip_accents=config.get("strip_accents"),
        lowercase=config.get("do_lower_case", True),
    )
    backend.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    backend.decoder = decoders.WordPiece(prefix="##")


def herbert(backend, config: dict, charsmap: bytes | None = None):
    """Fixed by the class: no lower-casing or accent stripping."""
    backend.normalizer = normalizers.BertNormalizer(
        clean_text=True, handle_chinese_chars=True, strip_accents=False, lowercase=False
    )
    backend.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    backend.decoder = decoders.BPEDecoder(suffix="</w>")


def byte_level(backend, config: dict, charsmap: bytes | None = None):  # GPT-2, RoBERTa
    backend.normalizer = None
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=_add_prefix_space(config, False))
    backend.decoder = decoders.ByteLevel()


def gpt_neox(backend, config: dict, charsmap: bytes | None = None):
    backend.normalizer = normalizers.NFC()
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(
        add_prefix_space=_add_prefix_space(config, False), trim_offsets=bool(config.get("trim_offsets", True))
    )
    backend.decoder = decoders.ByteLevel()


def qwen2(backend, config: dict, charsmap: bytes | None = None):
    backend.normalizer = normalizers.NFC()
    backend.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(QWEN2_PATTERN), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=_add_prefix_space(config, False), use_regex=False),
        ]
    )
    backend.decoder = decoders.ByteLevel()


def t5(backend, config: dict, charsmap: bytes | None = None):
    backend.normalizer = normalizers.Precompiled(charsmap) if charsmap else None
    _metaspace(backend, "always")


def xlm_roberta(backend, config: dict, charsmap: bytes | None = None):
    backend.normalizer = normalizers.Precompiled(charsmap) if charsmap else None
    _metaspace(backend, "always" if _add_prefix_space(config, True) else "never")


def albert(backend, config: dict, charsmap: bytes | None = None):
    steps = [normalizers.Replace("``", '"'), normalizers.Replace("''", '"')]
    if not config.get("keep_accents", False):
        steps += [normalizers.NFKD(), normalizers.StripAccents()]
    if config.get("do_lower_case", True):
        steps.append(normalizers.Lowercase())
    if charsmap:
        steps.append(normalizers.Precompiled(charsmap))
    backend.normalizer = normalizers.Sequence(steps)
    scheme = "always" if _add_prefix_space(config, True) else "never"
    backend.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Metaspace(replacement="▁", prepend_scheme=scheme)]
    )
    backend.decoder = decoders.Metaspace(replacement="▁", prepend_scheme=scheme)


def llama(backend, config: dict, charsmap: bytes | None = None):
    add_prefix_space = _add_prefix_space(config, True)
    legacy = bool(config.get("legacy", False))
    scheme = ("always" if legacy else "first") if add_prefix_space else "never"
    backend.normalizer = None
    backend.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme=scheme, split=False)
    steps = [decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse()]
    if add_prefix_space:
        steps.append(decoders.Strip(content=" ", left=1))
    backend.decoder = decoders.Sequence(steps)


def gemma(backend, config: dict, charsmap: bytes | None = None):
    backend.normalizer = normalizers.Replace(" ", "▁")
    backend.pre_tokenizer = pre_tokenizers.Split(pattern=" ", behavior="merged_with_previous", invert=False)
    backend.decoder = decoders.Sequence([decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse()])


def mbart50(backend, config: dict, charsmap: bytes | None = None):
    """MBart50Tokenizer: the model's character map, trailing spaces stripped, runs of spaces made one."""
    steps = [normalizers.Precompiled(charsmap)] if charsmap else []
    steps += [normalizers.Strip(left=False, right=True), normalizers.Replace(Regex(r" {2,}"), " ")]
    backend.normalizer = normalizers.Sequence(steps)
    backend.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always", split=True)
    backend.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always", split=True)


def barthez(backend, config: dict, charsmap: bytes | None = None):
    """BarthezTokenizer: with the model's character map, trailing spaces stripped and runs of spaces
    made one "▁"; without one, whitespace runs made one space, NFC, trailing spaces stripped."""
    if charsmap:
        steps = [normalizers.Precompiled(charsmap), normalizers.Strip(left=False, right=True),
                 normalizers.Replace(Regex(r" {2,}"), "▁")]
    else:
        steps = [normalizers.Replace(Regex(r"\s{2,}|[\n\r\t]"), " "), normalizers.NFC(),
                 normalizers.Strip(left=False, right=True)]
    backend.normalizer = normalizers.Sequence(steps)
    scheme = "always" if _add_prefix_space(config, True) else "never"
    backend.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme=scheme)
    backend.decoder = decoders.Metaspace(replacement="▁", prepend_scheme=scheme)


def apply_family_pipeline(backend, family: str, config: dict, charsmap: bytes | None = None) -> bool:
    """Set the stages of ``family`` on ``backend``; False when the family is not one we rebuild."""
    spec = _classes.FAMILIES.get(family)
    if spec is None or spec.pipeline is None:
        return False
    _classes.resolve(spec.pipeline)(backend, config, charsmap)
    return True

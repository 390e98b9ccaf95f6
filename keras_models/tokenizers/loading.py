"""Read a checkpoint folder's tokenizer files and build a :class:`Tokenizer`.

Formats, in the order they are looked for:
  * ``tokenizer.json`` (a serialized Rust tokenizer), with tokenizer_config.json,
    special_tokens_map.json and added_tokens.json;
  * WordPiece ``vocab.txt`` (old BERT repositories);
  * byte-level BPE ``vocab.json`` + ``merges.txt`` (GPT-2 / RoBERTa style);
  * a SentencePiece ``.model`` (unigram or BPE), converted by :mod:`spm_convert`.
Python-only Transformers classes read their own files first: fastBPE ``vocab.txt`` + ``bpe.codes``
(BERTweet, PhoBERT), ``sentencepiece.bpe.model`` + ``dict.txt`` (BARTpho), ``vocab.json`` +
``merges.txt`` with "@@" pieces (BlenderbotSmall), a WordPiece ``prophetnet.tokenizer``
(ProphetNet), and none at all (ByT5).
"""

from __future__ import annotations

import json
from pathlib import Path

from tokenizers import Tokenizer as RustTokenizer

from keras_models.errors import KerasModelsError, PresetError, TokenizerFileError
from keras_models.tokenizers import _classes
from keras_models.tokenizers._special import to_added_token
from keras_models.tokenizers.files import read_text
from keras_models.tokenizers.pipelines import apply_family_pipeline, precompiled_charsmap

SPM_FILE_NAMES = ("tokenizer.model", "spiece.model", "sentencepiece.bpe.model", "sentencepiece.model")


def read_json(path: Path, what: str = "JSON file"):
    text = read_text(path, what)
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise TokenizerFileError(f"{what} {path} is not valid JSON: {e}") from e


# tokenizer_config.json switches that Transformers reads as booleans
BOOL_KEYS = ("do_lower_case", "strip_accents", "tokenize_chinese_chars", "handle_chinese_chars",
             "clean_up_tokenization_spaces", "add_prefix_space", "add_bos_token", "add_eos_token", "legacy",
             "split_special_tokens", "do_basic_tokenize", "trim_offsets", "use_default_system_prompt")


def _check_config_types(config: dict, path: Path):
    def bad(key, expected):
        raise TokenizerFileError(f"tokenizer config {path}: {key!r} must be {expected}, got {config[key]!r}")

    if config.get("model_max_length") is not None and (
        isinstance(config["model_max_length"], bool) or not isinstance(config["model_max_length"], (int, float))
        or not config["model_max_length"] == config["model_max_length"] or config["model_max_length"] in (float("inf"), float("-inf"))
    ):
        bad("model_max_length", "a finite number")
    for key in ("padding_side", "truncation_side"):
        if config.get(key) is not None and config[key] not in ("left", "right"):
            bad(key, "'left' or 'right'")
    if config.get("model_input_names") is not None and not (
        isinstance(config["model_input_names"], list) and all(isinstance(n, str) for n in config["model_input_names"])
    ):
        bad("model_input_names", "a list of strings")
    for key in BOOL_KEYS:
        if config.get(key) is not None and not isinstance(config[key], bool):
            bad(key, "true, false or null")
    for key in _classes.SPECIAL_TOKEN_KEYS:
        value = config.get(key)
        if value is not None and not isinstance(value, (str, dict)):
            bad(key, "a string or an AddedToken object")
        if isinstance(value, dict) and not isinstance(value.get("content"), str):
            bad(key, "an AddedToken object with a string 'content'")


def read_tokenizer_config(folder: Path) -> dict:
    """tokenizer_config.json merged with the legacy special_tokens_map.json / added_tokens.json."""
    path = folder / "tokenizer_config.json"
    config = read_json(path, "tokenizer config") if path.is_file() else {}
    if not isinstance(config, dict):
        raise TokenizerFileError(f"tokenizer config {path} must hold a JSON object, got {type(config).__name__}")
    _check_config_types(config, path)
    if "additional_special_tokens" in config and not config.get("extra_special_tokens"):
        config["extra_special_tokens"] = config.pop("additional_special_tokens")
    if "added_tokens_decoder" not in config:
        smap_path = folder / "special_tokens_map.json"
        if smap_path.is_file():
            smap = read_json(smap_path, "special tokens map")
            if not isinstance(smap, dict):
                raise TokenizerFileError(f"special tokens map {smap_path} must hold a JSON object")
            for key, value in smap.items():
                if key == "additional_special_tokens":
                    key = "extra_special_tokens"
                if key == "extra_special_tokens" and isinstance(value, list):
                    merged = list(config.get("extra_special_tokens") or [])
                    merged += [v for v in value if v not in merged]
                    value = merged
                config[key] = value
    # tokenizer.json's own post-processor wins over add_bos/eos flags, as in Transformers
    added_path = folder / "added_tokens.json"
    if added_path.is_file():
        added = read_json(added_path, "added tokens file")
        if not isinstance(added, dict):
            raise TokenizerFileError(f"added tokens file {added_path} must map token -> id")
        config["_legacy_added_tokens"] = added
    # chat templates: separate files take priority over the config entry
    templates = {}
    jinja = folder / "chat_template.jinja"
    if jinja.is_file():
        templates["default"] = read_text(jinja, "chat template")
    elif (folder / "chat_template.json").is_file():
        data = read_json(folder / "chat_template.json", "chat template file")
        if isinstance(data, dict) and "chat_template" in data:
            templates["default"] = data["chat_template"]
    extra_dir = folder / "additional_chat_templates"
    if extra_dir.is_dir():
        for f in sorted(extra_dir.glob("*.jinja")):
            templates[f.stem] = read_text(f, "chat template")
    if len(templates) == 1 and "default" in templates:
        config["chat_template"] = templates["default"]
    elif templates:
        config["chat_template"] = templates
    return config


def _model_type(folder: Path) -> str | None:
    path = folder / "config.json"
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data.get("model_type") if isinstance(data, dict) else None


def _class_name(folder: Path, config: dict) -> str:
    name = _classes.normalise_class_name(config.get("tokenizer_class"))
    if name:
        return name
    return _classes.MODEL_TYPE_TO_CLASS.get(_model_type(folder) or "", "TokenizersBackend")


def _load_tokenizer_json(path: Path) -> tuple[RustTokenizer, dict]:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise TokenizerFileError(f"Cannot read tokenizer file {path}: {e}") from e
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise TokenizerFileError(f"Tokenizer file {path} is not valid JSON: {e}") from e
    if not isinstance(data, dict) or not isinstance(data.get("model"), dict):
        raise TokenizerFileError(f"Tokenizer file {path} has no 'model' object: not a `tokenizers` serialization")
    try:
        return RustTokenizer.from_str(text), data
    except Exception as e:  # the Rust deserializer raises a bare Exception
        raise TokenizerFileError(f"Tokenizer file {path} is not a valid `tokenizers` serialization: {e}") from e


def _add_config_tokens(backend: RustTokenizer, config: dict, source: Path, raw_text: bool = False):
    """Tokens that tokenizer_config.json (added_tokens_decoder) or added_tokens.json list, in id order.
    ``raw_text``: every one is matched on the text as written (not normalized), whatever its flag says,
    as Transformers' python-only classes that normalize inside their own tokenization match them."""
    entries = {}
    for idx, token in (config.get("added_tokens_decoder") or {}).items():
        entries[int(idx)] = token
    if not entries:
        special = {
            str(v.get("content") if isinstance(v, dict) else v)
            for k, v in config.items()
            if k in _classes.SPECIAL_TOKEN_KEYS and v is not None
        }
        for content, idx in (config.get("_legacy_added_tokens") or {}).items():
            is_special = content in special
            entries[int(idx)] = {"content": content, "special": is_special, "normalized": not is_special}
    for idx in sorted(entries):
        token = entries[idx]
        content = token["content"] if isinstance(token, dict) else str(token)
        existing = backend.token_to_id(content)
        special = bool(token.get("special", False)) if isinstance(token, dict) else False
        if raw_text and isinstance(token, dict):
            token = {**token, "normalized": False}
        added = to_added_token(token if isinstance(token, dict) else content, special=special)
        if special:
            backend.add_special_tokens([added])
        else:
            backend.add_tokens([added])
        got = backend.token_to_id(content)
        if existing is None and got != idx:
            raise TokenizerFileError(
                f"Added token {content!r} should have id {idx} (from {source}) but the vocabulary gives it "
                f"id {got}: the added tokens are not contiguous with the vocabulary"
            )


# Loaders of python-only classes, named by the families' ``loader`` field in _classes.FAMILIES
def fastbpe_backend(folder: Path, config: dict, class_name: str, info: dict) -> RustTokenizer:
    from keras_models.tokenizers.python_bpe import fastbpe_backend as build

    for name in ("vocab.txt", "bpe.codes"):
        if not (folder / name).is_file():
            raise TokenizerFileError(
                f"{folder} has no {name}: tokenizer class {class_name} reads a fastBPE vocab.txt + bpe.codes "
                "(or a tokenizer.json)"
            )
    if config.get("normalization"):
        raise TokenizerFileError(
            f"{folder / 'tokenizer_config.json'} sets normalization=True: {class_name}'s tweet normalisation "
            "(TweetTokenizer + emoji demojizing) is not supported; load with normalization=False"
        )
    return build(folder / "vocab.txt", folder / "bpe.codes", config, info)


def prophetnet_backend(folder: Path, config: dict, class_name: str, info: dict) -> RustTokenizer:
    from keras_models.tokenizers.builders import wordpiece_from_vocab_txt

    name = _classes.FAMILIES[info["family"]].source
    if not (folder / name).is_file():
        raise TokenizerFileError(
            f"{folder} has no {name}: tokenizer class {class_name} reads its WordPiece vocabulary from that file"
        )
    if config.get("never_split"):
        raise TokenizerFileError(
            f"{folder / 'tokenizer_config.json'} sets never_split={config['never_split']!r}: {class_name}'s "
            "never-split words (kept whole, not lower-cased) are not supported; list them as added tokens instead"
        )
    for key, value in info.get("config_defaults", {}).items():
        config.setdefault(key, value)
    return wordpiece_from_vocab_txt(folder / name, config, info, family=info["family"])


def _own_files(folder: Path, class_name: str, info: dict) -> list[Path]:
    """The paths of the files the class's family reads, each checked to exist."""
    files = _classes.FAMILIES[info["family"]].files
    for name in files:
        if not (folder / name).is_file():
            raise TokenizerFileError(
                f"{folder} has no {name}: tokenizer class {class_name} reads {' + '.join(files)}"
            )
    return [folder / name for name in files]


def bartpho_backend(folder: Path, config: dict, class_name: str, info: dict) -> RustTokenizer:
    from keras_models.tokenizers.python_bpe import bartpho_backend as build

    return build(*_own_files(folder, class_name, info), config, info)


def blenderbot_small_backend(folder: Path, config: dict, class_name: str, info: dict) -> RustTokenizer:
    from keras_models.tokenizers.python_bpe import blenderbot_small_backend as build

    return build(*_own_files(folder, class_name, info), config, info)


def build_backend(folder: Path, config: dict, class_name: str) -> tuple[RustTokenizer, str]:
    """Return the Rust tokenizer for the folder and the name of the file it came from."""
    info = _classes.class_info(class_name)
    family = info.get("family")
    spec = _classes.FAMILIES[family]
    if spec.loader is not None:  # a python-only class in Transformers: it reads its own files, not tokenizer.json
        backend = _classes.resolve(spec.loader)(folder, config, class_name, info)
        raw_text = info.get("raw_added_tokens", False)
        _add_config_tokens(backend, config, folder / "tokenizer_config.json", raw_text=raw_text)
        return backend, spec.source
    tokenizer_json = folder / "tokenizer.json"
    if tokenizer_json.is_file():
        backend, data = _load_tokenizer_json(tokenizer_json)
        # Transformers' class rebuilds these stages from its own rules and tokenizer_config.json
        apply_family_pipeline(backend, family, config, precompiled_charsmap(data))
        return backend, "tokenizer.json"
    known = _classes.normalise_class_name(class_name) in _classes.CLASSES
    if (folder / "vocab.txt").is_file() and (spec.vocab_txt or (family is None and not known)):
        if not spec.vocab_txt:
            raise TokenizerFileError(
                f"{folder} has only vocab.txt, and tokenizer class {class_name} is not a WordPiece class we can "
                "rebuild (BERT, DistilBERT, ELECTRA): a tokenizer.json is needed"
            )
        from keras_models.tokenizers.builders import wordpiece_from_vocab_txt

        backend = wordpiece_from_vocab_txt(folder / "vocab.txt", config, info)
        _add_config_tokens(backend, config, folder / "tokenizer_config.json")
        return backend, "vocab.txt"
    if (folder / "vocab.json").is_file() and (folder / "merges.txt").is_file():
        from keras_models.tokenizers.builders import byte_level_bpe, word_end_bpe

        if spec.word_end_bpe:
            backend = word_end_bpe(folder / "vocab.json", folder / "merges.txt", config, info)
        else:  # refused unless the family is byte-level
            backend = byte_level_bpe(folder / "vocab.json", folder / "merges.txt", config, class_name, family)
        _add_config_tokens(backend, config, folder / "tokenizer_config.json")
        return backend, "vocab.json"
    for name in SPM_FILE_NAMES + tuple(sorted(p.name for p in folder.glob("*.model"))):
        if (folder / name).is_file():
            from keras_models.tokenizers.spm_convert import sentencepiece_backend

            backend = sentencepiece_backend(folder / name, config, class_name)
            _add_config_tokens(backend, config, folder / "tokenizer_config.json")
            return backend, name
    raise PresetError(
        f"No tokenizer files in {folder}: expected tokenizer.json, vocab.txt, vocab.json + merges.txt, "
        f"or a SentencePiece .model file"
    )


def load_tokenizer(preset, cls=None, **overrides):
    from keras_models.presets.resolve import resolve_preset

    folder = Path(resolve_preset(preset))
    try:
        return _load_tokenizer(folder, cls, overrides)
    except KerasModelsError:
        raise
    except (TypeError, AttributeError, KeyError, IndexError) as e:
        # a value of the wrong type in the files that a later step (post-processor, specials) trips
        # on; our own ValueErrors (a bad src_lang=...) and ImportErrors (a missing optional
        # package) keep their types
        raise TokenizerFileError(
            f"{folder}: the tokenizer files (tokenizer.json / tokenizer_config.json / special_tokens_map.json) "
            f"hold values the tokenizer cannot use: {type(e).__name__}: {e}") from e
    except Exception as e:
        if type(e) is not Exception:  # the Rust library raises plain Exception
            raise
        raise TokenizerFileError(
            f"{folder}: the tokenizer files (tokenizer.json / tokenizer_config.json / special_tokens_map.json) "
            f"hold values the tokenizer cannot use: {type(e).__name__}: {e}") from e


# Transformers classes whose inputs are not text (TAPAS: a table plus queries; Pop2Piano: MIDI notes):
# ``Tokenizer.from_preset`` returns the class that takes them, as AutoTokenizer does
_OWN_CLASSES = {"TapasTokenizer": ("keras_models.models.tapas.tokenizer", "TapasTokenizer"),
                "VitsTokenizer": ("keras_models.models.vits.tokenizer", "VitsTokenizer"),
                "Pop2PianoTokenizer": ("keras_models.models.pop2piano.tokenizer", "Pop2PianoTokenizer"),
                "GPTSanJapaneseTokenizer": ("keras_models.models.gptsan_japanese.tokenizer", "GPTSanJapaneseTokenizer"),
                "ClvpTokenizer": ("keras_models.models.clvp.tokenizer", "ClvpTokenizer"),
                "FastSpeech2ConformerTokenizer": ("keras_models.models.fastspeech2_conformer.tokenizer",
                                                  "FastSpeech2ConformerTokenizer"),
                "CpmTokenizer": ("keras_models.tokenizers.cpm", "CpmTokenizer"),
                "CpmAntTokenizer": ("keras_models.tokenizers.cpm", "CpmAntTokenizer")}

# Transformers tokenizer classes this library does not implement, and why (a folder holding only
# their own files would otherwise fail with a generic "no tokenizer files" error)
_NOT_IMPLEMENTED = {
    "TransfoXLTokenizer": "its vocabulary is a pickle (vocab.pkl), and keras_models never loads pickles",
}


def _load_tokenizer(folder, cls, overrides):
    from keras_models.tokenizers.tokenizer import Tokenizer

    cls = cls or Tokenizer
    config = read_tokenizer_config(folder)
    config.update(overrides)
    class_name = _class_name(folder, config)
    if class_name in _NOT_IMPLEMENTED and not (folder / "tokenizer.json").is_file():
        raise TokenizerFileError(f"{folder}: {class_name} is not supported: {_NOT_IMPLEMENTED[class_name]}")
    if class_name in _OWN_CLASSES and cls is Tokenizer:
        import importlib

        module, name = _OWN_CLASSES[class_name]
        if overrides:
            raise TypeError(f"{class_name}.from_preset takes no keyword overrides (got {sorted(overrides)})")
        return getattr(importlib.import_module(module), name).from_preset(folder)
    backend, source = build_backend(folder, config, class_name)
    if source == "tokenizer.json":
        # as in Transformers: tokenizer.json's own post-processor decides about bos / eos
        config.pop("add_bos_token", None)
        config.pop("add_eos_token", None)
    config.setdefault("name_or_path", str(folder))
    config.pop("_legacy_added_tokens", None)
    python_pre_tokenizer = config.pop("_python_pre_tokenizer", None)
    target_backend = config.pop("_target_backend", None)
    python_decoder = config.pop("_python_decoder", None)
    tok = cls(backend, config, class_name=class_name)
    tok.python_pre_tokenizer = python_pre_tokenizer
    if python_decoder is not None:
        tok.python_decoder = python_decoder
    tok.source_format = source
    # the SentencePiece model beside tokenizer.json (T5, ALBERT, XLM-R): kept as bytes, unused for
    # tokenization, for the raw-string SavedModel export (tensorflow_text runs the proto itself)
    spm_file = next((n for n in SPM_FILE_NAMES if (folder / n).is_file()), None)
    if spm_file is not None:
        tok.sentencepiece_file = spm_file
        tok.sentencepiece_proto = (folder / spm_file).read_bytes()
    info = _classes.class_info(class_name)
    spec = _classes.FAMILIES[info.get("family")]
    if spec.loader is not None and spec.files is not None:  # save_to_preset copies these back
        tok.source_files = {name: folder / name for name in spec.files}
    elif source == "vocab.json" and info.get("source_files"):  # TAPEX: rebuilt from its vocab.json + merges.txt
        tok.source_files = {name: folder / name for name in info["source_files"]}
    if target_backend is not None:  # text_target= is tokenized by a second pipeline (Marian's target.spm)
        from keras_models.tokenizers.translation import attach_target

        attach_target(tok, target_backend, config, folder)
        return tok
    if spec.finish is not None:  # the class's own post-processing (FSMT, M2M100, PLBart)
        _classes.resolve(spec.finish)(tok, folder)
        return tok
    from keras_models.tokenizers.builders import bos_eos_template, set_post_processor

    if source != "tokenizer.json" or spec.class_post_processor:
        set_post_processor(tok, config)
    elif backend.post_processor is None:
        backend.post_processor = bos_eos_template(tok, False, False)
    return tok

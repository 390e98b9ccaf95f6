"""Write a Tokenizer as a Hugging Face tokenizer folder (tokenizer.json + tokenizer_config.json)."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

from keras_models.tokenizers._classes import SPECIAL_TOKEN_KEYS

# Keys of the loaded config that describe the original files or that we regenerate.
_DROPPED = {
    "name_or_path",
    "chat_template",
    "added_tokens_decoder",
    "additional_special_tokens",
    "extra_special_tokens",
    "tokenizer_file",
    "vocab_file",
    "merges_file",
    "auto_map",
    "is_local",
    "local_files_only",
    "files_loaded",
    "add_bos_token",
    "add_eos_token",
}


def _atomic_write(path: Path, text: str):
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(tmp, path)


def tokenizer_config_dict(tok) -> dict:
    config = {k: v for k, v in tok.init_config.items() if k not in _DROPPED and not k.startswith("_")}
    for key in SPECIAL_TOKEN_KEYS:
        config[key] = tok._special.get(key)
    if tok._extra_special:
        config["extra_special_tokens"] = list(tok._extra_special)
    for key, value in tok.named_extra_tokens.items():
        config[key] = value
    # The pipeline in tokenizer.json is already the one the original class builds. Naming the generic
    # class makes Transformers (4.x and 5.x) and us load it as written: Transformers 5 rebuilds some
    # classes' stages and post-processor from flags it does not reload (e.g. add_bos_token).
    config["tokenizer_class"] = "PreTrainedTokenizerFast"
    config["keras_models_source_class"] = tok.init_config.get("keras_models_source_class") or tok.class_name
    config["model_max_length"] = tok.model_max_length
    config["padding_side"] = tok.padding_side
    config["truncation_side"] = tok.truncation_side
    config["model_input_names"] = list(tok.model_input_names)
    config["clean_up_tokenization_spaces"] = tok.clean_up_tokenization_spaces
    config["split_special_tokens"] = tok.split_special_tokens
    decoder = tok.backend_tokenizer.get_added_tokens_decoder()
    # tokens the loader derives from the vocabulary files (Marian's language codes), not added tokens
    # for Transformers' class
    derived = getattr(tok, "derived_added_tokens", ())
    decoder = {i: t for i, t in decoder.items() if t.content not in derived}
    config["added_tokens_decoder"] = {
        str(i): {
            "content": t.content,
            "lstrip": t.lstrip,
            "normalized": t.normalized,
            "rstrip": t.rstrip,
            "single_word": t.single_word,
            "special": t.special,
        }
        for i, t in sorted(decoder.items())
    }
    return dict(sorted(config.items()))


def _save_source_files(tok, folder: Path) -> tuple[str, ...]:
    """Classes that Transformers has only in Python (BERTweet, PhoBERT): their own files, as they read
    them (our pipeline for them holds a Python pre-tokenizer, which tokenizer.json cannot hold)."""
    written = []
    for name, source in tok.source_files.items():
        path = folder / name
        if Path(source).resolve() != path.resolve():
            shutil.copyfile(source, path)
        written.append(str(path))
    config = tokenizer_config_dict(tok)
    config["tokenizer_class"] = tok.class_name
    config.pop("keras_models_source_class", None)
    path = folder / "tokenizer_config.json"
    _atomic_write(path, json.dumps(config, indent=2, ensure_ascii=False) + "\n")
    written.append(str(path))
    return tuple(written)


def save_tokenizer(tok, folder: Path) -> tuple[str, ...]:
    folder.mkdir(parents=True, exist_ok=True)
    if getattr(tok, "source_files", None) is not None:
        return _save_source_files(tok, folder)
    backend = tok.backend_tokenizer
    with tok._lock:
        backend.no_padding()
        backend.no_truncation()
        tok._state = (None, None)
        serialized = backend.to_str(pretty=True)
    written = []
    path = folder / "tokenizer.json"
    _atomic_write(path, serialized)
    written.append(str(path))
    path = folder / "tokenizer_config.json"
    _atomic_write(path, json.dumps(tokenizer_config_dict(tok), indent=2, ensure_ascii=False) + "\n")
    written.append(str(path))
    proto = getattr(tok, "sentencepiece_proto", None)
    if proto is not None:  # kept for the raw-string SavedModel export of a re-saved preset
        path = folder / tok.sentencepiece_file
        path.write_bytes(proto)
        written.append(str(path))
    template = tok.chat_template
    if isinstance(template, str):
        path = folder / "chat_template.jinja"
        _atomic_write(path, template)
        written.append(str(path))
    elif isinstance(template, dict):
        for name, text in template.items():
            if name == "default":
                path = folder / "chat_template.jinja"
            else:
                (folder / "additional_chat_templates").mkdir(exist_ok=True)
                path = folder / "additional_chat_templates" / f"{name}.jinja"
            _atomic_write(path, text)
            written.append(str(path))
    return tuple(written)

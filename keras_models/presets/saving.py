"""``save_to_preset``: write a model as a Hugging Face folder (config.json, model.safetensors,
tokenizer files) that both keras-models and transformers reload.

How a preset folder is replaced (``overwrite=True``) without losing data
------------------------------------------------------------------------
A save to ``<parent>/<name>`` deletes nothing before the new preset is complete and only ever
replaces entries this library wrote; a README, ``.git`` or any other file of the user stays.

1. Refuse targets whose replacement could destroy unrelated data (:class:`PresetError` naming the
   path and why): ``.``, ``..``, the working directory or any of its ancestors, an existing file, a
   symlink.
2. Recover earlier saves of the same target that died (their process is gone, or they failed in this
   process): they left sibling folders ``.<name>.kmsave-<pid>-<time>.new`` / ``.old``, which are
   rolled back or forward (step 7) and removed. Folders of a save still running are not touched.
3. Write the new preset into ``.<name>.kmsave-<pid>-<time>.new``, with ``.keras_models_manifest.json``
   listing its top-level entries. A target that does not exist yet is renamed into place in one step.
4. Decide which entries of the existing target are ours: those its manifest lists or, in a folder
   without one (an older keras-models, Transformers' ``save_pretrained``), the names a preset save
   writes (``PRESET_NAMES``, sharded weights); plus any entry the new preset would overwrite.
5. Create ``.<name>.kmsave-<pid>-<time>.old`` and write the journal ``.keras_models_swap.json`` in it:
   ``{"old": [...], "new": [...]}``. Nothing moves before the journal is complete.
6. Move the old entries into ``.old`` (config.json first), then the new entries from ``.new`` into the
   target (config.json last), one ``os.replace`` each. The save commits with the last move; ``.new``
   (now empty) is removed, then ``.old``.
7. Settling an interrupted save (steps 5-6): while ``.new`` still holds one of the journal's new
   entries it had not committed, and is rolled back (new entries back into ``.new``, then old entries
   back into the target); otherwise it had committed and ``.old`` is deleted. Each step is a rename
   that can be repeated, so a crash while settling is settled the same way. ``.old`` without a
   complete journal means nothing had moved.

An exception in steps 3-6 rolls back at once, so the target keeps the complete old preset. If the
process dies in step 6, the target has no config.json until the save is settled (moved out first, in
last), so a load fails instead of reading half a preset; the next ``save_to_preset`` on that target,
or :func:`recover_preset`, restores the complete old one. This protects against the process dying
(kill -9, exceptions), not against power loss (nothing is fsynced).
"""

import json
import logging
import os
import re
import shutil
import time
from pathlib import Path

from keras_models.errors import PresetError

logger = logging.getLogger("keras_models")

MANIFEST_NAME = ".keras_models_manifest.json"
_JOURNAL_NAME = ".keras_models_swap.json"
_TAG = ".kmsave-"
_TOKEN = re.compile(r"(\d+)-([0-9a-f]+)\.(new|old)")
_LEGACY_TMP = re.compile(r"\.tmp[a-z0-9_]{8}")  # keras-models <= 0.1.0: tempfile.mkdtemp(prefix=".<name>.tmp")
_LEGACY_PART = re.compile(r"model\.safetensors\w*\.tmp")  # save_file's temporary file

# Top-level names a preset save writes (config, weights, tokenizer files incl. every file a tokenizer
# loader reads (tasks/text.py TOKENIZER_FILES, special-token side files), generation and image
# preprocessor configs, sentence-transformers files): in a folder without a manifest these, and
# only these, are replaced.
PRESET_NAMES = frozenset({
    "config.json", "model.safetensors", "model.safetensors.index.json", "generation_config.json",
    "preprocessor_config.json", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
    "added_tokens.json", "chat_template.jinja", "chat_template.json", "additional_chat_templates",
    "vocab.txt", "vocab.json", "merges.txt", "spiece.model", "sentencepiece.bpe.model",
    "tokenizer.model", "prophetnet.tokenizer", "source.spm", "target.spm", "bpe.codes", "dict.txt",
    "vocab-src.json", "vocab-tgt.json", "modules.json", "sentence_bert_config.json", "1_Pooling",
    "keras_models_quantized.safetensors", "adapter_config.json", "adapter_model.safetensors", MANIFEST_NAME,
})
_SHARD = re.compile(r"model-\d+-of-\d+\.safetensors")

_active = set()  # tokens of the saves running in this process
_last_time = [0]


_SIZE = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([KMGT]?)(I?)B?\s*", re.I)


def parse_shard_size(size, what="max_shard_size"):
    """Bytes from an int or a string as Transformers spells it: ``"5GB"`` (10**9), ``"500MiB"``
    (2**20), ``"200KB"``, ``"1000"``."""
    if isinstance(size, bool):
        raise PresetError(f"{what} must be a number of bytes or a string like '5GB', got {size!r}")
    if isinstance(size, int):
        value = size
    else:
        m = _SIZE.fullmatch(str(size)) if isinstance(size, str) else None
        if m is None:
            raise PresetError(f"{what} must be a number of bytes or a string like '5GB', got {size!r}")
        power = "KMGT".find(m.group(2).upper()) + 1 if m.group(2) else 0
        value = int(float(m.group(1)) * (1024 if m.group(3) else 1000) ** power)
    if value <= 0:
        raise PresetError(f"{what} must be positive, got {size!r}")
    return value


def _shards(tensors, max_bytes):
    """Split ``{name: array}`` in order into shards of at most ``max_bytes`` (a larger tensor gets
    a shard of its own), as Transformers' ``save_pretrained(max_shard_size=...)`` does."""
    shards, current, size = [], {}, 0
    for name, array in tensors.items():
        if current and size + array.nbytes > max_bytes:
            shards.append(current)
            current, size = {}, 0
        current[name] = array
        size += array.nbytes
    if current or not shards:
        shards.append(current)
    return shards


def write_weights(folder, tensors, max_shard_size=None):
    """``model.safetensors``, or Transformers' sharded layout (``model-0000i-of-0000n.safetensors``
    plus ``model.safetensors.index.json``) when the weights exceed ``max_shard_size``."""
    from keras_models.presets.config import write_json
    from keras_models.presets.safetensors_io import save_file

    shards = [tensors] if max_shard_size is None else _shards(tensors, parse_shard_size(max_shard_size))
    if len(shards) == 1:
        save_file(tensors, folder / "model.safetensors", metadata={"format": "pt"})
        return
    weight_map = {}
    for i, shard in enumerate(shards, 1):
        name = f"model-{i:05d}-of-{len(shards):05d}.safetensors"
        save_file(shard, folder / name, metadata={"format": "pt"})
        weight_map.update(dict.fromkeys(shard, name))
    total = int(sum(a.nbytes for a in tensors.values()))
    write_json(folder / "model.safetensors.index.json", {"metadata": {"total_size": total}, "weight_map": weight_map})


def save_preset(model, path, overwrite=False, max_shard_size=None):
    if max_shard_size is not None:
        parse_shard_size(max_shard_size)  # a bad value fails before anything is written

    def write(folder):
        from keras_models.presets.config import write_json
        from keras_models.presets.weight_map import export_rules

        from keras_models.presets import quantization

        config = model.config_to_hf()
        prefix = getattr(model, "export_prefix", "")
        # A quantized model (model.quantize): dequantized float weights in model.safetensors plus
        # the exact quantized variables in a side file (keras_models/presets/quantization.py).
        plan = quantization.export_plan(model, prefix=prefix)
        rules = model.weight_rules() if plan is None else plan[0]
        if plan is not None:
            config[quantization.CONFIG_KEY] = plan[3]
            logger.info("save_to_preset: %s is quantized (%s); model.safetensors holds dequantized "
                        "float weights (what Transformers loads), %s the quantized kernels and scales",
                        type(model).__name__, ", ".join(plan[3]["modes"]), quantization.QUANT_FILE)
        from keras_models.presets.lora import lora_layers

        if lora_layers(model):
            logger.info("save_to_preset: the LoRA adapters of %s are merged into the saved weights "
                        "(save_lora_weights writes them alone)", type(model).__name__)
        write_json(folder / "config.json", config)
        tensors = dict(export_rules(rules, prefix=prefix))
        write_weights(folder, tensors, max_shard_size)
        if plan is not None:
            quantization.write_side_file(folder, plan[1], plan[2])
        extra = getattr(model, "save_extra_files", None)
        if extra is not None:
            extra(folder)

    replace_folder(path, write, overwrite=overwrite)
    return Path(path)


def replace_folder(path, write, overwrite=False):
    """Fill the folder ``path`` with what ``write(folder)`` writes into an empty folder, by the
    protocol in the module docstring. Returns the absolute target path."""
    target = _checked_target(path)
    parent, name = target.parent, target.name
    now = max(time.time_ns(), _last_time[0] + 1)
    _last_time[0] = now
    token = f"{os.getpid()}-{now:x}"
    _active.add(token)
    try:
        if parent.is_dir():
            _recover(target, before=now)
        if os.path.lexists(target) and os.listdir(target) and not overwrite:
            raise PresetError(f"save_to_preset: {path} exists and is not empty (pass overwrite=True)")
        parent.mkdir(parents=True, exist_ok=True)
        new_dir = parent / f".{name}{_TAG}{token}.new"
        old_dir = parent / f".{name}{_TAG}{token}.old"
        os.mkdir(new_dir)
        try:
            write(new_dir)
            _write_json(new_dir / MANIFEST_NAME, {"written_by": "keras_models save_to_preset",
                                                  "entries": sorted(os.listdir(new_dir))})
            if not os.path.lexists(target):
                os.replace(new_dir, target)
                return target
        except BaseException:
            _cleanup(new_dir)
            raise
        _swap(target, new_dir, old_dir)
        return target
    finally:
        _active.discard(token)


def recover_preset(path):
    """Settle every interrupted save of the preset folder ``path`` whose process is gone (see the
    module docstring), so the folder holds a complete preset again. Returns True if there was one."""
    target = Path(os.path.abspath(path))
    return target.parent.is_dir() and _recover(target, before=None)


# --- the swap -------------------------------------------------------------------------------------
def _swap(target, new_dir, old_dir):
    new = sorted(os.listdir(new_dir), key=lambda e: (e == "config.json", e))  # config.json last in
    existing = set(os.listdir(target))
    old = sorted((_ours(target, existing) | set(new)) & existing,
                 key=lambda e: (e != "config.json", e))  # config.json first out
    try:
        os.mkdir(old_dir)
        _write_json(old_dir / _JOURNAL_NAME, {"old": old, "new": new})
        for entry in old:
            os.replace(target / entry, old_dir / entry)
        for entry in new:
            os.replace(new_dir / entry, target / entry)
    except BaseException:
        try:
            _settle(target, new_dir, old_dir)
        except Exception as e:  # left for the next save / recover_preset
            logger.warning("save_to_preset: could not undo the interrupted save of %s (%s: %s); "
                           "the next save_to_preset or recover_preset(%r) restores it",
                           target, type(e).__name__, e, str(target))
        raise
    # committed: the target holds the complete new preset
    for leftover in (new_dir, old_dir):
        try:
            _remove(leftover)
        except OSError as e:
            logger.warning("save_to_preset: saved %s but could not remove %s (%s: %s); the next "
                           "save_to_preset of that folder removes it", target, leftover, type(e).__name__, e)


def _settle(target, new_dir, old_dir):
    """Roll an interrupted swap back or forward (module docstring, step 7); repeatable."""
    journal = _read_journal(old_dir)
    if journal is not None and new_dir.is_dir() and any(os.path.lexists(new_dir / e) for e in journal["new"]):
        old, new = journal["old"], journal["new"]
        for entry in reversed(new):  # config.json first out
            moved_in = not os.path.lexists(new_dir / entry) and (entry not in old or os.path.lexists(old_dir / entry))
            if moved_in and os.path.lexists(target / entry):
                os.replace(target / entry, new_dir / entry)
        for entry in reversed(old):  # config.json last in
            if os.path.lexists(old_dir / entry):
                os.replace(old_dir / entry, target / entry)
    _remove(new_dir)
    _remove(old_dir)


def _recover(target, before):
    """Settle the interrupted saves of ``target`` (tokens older than ``before``, None: all) whose
    process is gone; remove old-style temporary folders of it. Returns True if any was found."""
    parent, prefix = target.parent, f".{target.name}{_TAG}"
    tokens, legacy = set(), []
    for entry in os.listdir(parent):
        if entry.startswith(prefix):
            m = _TOKEN.fullmatch(entry[len(prefix):])
            if m and (before is None or int(m[2], 16) < before) and _stale(m[1] + "-" + m[2]):
                tokens.add((int(m[2], 16), m[1] + "-" + m[2]))
        elif entry.startswith(f".{target.name}.tmp") and _LEGACY_TMP.fullmatch(entry[len(target.name) + 1:]):
            legacy.append(parent / entry)
    for _, token in sorted(tokens):
        try:
            _settle(target, parent / f"{prefix}{token}.new", parent / f"{prefix}{token}.old")
        except PresetError as e:  # not a folder this protocol wrote: leave it alone
            logger.warning("save_to_preset: %s", e)
        except OSError as e:
            raise PresetError(f"save_to_preset: could not recover the interrupted save of {target} "
                              f"(folders {prefix}{token}.new/.old): {type(e).__name__}: {e}") from e
    start = time.time() if before is None else before / 1e9
    removed = False
    for folder in legacy:  # only a folder of preset files last touched before this save started
        if (not folder.is_symlink() and folder.is_dir() and folder.stat().st_mtime < start
                and all(_is_preset_name(e) or e.startswith(".") or _LEGACY_PART.fullmatch(e)
                        for e in os.listdir(folder))):
            _remove(folder)
            removed = True
    return bool(tokens) or removed


def _stale(token):
    if token in _active:
        return False
    pid = int(token.split("-")[0])
    if pid == os.getpid():
        return True  # a save of this process that failed and could not clean up
    if os.name == "nt":  # os.kill would terminate the process; keep another process' folders
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except OSError:  # exists, belongs to another user
        return False
    return False


# --- ownership ------------------------------------------------------------------------------------
def _is_preset_name(entry):
    return entry in PRESET_NAMES or _SHARD.fullmatch(entry) is not None


def _ours(target, existing):
    """Entries of the existing folder that a preset save wrote (module docstring, step 4)."""
    manifest = _read_names(target / MANIFEST_NAME, "entries") if MANIFEST_NAME in existing else None
    if manifest is not None:
        return set(manifest) | {MANIFEST_NAME}
    return {e for e in existing if _is_preset_name(e)}


def _valid_name(entry):
    return (isinstance(entry, str) and entry not in ("", ".", "..") and "/" not in entry
            and "\0" not in entry and not (os.altsep and os.altsep in entry) and os.sep not in entry)


def _read_names(path, *keys):
    """{key: [names]} (one key: the list) from a JSON file; None if it is missing or malformed (a
    file that exists but cannot be read raises)."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (FileNotFoundError, ValueError):
        return None
    if not isinstance(data, dict):
        return None
    out = {}
    for key in keys:
        names = data.get(key)
        if not isinstance(names, list) or not all(_valid_name(e) for e in names):
            return None
        out[key] = names
    return out[keys[0]] if len(keys) == 1 else out


def _read_journal(old_dir):
    """The journal of an interrupted swap; None if it had not been completely written, when nothing
    had moved yet (then ``old_dir`` holds nothing else)."""
    journal = _read_names(old_dir / _JOURNAL_NAME, "old", "new") if os.path.isdir(old_dir) else None
    if journal is None and os.path.isdir(old_dir) and set(os.listdir(old_dir)) - {_JOURNAL_NAME}:
        raise PresetError(f"{old_dir} holds files but no valid journal {_JOURNAL_NAME}; not touching it")
    return journal


# --- file helpers ---------------------------------------------------------------------------------
def _write_json(path, data):
    with open(path, "w", encoding="utf-8") as f:
        f.write(json.dumps(data, indent=2) + "\n")


def _is_our_temp_folder(path):
    """A save's own hidden working folder (``.<name>.kmsave-<token>.new/.old``, or an old-style
    ``.<name>.tmpXXXXXXXX``): the only folders this module ever deletes whole."""
    name = os.path.basename(os.path.normpath(path))
    if not name.startswith(".") or name in (".", ".."):
        return False
    tail = name.rsplit(_TAG, 1)[-1] if _TAG in name else None
    return (tail is not None and _TOKEN.fullmatch(tail) is not None) or _LEGACY_TMP.search(name) is not None


def _remove(path):
    if os.path.isdir(path) and not os.path.islink(path):
        if not _is_our_temp_folder(path):  # never a user's folder (a target of ".", a repository...)
            raise PresetError(f"save_to_preset: refusing to delete {path}: not a temporary folder of a save")
        foreign = [e for e in os.listdir(path) if e == ".git" or e.lower().startswith("readme")]
        if foreign:  # a save's folders only ever hold preset files: this one is someone else's
            raise PresetError(f"save_to_preset: refusing to delete {path}: it holds {', '.join(sorted(foreign))}, "
                              "which no save writes")
        shutil.rmtree(path)
    elif os.path.lexists(path):
        os.remove(path)


def _cleanup(folder):
    try:
        _remove(folder)
    except OSError as e:
        logger.warning("save_to_preset: could not remove the temporary folder %s (%s: %s); the next "
                       "save_to_preset of that folder removes it", folder, type(e).__name__, e)


def _checked_target(path):
    """The absolute target folder, or PresetError if replacing it could destroy unrelated data."""
    raw = os.fspath(path)
    given = Path(raw)

    def refuse(why):
        raise PresetError(f"save_to_preset: refusing to write to {raw!r}: {why}. Save into a "
                          "dedicated folder (a new or preset-only subfolder).")

    if given.name in ("", ".", ".."):
        refuse("it names the current folder, a parent or the root, not a preset folder")
    target = given.parent.resolve() / given.name
    if os.path.islink(target):
        refuse(f"{target} is a symlink")
    if os.path.lexists(target) and not os.path.isdir(target):
        refuse(f"{target} exists and is a file, not a folder")
    try:
        cwd = Path.cwd().resolve()
    except OSError:
        cwd = None
    if cwd is not None and target == cwd:
        refuse(f"{target} is the current working directory")
    if cwd is not None and target in cwd.parents:
        refuse(f"{target} contains the current working directory {cwd}")
    return target

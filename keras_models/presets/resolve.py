"""Turn a preset handle into a local folder.

Handles:
  * a local folder (Hugging Face layout, or written by ``save_to_preset``);
  * ``hf://org/name`` or ``hf://org/name@revision`` (through huggingface_hub, which honours
    ``HF_HOME``, ``HF_HUB_CACHE`` and ``HF_HUB_OFFLINE``);
  * a named preset listed in the ``presets/`` manifests (see :mod:`keras_models.presets.named`);
  * a bare hub id, ``org/name`` or a legacy ``name`` (as Transformers takes them), tried on the hub
    last: after a local folder of that name and the named presets.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from keras_models.errors import PresetError

# Files a model preset may need. Pickle checkpoints are never downloaded.
_ALLOW_PATTERNS = [
    "*.json",
    "*.safetensors",
    "*.txt",
    "*.model",
    "*.spm",  # Marian's source.spm / target.spm
    "*.codes",  # fastBPE (BERTweet, PhoBERT): bpe.codes
    "*.jinja",
    "1_Pooling/*",
    "2_Dense/*",
    "*/config.json",
]


def _download(repo_id: str, revision: str | None) -> Path:
    try:
        import huggingface_hub
        from huggingface_hub.utils import disable_progress_bars, enable_progress_bars  # noqa: F401
    except ImportError as e:  # pragma: no cover - a hard dependency
        raise PresetError("huggingface_hub is required for hf:// handles") from e
    try:
        path = huggingface_hub.snapshot_download(
            repo_id=repo_id, revision=revision, allow_patterns=_ALLOW_PATTERNS
        )
    except Exception as e:  # offline with nothing cached, repo missing, network errors
        offline = os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false", "False")
        hint = (
            " HF_HUB_OFFLINE is set and the repository is not in the local hub cache"
            f" ({huggingface_hub.constants.HF_HUB_CACHE})."
            if offline
            else ""
        )
        raise PresetError(
            f"Could not fetch 'hf://{repo_id}{'@' + revision if revision else ''}': "
            f"{type(e).__name__}: {e}.{hint}"
        ) from e
    return Path(path)


def parse_hf_handle(handle: str) -> tuple[str, str | None]:
    body = handle[len("hf://") :]
    revision = None
    if "@" in body:
        body, revision = body.split("@", 1)
        if not revision:
            raise PresetError(f"Empty revision in preset handle {handle!r}")
    parts = body.strip("/").split("/")
    if len(parts) not in (1, 2) or not all(parts):
        raise PresetError(
            f"Malformed hub handle {handle!r}: expected 'hf://org/name' or 'hf://org/name@revision'"
        )
    return "/".join(parts), revision


def resolve_preset(preset) -> Path:
    """Return the local folder holding ``preset``'s files, downloading if needed."""
    if isinstance(preset, os.PathLike):
        preset = os.fspath(preset)
    if not isinstance(preset, str) or not preset:
        raise PresetError(f"preset must be a non-empty string or path, got {preset!r}")
    if preset.startswith("hf://"):
        repo_id, revision = parse_hf_handle(preset)
        return _download(repo_id, revision)
    path = Path(preset).expanduser()
    if path.is_dir():
        if not (path / "config.json").exists():
            # a save_to_preset killed while moving files leaves no config.json: settle it (roll
            # back or forward from its journal) so that a complete preset loads
            from keras_models.presets.saving import recover_preset

            recover_preset(path)
        return path
    if path.exists():
        raise PresetError(f"Preset {preset!r} is a file; a preset is a folder (or hf:// handle)")
    from keras_models.presets.named import resolve_named

    resolved = resolve_named(preset)
    if resolved is not None:
        return resolved
    from keras_models.presets.named import list_presets

    unknown = (f"not a local folder, not an 'hf://org/name' handle, and not a named preset "
               f"(known: {', '.join(sorted(list_presets())) or 'none'})")
    if _HUB_ID.match(preset) and not preset.startswith("."):
        # a bare hub id, as Transformers' from_pretrained takes it ("org/name", or a legacy
        # "gpt2"-style name): the hub, after the local folder and the named presets
        try:
            return _download(preset, None)
        except PresetError as e:
            raise PresetError(f"Unknown preset {preset!r}: {unknown}; as a hub id: {e}") from e
    raise PresetError(f"Unknown preset {preset!r}: {unknown}")


_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.\-]*(/[\w.\-]+)?$")

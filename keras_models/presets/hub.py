"""Share a preset on the Hugging Face hub (or a hub-compatible endpoint: ``HF_ENDPOINT``).

``upload_preset(handle, folder)`` uploads a folder written by ``save_to_preset`` (or any Hugging
Face model folder) through huggingface_hub; ``Task.push_to_hub`` / ``Backbone.push_to_hub`` save the
model into a temporary folder and upload it, as Transformers' ``push_to_hub`` does. Credentials,
endpoint and proxies are huggingface_hub's (``HF_TOKEN`` or ``huggingface-cli login``,
``HF_ENDPOINT``). The folder is checked before anything is sent: a folder without a config.json
and weights, or holding pickle checkpoints, is refused, and only the file kinds ``from_preset``
reads are uploaded.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from keras_models.errors import PresetError
from keras_models.presets.resolve import _ALLOW_PATTERNS, parse_hf_handle

_PICKLES = ("*.bin", "*.pt", "*.pth", "*.ckpt", "*.pkl", "*.h5", "*.msgpack")


def _repo_id(handle) -> tuple[str, str | None]:
    if not isinstance(handle, str) or not handle:
        raise PresetError(f"hub handle must be 'hf://org/name' or 'org/name', got {handle!r}")
    repo_id, revision = parse_hf_handle(handle if handle.startswith("hf://") else "hf://" + handle)
    if "/" not in repo_id:
        raise PresetError(f"hub handle {handle!r} names no namespace: expected 'hf://org/name'")
    return repo_id, revision


def _check_folder(folder: Path):
    import fnmatch

    if not folder.is_dir():
        raise PresetError(f"upload_preset: {str(folder)!r} is not a folder (save the model with save_to_preset first)")
    names = [p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()]
    if "config.json" not in names:
        raise PresetError(f"upload_preset: {str(folder)!r} has no config.json: not a model preset")
    if not any(n.endswith(".safetensors") for n in names):
        raise PresetError(f"upload_preset: {str(folder)!r} has no .safetensors weights")
    pickles = sorted(n for n in names if any(fnmatch.fnmatch(n, p) for p in _PICKLES))
    if pickles:
        raise PresetError(f"upload_preset: {str(folder)!r} holds pickle checkpoints ({', '.join(pickles)}); "
                          "presets carry safetensors only: remove them first")
    return sorted(n for n in names if any(fnmatch.fnmatch(n, p) for p in _ALLOW_PATTERNS))


def upload_preset(handle, preset, *, commit_message=None, private=None, token=None, create_repo=True):
    """Upload the preset folder ``preset`` to the hub repository ``handle`` (``"hf://org/name"``,
    ``"hf://org/name@branch"`` or ``"org/name"``). Creates the repository when missing (unless
    ``create_repo=False``). Returns huggingface_hub's ``CommitInfo`` (``.commit_url``, ``.oid``).
    The uploaded folder loads back with ``from_preset("hf://org/name")`` and with Transformers'
    ``from_pretrained("org/name")``."""
    import huggingface_hub

    repo_id, revision = _repo_id(handle)
    folder = Path(os.fspath(preset)).expanduser()
    files = _check_folder(folder)
    api = huggingface_hub.HfApi(token=token)
    try:
        if create_repo:
            api.create_repo(repo_id, private=private, exist_ok=True)
        if revision is not None:
            api.create_branch(repo_id, branch=revision, exist_ok=True)
        return api.upload_folder(
            repo_id=repo_id, folder_path=str(folder), revision=revision, allow_patterns=files,
            commit_message=commit_message or f"Upload {folder.name} with keras-models")
    except PresetError:
        raise
    except Exception as e:  # auth, network, missing repo with create_repo=False, ...
        raise PresetError(f"Could not upload {str(folder)!r} to 'hf://{repo_id}"
                          f"{'@' + revision if revision else ''}' ({huggingface_hub.constants.ENDPOINT}): "
                          f"{type(e).__name__}: {e}") from e


def push_to_hub(model, handle, *, commit_message=None, private=None, token=None, max_shard_size=None,
                create_repo=True):
    """``model.save_to_preset`` into a temporary folder, then ``upload_preset`` it."""
    _repo_id(handle)  # a bad handle fails before the model is written
    with tempfile.TemporaryDirectory(prefix="keras_models_push_") as tmp:
        folder = Path(tmp) / "preset"
        model.save_to_preset(folder, max_shard_size=max_shard_size)
        return upload_preset(handle, folder, commit_message=commit_message, private=private, token=token,
                             create_repo=create_repo)


__all__ = ["upload_preset", "push_to_hub"]

